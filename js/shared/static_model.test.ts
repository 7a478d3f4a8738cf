import { describe, expect, it, vi } from "vitest";
import { decodeArray } from "./codecs";
import { StaticModel, restoreBuffers } from "./static_model";

describe("StaticModel", () => {
  it("puts base64 buffers back where ipywidgets would", () => {
    const bytes = new Uint8Array(new Float32Array([1.5, -2]).buffer);
    const state = restoreBuffers({
      state: { values: { dtype: "float32", shape: [2] }, label: "x" },
      buffer_paths: [["values", "view"]],
      buffers: [btoa(String.fromCharCode(...bytes))],
    });
    const values = state.values as { view: DataView; dtype: string; shape: number[] };
    expect(values.view).toBeInstanceOf(DataView);
    expect(Array.from(decodeArray(values).data)).toEqual([1.5, -2]);
  });

  it("fires change events, hands saved changes to the backend and removes listeners", () => {
    const backend = vi.fn((changes: Record<string, unknown>, m: StaticModel) => m.update({ echo: changes.a }));
    const model = new StaticModel({ a: 1 }, backend);
    const seen: unknown[] = [];
    const cb = () => seen.push(model.get("a"));
    model.on("change:a", cb);
    model.set("a", 2);
    expect(seen).toEqual([2]);
    expect(backend).not.toHaveBeenCalled();
    model.save_changes();
    expect(backend).toHaveBeenCalledTimes(1);
    expect(model.get("echo")).toBe(2);
    model.off("change:a", cb);
    model.set("a", 3);
    expect(seen).toEqual([2]);
    expect(model.listenerCount()).toBe(0);
  });
});
