/**
 * A stand-in for anywidget's model in static HTML exports (no kernel), so the same `render()` runs.
 *
 * It implements the model API a view uses (get/set/on/off/save_changes/send). `save_changes` hands the
 * changed keys to an optional `backend`, which plays the kernel's part (e.g. recomputing values from
 * data embedded in the export) and answers through `update`.
 */
import type { AnyModel } from "@anywidget/types";
import { base64ToBytes } from "./codecs";

type Callback = (...args: any[]) => void;
export type State = Record<string, unknown>;
export type Backend = (changes: State, model: StaticModel) => void;

/** What `to_html` embeds: the state with its binary buffers cut out (as ipywidgets sends it), base64. */
export interface ExportedState {
  state: State;
  buffer_paths: (string | number)[][];
  buffers: string[];
}

/** Put base64 buffers back into the state as DataViews, where the widget manager would put them. */
export function restoreBuffers(exported: ExportedState): State {
  const state = exported.state;
  exported.buffer_paths.forEach((path, i) => {
    let obj = state as Record<string | number, unknown>;
    for (const key of path.slice(0, -1)) obj = obj[key] as Record<string | number, unknown>;
    const bytes = base64ToBytes(exported.buffers[i]);
    obj[path[path.length - 1]] = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  });
  return state;
}

export class StaticModel implements AnyModel {
  private state: State;
  private listeners = new Map<string, Set<Callback>>();
  private pending: State = {};

  constructor(
    state: State,
    private backend?: Backend,
  ) {
    this.state = { ...state };
  }

  get(key: string): any {
    return this.state[key];
  }

  /** Set one key and fire `change:<key>` (as a Backbone model does); `save_changes` sends it. */
  set(key: string, value: unknown): void {
    this.pending[key] = value;
    this.update({ [key]: value });
  }

  /** Set several keys, then fire their change events (so handlers see the whole new state). */
  update(changes: State): void {
    const changed = Object.keys(changes).filter((k) => this.state[k] !== changes[k]);
    Object.assign(this.state, changes);
    for (const k of changed) this.emit(`change:${k}`);
    if (changed.length) this.emit("change");
  }

  on(event: string, callback: Callback): void {
    if (!this.listeners.has(event)) this.listeners.set(event, new Set());
    this.listeners.get(event)!.add(callback);
  }

  off(event?: string | null, callback?: Callback | null): void {
    if (!event) {
      this.listeners.clear();
    } else if (!callback) {
      this.listeners.delete(event);
    } else {
      this.listeners.get(event)?.delete(callback);
    }
  }

  save_changes(): void {
    const changes = this.pending;
    this.pending = {};
    if (Object.keys(changes).length) this.backend?.(changes, this);
  }

  send(): void {
    // no kernel to talk to in a static page
  }

  /** Number of registered listeners (tests check that a view's cleanup removes all of its own). */
  listenerCount(): number {
    let n = 0;
    for (const set of this.listeners.values()) n += set.size;
    return n;
  }

  private emit(event: string): void {
    for (const cb of [...(this.listeners.get(event) ?? [])]) cb();
  }

  widget_manager = {
    get_model: (): Promise<never> => Promise.reject(new Error("no widget manager in a static export")),
  };
}
