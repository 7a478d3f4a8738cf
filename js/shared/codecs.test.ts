import { describe, expect, it } from "vitest";
import { base64ToBytes, decodeArray, encodeFloat32, halfToFloat } from "./codecs";

describe("decodeArray", () => {
  it("decodes float32 from a DataView, keeping exact values and shape", () => {
    const src = new Float32Array([0.1, -2.5, 3e-8, 1234.5678, 0, -0]);
    const out = decodeArray({ view: new DataView(src.buffer), dtype: "float32", shape: [2, 3] });
    expect(out.shape).toEqual([2, 3]);
    expect(Array.from(out.data)).toEqual(Array.from(src));
    expect(out.data[0]).toBe(Math.fround(0.1));
  });

  it("decodes float32 from an unaligned view into a larger buffer", () => {
    const bytes = new Uint8Array(4 * 3 + 1);
    const dv = new DataView(bytes.buffer, 1, 12);
    [1.5, -0.25, 7].forEach((v, i) => dv.setFloat32(4 * i, v, true));
    const out = decodeArray({ view: dv, dtype: "float32", shape: [3] });
    expect(Array.from(out.data)).toEqual([1.5, -0.25, 7]);
  });

  it("decodes float16 bit patterns exactly", () => {
    const bits = [0x3c00, 0xc000, 0x7bff, 0x0001, 0x3555, 0x0000, 0x8000, 0x7c00, 0xfc00];
    const dv = new DataView(new ArrayBuffer(bits.length * 2));
    bits.forEach((b, i) => dv.setUint16(2 * i, b, true));
    const out = decodeArray({ view: dv, dtype: "float16", shape: [bits.length] });
    expect(out.data).toBeInstanceOf(Float32Array);
    expect(Array.from(out.data)).toEqual([1, -2, 65504, 2 ** -24, 0.333251953125, 0, -0, Infinity, -Infinity]);
    expect(Number.isNaN(halfToFloat(0x7e00))).toBe(true);
  });

  it("accepts ArrayBuffer and typed arrays", () => {
    const src = new Float32Array([4, 5]);
    expect(Array.from(decodeArray({ view: src.buffer, dtype: "float32", shape: [2] }).data)).toEqual([4, 5]);
    expect(Array.from(decodeArray({ view: src, dtype: "float32", shape: [2] }).data)).toEqual([4, 5]);
  });

  it("refuses a buffer whose size does not match the shape, and unknown dtypes", () => {
    const dv = new DataView(new ArrayBuffer(8));
    expect(() => decodeArray({ view: dv, dtype: "float32", shape: [3] })).toThrow(/needs 12/);
    expect(() => decodeArray({ view: dv, dtype: "int8", shape: [8] })).toThrow(/unsupported dtype/);
  });

  it("round-trips through encodeFloat32 and base64", () => {
    const enc = encodeFloat32(new Float32Array([1, 2, 3]));
    expect(Array.from(decodeArray(enc).data)).toEqual([1, 2, 3]);
    const b = base64ToBytes(btoa(String.fromCharCode(...new Uint8Array(new Float32Array([-1.25]).buffer))));
    expect(decodeArray({ view: b, dtype: "float32", shape: [1] }).data[0]).toBe(-1.25);
  });
});
