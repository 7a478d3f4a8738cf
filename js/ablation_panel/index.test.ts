import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { FakeModel as BaseFakeModel } from "../shared/fake_model";
import { decodeArray, encodeFloat32 } from "../shared/codecs";
import widget, { ANSWER_TIMEOUT_MS, DEBOUNCE_MS, type Answer, formatPercent, leadingOff, visibleLabel } from "./index";

const { render } = widget;
const XSS = "<img src=x onerror=alert(1)>";
const NEURONS = ["layer.1.mlp:3", "layer.1.mlp:9", "layer.2.resid:4", "layer.2.resid:7"];

/** The shared fake model, keeping what each save_changes() sent (the live loop's requests). */
class FakeModel extends BaseFakeModel {
  saved: Record<string, unknown>[] = [];
  private pending: Record<string, unknown> = {};

  set(key: string, value: unknown): void {
    this.pending[key] = value;
    super.set(key, value);
  }
  save_changes(): void {
    super.save_changes();
    this.saved.push(this.pending);
    this.pending = {};
  }
  /** The last request sent: its id and decoded scales. */
  lastRequest(): { id: number; scales: number[]; random_k: number; random_seed: number } {
    const s = this.saved.at(-1)!;
    return {
      id: s.request_id as number,
      scales: Array.from(decodeArray(s.scales as any).data),
      random_k: s.random_k as number,
      random_seed: s.random_seed as number,
    };
  }
  widget_manager = { get_model: () => Promise.reject(new Error("none")) };
}

/** An answer as Python builds it: labels, ids and float32 [series, labels] probabilities. */
function answer(id: number, current: number[], extra: Partial<Answer> = {}): Answer {
  const original = [0.6, 0.3, 0.1];
  const top = current.indexOf(Math.max(...current));
  return {
    request_id: id,
    error: "",
    labels: ["positive", "negative", XSS],
    ids: [1, 0, 2],
    series: ["original", "current"],
    probs: encodeFloat32(new Float32Array([...original, ...current]), [2, 3]),
    target: "positive",
    effects: {
      current: {
        kl: 0.125 + id,
        delta_prob: current[0] - 0.6,
        prob: current[0],
        top: ["positive", "negative", XSS][top],
        top_prob: current[top],
        flipped: top !== 0,
      },
    },
    random_neurons: [],
    tags: null,
    ...extra,
  };
}

function baseState(extra: Record<string, unknown> = {}) {
  return {
    model_name: "minilm-sentiment",
    kind: "classifier",
    text: `A ${XSS} film`,
    neurons: NEURONS,
    scales: encodeFloat32(new Float32Array([1, 1, 1, 1])),
    random_k: 0,
    random_seed: 0,
    request_id: 0,
    prediction: answer(0, [0.6, 0.3, 0.1]),
    ...extra,
  };
}

let el: HTMLElement;
let model: FakeModel;
let cleanup: () => void;

function show(state: Record<string, unknown> = baseState()) {
  model = new FakeModel(state);
  cleanup = render({ model: model as any, el });
}
const q = <T extends Element>(sel: string) => el.querySelector(sel) as T;
const all = <T extends Element>(sel: string) => [...el.querySelectorAll<T>(sel)];
const sliders = () => all<HTMLInputElement>("input.nw-scale");
const currentBars = () => all<HTMLElement>('.nw-bar[data-series="current"]').map((b) => Number(b.dataset.value));
const shownId = () => Number(q<HTMLElement>(".nw-prediction").dataset.requestId);

function move(i: number, value: number) {
  const s = sliders()[i];
  s.value = String(value);
  s.dispatchEvent(new Event("input", { bubbles: true }));
}

beforeEach(() => {
  vi.useFakeTimers();
  el = document.createElement("div");
  document.body.appendChild(el);
});
afterEach(() => {
  cleanup?.();
  el.remove();
  vi.useRealTimers();
});

