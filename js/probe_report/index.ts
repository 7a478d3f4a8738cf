/**
 * ProbeReport front end: accuracy by layer (task, control, majority as lines; selectivity as bars) and
 * accuracy vs % of neurons for the top / random (mean ± std band) / bottom selections of a ranking, each an
 * SVG chart built with DOM APIs plus a `<table>` with the same numbers as text.
 *
 * DOM contract (tests rely on it): root `.nw-root.nw-report`; `section.nw-layers` and one
 * `section.nw-ablation[data-mode]` per mode, each with an `svg.nw-chart[role=img]` and a `table.nw-data`
 * whose numeric cells are `td[data-series]` holding the value as text and `data-value` (String(float32));
 * missing values read "–". `.nw-error` (role="alert") shows a decoding error, hidden otherwise.
 */
import "./styles.css";
import type { AnyModel } from "@anywidget/types";
import { formatFloat32 } from "../shared/a11y";
import type { EncodedArray } from "../shared/codecs";
import { h, uid } from "../shared/dom";
import { type ExportedState, StaticModel, restoreBuffers } from "../shared/static_model";
import { hostIsDark, watchTheme } from "../shared/theme";
import { FRAME, bandPath, decodeShaped, linePath, linear, s, ticks, valueDomain, yAxis } from "./chart";

/** The model of a static HTML export: all the numbers are in the page. */
export function createOfflineModel(exported: ExportedState): StaticModel {
  return new StaticModel(restoreBuffers(exported));
}

/** The synced state (trait names of the Python widget). */
export interface ReportModel {
  sites: string[];
  layer_series: string[];
  layer_values: EncodedArray | null;
  layer_metric: string;
  percents: EncodedArray | null;
  neurons: EncodedArray | null;
  modes: string[];
  selections: string[];
  curve_mean: EncodedArray | null;
  curve_std: EncodedArray | null;
  baselines: EncodedArray | null;
  method: string;
  part: string;
}

type Model = AnyModel<ReportModel>;

const SERIES_LABEL: Record<string, string> = {
  test: "Task accuracy",
  control: "Control accuracy",
  selectivity: "Selectivity",
  majority: "Majority baseline",
};
const MODE_TITLE: Record<string, string> = {
  keep: "Keep only the selected neurons",
  zero: "Ablate (zero) the selected neurons",
};
const MISSING = "\u2013";

/**
 * Text of one value for the tables: accuracies and their differences with 3 decimals ("0.912", "−0.004"),
 * larger values (a loss, a count) with 4 significant digits. The exact float32 stays in `data-value` and
 * in the cell's tooltip: the tables are read by people, the attributes by programs.
 */
export function valueText(v: number): string {
  if (!Number.isFinite(v)) return MISSING;
  const s = Math.abs(v) < 100 ? v.toFixed(3) : String(Number(v.toPrecision(4)));
  return s.startsWith("-") ? `\u2212${s.slice(1)}` : s;
}

function numCell(v: number, series: string): HTMLTableCellElement {
  const td = h("td", "nw-num", { "data-series": series }, valueText(v));
  if (Number.isFinite(v)) {
    const exact = formatFloat32(Math.fround(v));
    td.setAttribute("data-value", String(Math.fround(v)));
    td.title = exact;
  }
  return td;
}

function legend(doc: Document, items: [string, string, string][]): HTMLElement {
  const ul = h("ul", "nw-legend", { "aria-hidden": "true" });
  for (const [cls, label, kind] of items) {
    const li = h("li", `nw-key nw-s-${cls}`);
    li.append(h("span", `nw-swatch nw-swatch-${kind}`), doc.createTextNode(label));
    ul.append(li);
  }
  return ul;
}

