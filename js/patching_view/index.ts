/**
 * PatchingView front end: the grid of a patching / tracing / mediation result (drawn by the MatrixView's
 * own front end: same traits, colours, hover values and keyboard), and below it the selected cell's
 * neurons ranked by their own patching effect, with a button that asks Python to open them in an
 * AblationPanel.
 *
 * DOM contract (the browser tests rely on it; keep it stable):
 * - the root element has classes `nw-root nw-patching`; inside it, the grid is a `.nw-matrix` (see
 *   matrix_view/index.ts: `td.nw-cell[data-row][data-col][data-value]`, `.nw-tooltip` on hover);
 * - `.nw-cell-status` (aria-live="polite"): which cell's neurons are listed, or that they are being ranked;
 * - `table.nw-neurons`: one `tr.nw-neuron[data-neuron]` per neuron, best first, with `td.nw-rank`,
 *   `td.nw-neuron-name` (the address, as text) and `td.nw-neuron-score[data-value]` (the float32 score);
 * - `button.nw-open-panel`: enabled when the neurons can go to an ablation panel; a click increments the
 *   synced `send` counter (Python opens the panel);
 * - `.nw-error` (role="alert") of the grid shows errors from Python.
 *
 * Synced traits (Python `PatchingGrid`): see `PatchingModel` below.
 */
import "./styles.css";
import type { AnyModel } from "@anywidget/types";
import { formatFloat32 } from "../shared/a11y";
import { type EncodedArray, decodeArray } from "../shared/codecs";
import { h } from "../shared/dom";
import { type ExportedState, StaticModel, restoreBuffers } from "../shared/static_model";
import matrix, { type MatrixModel } from "../matrix_view/index";

/** The model of a static HTML export: the grid and the neurons listed are in the page. */
export function createOfflineModel(exported: ExportedState): StaticModel {
  return new StaticModel(restoreBuffers(exported));
}

export interface PatchingModel extends MatrixModel {
  /** The cell whose neurons are listed, e.g. "layer.12.resid × 4: Tower" ("" for none). */
  cell: string;
  /** The cell's top neurons, best first. */
  neurons: string[];
  /** float32 [k]: each neuron's score, aligned with `neurons`. */
  neuron_scores: EncodedArray | null;
  /** What the scores are. */
  neuron_label: string;
  /** Whether Python can open an ablation panel on them. */
  can_send: boolean;
  /** Incremented by the button; Python opens the panel. */
  send: number;
}

type Model = AnyModel<PatchingModel>;

function render({ model, el }: { model: Model; el: HTMLElement }): () => void {
  const abort = new AbortController();
  const signal = abort.signal;
  const root = h("div", "nw-root nw-patching");
  const gridEl = h("div", "nw-patching-grid");
  const part = h("section", "nw-cell-part", { "aria-label": "Neurons of the selected cell" });
  const status = h("div", "nw-cell-status", { "aria-live": "polite", "aria-atomic": "true" });
  const scoreLabel = h("div", "nw-neuron-label");
  const table = h("table", "nw-neurons");
  const button = h("button", "nw-open-panel", { type: "button" }, "Open these neurons in an ablation panel");
  part.append(status, scoreLabel, table, button);
  root.append(gridEl, part);
  el.appendChild(root);
  const stopGrid = matrix.render({ model: model as unknown as AnyModel<MatrixModel>, el: gridEl });

  let waitingFor = "";

  const drawNeurons = () => {
    const names = model.get("neurons") ?? [];
    const cell = model.get("cell") ?? "";
    let scores: ArrayLike<number> = new Float32Array(0);
    const enc = model.get("neuron_scores");
    try {
      if (enc) scores = decodeArray(enc).data;
    } catch {
      scores = new Float32Array(0);
    }
    const head = h("tr");
    head.append(
      h("th", "", { scope: "col" }, "#"),
      h("th", "", { scope: "col" }, "neuron"),
      h("th", "", { scope: "col" }, "score"),
    );
    const rows = names.map((name, i) => {
      const tr = h("tr", "nw-neuron", { "data-neuron": name });
      const v = scores[i];
      tr.append(
        h("td", "nw-rank", {}, String(i + 1)),
        h("td", "nw-neuron-name", {}, name),
        h("td", "nw-neuron-score", { "data-value": String(v) }, formatFloat32(v)),
      );
      return tr;
    });
    table.replaceChildren(head, ...rows);
    table.hidden = names.length === 0;
    scoreLabel.textContent = names.length ? (model.get("neuron_label") ?? "") : "";
    if (waitingFor && cell !== waitingFor && !model.get("error")) {
      status.textContent = `Ranking the neurons of ${waitingFor}…`;
    } else {
      waitingFor = "";
      status.textContent = cell
        ? names.length
          ? `Neurons of ${cell}, ranked by their own effect`
          : `No neurons listed for ${cell}`
        : "Click a cell to rank its neurons by their own patching effect.";
    }
    button.disabled = !(model.get("can_send") && names.length > 0) || Boolean(waitingFor);
  };

  const onSelected = () => {
    const sel = model.get("selected") ?? [];
    const rows = model.get("row_labels") ?? [];
    const cols = model.get("col_labels") ?? [];
    waitingFor = sel.length === 2 ? `${rows[sel[0]] ?? ""} × ${cols[sel[1]] ?? ""}` : "";
    if (waitingFor === (model.get("cell") ?? "")) waitingFor = ""; // already listed
    drawNeurons();
  };

  button.addEventListener(
    "click",
    () => {
      model.set("send", (model.get("send") ?? 0) + 1);
      model.save_changes();
    },
    { signal },
  );

  const handlers: [string, () => void][] = [
    ["change:neurons", drawNeurons],
    ["change:neuron_scores", drawNeurons],
    ["change:cell", drawNeurons],
    ["change:can_send", drawNeurons],
    ["change:error", drawNeurons],
    ["change:selected", onSelected],
  ];
  for (const [event, fn] of handlers) model.on(event, fn);
  drawNeurons();

  return () => {
    abort.abort();
    for (const [event, fn] of handlers) model.off(event, fn);
    stopGrid();
    root.remove();
  };
}

export default { render };
