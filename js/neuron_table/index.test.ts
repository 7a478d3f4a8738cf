import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { encodeFloat32 } from "../shared/codecs";
import { FakeModel } from "../shared/fake_model";
import widget, { createOfflineModel } from "./index";
import { encodeInt32 } from "./table";

const { render } = widget;

const XSS = "<img src=x onerror=alert(1)>";

function state(n: number): Record<string, unknown> {
  const addresses = Array.from({ length: n }, (_, i) => `layer.${i % 6}.${i % 2 ? "resid" : "mlp"}:${i}`);
  return {
    addresses,
    ranks: encodeInt32(Array.from({ length: n }, (_, i) => i)),
    layers: encodeInt32(Array.from({ length: n }, (_, i) => i % 6)),
    components: ["mlp", "resid"],
    component_codes: encodeInt32(Array.from({ length: n }, (_, i) => i % 2)),
    scores: encodeFloat32(Float32Array.from({ length: n }, (_, i) => (n - i) / n + (i === 3 ? 5 : 0))),
    classes: ["NOUN", XSS],
    class_codes: encodeInt32(Array.from({ length: n }, (_, i) => (i % 3) - 1)),
    method: "probeless",
    page_size: 10,
    selected: addresses[0],
    error: "",
  };
}

let el: HTMLElement;
let cleanup: (() => void) | undefined;
beforeEach(() => {
  el = document.createElement("div");
  document.body.appendChild(el);
});
afterEach(() => {
  cleanup?.();
  cleanup = undefined;
  el.remove();
  vi.useRealTimers();
});

function mount(n: number, extra: Record<string, unknown> = {}) {
  const model = new FakeModel({ ...state(n), ...extra });
  cleanup = render({ model: model as any, el }) as () => void;
  const q = (s: string) => el.querySelector(s) as HTMLElement;
  const rows = () => Array.from(el.querySelectorAll<HTMLTableRowElement>("tr.nw-row"));
  return { model, q, rows };
}