/** Accuracy-by-layer section: SVG (lines + selectivity bars) and its table. */
function layerSection(doc: Document, sites: string[], series: string[], values: ArrayLike<number>, metric: string): HTMLElement {
  const n = sites.length;
  const row = (name: string) => {
    const i = series.indexOf(name);
    return Array.from({ length: n }, (_, j) => (i < 0 ? NaN : values[i * n + j]));
  };
  const section = h("section", "nw-section nw-layers");
  const titleId = uid("nw-report");
  section.append(h("h3", "nw-title", { id: titleId }, `Probe ${metric} by layer`));
  const f = FRAME;
  const [lo, hi] = valueDomain(values);
  const y = linear(lo, hi, f.height - f.bottom, f.top);
  const band = (f.width - f.left - f.right) / Math.max(n, 1);
  const x = (j: number) => f.left + band * (j + 0.5);
  const svg = s(doc, "svg", { class: "nw-chart", viewBox: `0 0 ${f.width} ${f.height}`, role: "img", "aria-labelledby": titleId });
  const g = s(doc, "g");
  yAxis(doc, g, y, ticks(lo, hi), f);
  const sel = row("selectivity");
  const bars = s(doc, "g", { class: "nw-s-selectivity" });
  sel.forEach((v, j) => {
    if (!Number.isFinite(v)) return;
    const y0 = y(0);
    const rect = s(doc, "rect", { class: "nw-bar", x: x(j) - band * 0.3, width: band * 0.6, y: Math.min(y0, y(v)), height: Math.abs(y(v) - y0) });
    rect.append(s(doc, "title", {}, `${sites[j]} selectivity ${valueText(v)}`));
    bars.append(rect);
  });
  g.append(bars);
  for (const name of ["majority", "control", "test"]) {
    const ys = row(name);
    if (!ys.some(Number.isFinite)) continue;
    const sg = s(doc, "g", { class: `nw-s-${name}`, "data-series": name });
    const xs = ys.map((_, j) => x(j));
    sg.append(s(doc, "path", { class: `nw-line${name === "majority" ? " nw-dotted" : name === "control" ? " nw-dashed" : ""}`, d: linePath(xs, ys.map(y)) }));
    if (name !== "majority") {
      ys.forEach((v, j) => {
        if (!Number.isFinite(v)) return;
        const c = s(doc, "circle", { class: "nw-dot", cx: xs[j], cy: y(v), r: 3.5 });
        c.append(s(doc, "title", {}, `${sites[j]} ${SERIES_LABEL[name].toLowerCase()} ${valueText(v)}`));
        sg.append(c);
      });
    }
    g.append(sg);
  }
  sites.forEach((site, j) => {
    const label = site.replace(".resid", "").replace("layer.", "L");
    g.append(s(doc, "text", { class: "nw-tick", x: x(j), y: f.height - f.bottom + 16, "text-anchor": "middle" }, label));
  });
  g.append(s(doc, "text", { class: "nw-axis-label", x: f.left + (f.width - f.left - f.right) / 2, y: f.height - 8, "text-anchor": "middle" }, "site"));
  svg.append(g);
  section.append(
    svg,
    legend(doc, [
      ["test", SERIES_LABEL.test, "line"],
      ["control", SERIES_LABEL.control, "line"],
      ["selectivity", SERIES_LABEL.selectivity, "bar"],
      ["majority", SERIES_LABEL.majority, "line"],
    ].filter(([name]) => row(name).some(Number.isFinite)) as [string, string, string][]),
  );
  const table = h("table", "nw-data");
  table.append(h("caption", "", {}, `Probe ${metric} by layer (selectivity = task \u2212 control accuracy)`));
  const thead = h("thead");
  const hr = h("tr");
  hr.append(h("th", "", { scope: "col" }, "Site"));
  for (const name of series) hr.append(h("th", "nw-num", { scope: "col" }, SERIES_LABEL[name] ?? name));
  thead.append(hr);
  const tbody = h("tbody");
  sites.forEach((site, j) => {
    const tr = h("tr", "", { "data-site": site });
    tr.append(h("th", "", { scope: "row" }, site));
    series.forEach((name, i) => tr.append(numCell(values[i * n + j], name)));
    tbody.append(tr);
  });
  table.append(thead, tbody);
  section.append(table);
  return section;
}

interface Ablation {
  percents: ArrayLike<number>;
  neurons: ArrayLike<number>;
  selections: string[];
  mean: ArrayLike<number>;
  std: ArrayLike<number>;
  full: number;
  majority: number;
  method: string;
  part: string;
}

