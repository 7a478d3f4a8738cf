/**
 * NeuronTable front end: a sortable, filterable, keyboard-navigable table of a neuron ranking, virtualised
 * so that 50,000 rows stay smooth (only the visible rows are in the DOM; spacer rows give the scroll height).
 *
 * DOM contract (the browser tests rely on it; keep it stable):
 * - the root element has classes `nw-root nw-table`;
 * - a real `<table role=grid>` with one `th[scope=col][data-column]` per column (`rank`, `address`, `layer`,
 *   `component`, `score`, `top_class`), each holding a `<button>` that sorts (click or Enter) and
 *   `aria-sort` ("ascending" / "descending" / "none");
 * - each drawn row is a `tr.nw-row` with `data-address` (the neuron address), `data-rank`, `aria-rowindex`
 *   and `aria-selected`; cells are `td[data-column]` with the value as text (`data-value` on the score cell:
 *   String(float32 value)); `tr.nw-spacer` rows above and below stand for the rows not drawn;
 * - `input.nw-filter` (text filter on address / top class), `select.nw-layer`, `select.nw-component`;
 * - `.nw-status` (aria-live="polite") says how many rows are shown, the sort and the selection;
 * - `.nw-error` (role="alert") shows errors and is `hidden` when there are none.
 *
 * Keyboard: Tab to the table body (`.nw-scroll`), then ArrowUp/ArrowDown/PageUp/PageDown/Home/End move the
 * selection (which sets the synced `selected` trait at once).
 */
import "./styles.css";
import type { AnyModel } from "@anywidget/types";
import type { EncodedArray } from "../shared/codecs";
import { h, uid } from "../shared/dom";
import { type ExportedState, StaticModel, restoreBuffers } from "../shared/static_model";
import { hostIsDark, watchTheme } from "../shared/theme";
import {
  COLUMNS,
  type Column,
  type Direction,
  type Filter,
  type TableData,
  cellText,
  decodeFloat32,
  decodeInt32,
  filterRows,
  navigate,
  sortRows,
  visibleWindow,
} from "./table";

/** The model of a static HTML export: all data is in the page, so sorting, filtering and selecting work. */
export function createOfflineModel(exported: ExportedState): StaticModel {
  return new StaticModel(restoreBuffers(exported));
}

/** The synced state (trait names of the Python widget). */
export interface TableModel {
  addresses: string[];
  ranks: EncodedArray | null;
  layers: EncodedArray | null;
  components: string[];
  component_codes: EncodedArray | null;
  scores: EncodedArray | null;
  classes: string[];
  class_codes: EncodedArray | null;
  method: string;
  page_size: number;
  /** The selected neuron's address ("" for none): set by the browser, checked by Python. */
  selected: string;
  error: string;
}

type Model = AnyModel<TableModel>;

/** Row height in pixels (fixed, also in styles.css) so that positions follow from indices. */
export const ROW_HEIGHT = 28;
const OVERSCAN = 6;

function readData(model: Model): TableData {
  const addresses = model.get("addresses") ?? [];
  const n = addresses.length;
  return {
    addresses,
    ranks: decodeInt32(model.get("ranks"), n),
    layers: decodeInt32(model.get("layers"), n),
    components: model.get("components") ?? [],
    componentCodes: decodeInt32(model.get("component_codes"), n),
    scores: decodeFloat32(model.get("scores"), n),
    classes: model.get("classes") ?? [],
    classCodes: decodeInt32(model.get("class_codes"), n),
  };
}

