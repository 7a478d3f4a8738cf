/**
 * NeuronTable logic without the DOM: decoding the column buffers, sorting, filtering and the visible
 * window of a virtualised list. Pure functions, unit-tested in table.test.ts.
 */
import { type BufferLike, type EncodedArray, decodeArray } from "../shared/codecs";

export type Column = "rank" | "address" | "layer" | "component" | "score" | "top_class";
export type Direction = "ascending" | "descending";

export const COLUMNS: { key: Column; label: string; numeric: boolean }[] = [
  { key: "rank", label: "Rank", numeric: true },
  { key: "address", label: "Neuron", numeric: false },
  { key: "layer", label: "Layer", numeric: true },
  { key: "component", label: "Component", numeric: false },
  { key: "score", label: "Score", numeric: true },
  { key: "top_class", label: "Top class", numeric: false },
];

/** The table's columns, decoded once. */
export interface TableData {
  addresses: string[];
  ranks: Int32Array;
  layers: Int32Array;
  components: string[];
  componentCodes: Int32Array;
  scores: Float32Array;
  classes: string[];
  classCodes: Int32Array;
}

function asBytes(view: BufferLike): Uint8Array {
  if (view instanceof ArrayBuffer) return new Uint8Array(view);
  return new Uint8Array(view.buffer, view.byteOffset, view.byteLength);
}

/** Decode an int32 `{view, dtype, shape}` buffer (copied when unaligned). */
export function decodeInt32(encoded: EncodedArray | null | undefined, n: number): Int32Array {
  if (!encoded || !("view" in encoded)) return new Int32Array(n);
  if (encoded.dtype !== "int32") throw new TypeError(`expected an int32 buffer, got ${encoded.dtype}`);
  const bytes = asBytes(encoded.view);
  if (bytes.byteLength !== n * 4) throw new RangeError(`int32 buffer of ${bytes.byteLength} bytes for ${n} rows`);
  if (bytes.byteOffset % 4 === 0) return new Int32Array(bytes.buffer, bytes.byteOffset, n);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = new Int32Array(n);
  for (let i = 0; i < n; i++) out[i] = dv.getInt32(4 * i, true);
  return out;
}

export function decodeFloat32(encoded: EncodedArray | null | undefined, n: number): Float32Array {
  if (!encoded || !("view" in encoded)) return new Float32Array(n);
  const { data } = decodeArray(encoded);
  if (data.length !== n) throw new RangeError(`score buffer has ${data.length} values for ${n} rows`);
  return data instanceof Float32Array ? data : new Float32Array(data);
}

export function encodeInt32(values: number[] | Int32Array): EncodedArray {
  const copy = new Int32Array(values);
  return { view: new DataView(copy.buffer), dtype: "int32", shape: [copy.length] };
}

/** The text of a cell, as shown. */
export function cellText(d: TableData, row: number, col: Column): string {
  switch (col) {
    case "rank":
      return String(d.ranks[row]);
    case "address":
      return d.addresses[row];
    case "layer":
      return d.layers[row] < 0 ? "embed" : String(d.layers[row]);
    case "component":
      return d.components[d.componentCodes[row]] ?? "";
    case "score":
      return formatScore(d.scores[row]);
    case "top_class":
      return d.classCodes[row] >= 0 ? (d.classes[d.classCodes[row]] ?? "") : "";
  }
}

export function formatScore(v: number): string {
  if (!Number.isFinite(v)) return String(v);
  const a = Math.abs(v);
  const s = a !== 0 && (a < 1e-3 || a >= 1e5) ? v.toExponential(3) : String(Number(v.toPrecision(4)));
  return s.startsWith("-") ? `\u2212${s.slice(1)}` : s;
}

/** Row order sorted by `col` (stable: ties keep ranking order). */
export function sortRows(d: TableData, rows: Int32Array, col: Column, dir: Direction): Int32Array {
  const sign = dir === "ascending" ? 1 : -1;
  const out = Int32Array.from(rows);
  let key: (i: number) => number | string;
  switch (col) {
    case "rank":
      key = (i) => d.ranks[i];
      break;
    case "layer":
      key = (i) => d.layers[i];
      break;
    case "score":
      key = (i) => d.scores[i];
      break;
    case "component":
      key = (i) => d.components[d.componentCodes[i]] ?? "";
      break;
    case "top_class":
      key = (i) => (d.classCodes[i] >= 0 ? (d.classes[d.classCodes[i]] ?? "") : "");
      break;
    case "address":
      key = (i) => d.addresses[i];
      break;
  }
  const numeric = col === "rank" || col === "layer" || col === "score";
  if (numeric) {
    const k = new Float64Array(d.addresses.length);
    for (const i of out) k[i] = key(i) as number;
    out.sort((a, b) => sign * (k[a] - k[b]) || a - b);
  } else if (col === "address") {
    // layer, component, then index: "layer.10" after "layer.9"
    out.sort(
      (a, b) =>
        sign *
          (d.layers[a] - d.layers[b] ||
            compareText(d.addresses[a], d.addresses[b])) || a - b,
    );
  } else {
    out.sort((a, b) => sign * compareText(key(a) as string, key(b) as string) || a - b);
  }
  return out;
}

const collator = new Intl.Collator(undefined, { numeric: true, sensitivity: "base" });
function compareText(a: string, b: string): number {
  return collator.compare(a, b);
}

export interface Filter {
  text: string;
  layer: number | null;
  component: string | null;
}

/** Row indices (in ranking order) passing the filter: text in the address or top class, layer, component. */
export function filterRows(d: TableData, f: Filter): Int32Array {
  const n = d.addresses.length;
  const needle = f.text.trim().toLowerCase();
  const comp = f.component === null ? -1 : d.components.indexOf(f.component);
  const classHit = d.classes.map((c) => needle !== "" && c.toLowerCase().includes(needle));
  const out = new Int32Array(n);
  let m = 0;
  for (let i = 0; i < n; i++) {
    if (f.layer !== null && d.layers[i] !== f.layer) continue;
    if (f.component !== null && d.componentCodes[i] !== comp) continue;
    if (needle && !d.addresses[i].toLowerCase().includes(needle) && !(d.classCodes[i] >= 0 && classHit[d.classCodes[i]]))
      continue;
    out[m++] = i;
  }
  return out.slice(0, m);
}

/** First and last (exclusive) positions to draw for a scroll offset, with `overscan` extra rows each side. */
export function visibleWindow(
  scrollTop: number,
  viewport: number,
  rowHeight: number,
  total: number,
  overscan = 5,
): [number, number] {
  const first = Math.max(0, Math.floor(scrollTop / rowHeight) - overscan);
  const last = Math.min(total, Math.ceil((scrollTop + viewport) / rowHeight) + overscan);
  return [Math.min(first, last), last];
}

/** The position the selection moves to for a navigation key, or null for other keys. */
export function navigate(key: string, pos: number, total: number, page: number): number | null {
  if (total === 0) return null;
  const moves: Record<string, number> = {
    ArrowDown: pos + 1,
    ArrowUp: pos < 0 ? 0 : pos - 1,
    PageDown: pos + page,
    PageUp: pos - page,
    Home: 0,
    End: total - 1,
  };
  if (!(key in moves)) return null;
  return Math.max(0, Math.min(total - 1, moves[key]));
}
