/**
 * The kernel's part in a static HTML export of a TokenHeatmap: `to_html` embeds every neuron of the
 * current site for the shown sentences (when small), and this backend answers neuron / granularity
 * changes from that data, with the same checks and messages as Python.
 */
import { type EncodedArray, decodeArray, encodeFloat32 } from "../shared/codecs";
import { type ExportedState, StaticModel, restoreBuffers } from "../shared/static_model";

/** Embedded data: `matrix` is float32 [n_units, columns.length]; column j holds neuron `columns[j]`. */
export interface OfflineUnits {
  tokens: string[][];
  word_ids: number[][];
  matrix: EncodedArray;
  columns: number[];
}

export interface OfflineData {
  site: string;
  width: number;
  units: Record<string, OfflineUnits>;
}

/** Build the model a static export renders with (`_offline` in the state holds the embedded data). */
export function createOfflineModel(exported: ExportedState): StaticModel {
  const state = restoreBuffers(exported);
  const offline = state._offline as OfflineData | undefined;
  delete state._offline;
  const granularity = String(state.granularity ?? "");
  if (offline?.units[granularity]) {
    // share the token arrays, so a neuron change never looks like a token change (no DOM rebuild)
    state.tokens = offline.units[granularity].tokens;
    state.word_ids = offline.units[granularity].word_ids;
  }
  const matrices = new Map<string, { data: ArrayLike<number>; rows: number; cols: number }>();
  let good = { neuron: String(state.neuron ?? ""), granularity };

  const fail = (model: StaticModel, error: string) => model.update({ error, ...good });

  return new StaticModel(state, (_changes, model) => {
    const neuron = String(model.get("neuron"));
    const gran = String(model.get("granularity"));
    if (!offline) {
      fail(model, "This static export cannot recompute values: open the notebook to explore other neurons.");
      return;
    }
    const cut = neuron.lastIndexOf(":");
    const site = neuron.slice(0, cut);
    const indexText = neuron.slice(cut + 1);
    if (cut < 0 || !/^\d+$/.test(indexText)) {
      fail(model, `cannot parse neuron address ${JSON.stringify(neuron)}: expected '<site>:<index>'`);
      return;
    }
    const index = Number(indexText);
    if (site !== offline.site) {
      fail(model, `This export embeds only ${offline.site}: open the notebook to explore ${site}.`);
      return;
    }
    if (index >= offline.width) {
      fail(model, `neuron index ${index} is out of range for ${site}: valid indices are 0 … ${offline.width - 1}`);
      return;
    }
    const units = offline.units[gran];
    if (!units) {
      fail(model, `This export has no ${gran} view.`);
      return;
    }
    const col = units.columns.indexOf(index);
    if (col < 0) {
      fail(model, `Neuron ${neuron} is not embedded in this export: open the notebook to explore it.`);
      return;
    }
    let m = matrices.get(gran);
    if (!m) {
      const dec = decodeArray(units.matrix);
      m = { data: dec.data, rows: dec.shape[0], cols: dec.shape[1] };
      matrices.set(gran, m);
    }
    const out = new Float32Array(m.rows);
    for (let r = 0; r < m.rows; r++) out[r] = m.data[r * m.cols + col];
    const marked = (model.get("marked") ?? []) as number[][];
    const tokenIds = offline.units.token?.word_ids ?? [];
    const carried = gran === good.granularity ? marked : carryMarks(marked, gran, tokenIds);
    good = { neuron, granularity: gran };
    model.update({
      tokens: units.tokens,
      word_ids: units.word_ids,
      values: encodeFloat32(out),
      label: `${site}:${index}`,
      marked: carried,
      error: "",
    });
  });
}

/** Marks ([row, index]) moved to the other view, as Python's `_carry_marks` does: a marked word marks all its
 * subword tokens; a marked token marks its word (none for special tokens). `tokenWordIds`: the token view's
 * word index of each token, per row. */
export function carryMarks(marked: number[][], to: string, tokenWordIds: number[][]): number[][] {
  const out: number[][] = [];
  const add = (row: number, index: number) => {
    if (!out.some(([r, i]) => r === row && i === index)) out.push([row, index]);
  };
  for (const [row, index] of marked) {
    const ids = tokenWordIds[row] ?? [];
    if (to === "token") ids.forEach((w, i) => w === index && add(row, i));
    else if ((ids[index] ?? -1) >= 0) add(row, ids[index]);
  }
  return out;
}