describe("AblationPanel view", () => {
  it("builds labelled native controls, one row per neuron", () => {
    show();
    expect(q(".nw-root.nw-ablation")).not.toBeNull();
    const rows = all<HTMLTableRowElement>("tr.nw-neuron");
    expect(rows.map((r) => r.dataset.neuron)).toEqual(NEURONS);
    for (const s of sliders()) {
      expect(s.type).toBe("range");
      expect([s.min, s.max, s.step]).toEqual(["0", "2", "0.05"]);
      expect(s.getAttribute("aria-label")).toMatch(/^Scale of layer\./);
      expect(s.value).toBe("1");
    }
    expect(all<HTMLInputElement>("input.nw-toggle").every((t) => t.type === "checkbox" && t.checked)).toBe(true);
    for (const sel of ["input.nw-topk", "input.nw-randomk"]) {
      const input = q<HTMLInputElement>(sel);
      expect(input.type).toBe("range");
      expect(el.querySelector(`label[for="${input.id}"]`)?.textContent).toBeTruthy();
    }
    expect(q<HTMLButtonElement>("button.nw-reset").textContent).toBe("Reset");
    expect(q<HTMLButtonElement>("button.nw-redraw").disabled).toBe(true); // no random comparison yet
    expect(all("th[scope=col]").map((t) => t.textContent)).toEqual(["On", "Neuron", "Scale"]);
    expect(q(".nw-status").getAttribute("aria-live")).toBe("polite");
  });

  it("shows labels, text and tokens as text: an <img> label creates no element", () => {
    show();
    const labels = all<HTMLElement>(".nw-bar-label").map((e) => e.textContent);
    expect(labels).toEqual(["positive", "negative", XSS]);
    expect(all<HTMLElement>(".nw-bar-label").map((e) => e.dataset.label)).toEqual(["positive", "negative", XSS]);
    expect(q(".nw-text").textContent).toBe(`A ${XSS} film`);
    expect(el.querySelector("img")).toBeNull();
    expect(currentBars()).toEqual([0.6, 0.3, 0.1].map(Math.fround));
    expect(all<HTMLElement>(".nw-bar-value").map((e) => e.textContent).slice(0, 2)).toEqual(["60%", "60%"]);
    const effect = q<HTMLElement>('.nw-effect[data-series="current"]');
    expect(Number(effect.dataset.kl)).toBe(0.125);
  });

  it("debounces slider input: one request with the final float32 state after the quiet time", () => {
    show();
    for (const v of [0.9, 0.7, 0.35, 0.2, 0.05]) {
      move(1, v);
      vi.advanceTimersByTime(DEBOUNCE_MS / 2);
    }
    expect(model.saved).toEqual([]);
    expect(q<HTMLOutputElement>('tr[data-neuron="layer.1.mlp:9"] output').textContent).toBe("0.05");
    vi.advanceTimersByTime(DEBOUNCE_MS);
    expect(model.saved.length).toBe(1);
    expect(model.lastRequest()).toEqual({ id: 1, scales: [1, Math.fround(0.05), 1, 1], random_k: 0, random_seed: 0 });
    expect(q(".nw-prediction").getAttribute("aria-busy")).toBe("true");
  });

  it("drops stale answers and ends showing the answer for the last state set", () => {
    show();
    move(0, 0.5);
    vi.advanceTimersByTime(DEBOUNCE_MS);
    expect(model.lastRequest().id).toBe(1);
    move(0, 0); // while request 1 is in flight
    vi.advanceTimersByTime(DEBOUNCE_MS * 5);
    expect(model.saved.length).toBe(1); // one request in flight at a time
    model.update({ prediction: answer(1, [0.5, 0.4, 0.1]) });
    expect(shownId()).toBe(1); // the newest answer so far is shown ...
    expect(model.lastRequest()).toMatchObject({ id: 2, scales: [0, 1, 1, 1] }); // ... and the final state sent
    expect(q(".nw-status").textContent).toBe(""); // not settled: nothing announced
    model.update({ prediction: answer(1, [0.5, 0.4, 0.1]) }); // a repeated/late answer to request 1
    model.update({ prediction: answer(2, [0.2, 0.7, 0.1]), scales: encodeFloat32(new Float32Array([0, 1, 1, 1])) });
    model.update({ prediction: answer(1, [0.9, 0.05, 0.05]) }); // stale: dropped
    expect(shownId()).toBe(2);
    expect(currentBars()).toEqual([0.2, 0.7, 0.1].map(Math.fround));
    expect(q(".nw-prediction").getAttribute("aria-busy")).toBe("false");
    expect(q(".nw-status").textContent).toMatch(/^Prediction now negative 70%, changed from positive/);
    expect(q<HTMLInputElement>("input.nw-topk").value).toBe("1");
    expect(all<HTMLInputElement>("input.nw-toggle")[0].checked).toBe(false);
  });

  it("toggles a neuron off and back on to its previous factor", () => {
    show();
    move(2, 1.5);
    const toggle = all<HTMLInputElement>("input.nw-toggle")[2];
    toggle.click();
    expect(sliders()[2].value).toBe("0");
    toggle.click();
    expect(sliders()[2].value).toBe("1.5");
    vi.advanceTimersByTime(DEBOUNCE_MS);
    expect(model.lastRequest().scales).toEqual([1, 1, 1.5, 1]);
  });

  it("the top-k slider switches off the first k neurons and compares with k random ones", () => {
    show();
    const topk = q<HTMLInputElement>("input.nw-topk");
    topk.value = "3";
    topk.dispatchEvent(new Event("input", { bubbles: true }));
    vi.advanceTimersByTime(DEBOUNCE_MS);
    expect(model.lastRequest()).toEqual({ id: 1, scales: [0, 0, 0, 1], random_k: 3, random_seed: 0 });
    expect(q<HTMLButtonElement>("button.nw-redraw").disabled).toBe(false);
    model.update({ prediction: answer(1, [0.3, 0.6, 0.1]) });
    q<HTMLButtonElement>("button.nw-redraw").click(); // sent at once, with the next seed
    expect(model.lastRequest()).toMatchObject({ id: 2, random_k: 3, random_seed: 1 });
  });

  it("reset sends every factor back to 1 at once", () => {
    show({ ...baseState(), scales: encodeFloat32(new Float32Array([0, 0.5, 1, 2])), random_k: 2 });
    expect(sliders().map((s) => s.value)).toEqual(["0", "0.5", "1", "2"]);
    q<HTMLButtonElement>("button.nw-reset").click();
    expect(model.lastRequest()).toEqual({ id: 1, scales: [1, 1, 1, 1], random_k: 0, random_seed: 0 });
  });

  it("shows Python's error and the state Python kept", () => {
    show();
    move(3, 2);
    vi.advanceTimersByTime(DEBOUNCE_MS);
    model.update({
      prediction: { ...answer(0, [0.6, 0.3, 0.1]), request_id: 1, error: "the factor of layer.2.resid:7 is 2.5" },
      scales: encodeFloat32(new Float32Array([1, 1, 1, 1])),
    });
    const err = q<HTMLElement>(".nw-error");
    expect(err.hidden).toBe(false);
    expect(err.textContent).toBe("the factor of layer.2.resid:7 is 2.5");
    expect(sliders()[3].value).toBe("1");
    move(3, 0.5);
    vi.advanceTimersByTime(DEBOUNCE_MS);
    model.update({ prediction: answer(2, [0.55, 0.35, 0.1]) });
    expect(err.hidden).toBe(true);
  });

  it("says so when the kernel never answers", () => {
    show();
    move(0, 0);
    vi.advanceTimersByTime(DEBOUNCE_MS + ANSWER_TIMEOUT_MS);
    expect(q<HTMLElement>(".nw-error").textContent).toMatch(/No answer from the kernel/);
    model.update({ prediction: answer(1, [0.4, 0.5, 0.1]) }); // it comes after all
    expect(q<HTMLElement>(".nw-error").hidden).toBe(true);
    expect(shownId()).toBe(1);
  });

  it("follows a state set by Python (a newer id) and shows probe tags", () => {
    show();
    model.update({
      scales: encodeFloat32(new Float32Array([0, 0, 1, 1])),
      random_k: 2,
      request_id: 5,
      prediction: answer(5, [0.4, 0.5, 0.1], {
        series: ["original", "current", "random"],
        probs: encodeFloat32(new Float32Array([0.6, 0.3, 0.1, 0.4, 0.5, 0.1, 0.58, 0.32, 0.1]), [3, 3]),
        random_neurons: ["layer.1.mlp:100", "layer.1.mlp:200"],
        tags: {
          words: ["A", XSS, "film"],
          classes: ["DET", "X", "NOUN"],
          original: [0, 1, 2],
          current: [0, 2, 2],
          probs: encodeFloat32(new Float32Array([0.9, 0.8, 0.7, 0.9, 0.6, 0.7]), [2, 3]),
        },
      }),
    });
    expect(shownId()).toBe(5);
    expect(sliders().map((s) => s.value)).toEqual(["0", "0", "1", "1"]);
    expect(q<HTMLInputElement>("input.nw-randomk").value).toBe("2");
    expect(all('.nw-bar[data-series="random"]').length).toBe(3);
    const tags = all<HTMLElement>(".nw-tag");
    expect(tags.map((t) => t.querySelector(".nw-tag-word")!.textContent)).toEqual(["A", XSS, "film"]);
    expect(tags.map((t) => t.dataset.changed)).toEqual(["false", "true", "false"]);
    expect(el.querySelector("img")).toBeNull();
    // the next request goes beyond Python's id
    move(0, 1);
    vi.advanceTimersByTime(DEBOUNCE_MS);
    expect(model.lastRequest().id).toBe(6);
  });

  it("labels the random series with the count Python answered, not the one the sliders showed before", () => {
    show();
    const randomAnswer = (id: number, drawn: string[]) =>
      answer(id, [0.4, 0.5, 0.1], {
        series: ["original", "current", "random"],
        probs: encodeFloat32(new Float32Array([0.6, 0.3, 0.1, 0.4, 0.5, 0.1, 0.58, 0.32, 0.1]), [3, 3]),
        effects: {
          ...answer(id, [0.4, 0.5, 0.1]).effects,
          random: { kl: 0.01, delta_prob: -0.02, prob: 0.58, top: "positive", top_prob: 0.58, flipped: false },
        },
        random_neurons: drawn,
      });
    const label = () => q<HTMLElement>('.nw-effect[data-series="random"] .nw-effect-name').textContent;
    // panel.random_k = 3 from Python: its answer and its state arrive in one message
    model.update({ random_k: 3, request_id: 5, prediction: randomAnswer(5, ["a:1", "a:2", "a:3"]) });
    expect(label()).toBe("3 random off");
    expect(q<HTMLElement>(".nw-randomk-value").textContent).toBe("3");
    expect(q<HTMLElement>(".nw-status").textContent).toMatch(/With 3 random neurons off/);
    // the answer first, the state after it (the order a kernel message may fire them in)
    model.update({ prediction: randomAnswer(6, ["a:1", "a:2"]), random_k: 2, request_id: 6 });
    expect(label()).toBe("2 random off");
  });

  it("draws the panel anew when Python adds neurons (add_neurons), keeping the state it sent", () => {
    show();
    const extra = "layer.3.mlp:11";
    model.update({
      neurons: [...NEURONS, extra],
      scales: encodeFloat32(new Float32Array([0, 1, 1, 1, 1])),
      request_id: 3,
      prediction: answer(3, [0.5, 0.4, 0.1]),
    });
    expect(all(".nw-root.nw-ablation")).toHaveLength(1);
    expect(all<HTMLElement>("tr.nw-neuron").map((r) => r.dataset.neuron)).toEqual([...NEURONS, extra]);
    expect(sliders().map((s) => s.value)).toEqual(["0", "1", "1", "1", "1"]);
    expect(q<HTMLInputElement>("input.nw-topk").max).toBe("5");
    expect(shownId()).toBe(3);
    expect(q<HTMLElement>(".nw-error").hidden).toBe(true);
    move(4, 0); // the new slider sends a request of 5 factors, beyond Python's id
    vi.advanceTimersByTime(DEBOUNCE_MS);
    expect(model.lastRequest()).toMatchObject({ id: 4, scales: [0, 1, 1, 1, 0] });
    cleanup();
    cleanup = () => {};
    expect(model.listeners()).toBe(0);
  });

  it("keeps keys typed in its controls away from the notebook", () => {
    show();
    const seen: string[] = [];
    document.body.addEventListener("keydown", (e) => seen.push(e.key));
    sliders()[0].dispatchEvent(new KeyboardEvent("keydown", { key: "ArrowLeft", bubbles: true }));
    expect(seen).toEqual([]);
  });

  it("disables every control in a static export and says why", () => {
    show({ ...baseState(), export_note: "Static export: run the notebook to change them." });
    expect(q<HTMLElement>(".nw-note").hidden).toBe(false);
    const controls = all<HTMLInputElement | HTMLButtonElement>(".nw-controls input, .nw-controls button");
    expect(controls.length).toBe(NEURONS.length * 2 + 4);
    expect(controls.every((c) => c.disabled)).toBe(true);
  });

  it("cleans up: listeners, timers and its DOM", () => {
    show();
    move(0, 0.5); // a debounced request pending
    expect(model.listeners()).toBeGreaterThan(0);
    cleanup();
    cleanup = () => {};
    expect(model.listeners()).toBe(0);
    expect(el.querySelector(".nw-root")).toBeNull();
    vi.advanceTimersByTime(ANSWER_TIMEOUT_MS * 2);
    expect(model.saved).toEqual([]);
    expect(vi.getTimerCount()).toBe(0);
  });
});

describe("helpers", () => {
  it("formats percentages and counts leading switched-off neurons", () => {
    expect(formatPercent(0.6021)).toBe("60.2%");
    expect(formatPercent(0.000123)).toBe("0.0123%");
    expect(formatPercent(0)).toBe("0%");
    expect(leadingOff([0, 0, 1, 0])).toBe(2);
    expect(leadingOff([1, 0])).toBe(0);
  });
});

describe("labels", () => {
  it("makes a token's edge whitespace visible", () => {
    expect(visibleLabel(" Paris", "causal-lm")).toBe("\u2423Paris");
    expect(visibleLabel("\n", "causal-lm")).toBe("\u21b5");
    expect(visibleLabel("", "causal-lm")).toBe("\u2205");
    expect(visibleLabel(XSS, "causal-lm")).toBe(XSS);
    expect(visibleLabel(" very positive ", "classifier")).toBe(" very positive ");
  });
});