/** One accuracy-vs-k section (one mode): SVG (top/random band/bottom) and its table. */
function ablationSection(doc: Document, a: Ablation, mode: string, m: number): HTMLElement {
  const k = a.percents.length;
  const nsel = a.selections.length;
  const curve = (arr: ArrayLike<number>, j: number) => Array.from({ length: k }, (_, i) => arr[(m * nsel + j) * k + i]);
  const section = h("section", "nw-section nw-ablation", { "data-mode": mode });
  const titleId = uid("nw-report");
  section.append(h("h3", "nw-title", { id: titleId }, `${MODE_TITLE[mode] ?? mode}: ${a.part} accuracy (${a.method} ranking)`));
  const f = FRAME;
  const all: number[] = [a.full, a.majority];
  a.selections.forEach((_, j) => {
    const mu = curve(a.mean, j);
    const sd = curve(a.std, j);
    mu.forEach((v, i) => all.push(v + (sd[i] || 0), v - (sd[i] || 0)));
  });
  const [lo, hi] = valueDomain(all);
  const y = linear(lo, hi, f.height - f.bottom, f.top);
  const ps = Array.from(a.percents);
  const useLog = ps.every((p) => p > 0);
  const tx = (p: number) => (useLog ? Math.log10(p) : p);
  const xmin = Math.min(...ps.map(tx));
  const xmax = Math.max(...ps.map(tx));
  const x = linear(xmin === xmax ? xmin - 1 : xmin, xmin === xmax ? xmax + 1 : xmax, f.left + 8, f.width - f.right - 8);
  const xs = ps.map((p) => x(tx(p)));
  const svg = s(doc, "svg", { class: "nw-chart", viewBox: `0 0 ${f.width} ${f.height}`, role: "img", "aria-labelledby": titleId });
  const g = s(doc, "g");
  yAxis(doc, g, y, ticks(lo, hi), f);
  for (const [name, v, cls] of [
    ["all neurons", a.full, "full"],
    ["majority", a.majority, "majority"],
  ] as [string, number, string][]) {
    if (!Number.isFinite(v)) continue;
    const ref = s(doc, "line", { class: `nw-ref nw-s-${cls}`, x1: f.left, x2: f.width - f.right, y1: y(v), y2: y(v) });
    ref.append(s(doc, "title", {}, `${name} ${valueText(v)}`));
    g.append(ref);
  }
  a.selections.forEach((sel, j) => {
    const mu = curve(a.mean, j);
    const sd = curve(a.std, j);
    const sg = s(doc, "g", { class: `nw-s-${sel}`, "data-series": sel });
    if (sel === "random") {
      const d = bandPath(xs, mu.map((v, i) => y(v - sd[i])), mu.map((v, i) => y(v + sd[i])));
      if (d) sg.append(s(doc, "path", { class: "nw-band", d }));
    }
    sg.append(s(doc, "path", { class: "nw-line", d: linePath(xs, mu.map(y)) }));
    mu.forEach((v, i) => {
      if (!Number.isFinite(v)) return;
      const c = s(doc, "circle", { class: "nw-dot", cx: xs[i], cy: y(v), r: 3 });
      const spread = sel === "random" ? ` \u00b1 ${valueText(sd[i])}` : "";
      c.append(s(doc, "title", {}, `${sel} ${valueText(ps[i])}% (${valueText(a.neurons[i])} neurons): ${valueText(v)}${spread}`));
      sg.append(c);
    });
    g.append(sg);
  });
  ps.forEach((p, i) => g.append(s(doc, "text", { class: "nw-tick", x: xs[i], y: f.height - f.bottom + 16, "text-anchor": "middle" }, valueText(p))));
  const xLabel = `% of neurons ${mode === "keep" ? "kept" : "ablated"}${useLog ? " (log scale)" : ""}`;
  g.append(s(doc, "text", { class: "nw-axis-label", x: f.left + (f.width - f.left - f.right) / 2, y: f.height - 8, "text-anchor": "middle" }, xLabel));
  svg.append(g);
  section.append(
    svg,
    legend(doc, [
      ...a.selections.map((sel): [string, string, string] => [sel, sel === "random" ? "random (mean \u00b1 std)" : sel, sel === "random" ? "band" : "line"]),
      ...([
        ["full", "all neurons", "line", a.full],
        ["majority", "majority", "line", a.majority],
      ] as [string, string, string, number][])
        .filter(([, , , v]) => Number.isFinite(v))
        .map(([c, l, k]): [string, string, string] => [c, l, k]),
    ]),
  );
  const table = h("table", "nw-data");
  table.append(h("caption", "", {}, `${MODE_TITLE[mode] ?? mode}: accuracy by % of neurons`));
  const thead = h("thead");
  const hr = h("tr");
  hr.append(h("th", "nw-num", { scope: "col" }, "% of neurons"), h("th", "nw-num", { scope: "col" }, "Neurons"));
  for (const sel of a.selections) {
    hr.append(h("th", "nw-num", { scope: "col" }, sel === "random" ? "Random (mean)" : sel[0].toUpperCase() + sel.slice(1)));
    if (sel === "random") hr.append(h("th", "nw-num", { scope: "col" }, "Random (std)"));
  }
  thead.append(hr);
  const tbody = h("tbody");
  for (let i = 0; i < k; i++) {
    const tr = h("tr", "", { "data-percent": String(Math.fround(ps[i])) });
    tr.append(numCell(ps[i], "percent"), numCell(a.neurons[i], "neurons"));
    a.selections.forEach((sel, j) => {
      tr.append(numCell(a.mean[(m * nsel + j) * k + i], sel));
      if (sel === "random") tr.append(numCell(a.std[(m * nsel + j) * k + i], "random_std"));
    });
    tbody.append(tr);
  }
  table.append(thead, tbody);
  section.append(table);
  return section;
}

