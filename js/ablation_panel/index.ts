/**
 * AblationPanel front end: one slider per neuron scales it in the forward pass (0 = off, 1 = unchanged,
 * 2 = doubled); the prediction is shown as bars, original beside current (and k random neurons off).
 *
 * DOM contract (the browser tests rely on it; keep it stable):
 * - the root element has classes `nw-root nw-ablation`;
 * - per neuron, a row `tr.nw-neuron[data-neuron]` holding `input[type=checkbox].nw-toggle` (checked = on,
 *   i.e. scale > 0), `input[type=range].nw-scale` (0…2, step 0.05) and `output.nw-scale-value`;
 * - `input[type=range].nw-topk` (0…n: switch off the first k neurons), `input[type=range].nw-randomk`
 *   (k random neurons off, for comparison), `button.nw-redraw` (another random draw), `button.nw-reset`;
 * - `.nw-prediction[data-request-id]`: the id of the answer shown; inside, one `.nw-bar-row` per label
 *   whose `.nw-bar-label` has the exact label (a class or a decoded token) in `data-label` and as text the
 *   label itself for a classifier, or the token with its edge whitespace made visible (`visibleLabel`),
 *   holding one `.nw-bar[data-series][data-value]` per series ("original", "current", "random"),
 *   data-value = String(float32 probability);
 * - `.nw-effect[data-series]` (current, random) with `data-kl` and `data-delta-prob` (full precision) and
 *   the same numbers as text; `.nw-tags` shows per-word probe tags when there are some;
 * - `.nw-status` (aria-live="polite") announces each new prediction once the display is settled;
 * - `.nw-error` (role="alert") shows errors and is `hidden` when there are none;
 * - when Python changes `neurons` (`add_neurons`), the whole panel is drawn anew from the model's state.
 *
 * Live loop (see ../shared/live.ts): slider input is debounced, sent with a request id through synced
 * traits (`scales`, `random_k`, `random_seed`, `request_id` in one message); Python answers in
 * `prediction` with that id; stale answers are dropped. Traits: see `PanelModel`.
 */
import "./styles.css";
import type { AnyModel } from "@anywidget/types";
import { formatShort, liveRegion } from "../shared/a11y";
import { type EncodedArray, decodeArray, encodeFloat32 } from "../shared/codecs";
import { type Palette, toCss } from "../shared/colour";
import { h, uid } from "../shared/dom";
import { LiveRequests } from "../shared/live";
import { hostIsDark, resolvePalette, watchTheme } from "../shared/theme";

export { createOfflineModel } from "./offline";

/** Quiet time after slider input before a request is sent (ms). */
export const DEBOUNCE_MS = 120;
/** How long to wait for the kernel's answer before saying so (ms); SmolLM2 takes ~1-2 s on 2 cores. */
export const ANSWER_TIMEOUT_MS = 60_000;
export const SCALE_MAX = 2;
export const SCALE_STEP = 0.05;

/** What one series does to the original top prediction (Python's `_effect`). */
export interface Effect {
  kl: number;
  delta_prob: number;
  prob: number;
  top: string;
  top_prob: number;
  flipped: boolean;
}

export interface Tags {
  words: string[];
  classes: string[];
  original: number[];
  current: number[];
  /** float32 [2, n_words]: the probability of each word's tag, original and current. */
  probs: EncodedArray;
}

/** Python's answer (the `prediction` trait). */
export interface Answer {
  request_id: number;
  error: string;
  labels: string[];
  ids: number[];
  series: string[];
  /** float32 [n_series, n_labels] */
  probs: EncodedArray;
  target: string;
  effects: Record<string, Effect>;
  random_neurons: string[];
  tags: Tags | null;
}

/** The synced state (trait names of the Python widget). */
export interface PanelModel {
  model_name: string;
  kind: string;
  text: string;
  neurons: string[];
  /** float32 [n_neurons]: the factor of each neuron (0 = off, 1 = unchanged). */
  scales: EncodedArray;
  random_k: number;
  random_seed: number;
  request_id: number;
  prediction: Answer;
  /** Static exports only: a note, and every control disabled. */
  export_note?: string;
}

type Model = AnyModel<PanelModel>;

/** What the browser sends in one request. */
export interface PanelState {
  scales: Float32Array;
  random_k: number;
  random_seed: number;
}

