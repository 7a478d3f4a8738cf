import { afterEach, describe, expect, it } from "vitest";
import { encodeFloat32 } from "../shared/codecs";
import { StaticModel } from "../shared/static_model";
import widget from "./index";
import { bandPath, linePath, ticks, valueDomain } from "./chart";

const { render } = widget;
const XSS = "<img src=x onerror=alert(1)>";

const sites = ["layer.0.resid", "layer.1.resid", XSS];
const series = ["test", "control", "selectivity", "majority"];
// [series, sites]
const layer = new Float32Array([0.81, 0.9, 0.95, 0.52, 0.55, 0.6, 0.29, 0.35, 0.35, 0.4, 0.4, 0.4]);
const percents = new Float32Array([1, 10, 100]);
const neurons = new Float32Array([4, 38, 384]);
// [modes=2, selections=3, K=3]
const mean = new Float32Array([0.7, 0.85, 0.95, 0.5, 0.7, 0.95, 0.3, 0.5, 0.95, 0.94, 0.8, 0.1, 0.95, 0.9, 0.4, 0.95, 0.94, 0.9]);
const std = new Float32Array(18);
std[3] = 0.05;
std[4] = 0.02;
std[12] = 0.01;

function state(extra: Record<string, unknown> = {}) {
  return {
    sites,
    layer_series: series,
    layer_values: encodeFloat32(layer, [4, 3]),
    layer_metric: "accuracy",
    percents: encodeFloat32(percents),
    neurons: encodeFloat32(neurons),
    modes: ["keep", "zero"],
    selections: ["top", "random", "bottom"],
    curve_mean: encodeFloat32(mean, [2, 3, 3]),
    curve_std: encodeFloat32(std, [2, 3, 3]),
    baselines: encodeFloat32(new Float32Array([0.95, NaN])),
    method: XSS,
    part: "test",
    ...extra,
  };
}

let el: HTMLElement;
let cleanup: (() => void) | undefined;
afterEach(() => {
  cleanup?.();
  el?.remove();
});

function mount(st = state()) {
  el = document.createElement("div");
  document.body.append(el);
  const model = new StaticModel(st);
  cleanup = render({ model: model as any, el }) as () => void;
  return model;
}

