import { describe, expect, it } from "vitest";
import { flush, float32, mountEach, XSS } from "../shared/mount";
import widget, { createOfflineModel } from "./index";

const { render } = widget;

const matrix = (rows: number, cols: number, values: number[]) => float32(values, [rows, cols]);

function baseState() {
  return {
    row_labels: ["embed.resid", "layer.0.resid"],
    col_labels: ["not", "bad", XSS],
    values: matrix(2, 3, [0.5, -1, 0, 0.25, 2, -0.125]),
    label: "layer conductance → 'positive'",
    row_title: "site",
    col_title: "word",
    annotate: false,
    selected: [] as number[],
    error: "",
  };
}

const ui = mountEach(render, baseState);
const { show, q } = ui;
const cells = () => [...ui.el.querySelectorAll<HTMLTableCellElement>("td.nw-cell")];

describe("MatrixView", () => {
  it("follows the DOM contract: labelled rows and columns, one cell per value with its exact value", () => {
    show();
    expect(q(".nw-root.nw-matrix")).not.toBeNull();
    const cols = [...ui.el.querySelectorAll("th.nw-col")].map((th) => th.textContent);
    expect(cols).toEqual(["not", "bad", XSS]); // text, never HTML
    expect(ui.el.querySelector("img")).toBeNull();
    const rows = [...ui.el.querySelectorAll("th.nw-rowhead")].map((th) => th.textContent);
    expect(rows).toEqual(["embed.resid", "layer.0.resid"]);
    const c = cells();
    expect(c.map((td) => [td.dataset.row, td.dataset.col])).toEqual([
      ["0", "0"],
      ["0", "1"],
      ["0", "2"],
      ["1", "0"],
      ["1", "1"],
      ["1", "2"],
    ]);
    expect(c.map((td) => Number(td.dataset.value))).toEqual([0.5, -1, 0, 0.25, 2, -0.125]);
    expect(q(".nw-status").textContent).toBe("layer conductance → 'positive'");
    expect(q(".nw-caption").textContent).toContain("site");
    expect(q<HTMLElement>(".nw-error").hidden).toBe(true);
  });

  it("keeps a one- or two-character column label (\";\", \",\") upright: on its side \";\" reads as \".\"", () => {
    show({ ...baseState(), col_labels: [";", "'s", "wooden"] });
    const spans = [...ui.el.querySelectorAll<HTMLElement>("th.nw-col .nw-col-text")];
    expect(spans.map((s) => s.textContent)).toEqual([";", "'s", "wooden"]);
    expect(spans.map((s) => s.classList.contains("nw-col-short"))).toEqual([true, true, false]);
    expect(ui.el.querySelector<HTMLElement>("th.nw-col")!.title).toBe(";");
  });

  it("colours on a symmetric scale: zero is the background, equal magnitudes equally intense", () => {
    show();
    const c = cells();
    const zero = c[2].style.backgroundColor;
    const bg = c[0].style.backgroundColor;
    expect(zero).not.toBe(bg);
    expect(q(".nw-legend-max").textContent).toBe("2");
    expect(q(".nw-legend-min").textContent).toBe("\u22122");
    expect(c[1].style.backgroundColor).not.toBe(c[0].style.backgroundColor); // sign is distinct
  });

  it("annotates cells with their values when asked", () => {
    show({ ...baseState(), annotate: true });
    expect(cells().map((td) => td.textContent)).toEqual(["0.5", "\u22121", "0", "0.25", "2", "\u22120.125"]);
  });

  it("selects a cell on click and clears it on a second click", () => {
    show();
    cells()[4].click();
    expect(ui.model.get("selected")).toEqual([1, 1]);
    expect(cells()[4].classList.contains("nw-selected")).toBe(true);
    expect(cells()[4].getAttribute("aria-selected")).toBe("true");
    cells()[4].click();
    expect(ui.model.get("selected")).toEqual([]);
    expect(cells().some((td) => td.classList.contains("nw-selected"))).toBe(false);
    expect(ui.model.saves).toBe(2);
  });

  it("reads cells with the arrow keys and selects with Enter", () => {
    show();
    const grid = q<HTMLElement>(".nw-scroll");
    grid.dispatchEvent(new Event("focus"));
    grid.dispatchEvent(new KeyboardEvent("keydown", { key: "ArrowDown", bubbles: true }));
    grid.dispatchEvent(new KeyboardEvent("keydown", { key: "ArrowRight", bubbles: true }));
    expect(q(".nw-readout").textContent).toBe("layer.0.resid × bad: 2");
    grid.dispatchEvent(new KeyboardEvent("keydown", { key: "Enter", bubbles: true }));
    expect(ui.model.get("selected")).toEqual([1, 1]);
  });

  it("redraws when Python sends new labels and values together", async () => {
    show();
    ui.model.update({
      row_labels: ["a"],
      col_labels: ["x", "y"],
      values: matrix(1, 2, [3, -3]),
      label: "new",
      selected: [0, 1],
    });
    await flush();
    expect(cells().map((td) => Number(td.dataset.value))).toEqual([3, -3]);
    expect(q(".nw-status").textContent).toBe("new");
    expect(cells()[1].classList.contains("nw-selected")).toBe(true);
  });

  it("says so when the values do not fit the labels, instead of drawing wrong cells", async () => {
    show();
    ui.model.update({ values: matrix(3, 2, [1, 2, 3, 4, 5, 6]) });
    await flush();
    expect(q<HTMLElement>(".nw-error").hidden).toBe(false);
    expect(q(".nw-error").textContent).toContain("[3, 2]");
  });

  it("shows Python's error and cleans up every listener", () => {
    show({ ...baseState(), error: "cell [5, 5] is outside the 2 × 3 matrix" });
    expect(q(".nw-error").textContent).toContain("outside");
    ui.cleanup();
    expect(ui.model.listeners()).toBe(0);
    expect(q(".nw-root")).toBeNull();
    ui.cleanup = () => {};
  });

  it("renders a static export from the embedded state", () => {
    const state = baseState();
    const { view, ...rest } = state.values;
    const v = view as ArrayBufferView;
    const bytes = new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
    const b64 = btoa(String.fromCharCode(...bytes));
    const offline = createOfflineModel({
      state: { ...state, values: rest },
      buffer_paths: [["values", "view"]],
      buffers: [b64],
    });
    ui.cleanup = render({ model: offline as any, el: ui.el });
    expect(cells().map((td) => Number(td.dataset.value))).toEqual([0.5, -1, 0, 0.25, 2, -0.125]);
    cells()[0].click();
    expect(offline.get("selected")).toEqual([0, 0]);
  });
});
