/**
 * MatrixView front end: a labelled matrix (layer × token attributions, token × token interactions) on the
 * same symmetric diverging scale as the TokenHeatmap.
 *
 * DOM contract (the browser tests rely on it; keep it stable):
 * - the root element has classes `nw-root nw-matrix`;
 * - `table.nw-grid` (role="grid"): a header row of `th.nw-col[data-col]` (textContent = the column label
 *   exactly), then one `tr` per row with `th.nw-rowhead[data-row]` (the row label) and one
 *   `td.nw-cell[data-row][data-col]` per column, whose `data-value` = String(value) of the float32 value
 *   as a JS number (full precision);
 * - the selected cell has class `nw-selected` and `aria-selected="true"` (clicking a cell, or Enter /
 *   Space on the active one, selects it; clicking it again clears the selection);
 * - `.nw-status` (aria-live="polite") holds the label of the values shown and changes only once those
 *   values are displayed; `.nw-caption` holds the axis names;
 * - `.nw-error` (role="alert") shows errors and is `hidden` when there are none;
 * - `.nw-legend` shows the colour bar with its min / 0 / max as text.
 *
 * Synced traits (Python `MatrixView`): see `MatrixModel` below.
 */
import "./styles.css";
import type { AnyModel } from "@anywidget/types";
import { formatFloat32, formatShort, liveRegion } from "../shared/a11y";
import { type EncodedArray, decodeArray } from "../shared/codecs";
import { type Palette, symmetricScale, textColour, toCss, valueColour } from "../shared/colour";
import { bindBatched } from "../shared/batch";
import { h, placeTooltip } from "../shared/dom";
import { createLegend } from "../shared/legend";
import { type ExportedState, StaticModel, restoreBuffers } from "../shared/static_model";
import { followTheme, hostIsDark, resolvePalette } from "../shared/theme";

/** The model of a static HTML export: all data is in the page, so reading and selecting cells work. */
export function createOfflineModel(exported: ExportedState): StaticModel {
  return new StaticModel(restoreBuffers(exported));
}

/** The synced state (trait names of the Python widget). */
export interface MatrixModel {
  row_labels: string[];
  col_labels: string[];
  /** float32 [rows, cols]. */
  values: EncodedArray | null;
  /** What the values are; shown in `.nw-status`. */
  label: string;
  /** Axis names, e.g. "site" and "token". */
  row_title: string;
  col_title: string;
  /** Print each cell's value in it (small matrices). */
  annotate: boolean;
  /** [row, col] of the selected cell, or [] for none. */
  selected: number[];
  error: string;
}

type Model = AnyModel<MatrixModel>;

