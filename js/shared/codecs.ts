/**
 * Binary array codec shared by every widget (docs/architecture.md, "The Python ↔ browser contract": arrays travel as binary buffers).
 *
 * Python sends `{view, dtype, shape}` where `view` is a bytes buffer (little-endian, C order). The widget
 * manager hands it over as a DataView; static exports and tests may pass an ArrayBuffer or typed array.
 */

/** A binary buffer as it arrives from the kernel (or from a static export). */
export type BufferLike = DataView | ArrayBuffer | ArrayBufferView;

/** An encoded n-d array: Python's `{"view": memoryview, "dtype": "float32", "shape": [n]}`. */
export interface EncodedArray {
  view: BufferLike;
  dtype: string;
  shape: number[];
}

/** A decoded array: values in C order and the shape. */
export interface FloatArray {
  data: Float32Array | Float64Array;
  shape: number[];
}

const ITEM_SIZE: Record<string, number> = { float16: 2, float32: 4, float64: 8 };
const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

function asBytes(view: BufferLike): Uint8Array {
  if (view instanceof ArrayBuffer) return new Uint8Array(view);
  if (ArrayBuffer.isView(view)) return new Uint8Array(view.buffer, view.byteOffset, view.byteLength);
  throw new TypeError(`expected a binary buffer (DataView/ArrayBuffer), got ${typeof view}`);
}

/** Convert one IEEE 754 half-precision bit pattern to a number (exactly representable in float32). */
export function halfToFloat(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exp = (bits >> 10) & 0x1f;
  const frac = bits & 0x03ff;
  if (exp === 0) return sign * frac * 2 ** -24; // zero and subnormals
  if (exp === 0x1f) return frac ? NaN : sign * Infinity;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

/** Decode `{view, dtype, shape}` (float16, float32 or float64) into a typed array and its shape. */
export function decodeArray(encoded: EncodedArray): FloatArray {
  if (!encoded || typeof encoded !== "object" || !("view" in encoded)) {
    throw new TypeError("expected an encoded array {view, dtype, shape}");
  }
  const { dtype, shape } = encoded;
  const size = ITEM_SIZE[dtype];
  if (size === undefined) throw new TypeError(`unsupported dtype ${JSON.stringify(dtype)}: use float16, float32 or float64`);
  const n = shape.reduce((a, b) => a * b, 1);
  const bytes = asBytes(encoded.view);
  if (bytes.byteLength !== n * size) {
    throw new RangeError(`buffer holds ${bytes.byteLength} bytes but shape [${shape.join(", ")}] of ${dtype} needs ${n * size}`);
  }
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (dtype === "float16") {
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) out[i] = halfToFloat(dv.getUint16(2 * i, true));
    return { data: out, shape: [...shape] };
  }
  if (LITTLE_ENDIAN && bytes.byteOffset % size === 0) {
    // zero copy
    const data = size === 4 ? new Float32Array(bytes.buffer, bytes.byteOffset, n) : new Float64Array(bytes.buffer, bytes.byteOffset, n);
    return { data, shape: [...shape] };
  }
  const out = size === 4 ? new Float32Array(n) : new Float64Array(n);
  for (let i = 0; i < n; i++) out[i] = size === 4 ? dv.getFloat32(4 * i, true) : dv.getFloat64(8 * i, true);
  return { data: out, shape: [...shape] };
}

/** Encode a Float32Array the way Python does (used by the static-export backend and tests). */
export function encodeFloat32(data: Float32Array, shape: number[] = [data.length]): EncodedArray {
  const copy = new Float32Array(data); // own buffer, offset 0
  return { view: new DataView(copy.buffer), dtype: "float32", shape };
}

/** Bytes of a base64 string (static exports embed buffers as base64). */
export function base64ToBytes(text: string): Uint8Array {
  const bin = atob(text);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}
