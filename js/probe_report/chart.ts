/**
 * Pure helpers of the ProbeReport: decoding its buffers, scales and ticks, and building SVG with DOM APIs
 * (createElementNS + textContent only; no innerHTML, no chart library).
 */
import { type EncodedArray, decodeArray } from "../shared/codecs";
import { formatShort } from "../shared/a11y";

export const SVG_NS = "http://www.w3.org/2000/svg";

/** Decode a float32 buffer and check its shape (an empty/missing buffer gives an empty array). */
export function decodeShaped(encoded: EncodedArray | null | undefined, shape: number[]): Float32Array | Float64Array {
  const n = shape.reduce((a, b) => a * b, 1);
  if (!encoded || !encoded.shape || n === 0) return new Float32Array(0);
  const { data, shape: got } = decodeArray(encoded);
  if (got.length !== shape.length || got.some((d, i) => d !== shape[i])) {
    throw new RangeError(`expected an array of shape [${shape.join(", ")}], got [${got.join(", ")}]`);
  }
  return data;
}

/** Create an SVG element with attributes and optional text (textContent, never markup). */
export function s<K extends keyof SVGElementTagNameMap>(
  doc: Document,
  tag: K,
  attrs: Record<string, string | number> = {},
  text?: string,
): SVGElementTagNameMap[K] {
  const el = doc.createElementNS(SVG_NS, tag) as SVGElementTagNameMap[K];
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  if (text !== undefined) el.textContent = text;
  return el;
}

/** [lo, hi] covering the finite values, always including 0 and (for accuracies) 1. */
export function valueDomain(values: ArrayLike<number>): [number, number] {
  let lo = 0;
  let hi = 1;
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (!Number.isFinite(v)) continue;
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  return [lo, hi];
}

/** About `count` evenly spaced ticks on a "nice" step (1, 2, 2.5 or 5 × 10^n). */
export function ticks(lo: number, hi: number, count = 5): number[] {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((st) => st >= raw) ?? raw;
  const out: number[] = [];
  for (let t = Math.ceil(lo / step - 1e-9) * step; t <= hi + step * 1e-9; t += step) out.push(Number(t.toPrecision(12)));
  return out;
}

export interface Frame {
  width: number;
  height: number;
  left: number;
  right: number;
  top: number;
  bottom: number;
}

export const FRAME: Frame = { width: 560, height: 250, left: 48, right: 16, top: 12, bottom: 48 };

/** A linear map from [d0, d1] to [r0, r1]. */
export function linear(d0: number, d1: number, r0: number, r1: number): (v: number) => number {
  const k = d1 === d0 ? 0 : (r1 - r0) / (d1 - d0);
  return (v) => r0 + (v - d0) * k;
}

/** Path data through the finite points (a gap where a value is missing). */
export function linePath(xs: number[], ys: number[]): string {
  let d = "";
  let pen = false;
  for (let i = 0; i < xs.length; i++) {
    if (!Number.isFinite(ys[i]) || !Number.isFinite(xs[i])) {
      pen = false;
      continue;
    }
    d += `${pen ? "L" : "M"}${xs[i].toFixed(2)},${ys[i].toFixed(2)}`;
    pen = true;
  }
  return d;
}

/** Closed path of a band between `lo` and `hi` (finite points only). */
export function bandPath(xs: number[], lo: number[], hi: number[]): string {
  const idx = xs.map((_, i) => i).filter((i) => Number.isFinite(lo[i]) && Number.isFinite(hi[i]));
  if (!idx.length) return "";
  const top = idx.map((i, j) => `${j ? "L" : "M"}${xs[i].toFixed(2)},${hi[i].toFixed(2)}`).join("");
  const bottom = [...idx].reverse().map((i) => `L${xs[i].toFixed(2)},${lo[i].toFixed(2)}`).join("");
  return `${top}${bottom}Z`;
}

/** The y axis (grid lines and labels) of a chart, into `g`. */
export function yAxis(doc: Document, g: SVGGElement, y: (v: number) => number, tickValues: number[], f: Frame): void {
  for (const t of tickValues) {
    const py = y(t);
    g.append(s(doc, "line", { class: "nw-grid-line", x1: f.left, x2: f.width - f.right, y1: py, y2: py }));
    g.append(s(doc, "text", { class: "nw-tick", x: f.left - 6, y: py, "text-anchor": "end", "dominant-baseline": "middle" }, formatShort(t)));
  }
}