function render({ model, el }: { model: Model; el: HTMLElement }): () => void {
  const doc = el.ownerDocument;
  const root = h("div", "nw-root nw-report");
  root.classList.toggle("nw-dark", hostIsDark(doc));
  const errorBox = h("div", "nw-error", { role: "alert" });
  errorBox.hidden = true;
  const body = h("div", "nw-body");
  root.append(errorBox, body);
  el.append(root);

  const draw = () => {
    body.replaceChildren();
    errorBox.hidden = true;
    try {
      const sites = model.get("sites") ?? [];
      const series = model.get("layer_series") ?? [];
      if (sites.length) {
        const values = decodeShaped(model.get("layer_values"), [series.length, sites.length]);
        body.append(layerSection(doc, sites, series, values, model.get("layer_metric") || "accuracy"));
      }
      const modes = model.get("modes") ?? [];
      const selections = model.get("selections") ?? [];
      const percents = decodeShaped(model.get("percents"), [model.get("percents")?.shape?.[0] ?? 0]);
      const k = percents.length;
      if (modes.length && k) {
        const shape = [modes.length, selections.length, k];
        const base = decodeShaped(model.get("baselines"), [2]);
        const a: Ablation = {
          percents,
          neurons: decodeShaped(model.get("neurons"), [k]),
          selections,
          mean: decodeShaped(model.get("curve_mean"), shape),
          std: decodeShaped(model.get("curve_std"), shape),
          full: base.length ? base[0] : NaN,
          majority: base.length ? base[1] : NaN,
          method: model.get("method") || "",
          part: model.get("part") || "test",
        };
        modes.forEach((mode, m) => body.append(ablationSection(doc, a, mode, m)));
      }
      if (!body.childElementCount) body.append(h("p", "nw-empty", {}, "Nothing to show."));
    } catch (err) {
      errorBox.textContent = `Cannot draw this report: ${err instanceof Error ? err.message : String(err)}`;
      errorBox.hidden = false;
    }
  };
  const keys = ["sites", "layer_series", "layer_values", "layer_metric", "percents", "neurons", "modes", "selections", "curve_mean", "curve_std", "baselines", "method", "part"];
  const bound: [string, () => void][] = keys.map((k) => [`change:${k}`, draw]);
  for (const [event, fn] of bound) model.on(event, fn);
  draw();
  const stopWatching = watchTheme(() => root.classList.toggle("nw-dark", hostIsDark(doc)), doc);
  return () => {
    for (const [event, fn] of bound) model.off(event, fn);
    stopWatching();
    root.remove();
  };
}

export default { render };