describe("ProbeReport view", () => {
  it("builds an SVG and a table of accuracy by layer with the input numbers", () => {
    mount();
    const sec = el.querySelector("section.nw-layers")!;
    const svg = sec.querySelector("svg.nw-chart")!;
    expect(svg.namespaceURI).toBe("http://www.w3.org/2000/svg");
    expect(svg.getAttribute("role")).toBe("img");
    expect(svg.querySelectorAll("rect.nw-bar").length).toBe(3); // selectivity bars
    expect(svg.querySelector('[data-series="test"] path.nw-line')!.getAttribute("d")).toMatch(/^M/);
    const rows = sec.querySelectorAll("table.nw-data tbody tr");
    expect(rows.length).toBe(3);
    rows.forEach((tr, j) => {
      expect(tr.querySelector("th")!.textContent).toBe(sites[j]);
      series.forEach((name, i) => {
        const td = tr.querySelector(`td[data-series="${name}"]`)!;
        expect(Number(td.getAttribute("data-value"))).toBe(layer[i * 3 + j]);
        expect(Math.fround(Number(td.textContent))).toBe(layer[i * 3 + j]);
      });
    });
    // data goes in as text, never as markup
    expect(el.querySelector("img")).toBeNull();
    expect(rows[2].querySelector("th")!.textContent).toBe(XSS);
  });

  it("builds one accuracy-vs-k chart and table per mode, with a std band for random", () => {
    mount();
    const secs = el.querySelectorAll("section.nw-ablation");
    expect([...secs].map((s) => s.getAttribute("data-mode"))).toEqual(["keep", "zero"]);
    secs.forEach((sec, m) => {
      expect(sec.querySelectorAll('[data-series="random"] path.nw-band').length).toBe(1);
      for (const sel of ["top", "random", "bottom"]) expect(sec.querySelector(`[data-series="${sel}"] path.nw-line`)).not.toBeNull();
      const rows = sec.querySelectorAll("table.nw-data tbody tr");
      expect(rows.length).toBe(3);
      rows.forEach((tr, i) => {
        expect(Number(tr.querySelector('td[data-series="percent"]')!.textContent)).toBe(percents[i]);
        expect(Number(tr.querySelector('td[data-series="neurons"]')!.textContent)).toBe(neurons[i]);
        ["top", "random", "bottom"].forEach((sel, j) => {
          const td = tr.querySelector(`td[data-series="${sel}"]`)!;
          expect(Math.fround(Number(td.textContent))).toBe(mean[(m * 3 + j) * 3 + i]);
        });
        expect(Math.fround(Number(tr.querySelector('td[data-series="random_std"]')!.textContent))).toBe(std[(m * 3 + 1) * 3 + i]);
      });
      expect(sec.querySelector("h3")!.textContent).toContain(XSS);
    });
    expect(el.querySelectorAll("line.nw-ref.nw-s-full").length).toBe(2); // majority NaN: not drawn
    expect(el.querySelectorAll("line.nw-ref.nw-s-majority").length).toBe(0);
    expect(el.querySelector("img")).toBeNull();
  });

  it("rounds the numbers it prints (3 decimals), keeping the exact float32 in data-value and the tooltip", () => {
    const raw = new Float32Array(layer);
    raw[0] = 0.912345678; // a probe accuracy as training gives it
    raw[6] = -0.0043219; // a negative selectivity
    mount(state({ layer_values: encodeFloat32(raw, [4, 3]) }));
    const cells = [...el.querySelectorAll<HTMLElement>("td[data-value]")];
    const first = cells.find((td) => Number(td.dataset.value) === raw[0])!;
    expect(first.textContent).toBe("0.912");
    expect(Math.fround(Number(first.title))).toBe(raw[0]); // the tooltip reads back as the exact value
    const negative = cells.find((td) => Number(td.dataset.value) === raw[6])!;
    expect(negative.textContent).toBe("\u22120.004");
    for (const td of cells.filter((c) => Math.abs(Number(c.dataset.value)) < 100)) {
      expect(td.textContent!.replace("\u2212", "-")).toMatch(/^-?\d+\.\d{3}$/);
    }
  });

  it("shows missing values as a dash and only the parts it was given", () => {
    const nan = new Float32Array(layer);
    nan.fill(NaN, 3, 9); // no control, no selectivity
    mount(state({ layer_values: encodeFloat32(nan, [4, 3]), modes: [], selections: [], percents: encodeFloat32(new Float32Array(0)) }));
    expect(el.querySelectorAll("section.nw-ablation").length).toBe(0);
    const td = el.querySelector('td[data-series="control"]')!;
    expect(td.textContent).toBe("\u2013");
    expect(td.hasAttribute("data-value")).toBe(false);
    expect(el.querySelectorAll("rect.nw-bar").length).toBe(0);
  });

  it("reports a buffer of the wrong shape instead of drawing", () => {
    mount(state({ layer_values: encodeFloat32(layer, [3, 4]) }));
    const err = el.querySelector(".nw-error") as HTMLElement;
    expect(err.hidden).toBe(false);
    expect(err.textContent).toMatch(/shape \[4, 3\]/);
  });

  it("removes its listeners on cleanup", () => {
    const model = mount();
    cleanup!();
    cleanup = undefined;
    expect(model.listenerCount()).toBe(0);
    expect(el.childElementCount).toBe(0);
  });
});

describe("chart helpers", () => {
  it("ticks, domains and paths", () => {
    expect(ticks(0, 1)).toEqual([0, 0.2, 0.4, 0.6, 0.8, 1]);
    expect(valueDomain([0.5, NaN, -0.2])).toEqual([-0.2, 1]);
    expect(linePath([0, 1, 2], [1, NaN, 3])).toBe("M0.00,1.00M2.00,3.00");
    expect(bandPath([0, 1], [0, 0], [1, 1])).toBe("M0.00,1.00L1.00,1.00L1.00,0.00L0.00,0.00Z");
  });
});

describe("legend", () => {
  it("lists only the series that have values", () => {
    mount();
    const keys = [...el.querySelectorAll("section.nw-ablation .nw-legend li")].map((li) => li.textContent);
    expect(keys).toContain("all neurons");
    expect(keys).not.toContain("majority"); // NaN baseline
  });
});
