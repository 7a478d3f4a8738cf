import { describe, expect, it } from "vitest";
import { encodeFloat32 } from "../shared/codecs";
import {
  type TableData,
  cellText,
  decodeFloat32,
  decodeInt32,
  encodeInt32,
  filterRows,
  navigate,
  sortRows,
  visibleWindow,
} from "./table";

function data(): TableData {
  return {
    addresses: ["layer.2.mlp:5", "layer.10.mlp:1", "embed.resid:3", "layer.2.resid:7", "layer.9.mlp:0"],
    ranks: new Int32Array([0, 1, 2, 3, 4]),
    layers: new Int32Array([2, 10, -1, 2, 9]),
    components: ["mlp", "resid"],
    componentCodes: new Int32Array([0, 0, 1, 1, 0]),
    scores: new Float32Array([0.9, 0.5, 0.7, -0.2, 0.5]),
    classes: ["NOUN", "VERB"],
    classCodes: new Int32Array([1, 0, -1, 0, 1]),
  };
}
const all = (d: TableData) => Int32Array.from(d.addresses.keys());

describe("codecs", () => {
  it("decodes int32 buffers, also unaligned, and float32 scores", () => {
    const enc = encodeInt32([3, -1, 7]);
    expect(Array.from(decodeInt32(enc, 3))).toEqual([3, -1, 7]);
    const bytes = new Uint8Array(13);
    bytes.set(new Uint8Array((enc.view as DataView).buffer), 1);
    expect(Array.from(decodeInt32({ view: new DataView(bytes.buffer, 1, 12), dtype: "int32", shape: [3] }, 3))).toEqual([3, -1, 7]);
    expect(() => decodeInt32(enc, 4)).toThrow(RangeError);
    expect(() => decodeInt32({ ...enc, dtype: "float32" }, 3)).toThrow(TypeError);
    expect(Array.from(decodeFloat32(encodeFloat32(new Float32Array([0.5, 2])), 2))).toEqual([0.5, 2]);
  });
});

describe("sorting", () => {
  it("sorts numbers both ways, stable on ties", () => {
    const d = data();
    expect(Array.from(sortRows(d, all(d), "score", "descending"))).toEqual([0, 2, 1, 4, 3]);
    expect(Array.from(sortRows(d, all(d), "score", "ascending"))).toEqual([3, 1, 4, 2, 0]);
    expect(Array.from(sortRows(d, all(d), "layer", "ascending"))).toEqual([2, 0, 3, 4, 1]);
  });
  it("sorts addresses by layer then naturally, and classes as text (none first)", () => {
    const d = data();
    expect(Array.from(sortRows(d, all(d), "address", "ascending")).map((i) => d.addresses[i])).toEqual([
      "embed.resid:3",
      "layer.2.mlp:5",
      "layer.2.resid:7",
      "layer.9.mlp:0",
      "layer.10.mlp:1",
    ]);
    expect(Array.from(sortRows(d, all(d), "top_class", "ascending"))).toEqual([2, 1, 3, 0, 4]);
  });
  it("sorts 50,000 rows quickly", () => {
    const n = 50_000;
    const big: TableData = {
      addresses: Array.from({ length: n }, (_, i) => `layer.${i % 6}.mlp:${i}`),
      ranks: Int32Array.from({ length: n }, (_, i) => i),
      layers: Int32Array.from({ length: n }, (_, i) => i % 6),
      components: ["mlp"],
      componentCodes: new Int32Array(n),
      scores: Float32Array.from({ length: n }, (_, i) => Math.sin(i)),
      classes: [],
      classCodes: new Int32Array(n).fill(-1),
    };
    const t0 = performance.now();
    const s = sortRows(big, filterRows(big, { text: "", layer: null, component: null }), "score", "descending");
    const f = filterRows(big, { text: "mlp:12", layer: 3, component: "mlp" });
    expect(performance.now() - t0).toBeLessThan(1500);
    for (let i = 1; i < n; i++) expect(big.scores[s[i - 1]] >= big.scores[s[i]]).toBe(true);
    expect(f.length).toBeGreaterThan(0);
    for (const r of f) expect(big.layers[r] === 3 && big.addresses[r].includes("mlp:12")).toBe(true);
  });
});

describe("filtering", () => {
  it("keeps rows whose address or top class contains the text, case-insensitively", () => {
    const d = data();
    expect(Array.from(filterRows(d, { text: "MLP", layer: null, component: null }))).toEqual([0, 1, 4]);
    expect(Array.from(filterRows(d, { text: "verb", layer: null, component: null }))).toEqual([0, 4]);
    expect(Array.from(filterRows(d, { text: "  ", layer: null, component: null }))).toEqual([0, 1, 2, 3, 4]);
  });
  it("filters by layer and component", () => {
    const d = data();
    expect(Array.from(filterRows(d, { text: "", layer: 2, component: null }))).toEqual([0, 3]);
    expect(Array.from(filterRows(d, { text: "", layer: 2, component: "resid" }))).toEqual([3]);
    expect(Array.from(filterRows(d, { text: "", layer: -1, component: null }))).toEqual([2]);
    expect(Array.from(filterRows(d, { text: "", layer: null, component: "nope" }))).toEqual([]);
  });
  it("shows cells as text", () => {
    const d = data();
    expect(cellText(d, 2, "layer")).toBe("embed");
    expect(cellText(d, 2, "top_class")).toBe("");
    expect(cellText(d, 3, "score")).toBe("\u22120.2");
    expect(cellText(d, 0, "component")).toBe("mlp");
  });
});

describe("virtualisation and keys", () => {
  it("draws only the rows in view plus overscan", () => {
    expect(visibleWindow(0, 280, 28, 50_000, 5)).toEqual([0, 15]);
    expect(visibleWindow(28 * 1000, 280, 28, 50_000, 5)).toEqual([995, 1015]);
    expect(visibleWindow(28 * 49_995, 280, 28, 50_000, 5)).toEqual([49_990, 50_000]);
    expect(visibleWindow(0, 280, 28, 3, 5)).toEqual([0, 3]);
  });
  it("moves the selection with arrows, pages, Home and End, clamped", () => {
    expect(navigate("ArrowDown", -1, 10, 4)).toBe(0);
    expect(navigate("ArrowUp", -1, 10, 4)).toBe(0);
    expect(navigate("ArrowDown", 9, 10, 4)).toBe(9);
    expect(navigate("ArrowUp", 3, 10, 4)).toBe(2);
    expect(navigate("PageDown", 8, 10, 4)).toBe(9);
    expect(navigate("PageUp", 2, 10, 4)).toBe(0);
    expect(navigate("End", 0, 10, 4)).toBe(9);
    expect(navigate("Home", 5, 10, 4)).toBe(0);
    expect(navigate("a", 5, 10, 4)).toBeNull();
    expect(navigate("ArrowDown", 0, 0, 4)).toBeNull();
  });
});