function render({ model, el }: { model: Model; el: HTMLElement }): () => void {
  const abort = new AbortController();
  const signal = abort.signal;
  const root = h("div", "nw-root nw-matrix");
  root.classList.toggle("nw-dark", hostIsDark(el.ownerDocument));

  const header = h("div", "nw-header");
  const status = h("span", "nw-status", { "aria-live": "polite", "aria-atomic": "true" });
  const caption = h("span", "nw-caption");
  const legend = createLegend();
  const titles = h("div", "nw-titles");
  titles.append(status, caption);
  header.append(titles, legend.el);
  const errorBox = h("div", "nw-error", { role: "alert" });
  errorBox.hidden = true;
  const scroll = h("div", "nw-scroll", {
    tabindex: "0",
    "aria-label": "Matrix of values. Use the arrow keys to read each cell, Enter to select it.",
  });
  const table = h("table", "nw-grid", { role: "grid" });
  scroll.append(table);
  const tooltip = h("div", "nw-tooltip", { role: "tooltip" });
  tooltip.hidden = true;
  const readout = liveRegion("nw-readout");
  root.append(header, errorBox, scroll, tooltip, readout);
  el.appendChild(root);

  let cells: HTMLTableCellElement[][] = [];
  let values: ArrayLike<number> = new Float32Array(0);
  let palette: Palette = resolvePalette(root);
  let localError = "";
  let active: [number, number] | null = null;

  const showError = () => {
    const text = localError || model.get("error") || "";
    errorBox.textContent = text;
    errorBox.hidden = !text;
  };

  /** Rebuild the table (labels or shape changed), then colour it. */
  const rebuild = () => {
    const rows = model.get("row_labels") ?? [];
    const cols = model.get("col_labels") ?? [];
    const head = h("tr");
    head.append(h("th", "nw-corner", { scope: "col" }, ""));
    cols.forEach((c, j) => {
      const th = h("th", "nw-col", { scope: "col", "data-col": String(j), title: c });
      // a label of one or two characters (";", ",", "'s") stands upright: turned on its side, ";" reads as "."
      th.append(h("span", [...c].length <= 2 ? "nw-col-text nw-col-short" : "nw-col-text", {}, c));
      // textContent of the th is the label exactly (the span holds it)
      head.append(th);
    });
    const thead = h("thead");
    thead.append(head);
    const tbody = h("tbody");
    cells = rows.map((r, i) => {
      const tr = h("tr");
      tr.append(h("th", "nw-rowhead", { scope: "row", "data-row": String(i) }, r));
      const rowCells = cols.map((_, j) => {
        const td = h("td", "nw-cell", { "data-row": String(i), "data-col": String(j), role: "gridcell" });
        tr.append(td);
        return td;
      });
      tbody.append(tr);
      return rowCells;
    });
    table.replaceChildren(thead, tbody);
    const rt = model.get("row_title") ?? "";
    const ct = model.get("col_title") ?? "";
    caption.textContent = rt || ct ? `rows: ${rt || "—"} · columns: ${ct || "—"}` : "";
    active = null;
    tooltip.hidden = true;
    restyle();
  };

  const restyle = () => {
    localError = "";
    const rows = cells.length;
    const cols = rows ? cells[0].length : (model.get("col_labels") ?? []).length;
    const encoded = model.get("values");
    let data: ArrayLike<number> = new Float32Array(0);
    try {
      if (encoded) {
        const dec = decodeArray(encoded);
        data = dec.data;
        const shape = dec.shape;
        if (data.length && (shape.length !== 2 || shape[0] !== rows || shape[1] !== cols)) {
          localError = `Got values of shape [${shape.join(", ")}] for a ${rows} × ${cols} matrix.`;
        }
      }
    } catch (err) {
      localError = `Cannot read the values: ${(err as Error).message}`;
    }
    if (!localError && data.length !== rows * cols) {
      localError = `Got ${data.length} values for a ${rows} × ${cols} matrix.`;
    }
    if (localError) {
      showError();
      return;
    }
    values = data;
    const annotate = Boolean(model.get("annotate"));
    for (let i = 0; i < rows; i++) {
      for (let j = 0; j < cols; j++) {
        const v = data[i * cols + j];
        const td = cells[i][j];
        td.setAttribute("data-value", String(v));
        td.textContent = annotate ? formatShort(v) : "";
      }
    }
    paint();
    markSelected();
    status.textContent = model.get("label") ?? "";
    showError();
  };

  const paint = () => {
    const scale = symmetricScale(values);
    const cols = cells.length ? cells[0].length : 0;
    cells.forEach((row, i) =>
      row.forEach((td, j) => {
        const tile = valueColour(values[i * cols + j], scale, palette);
        td.style.backgroundColor = toCss(tile);
        td.style.color = toCss(textColour(tile, palette));
      }),
    );
    legend.update(scale, palette);
  };

  const markSelected = () => {
    const sel = model.get("selected") ?? [];
    cells.forEach((row, i) =>
      row.forEach((td, j) => {
        const on = sel.length === 2 && sel[0] === i && sel[1] === j;
        td.classList.toggle("nw-selected", on);
        td.setAttribute("aria-selected", on ? "true" : "false");
      }),
    );
  };

  const describe = (i: number, j: number) => {
    const rows = model.get("row_labels") ?? [];
    const cols = model.get("col_labels") ?? [];
    const v = values[i * (cells[0]?.length ?? 0) + j];
    return { row: rows[i] ?? "", col: cols[j] ?? "", value: formatFloat32(v) };
  };

  const showTooltip = (i: number, j: number) => {
    const td = cells[i]?.[j];
    if (!td) return;
    const d = describe(i, j);
    tooltip.replaceChildren(
      h("span", "nw-tooltip-where", {}, `${d.row} × ${d.col}`),
      h("span", "nw-tooltip-value", {}, d.value),
    );
    placeTooltip(tooltip, td, root);
  };

  const setActive = (i: number, j: number) => {
    if (!cells.length || !cells[0].length) return;
    if (active) cells[active[0]]?.[active[1]]?.classList.remove("nw-active");
    const r = Math.max(0, Math.min(cells.length - 1, i));
    const c = Math.max(0, Math.min(cells[0].length - 1, j));
    active = [r, c];
    const td = cells[r][c];
    td.classList.add("nw-active");
    td.scrollIntoView?.({ block: "nearest", inline: "nearest" });
    showTooltip(r, c);
    const d = describe(r, c);
    readout.textContent = `${d.row} × ${d.col}: ${d.value}`;
  };

  const select = (i: number, j: number) => {
    const sel = model.get("selected") ?? [];
    const next = sel.length === 2 && sel[0] === i && sel[1] === j ? [] : [i, j];
    model.set("selected", next);
    model.save_changes();
    markSelected();
  };

  const cellOf = (target: EventTarget | null): [number, number] | null => {
    const td = (target as Element | null)?.closest?.("td.nw-cell");
    if (!td) return null;
    return [Number(td.getAttribute("data-row")), Number(td.getAttribute("data-col"))];
  };
  const on = <K extends keyof HTMLElementEventMap>(
    target: HTMLElement,
    type: K,
    fn: (e: HTMLElementEventMap[K]) => void,
  ) => target.addEventListener(type, fn as EventListener, { signal });

  on(scroll, "mouseover", (e) => {
    const c = cellOf(e.target);
    if (c) showTooltip(c[0], c[1]);
  });
  on(scroll, "mouseleave", () => (active ? showTooltip(active[0], active[1]) : (tooltip.hidden = true)));
  on(scroll, "click", (e) => {
    const c = cellOf(e.target);
    if (!c) return;
    setActive(c[0], c[1]);
    select(c[0], c[1]);
  });
  on(scroll, "focus", () => setActive(active?.[0] ?? 0, active?.[1] ?? 0));
  on(scroll, "blur", () => {
    if (active) cells[active[0]]?.[active[1]]?.classList.remove("nw-active");
    tooltip.hidden = true;
  });
  on(scroll, "keydown", (e) => {
    const [i, j] = active ?? [0, 0];
    const moves: Record<string, [number, number]> = {
      ArrowRight: [i, j + 1],
      ArrowLeft: [i, j - 1],
      ArrowDown: [i + 1, j],
      ArrowUp: [i - 1, j],
      Home: [i, 0],
      End: [i, Number.MAX_SAFE_INTEGER],
    };
    if (moves[e.key]) {
      e.preventDefault();
      e.stopPropagation(); // arrows read cells here, they do not move the notebook's cell cursor
      setActive(...moves[e.key]);
    } else if ((e.key === "Enter" || e.key === " ") && active) {
      e.preventDefault();
      e.stopPropagation();
      select(active[0], active[1]);
    } else if (e.key === "Escape") {
      tooltip.hidden = true;
    }
  });

  const stopTheme = followTheme(root, el.ownerDocument, palette, (next) => {
    palette = next;
    paint();
  });

  const handlers: [string, () => void][] = [
    ["change:row_labels", rebuild],
    ["change:col_labels", rebuild],
    ["change:row_title", rebuild],
    ["change:col_title", rebuild],
    ["change:values", restyle],
    ["change:label", restyle],
    ["change:annotate", restyle],
    ["change:selected", markSelected],
    ["change:error", showError],
  ];
  // Several keys change in one update (labels + values): draw once per batch.
  const unbind = bindBatched(model, handlers, signal, rebuild, [restyle, markSelected]);

  rebuild();

  return () => {
    abort.abort();
    unbind();
    stopTheme();
    root.remove();
  };
}

export default { render };