const SERIES_NAMES: Record<string, string> = {
  original: "original",
  current: "now",
  random: "random k off",
};

/** A probability as a percentage with 3 significant digits ("60.2%", "0.0123%"). */
export function formatPercent(p: number): string {
  if (!Number.isFinite(p)) return String(p);
  if (p === 0) return "0%";
  return `${Number((100 * p).toPrecision(3))}%`;
}

/** A signed change with a true minus sign ("+0.0123", "−0.456"). */
export function formatSigned(v: number): string {
  const s = formatShort(v);
  return v > 0 ? `+${s}` : s;
}

const WHITESPACE: Record<string, string> = { " ": "\u2423", "\n": "\u21b5", "\t": "\u21e5", "\r": "\u240d" };

/**
 * A language model's token as shown: the spaces at its ends and its line breaks and tabs made visible
 * (" Paris" → "␣Paris", "\n" → "↵"), "∅" for the empty string. Class names are shown as they are.
 */
export function visibleLabel(label: string, kind: string): string {
  if (kind === "classifier") return label;
  if (label === "") return "\u2205";
  const lead = /^\s*/.exec(label)![0];
  const body = label.slice(lead.length);
  const trail = /\s*$/.exec(body)![0];
  const core = body.slice(0, body.length - trail.length).replace(/[\n\t\r]/g, (c) => WHITESPACE[c]);
  const show = (ws: string) => [...ws].map((c) => WHITESPACE[c] ?? c).join("");
  return show(lead) + core + show(trail);
}

/**
 * How many random neurons the answer switched off: read from the answer itself, never from the sliders,
 * which may not yet show the state Python set (Python's `random_k` arrives with, not before, its answer).
 */
export function randomCount(ans: Pick<Answer, "random_neurons">): number {
  return ans.random_neurons?.length ?? 0;
}

/** Leading neurons switched off (the "top k off" the state amounts to). */
export function leadingOff(scales: ArrayLike<number>): number {
  let k = 0;
  while (k < scales.length && scales[k] === 0) k++;
  return k;
}

/** Draw the panel; when Python changes the neuron list (`AblationPanel.add_neurons`), draw it anew. */
function render({ model, el }: { model: Model; el: HTMLElement }): () => void {
  let cleanup = renderPanel({ model, el });
  const redraw = () => {
    cleanup();
    cleanup = renderPanel({ model, el });
  };
  model.on("change:neurons", redraw);
  return () => {
    model.off("change:neurons", redraw);
    cleanup();
  };
}