function render({ model, el }: { model: Model; el: HTMLElement }): () => void {
  const abort = new AbortController();
  const signal = abort.signal;
  const on = <K extends keyof HTMLElementEventMap>(
    target: HTMLElement,
    type: K,
    fn: (e: HTMLElementEventMap[K]) => void,
  ) => target.addEventListener(type, fn as EventListener, { signal });

  const root = h("div", "nw-root nw-table");
  root.classList.toggle("nw-dark", hostIsDark(el.ownerDocument));

  // -- controls ----------------------------------------------------------------------------------
  const controls = h("div", "nw-controls");
  const field = (labelText: string, control: HTMLElement) => {
    const id = uid();
    control.id = id;
    const wrap = h("span", "nw-field");
    wrap.append(h("label", "", { for: id }, labelText), control);
    return wrap;
  };
  const filterIn = h("input", "nw-filter", { type: "search", placeholder: "address or class", autocomplete: "off" });
  const layerSel = h("select", "nw-layer");
  const compSel = h("select", "nw-component");
  controls.append(field("Filter", filterIn), field("Layer", layerSel), field("Component", compSel));
  const status = h("div", "nw-status", { "aria-live": "polite", "aria-atomic": "true" });
  const errorBox = h("div", "nw-error", { role: "alert" });
  errorBox.hidden = true;

  // -- table ---------------------------------------------------------------------------------------
  const scroller = h("div", "nw-scroll", {
    tabindex: "0",
    role: "region",
    "aria-label": "Neuron ranking. Arrow keys, Page Up/Down, Home and End move the selection.",
  });
  const table = h("table", "nw-grid", { role: "grid" });
  const caption = h("caption", "nw-sr-only");
  const thead = h("thead");
  const headRow = h("tr", "", { "aria-rowindex": "1" });
  const headers = new Map<Column, HTMLTableCellElement>();
  for (const c of COLUMNS) {
    const th = h("th", c.numeric ? "nw-num" : "", { scope: "col", "data-column": c.key, "aria-sort": "none" });
    const button = h("button", "nw-sort", { type: "button" }, c.label);
    button.append(h("span", "nw-sort-mark", { "aria-hidden": "true" }));
    th.append(button);
    headers.set(c.key, th);
    headRow.append(th);
  }
  thead.append(headRow);
  const tbody = h("tbody");
  const topSpacer = h("tr", "nw-spacer", { "aria-hidden": "true" });
  const bottomSpacer = h("tr", "nw-spacer", { "aria-hidden": "true" });
  topSpacer.append(h("td", "", { colspan: String(COLUMNS.length) }));
  bottomSpacer.append(h("td", "", { colspan: String(COLUMNS.length) }));
  table.append(caption, thead, tbody);
  scroller.append(table);
  root.append(controls, status, errorBox, scroller);
  el.appendChild(root);

  // -- state ------------------------------------------------------------------------------------------
  let data = readData(model);
  let filter: Filter = { text: "", layer: null, component: null };
  let sortCol: Column = "rank";
  let sortDir: Direction = "ascending";
  let order: Int32Array = new Int32Array(0); // row indices shown, in display order
  let positionOf = new Map<number, number>(); // built lazily for the selection
  let drawn: [number, number] = [-1, -1];
  let selectedRow = -1;
  const rowOf = new Map<string, number>();

  const indexAddresses = () => {
    rowOf.clear();
    data.addresses.forEach((a, i) => rowOf.set(a, i));
  };

  const fillSelects = () => {
    const layers = Array.from(new Set(Array.from(data.layers))).sort((a, b) => a - b);
    layerSel.replaceChildren(h("option", "", { value: "" }, "all"));
    for (const l of layers) layerSel.append(h("option", "", { value: String(l) }, l < 0 ? "embed" : String(l)));
    compSel.replaceChildren(h("option", "", { value: "" }, "all"));
    for (const c of data.components) compSel.append(h("option", "", { value: c }, c));
    layerSel.value = filter.layer === null ? "" : String(filter.layer);
    compSel.value = filter.component ?? "";
  };

  const pageSize = () => Math.max(1, Math.floor(model.get("page_size") || 15));
  const layout = () => {
    scroller.style.maxHeight = `${(pageSize() + 1) * ROW_HEIGHT + 2}px`;
  };

  const position = (row: number): number => {
    if (row < 0) return -1;
    if (positionOf.size === 0 && order.length) order.forEach((r, p) => positionOf.set(r, p));
    return positionOf.get(row) ?? -1;
  };

  const recompute = () => {
    order = sortRows(data, filterRows(data, filter), sortCol, sortDir);
    positionOf = new Map();
    for (const [key, th] of headers) th.setAttribute("aria-sort", key === sortCol ? sortDir : "none");
    table.setAttribute("aria-rowcount", String(order.length + 1));
    drawn = [-1, -1];
    draw();
    updateStatus();
  };

  const drawRow = (p: number): HTMLTableRowElement => {
    const r = order[p];
    const address = data.addresses[r];
    const tr = h("tr", "nw-row", {
      "data-address": address,
      "data-rank": String(data.ranks[r]),
      "aria-rowindex": String(p + 2),
      "aria-selected": r === selectedRow ? "true" : "false",
    });
    for (const c of COLUMNS) {
      const td = h("td", c.numeric ? "nw-num" : "", { "data-column": c.key }, cellText(data, r, c.key));
      if (c.key === "score") {
        td.dataset.value = String(data.scores[r]);
        td.title = String(data.scores[r]);
      } else if (!c.numeric && td.textContent) {
        td.title = td.textContent; // a long class name or address is cut with "…" (CSS): the tooltip has it all
      }
      tr.append(td);
    }
    return tr;
  };

  /** Draw the rows in view (plus overscan); nothing is redrawn while the window does not move. */
  const draw = (force = false) => {
    const head = thead.getBoundingClientRect().height || ROW_HEIGHT;
    const viewport = scroller.clientHeight || pageSize() * ROW_HEIGHT + head;
    const win = visibleWindow(Math.max(0, scroller.scrollTop), viewport, ROW_HEIGHT, order.length, OVERSCAN);
    if (!force && win[0] === drawn[0] && win[1] === drawn[1]) return;
    drawn = win;
    const rows: HTMLTableRowElement[] = [];
    for (let p = win[0]; p < win[1]; p++) rows.push(drawRow(p));
    (topSpacer.firstChild as HTMLElement).style.height = `${win[0] * ROW_HEIGHT}px`;
    (bottomSpacer.firstChild as HTMLElement).style.height = `${(order.length - win[1]) * ROW_HEIGHT}px`;
    topSpacer.hidden = win[0] === 0;
    bottomSpacer.hidden = win[1] === order.length;
    tbody.replaceChildren(topSpacer, ...rows, bottomSpacer);
  };

  const updateStatus = () => {
    const col = COLUMNS.find((c) => c.key === sortCol)!;
    const total = data.addresses.length;
    const parts = [
      `${order.length.toLocaleString("en")} of ${total.toLocaleString("en")} neurons`,
      `sorted by ${col.label.toLowerCase()} (${sortDir})`,
    ];
    const sel = model.get("selected");
    if (sel) parts.push(`selected ${sel}${position(selectedRow) < 0 ? " (hidden by the filter)" : ""}`);
    status.textContent = parts.join(" · ");
    const method = model.get("method");
    caption.textContent = `Neuron ranking${method ? ` (${method})` : ""}`;
  };

  const scrollToPosition = (p: number) => {
    if (p < 0) return;
    const head = thead.getBoundingClientRect().height || ROW_HEIGHT;
    const body = Math.max(ROW_HEIGHT, scroller.clientHeight - head);
    const top = p * ROW_HEIGHT;
    if (top < scroller.scrollTop) scroller.scrollTop = top;
    else if (top + ROW_HEIGHT > scroller.scrollTop + body) scroller.scrollTop = top + ROW_HEIGHT - body;
  };

  const markSelection = () => {
    for (const tr of tbody.querySelectorAll<HTMLTableRowElement>("tr.nw-row")) {
      tr.setAttribute("aria-selected", tr.dataset.address === model.get("selected") ? "true" : "false");
    }
  };

  const select = (row: number) => {
    if (row < 0 || row >= data.addresses.length) return;
    selectedRow = row;
    const address = data.addresses[row];
    scrollToPosition(position(row));
    draw();
    if (model.get("selected") !== address) {
      model.set("selected", address);
      model.save_changes();
    }
    markSelection();
    updateStatus();
  };

  const syncSelected = () => {
    const sel = model.get("selected");
    selectedRow = sel ? (rowOf.get(sel) ?? -1) : -1;
    scrollToPosition(position(selectedRow));
    draw();
    markSelection();
    updateStatus();
  };

  const showError = () => {
    const msg = model.get("error");
    errorBox.textContent = msg;
    errorBox.hidden = !msg;
  };

  const reload = () => {
    data = readData(model);
    indexAddresses();
    fillSelects();
    const sel = model.get("selected");
    selectedRow = sel ? (rowOf.get(sel) ?? -1) : -1;
    recompute();
    scrollToPosition(position(selectedRow));
    draw();
  };

  // -- events -------------------------------------------------------------------------------------------
  const sortBy = (col: Column) => {
    if (col === sortCol) sortDir = sortDir === "ascending" ? "descending" : "ascending";
    else {
      sortCol = col;
      sortDir = col === "score" ? "descending" : "ascending";
    }
    scroller.scrollTop = 0;
    recompute();
  };
  for (const [key, th] of headers) on(th.querySelector("button")!, "click", () => sortBy(key));

  let filterTimer: ReturnType<typeof setTimeout> | undefined;
  on(filterIn, "input", () => {
    clearTimeout(filterTimer);
    filterTimer = setTimeout(() => {
      filter = { ...filter, text: filterIn.value };
      scroller.scrollTop = 0;
      recompute();
    }, 120);
  });
  on(layerSel, "change", () => {
    filter = { ...filter, layer: layerSel.value === "" ? null : Number(layerSel.value) };
    scroller.scrollTop = 0;
    recompute();
  });
  on(compSel, "change", () => {
    filter = { ...filter, component: compSel.value === "" ? null : compSel.value };
    scroller.scrollTop = 0;
    recompute();
  });

  let frame = 0;
  on(scroller, "scroll", () => {
    if (frame) return;
    frame = requestAnimationFrame(() => {
      frame = 0;
      draw();
    });
  });
  on(tbody, "click", (e) => {
    const tr = (e.target as Element).closest?.("tr.nw-row") as HTMLTableRowElement | null;
    const row = tr?.dataset.address !== undefined ? rowOf.get(tr.dataset.address) : undefined;
    if (row !== undefined) {
      select(row);
      scroller.focus({ preventScroll: true });
    }
  });
  on(scroller, "keydown", (e) => {
    if ((e.target as Element).closest?.("button, input, select")) return; // header buttons keep Enter
    const next = navigate(e.key, position(selectedRow), order.length, pageSize());
    if (next === null) return;
    e.preventDefault();
    e.stopPropagation(); // arrows move the selection here, not the notebook's cell cursor
    select(order[next]);
  });

  const stopWatching = watchTheme(() => root.classList.toggle("nw-dark", hostIsDark(el.ownerDocument)), el.ownerDocument);

  // -- model events ---------------------------------------------------------------------------------------
  const handlers: [string, () => void][] = [
    ["change:addresses", reload],
    ["change:scores", reload],
    ["change:class_codes", reload],
    ["change:selected", syncSelected],
    ["change:error", showError],
    ["change:page_size", () => (layout(), draw(true))],
    ["change:method", updateStatus],
  ];
  let pending = false;
  const bound = handlers.map(([event, fn]) => {
    const wrapped =
      fn === reload
        ? () => {
            if (pending) return;
            pending = true;
            queueMicrotask(() => {
              pending = false;
              if (!signal.aborted) reload();
            });
          }
        : fn;
    return [event, wrapped] as const;
  });
  for (const [event, fn] of bound) model.on(event, fn);

  layout();
  reload();
  showError();
  const timer = setTimeout(() => {
    scrollToPosition(position(selectedRow));
    draw(true);
  }, 0); // sizes are known once attached

  return () => {
    abort.abort();
    for (const [event, fn] of bound) model.off(event, fn);
    clearTimeout(filterTimer);
    clearTimeout(timer);
    if (frame) cancelAnimationFrame(frame);
    stopWatching();
    root.remove();
  };
}

export default { render };
