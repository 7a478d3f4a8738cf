import { describe, expect, it } from "vitest";
import { flush, float32, mountEach, XSS } from "../shared/mount";
import widget, { createOfflineModel } from "./index";

const { render } = widget;

const arr = float32;

function baseState() {
  return {
    row_labels: ["layer.0.resid", "layer.1.resid"],
    col_labels: ["0:The", `1:${XSS}`],
    values: arr([0.1, 0.9, -0.2, 0.5], [2, 2]),
    label: "activation patching: recovered",
    row_title: "resid",
    col_title: "position",
    annotate: true,
    selected: [] as number[],
    error: "",
    cell: "",
    neurons: [] as string[],
    neuron_scores: arr([], [0]),
    neuron_label: "",
    can_send: false,
    send: 0,
  };
}

const ui = mountEach(render, baseState);
const { show, q } = ui;

describe("PatchingView", () => {
  it("draws the grid with the matrix front end and invites a click", () => {
    show();
    expect(q(".nw-root.nw-patching .nw-matrix")).not.toBeNull();
    const cells = [...ui.el.querySelectorAll<HTMLElement>("td.nw-cell")];
    expect(cells.map((c) => Number(c.dataset.value))).toEqual([0.1, 0.9, -0.2, 0.5].map(Math.fround));
    expect(ui.el.querySelector("img")).toBeNull(); // labels are text
    expect(q(".nw-cell-status").textContent).toContain("Click a cell");
    expect(q<HTMLButtonElement>("button.nw-open-panel").disabled).toBe(true);
  });

  it("a click selects the cell, says it is ranking, then lists the neurons Python sends", async () => {
    show();
    q<HTMLElement>('td.nw-cell[data-row="1"][data-col="0"]').click();
    expect(ui.model.get("selected")).toEqual([1, 0]);
    expect(q(".nw-cell-status").textContent).toBe("Ranking the neurons of layer.1.resid × 0:The…");
    ui.model.update({
      cell: "layer.1.resid × 0:The",
      neurons: ["layer.1.mlp:7", XSS],
      neuron_scores: arr([0.75, 0.25], [2]),
      neuron_label: "share restored",
      can_send: true,
    });
    await flush();
    const rows = [...ui.el.querySelectorAll<HTMLElement>("tr.nw-neuron")];
    expect(rows.map((r) => r.dataset.neuron)).toEqual(["layer.1.mlp:7", XSS]);
    expect(rows[1].querySelector(".nw-neuron-name")!.textContent).toBe(XSS);
    expect(ui.el.querySelector("img")).toBeNull();
    const scores = [...ui.el.querySelectorAll<HTMLElement>("td.nw-neuron-score")].map((c) => Number(c.dataset.value));
    expect(scores).toEqual([0.75, 0.25]);
    expect(q(".nw-cell-status").textContent).toBe("Neurons of layer.1.resid × 0:The, ranked by their own effect");
    const button = q<HTMLButtonElement>("button.nw-open-panel");
    expect(button.disabled).toBe(false);
    button.click();
    expect(ui.model.get("send")).toBe(1);
    expect(ui.model.saves).toBeGreaterThan(0);
  });

  it("an error from Python ends the wait and keeps the button off", async () => {
    show();
    q<HTMLElement>('td.nw-cell[data-row="0"][data-col="1"]').click();
    ui.model.update({ error: "ValueError: no neurons here", cell: "layer.0.resid × 1" });
    await flush();
    expect(q(".nw-error").textContent).toContain("no neurons here");
    expect(q(".nw-cell-status").textContent).toContain("No neurons listed");
    expect(q<HTMLButtonElement>("button.nw-open-panel").disabled).toBe(true);
  });

  it("renders an export's state offline and removes every listener on cleanup", () => {
    const state = { ...baseState(), neurons: ["layer.0.mlp:1"], cell: "c", neuron_scores: arr([0.5], [1]) };
    const offline = createOfflineModel({ state: state as any, buffer_paths: [], buffers: [] });
    const stop = render({ model: offline as any, el: ui.el });
    expect(ui.el.querySelectorAll("tr.nw-neuron").length).toBe(1);
    stop();
    expect(ui.el.querySelector(".nw-patching")).toBeNull();
    show();
    ui.cleanup();
    expect(ui.model.listeners()).toBe(0);
    ui.cleanup = () => {};
  });
});