function renderPanel({ model, el }: { model: Model; el: HTMLElement }): () => void {
  const abort = new AbortController();
  const signal = abort.signal;
  const doc = el.ownerDocument;
  const root = h("div", "nw-root nw-ablation");
  root.classList.toggle("nw-dark", hostIsDark(doc));
  const neurons = model.get("neurons") ?? [];
  const n = neurons.length;
  const fixed = Boolean(model.get("export_note"));

  // -- header --------------------------------------------------------------------------------------
  const header = h("div", "nw-header");
  const title = h("div", "nw-title");
  title.append(h("span", "nw-model", {}, model.get("model_name") ?? ""), h("span", "nw-kind", {}, kindText()));
  const textLine = h("div", "nw-input");
  textLine.append(h("span", "nw-input-label", {}, "Input"), h("span", "nw-text", {}, model.get("text") ?? ""));
  header.append(title, textLine);
  const note = h("div", "nw-note", {}, model.get("export_note") ?? "");
  note.hidden = !fixed;
  const errorBox = h("div", "nw-error", { role: "alert" });
  errorBox.hidden = true;

  // -- controls ---------------------------------------------------------------------------------------
  const controls = h("div", "nw-controls");
  const bulk = h("div", "nw-bulk");
  const rangeField = (labelText: string, input: HTMLInputElement, out: HTMLOutputElement, extra?: HTMLElement) => {
    const id = uid("nw-abl");
    input.id = id;
    out.setAttribute("for", id);
    const wrap = h("div", "nw-field");
    wrap.append(h("label", "", { for: id }, labelText), input, out);
    if (extra) wrap.append(extra);
    return wrap;
  };
  const topk = h("input", "nw-topk", { type: "range", min: "0", max: String(n), step: "1", value: "0" });
  const topkOut = h("output", "nw-topk-value");
  const randomk = h("input", "nw-randomk", { type: "range", min: "0", max: String(n), step: "1", value: "0" });
  const randomkOut = h("output", "nw-randomk-value");
  const redraw = h("button", "nw-redraw", { type: "button" }, "Re-draw");
  const reset = h("button", "nw-reset", { type: "button" }, "Reset");
  const actions = h("div", "nw-actions");
  actions.append(reset);
  bulk.append(
    rangeField("Switch off the top k", topk, topkOut, h("span")),
    rangeField("Random k off (comparison)", randomk, randomkOut, redraw),
    actions,
  );

  const tableWrap = h("div", "nw-table-wrap");
  const table = h("table", "nw-neurons");
  const caption = h("caption", "", {}, "Scale of each neuron: 0 = off, 1 = unchanged, 2 = doubled");
  const thead = h("thead");
  const headRow = h("tr");
  headRow.append(
    h("th", "", { scope: "col" }, "On"),
    h("th", "", { scope: "col" }, "Neuron"),
    h("th", "", { scope: "col" }, "Scale"),
  );
  thead.append(headRow);
  const tbody = h("tbody");
  const toggles: HTMLInputElement[] = [];
  const sliders: HTMLInputElement[] = [];
  const outputs: HTMLOutputElement[] = [];
  neurons.forEach((name, i) => {
    const row = h("tr", "nw-neuron", { "data-neuron": name, "data-index": String(i) });
    const toggle = h("input", "nw-toggle", { type: "checkbox", "data-neuron": name, "aria-label": `${name} on` });
    const sliderId = uid("nw-abl");
    const slider = h("input", "nw-scale", {
      type: "range",
      min: "0",
      max: String(SCALE_MAX),
      step: String(SCALE_STEP),
      id: sliderId,
      "data-neuron": name,
      "aria-label": `Scale of ${name}`,
    });
    const out = h("output", "nw-scale-value", { for: sliderId });
    const cellOn = h("td", "nw-cell-on");
    cellOn.append(toggle);
    const cellName = h("th", "nw-neuron-name", { scope: "row" }, name);
    const cellScale = h("td", "nw-cell-scale");
    cellScale.append(slider, out);
    row.append(cellOn, cellName, cellScale);
    tbody.append(row);
    toggles.push(toggle);
    sliders.push(slider);
    outputs.push(out);
  });
  table.append(caption, thead, tbody);
  tableWrap.append(table);
  controls.append(bulk, tableWrap);

  // -- prediction --------------------------------------------------------------------------------------
  const prediction = h("div", "nw-prediction", { role: "group", "aria-label": "Prediction" });
  const summary = h("div", "nw-summary");
  const legend = h("div", "nw-legend", { "aria-hidden": "true" });
  const bars = h("div", "nw-bars");
  const tagsBox = h("div", "nw-tags");
  tagsBox.hidden = true;
  const status = liveRegion("nw-status");
  prediction.append(summary, legend, bars, tagsBox);

  const body = h("div", "nw-body");
  body.append(controls, prediction);
  root.append(header, note, errorBox, body, status);
  el.appendChild(root);

  // -- state -------------------------------------------------------------------------------------------
  /** The state the sliders show (what the user set last). */
  const local: PanelState = { scales: new Float32Array(n).fill(1), random_k: 0, random_seed: 0 };
  /** Each neuron's factor before it was switched off, restored when it is switched on again. */
  const before = new Float32Array(n).fill(1);
  let palette: Palette = resolvePalette(root);
  let localError = "";
  let answerError = "";
  let lastAnnounced = "";

  function kindText(): string {
    const kind = model.get("kind") ?? "";
    return { classifier: "classifier", "causal-lm": "next token", "masked-lm": "masked token" }[kind] ?? kind;
  }

  const showError = () => {
    const text = localError || answerError;
    errorBox.textContent = text;
    errorBox.hidden = !text;
  };

  const readModelState = () => {
    try {
      const dec = decodeArray(model.get("scales")).data;
      if (dec.length !== n) throw new RangeError(`got ${dec.length} scales for ${n} neurons`);
      local.scales = Float32Array.from(dec);
    } catch (err) {
      localError = `Cannot read the neuron scales: ${(err as Error).message}`;
      showError();
    }
    local.random_k = Number(model.get("random_k") ?? 0);
    local.random_seed = Number(model.get("random_seed") ?? 0);
  };

  /** Show `local` in the controls. */
  const drawControls = () => {
    for (let i = 0; i < n; i++) {
      const v = local.scales[i];
      sliders[i].value = String(v);
      outputs[i].textContent = v.toFixed(2);
      sliders[i].setAttribute("aria-valuetext", v === 0 ? "0 (off)" : `${v.toFixed(2)}`);
      toggles[i].checked = v > 0;
      sliders[i].closest("tr")?.classList.toggle("nw-off", v === 0);
    }
    const k = leadingOff(local.scales);
    topk.value = String(k);
    topkOut.textContent = String(k);
    randomk.value = String(local.random_k);
    randomkOut.textContent = String(local.random_k);
    redraw.disabled = fixed || local.random_k === 0;
    for (const c of [topk, randomk, reset, ...toggles, ...sliders]) c.disabled = fixed;
  };

  const send = (state: PanelState, id: number) => {
    model.set("scales", encodeFloat32(state.scales));
    model.set("random_k", state.random_k);
    model.set("random_seed", state.random_seed);
    model.set("request_id", id);
    model.save_changes();
  };

  const live = new LiveRequests<PanelState>(
    {
      delay: DEBOUNCE_MS,
      timeout: ANSWER_TIMEOUT_MS,
      send,
      knownId: () => Number(model.get("request_id") ?? 0),
      onBusy: (busy) => prediction.setAttribute("aria-busy", String(busy)),
      onTimeout: () => {
        localError = `No answer from the kernel within ${ANSWER_TIMEOUT_MS / 1000} s: it may be busy or stopped. Move a slider to try again.`;
        showError();
      },
    },
    Number(model.get("request_id") ?? 0),
  );

  const changed = (now = false) => {
    drawControls();
    localError = "";
    showError();
    live.update({ scales: Float32Array.from(local.scales), random_k: local.random_k, random_seed: local.random_seed });
    if (now) live.flush();
  };

  // -- drawing the answer --------------------------------------------------------------------------------
  const seriesColour = (s: string) => `var(--nw-series-${s})`;

  const drawLegend = (series: string[]) => {
    legend.replaceChildren(
      ...series.map((s) => {
        const item = h("span", "nw-legend-item", { "data-series": s });
        const swatch = h("span", "nw-swatch");
        swatch.style.background = seriesColour(s);
        item.append(swatch, h("span", "", {}, SERIES_NAMES[s] ?? s));
        return item;
      }),
    );
  };

  const kind = model.get("kind") ?? "";
  /** A label element: the label made visible as text, the exact string in data-label and the tooltip. */
  const labelEl = (cls: string, label: string) =>
    h("span", cls, { "data-label": label, title: JSON.stringify(label) }, visibleLabel(label, kind));

  const effectLine = (ans: Answer, name: string, effect: Effect, target: string) => {
    const line = h("div", "nw-effect", {
      "data-series": name,
      "data-kl": String(effect.kl),
      "data-delta-prob": String(effect.delta_prob),
      "data-flipped": String(effect.flipped),
    });
    const head = h("span", "nw-effect-name", {}, name === "random" ? `${randomCount(ans)} random off` : "Now");
    const top = h("span", "nw-effect-top");
    top.append(labelEl("nw-label", effect.top), ` ${formatPercent(effect.top_prob)}`);
    if (effect.flipped) top.append(h("span", "nw-flipped", {}, "changed"));
    const numbers = h("span", "nw-effect-numbers");
    const dp = h("span", "nw-dp");
    dp.append("Δp(", labelEl("nw-label", target), `) ${formatSigned(effect.delta_prob)}`);
    numbers.append(dp, h("span", "nw-kl", {}, `KL ${formatShort(effect.kl)} nats`));
    line.append(head, top, numbers);
    return line;
  };

  const drawTags = (tags: Tags | null) => {
    tagsBox.hidden = !tags;
    if (!tags) {
      tagsBox.replaceChildren();
      return;
    }
    let probs: ArrayLike<number> = [];
    try {
      probs = decodeArray(tags.probs).data;
    } catch {
      /* the tags stay readable without their probabilities */
    }
    const w = tags.words.length;
    const items = tags.words.map((word, i) => {
      const was = tags.classes[tags.original[i]] ?? "?";
      const now = tags.classes[tags.current[i]] ?? "?";
      const item = h("span", "nw-tag", { "data-changed": String(was !== now) });
      if (was !== now) item.classList.add("nw-changed");
      const label = `${word}: ${was}${was !== now ? ` → ${now}` : ""}`;
      item.title = `${label} (${formatPercent(probs[i] ?? NaN)} → ${formatPercent(probs[w + i] ?? NaN)})`;
      // each part keeps its full text as a tooltip: a long word or tag name is cut with "…" (CSS)
      item.append(h("span", "nw-tag-word", { title: word }, word), h("span", "nw-tag-original", { title: was }, was));
      if (was !== now) item.append(h("span", "nw-tag-current", { title: now }, now));
      return item;
    });
    const changedCount = tags.original.filter((c, i) => c !== tags.current[i]).length;
    tagsBox.replaceChildren(
      h("div", "nw-tags-title", {}, `Probe tags per word (${changedCount} of ${w} changed)`),
      h("div", "nw-tags-words", {}, ""),
    );
    tagsBox.lastElementChild!.append(...items);
  };

  const drawAnswer = (ans: Answer) => {
    answerError = ans.error ?? "";
    localError = ""; // an answer came: a timeout or an unreadable earlier answer is over
    let probs: ArrayLike<number>;
    let rows = 0;
    try {
      const dec = decodeArray(ans.probs);
      probs = dec.data;
      rows = dec.shape[1] ?? 0;
      if (dec.shape[0] !== ans.series.length || rows !== ans.labels.length) {
        throw new RangeError(`probabilities of shape [${dec.shape.join(", ")}] for ${ans.series.length} series × ${ans.labels.length} labels`);
      }
    } catch (err) {
      localError = `Cannot read the prediction: ${(err as Error).message}`;
      showError();
      return;
    }
    prediction.setAttribute("data-request-id", String(ans.request_id));
    const series = ans.series;
    drawLegend(series);
    const lines: HTMLElement[] = [];
    const original = h("div", "nw-effect nw-effect-original", { "data-series": "original" });
    const p0 = ans.labels.indexOf(ans.target);
    const originalTop = h("span", "nw-effect-top");
    originalTop.append(labelEl("nw-label", ans.target), ` ${formatPercent(p0 >= 0 ? probs[p0] : NaN)}`);
    original.append(h("span", "nw-effect-name", {}, "Original"), originalTop, h("span", "nw-effect-numbers"));
    lines.push(original);
    for (const s of series) if (ans.effects[s]) lines.push(effectLine(ans, s, ans.effects[s], ans.target));
    summary.replaceChildren(...lines);

    const frag = doc.createDocumentFragment();
    ans.labels.forEach((label, r) => {
      const row = h("div", "nw-bar-row", { "data-id": String(ans.ids[r]) });
      const name = labelEl("nw-bar-label", label);
      const group = h("div", "nw-bar-group");
      series.forEach((s, si) => {
        const p = probs[si * rows + r];
        const line = h("div", "nw-bar-line", { "data-series": s });
        const track = h("div", "nw-bar-track");
        const bar = h("div", "nw-bar", { "data-series": s, "data-value": String(p) });
        bar.style.width = `${Math.max(0, Math.min(1, p)) * 100}%`;
        bar.style.background = seriesColour(s);
        track.append(bar);
        line.append(track, h("span", "nw-bar-value", { "aria-label": `${SERIES_NAMES[s] ?? s}` }, formatPercent(p)));
        group.append(line);
      });
      row.append(name, group);
      frag.append(row);
    });
    bars.replaceChildren(frag);
    drawTags(ans.tags ?? null);
    showError();
  };

  const announce = (ans: Answer) => {
    const cur = ans.effects.current;
    if (!cur) return;
    let text = `Prediction now ${cur.top} ${formatPercent(cur.top_prob)}`;
    text += cur.flipped ? `, changed from ${ans.target}` : `, unchanged`;
    text += `; ${ans.target} ${formatSigned(cur.delta_prob)}, KL ${formatShort(cur.kl)}.`;
    if (ans.effects.random) text += ` With ${randomCount(ans)} random neurons off: ${ans.effects.random.top}, KL ${formatShort(ans.effects.random.kl)}.`;
    if (ans.error) text = `Error: ${ans.error}`;
    if (text !== lastAnnounced) {
      status.textContent = text;
      lastAnnounced = text;
    }
  };

  const onAnswer = () => {
    const ans = model.get("prediction");
    if (!ans || typeof ans.request_id !== "number") return;
    if (live.answer(ans.request_id) === "stale") return;
    // the state answered is the model's (Python may have refused a state or set one itself): read it
    // before drawing the answer, so nothing drawn from `local` lags one answer behind
    if (live.settled) readModelState();
    drawAnswer(ans);
    prediction.setAttribute("aria-busy", String(live.busy));
    if (live.settled) {
      drawControls();
      announce(ans);
    }
  };

  // -- theme ---------------------------------------------------------------------------------------------
  const applyPalette = () => {
    root.style.setProperty("--nw-series-current", toCss(palette.pos));
    root.style.setProperty("--nw-series-random", toCss(palette.neg));
  };
  const refreshTheme = () => {
    root.classList.toggle("nw-dark", hostIsDark(doc));
    palette = resolvePalette(root);
    applyPalette();
  };
  const timers: ReturnType<typeof setTimeout>[] = [setTimeout(refreshTheme, 0), setTimeout(refreshTheme, 300)];
  const stopWatching = watchTheme(() => {
    refreshTheme();
    timers.push(setTimeout(refreshTheme, 300));
  }, doc);
  applyPalette();

  // -- events ----------------------------------------------------------------------------------------------
  const on = <K extends keyof HTMLElementEventMap>(target: HTMLElement, type: K, fn: (e: HTMLElementEventMap[K]) => void) =>
    target.addEventListener(type, fn as EventListener, { signal });

  on(tbody, "input", (e) => {
    const t = e.target as HTMLInputElement;
    const i = sliders.indexOf(t);
    if (i < 0) return;
    const v = Math.min(SCALE_MAX, Math.max(0, Number(t.value)));
    if (!Number.isFinite(v)) return;
    local.scales[i] = v;
    if (v > 0) before[i] = v;
    changed();
  });
  on(tbody, "change", (e) => {
    const t = e.target as HTMLInputElement;
    const i = toggles.indexOf(t);
    if (i < 0) return;
    if (t.checked) {
      local.scales[i] = before[i] > 0 ? before[i] : 1;
    } else {
      if (local.scales[i] > 0) before[i] = local.scales[i];
      local.scales[i] = 0;
    }
    changed();
  });
  on(topk, "input", () => {
    const k = Math.max(0, Math.min(n, Math.round(Number(topk.value))));
    for (let i = 0; i < n; i++) local.scales[i] = i < k ? 0 : 1;
    before.fill(1);
    local.random_k = k;
    changed();
  });
  on(randomk, "input", () => {
    local.random_k = Math.max(0, Math.min(n, Math.round(Number(randomk.value))));
    changed();
  });
  on(redraw, "click", () => {
    local.random_seed += 1;
    changed(true);
  });
  on(reset, "click", () => {
    local.scales.fill(1);
    before.fill(1);
    local.random_k = 0;
    changed(true);
  });
  // Keys typed into our controls are ours: JupyterLab's command-mode shortcuts (a, b, d d, arrows) must not
  // act on the notebook while a slider has the focus.
  on(controls, "keydown", (e) => e.stopPropagation());

  model.on("change:prediction", onAnswer);

  // -- first draw ---------------------------------------------------------------------------------------------
  readModelState();
  for (let i = 0; i < n; i++) if (local.scales[i] > 0) before[i] = local.scales[i];
  drawControls();
  const first = model.get("prediction");
  if (first) {
    drawAnswer(first);
    lastAnnounced = ""; // nothing announced on first display: the page shows it
    prediction.setAttribute("aria-busy", String(first.request_id < Number(model.get("request_id") ?? 0)));
  }

  return () => {
    abort.abort();
    live.dispose();
    model.off("change:prediction", onAnswer);
    stopWatching();
    timers.forEach(clearTimeout);
    root.remove();
  };
}

export default { render };