describe("NeuronTable view", () => {
  it("renders a real table with column headers and only the visible rows of 50,000", () => {
    const { q, rows } = mount(50_000);
    expect(q(".nw-root.nw-table")).not.toBeNull();
    const ths = Array.from(el.querySelectorAll("th"));
    expect(ths.map((t) => t.dataset.column)).toEqual(["rank", "address", "layer", "component", "score", "top_class"]);
    expect(ths.every((t) => t.getAttribute("scope") === "col")).toBe(true);
    expect(q("th[data-column=rank]").getAttribute("aria-sort")).toBe("ascending");
    expect(rows().length).toBeLessThanOrEqual(30);
    expect(rows()[0].dataset.address).toBe("layer.0.mlp:0");
    expect(rows()[0].getAttribute("aria-selected")).toBe("true");
    expect(q("table").getAttribute("aria-rowcount")).toBe("50001");
    expect(q(".nw-status").textContent).toContain("50,000 of 50,000 neurons");
    expect(q(".nw-status").getAttribute("aria-live")).toBe("polite");
  });

  it("keeps model text as text", () => {
    const { rows } = mount(20);
    expect(el.querySelector("img")).toBeNull();
    expect(rows()[2].querySelector("td[data-column=top_class]")!.textContent).toBe(XSS);
    // a long class name is cut with "…" by the CSS: its cell keeps the full text as a tooltip
    expect(rows()[2].querySelector<HTMLElement>("td[data-column=top_class]")!.title).toBe(XSS);
    expect(rows()[2].querySelector<HTMLElement>("td[data-column=address]")!.title).toBe(rows()[2].dataset.address);
  });

  it("sorts on header click, toggling the direction", () => {
    const { q, rows } = mount(100);
    (q("th[data-column=score] button") as HTMLButtonElement).click();
    expect(q("th[data-column=score]").getAttribute("aria-sort")).toBe("descending");
    expect(q("th[data-column=rank]").getAttribute("aria-sort")).toBe("none");
    expect(rows()[0].dataset.address).toBe("layer.3.resid:3");
    const shown = rows().map((r) => Number(r.querySelector("td[data-column=score]")!.getAttribute("data-value")));
    expect([...shown].sort((a, b) => b - a)).toEqual(shown);
    (q("th[data-column=score] button") as HTMLButtonElement).click();
    expect(q("th[data-column=score]").getAttribute("aria-sort")).toBe("ascending");
    expect(rows()[0].dataset.address).toBe("layer.3.resid:99");
  });

  it("filters by text (debounced), layer and component", () => {
    vi.useFakeTimers();
    const { q, rows } = mount(600);
    const input = q("input.nw-filter") as HTMLInputElement;
    input.value = "MLP:12";
    input.dispatchEvent(new Event("input"));
    vi.advanceTimersByTime(200);
    expect(rows().length).toBeGreaterThan(0);
    expect(rows().every((r) => r.dataset.address!.includes("mlp:12"))).toBe(true);
    input.value = "";
    input.dispatchEvent(new Event("input"));
    vi.advanceTimersByTime(200);
    const layer = q("select.nw-layer") as HTMLSelectElement;
    layer.value = "4";
    layer.dispatchEvent(new Event("change"));
    const comp = q("select.nw-component") as HTMLSelectElement;
    comp.value = "mlp";
    comp.dispatchEvent(new Event("change"));
    expect(rows().every((r) => r.dataset.address!.startsWith("layer.4.mlp:"))).toBe(true);
    expect(q(".nw-status").textContent).toContain("100 of 600 neurons");
  });

  it("selects on click and moves the selection with the keyboard", () => {
    const { model, q, rows } = mount(1000);
    rows()[2].querySelector("td")!.dispatchEvent(new MouseEvent("click", { bubbles: true }));
    expect(model.get("selected")).toBe("layer.2.mlp:2");
    expect(model.saves).toBe(1);
    const scroller = q(".nw-scroll");
    const key = (k: string) => scroller.dispatchEvent(new KeyboardEvent("keydown", { key: k, bubbles: true, cancelable: true }));
    key("ArrowDown");
    expect(model.get("selected")).toBe("layer.3.resid:3");
    key("ArrowUp");
    key("ArrowUp");
    expect(model.get("selected")).toBe("layer.1.resid:1");
    key("End");
    expect(model.get("selected")).toBe("layer.3.resid:999");
    expect(el.querySelector('tr.nw-row[data-address="layer.3.resid:999"]')!.getAttribute("aria-selected")).toBe("true");
    expect(rows().filter((r) => r.getAttribute("aria-selected") === "true").length).toBe(1);
    key("Home");
    expect(model.get("selected")).toBe("layer.0.mlp:0");
  });

  it("follows a selection set from Python, and shows errors", () => {
    const { model, q } = mount(5000);
    model.update({ selected: "layer.4.mlp:4000" });
    const row = el.querySelector('tr.nw-row[data-address="layer.4.mlp:4000"]');
    expect(row?.getAttribute("aria-selected")).toBe("true");
    expect(q(".nw-status").textContent).toContain("selected layer.4.mlp:4000");
    expect(q(".nw-error").hidden).toBe(true);
    model.update({ error: "neuron 'x' is not in this table's ranking" });
    expect(q(".nw-error").hidden).toBe(false);
    expect(q(".nw-error").textContent).toContain("not in this table");
  });

  it("works from a static export's model (buffers as base64)", () => {
    const model = createOfflineModel({
      state: { ...state(3), ranks: { dtype: "int32", shape: [3] }, layers: { dtype: "int32", shape: [3] } },
      buffers: [btoa("\x00\x00\x00\x00\x01\x00\x00\x00\x02\x00\x00\x00"), btoa("\x05\x00\x00\x00".repeat(3))],
      buffer_paths: [["ranks", "view"], ["layers", "view"]],
    } as any);
    cleanup = render({ model: model as any, el }) as () => void;
    const rows = Array.from(el.querySelectorAll<HTMLTableRowElement>("tr.nw-row"));
    expect(rows.map((r) => r.querySelector("td[data-column=layer]")!.textContent)).toEqual(["5", "5", "5"]);
    rows[1].querySelector("td")!.dispatchEvent(new MouseEvent("click", { bubbles: true }));
    expect(model.get("selected")).toBe("layer.1.resid:1");
  });

  it("removes itself and its listeners on cleanup", () => {
    const { model } = mount(10);
    cleanup!();
    cleanup = undefined;
    expect(el.querySelector(".nw-root")).toBeNull();
    expect([...model.handlers.values()].every((s) => s.size === 0)).toBe(true);
  });
});
