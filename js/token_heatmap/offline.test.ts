import { describe, expect, it } from "vitest";
import { decodeArray } from "../shared/codecs";
import { carryMarks, createOfflineModel } from "./offline";

const b64 = (data: Float32Array) => btoa(String.fromCharCode(...new Uint8Array(data.buffer)));

/** An export as `to_html` writes it: 3 word units × 4 neurons of layer.0.resid. */
function exported() {
  const matrix = new Float32Array([0, 1, 2, 3, 10, 11, 12, 13, 20, 21, 22, 23]);
  return {
    state: {
      tokens: [["a", "b", "c"]],
      word_ids: [],
      sentences: [0],
      values: { dtype: "float32", shape: [3] },
      label: "layer.0.resid:1",
      neuron: "layer.0.resid:1",
      sites: ["layer.0.resid"],
      widths: { "layer.0.resid": 4 },
      granularity: "word",
      granularities: ["word"],
      error: "",
      _offline: {
        site: "layer.0.resid",
        width: 4,
        units: {
          word: {
            tokens: [["a", "b", "c"]],
            word_ids: [],
            matrix: { dtype: "float32", shape: [3, 4] },
            columns: [0, 1, 2, 3],
          },
        },
      },
    },
    buffer_paths: [["values", "view"], ["_offline", "units", "word", "matrix", "view"]],
    buffers: [b64(new Float32Array([1, 11, 21])), b64(matrix)],
  };
}

describe("static export backend", () => {
  it("recomputes a neuron's values from the embedded matrix", () => {
    const model = createOfflineModel(exported());
    expect(Array.from(decodeArray(model.get("values")).data)).toEqual([1, 11, 21]);
    model.set("neuron", "layer.0.resid:3");
    model.save_changes();
    expect(Array.from(decodeArray(model.get("values")).data)).toEqual([3, 13, 23]);
    expect(model.get("label")).toBe("layer.0.resid:3");
    expect(model.get("error")).toBe("");
  });

  it("refuses an out-of-range neuron with Python's message and keeps the last good one", () => {
    const model = createOfflineModel(exported());
    model.set("neuron", "layer.0.resid:9");
    model.save_changes();
    expect(model.get("error")).toBe("neuron index 9 is out of range for layer.0.resid: valid indices are 0 … 3");
    expect(model.get("neuron")).toBe("layer.0.resid:1");
    expect(Array.from(decodeArray(model.get("values")).data)).toEqual([1, 11, 21]);
  });

  it("says which site is embedded when another is asked for", () => {
    const model = createOfflineModel(exported());
    model.set("neuron", "layer.3.mlp:0");
    model.save_changes();
    expect(model.get("error")).toMatch(/embeds only layer\.0\.resid/);
  });

  it("moves the marks to the other view as Python does", () => {
    const ids = [
      [-1, 0, 1, 1, 1, 2, -1],
      [-1, 0, 0, -1],
    ];
    expect(carryMarks([[0, 1], [1, 0]], "token", ids)).toEqual([
      [0, 2],
      [0, 3],
      [0, 4],
      [1, 1],
      [1, 2],
    ]);
    expect(carryMarks([[0, 3], [0, 4], [0, 0], [1, 2]], "word", ids)).toEqual([
      [0, 1],
      [1, 0],
    ]);
  });
});
