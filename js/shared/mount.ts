/** Test helper: mounts a widget view on a fresh element before each test and unmounts it after, with
 * the fixtures the widgets' unit tests share (never bundled: only test files import it). */

import { afterEach, beforeEach } from "vitest";
import { encodeFloat32 } from "./codecs";
import { FakeModel } from "./fake_model";

/** A label that would run script if a view ever wrote it as HTML. */
export const XSS = "<img src=x onerror=alert(1)>";

/** Lets the model's change events and the view's redraws run. */
export const flush = () => new Promise((r) => setTimeout(r, 0));

/** A float32 array trait as Python sends it: little-endian bytes and a shape. */
export function float32(values: number[], shape: number[]) {
  return { ...encodeFloat32(new Float32Array(values)), shape };
}

type Render = (props: { model: any; el: HTMLElement }) => () => void;

export interface Mounted<S> {
  /** The element the view renders into (a new one in the document for each test). */
  el: HTMLElement;
  /** The model of the last {@link Mounted.show}. */
  model: FakeModel;
  /** Unmounts the view; run after each test (set it to a no-op once a test has run it itself). */
  cleanup: () => void;
  /** Renders the view on a {@link FakeModel} holding `state` (default: the test file's base state). */
  show(state?: S): void;
  /** The first element under the view that matches `selector`. */
  q<T extends Element>(selector: string): T;
  /** Every element under the view that matches `selector`. */
  all<T extends Element>(selector: string): T[];
}

/** Registers the before/after hooks of a test file and returns the handle its tests use. */
export function mountEach<S extends Record<string, unknown>>(render: Render, base: () => S): Mounted<S> {
  const ui: Mounted<S> = {
    el: undefined as unknown as HTMLElement,
    model: undefined as unknown as FakeModel,
    cleanup: () => {},
    show(state = base()) {
      ui.model = new FakeModel(state);
      ui.cleanup = render({ model: ui.model as any, el: ui.el });
    },
    q: <T extends Element>(selector: string) => ui.el.querySelector(selector) as T,
    all: <T extends Element>(selector: string) => [...ui.el.querySelectorAll<T>(selector)],
  };
  beforeEach(() => {
    ui.el = document.createElement("div");
    document.body.appendChild(ui.el);
  });
  afterEach(() => {
    ui.cleanup();
    ui.cleanup = () => {};
    ui.el.remove();
  });
  return ui;
}
