/**
 * TokenHeatmap front end: tokens of several sentences coloured by one neuron's activation (or any
 * per-token score) on a symmetric diverging scale.
 *
 * DOM contract (the browser tests rely on it; keep it stable):
 * - the root element has classes `nw-root nw-heatmap`;
 * - each shown token is a `span.nw-token` whose textContent is exactly the token string, with
 *   `data-value` = String(value) of the float32 value as a JS number (full precision),
 *   `data-sentence` = the sentence's index in the data set and `data-index` = the token's position in it;
 *   spans sit in one `div.nw-sentence[data-sentence]` per sentence, the subword tokens of one word
 *   grouped in a `span.nw-word` (so a word never wraps apart); `.nw-cont` marks a token continuing a word;
 * - tokens listed in `marked` (e.g. the firing token of a top-activating context) also have the class
 *   `nw-marked` (a visible outline) and `aria-current="true"`; their tooltip and keyboard readout say
 *   "marked"; out-of-range marks are ignored;
 * - `select.nw-site` lists the sites (option value = site name, e.g. "layer.3.resid");
 *   `input[type=number].nw-neuron` holds the neuron index (its change event commits it);
 *   `select.nw-granularity` (values "word" / "token") exists only when both views are available;
 *   these controls are absent (`.nw-controls` hidden) for plain scores (`TokenHeatmap.from_scores`);
 * - `.nw-status` (aria-live="polite") holds the label of the values shown, e.g. "layer.3.resid:42",
 *   and changes only once those values are displayed;
 * - `.nw-error` (role="alert") shows errors and is `hidden` when there are none;
 * - `.nw-legend` shows the colour bar with its min / 0 / max as text.
 *
 * Synced traits (Python `TokenHeatmap`): see `HeatmapModel` below.
 */
import "./styles.css";
import type { AnyModel } from "@anywidget/types";
import { formatFloat32, liveRegion } from "../shared/a11y";
import { type EncodedArray, decodeArray } from "../shared/codecs";
import { type Palette, symmetricScale, textColour, toCss, valueColour } from "../shared/colour";
import { bindBatched } from "../shared/batch";
import { h, placeTooltip, uid } from "../shared/dom";
import { createLegend } from "../shared/legend";
import { followTheme, hostIsDark, resolvePalette } from "../shared/theme";

export { createOfflineModel } from "./offline";

/** The synced state (trait names of the Python widget). */
export interface HeatmapModel {
  /** Tokens (or words) of the shown sentences. */
  tokens: string[][];
  /** Word index of each token (tokens of one word are drawn joined); empty lists for words/scores. */
  word_ids: number[][];
  /** Index of each shown sentence in the data set. */
  sentences: number[];
  /** float32 [n_tokens]: the shown sentences' values, concatenated. */
  values: EncodedArray | null;
  /** What the values are, e.g. "layer.3.resid:42"; shown in `.nw-status`. */
  label: string;
  /** The neuron the browser asks for ("site:index"); Python answers with values + label, or error. */
  neuron: string;
  sites: string[];
  widths: Record<string, number>;
  granularity: string;
  granularities: string[];
  /** Tokens to outline: [row, index], row = position among the shown sentences, index = token position. */
  marked: number[][];
  error: string;
  /** Static exports only: a note next to the controls, and whether neuron controls are disabled. */
  export_note?: string;
  export_fixed?: boolean;
}

type Model = AnyModel<HeatmapModel>;

const GRANULARITY_NAMES: Record<string, string> = { word: "words", token: "subword tokens" };

function splitNeuron(neuron: string): [string, string] {
  const cut = neuron.lastIndexOf(":");
  return cut < 0 ? [neuron, ""] : [neuron.slice(0, cut), neuron.slice(cut + 1)];
}

function render({ model, el }: { model: Model; el: HTMLElement }): () => void {
  const abort = new AbortController();
  const signal = abort.signal;
  const root = h("div", "nw-root nw-heatmap");
  root.classList.toggle("nw-dark", hostIsDark(el.ownerDocument));

  // -- controls ----------------------------------------------------------------------------------
  const controls = h("div", "nw-controls");
  const field = (labelText: string, control: HTMLElement, extra?: HTMLElement) => {
    const id = uid();
    control.id = id;
    const wrap = h("span", "nw-field");
    wrap.append(h("label", "", { for: id }, labelText), control);
    if (extra) wrap.append(extra);
    return wrap;
  };
  const siteSel = h("select", "nw-site");
  const neuronIn = h("input", "nw-neuron", { type: "number", min: "0", step: "1", inputmode: "numeric" });
  const widthText = h("span", "nw-width");
  const granSel = h("select", "nw-granularity");
  const siteField = field("Site", siteSel);
  const neuronField = field("Neuron", neuronIn, widthText);
  const granField = field("Show", granSel);
  const note = h("span", "nw-note");
  controls.append(siteField, neuronField, granField, note);

  // -- header: status and legend ------------------------------------------------------------------
  const header = h("div", "nw-header");
  const status = h("span", "nw-status", { "aria-live": "polite", "aria-atomic": "true" });
  const legend = createLegend();
  header.append(status, legend.el);

  const errorBox = h("div", "nw-error", { role: "alert" });
  errorBox.hidden = true;
  const body = h("div", "nw-sentences", {
    tabindex: "0",
    role: "group",
    "aria-label": "Tokens coloured by value. Use the arrow keys to read each token's value.",
  });
  const tooltip = h("div", "nw-tooltip", { role: "tooltip" });
  tooltip.hidden = true;
  const readout = liveRegion("nw-readout");
  root.append(controls, header, errorBox, body, tooltip, readout);
  el.appendChild(root);

  // -- state ----------------------------------------------------------------------------------------
  let spans: HTMLSpanElement[] = [];
  /** Position in `spans` of each shown sentence's first token. */
  let rowStarts: number[] = [];
  const position = new WeakMap<Element, number>();
  let values: ArrayLike<number> = new Float32Array(0);
  let palette: Palette = resolvePalette(root);
  let localError = "";
  let active = -1;

  const showError = () => {
    const text = localError || model.get("error") || "";
    errorBox.textContent = text;
    errorBox.hidden = !text;
    if (text) body.removeAttribute("aria-busy");
  };

  // -- drawing --------------------------------------------------------------------------------------
  /** Build the token spans (only when the tokens change), then colour them. */
  const rebuild = () => {
    const tokens = model.get("tokens") ?? [];
    const ids = model.get("sentences") ?? [];
    const wordIds = model.get("word_ids") ?? [];
    const frag = document.createDocumentFragment();
    spans = [];
    rowStarts = [];
    tokens.forEach((sentence, s) => {
      rowStarts.push(spans.length);
      const sid = String(ids[s] ?? s);
      const row = h("div", "nw-sentence", { "data-sentence": sid });
      row.append(h("span", "nw-sentence-label", { "aria-hidden": "true" }, sid));
      const wid = wordIds[s];
      let group: HTMLElement = row; // tokens of one word share a no-wrap group, so a word never breaks
      sentence.forEach((token, i) => {
        const joined = Boolean(wid) && i > 0 && wid[i] >= 0 && wid[i] === wid[i - 1];
        const joinsNext = Boolean(wid) && i + 1 < sentence.length && wid[i] >= 0 && wid[i + 1] === wid[i];
        if (!joined) group = joinsNext ? row.appendChild(h("span", "nw-word")) : row;
        const span = document.createElement("span");
        span.className = joined ? "nw-token nw-cont" : "nw-token";
        span.textContent = token;
        span.setAttribute("data-sentence", sid);
        span.setAttribute("data-index", String(i));
        position.set(span, spans.length);
        spans.push(span);
        group.append(span);
      });
      frag.append(row);
    });
    body.replaceChildren(frag);
    active = -1;
    hideTooltip();
    mark();
    restyle();
  };

  /** Outline the tokens listed in `marked` (and only those). */
  const mark = () => {
    for (const span of body.querySelectorAll(".nw-marked")) {
      span.classList.remove("nw-marked");
      span.removeAttribute("aria-current");
    }
    const tokens = model.get("tokens") ?? [];
    for (const pair of model.get("marked") ?? []) {
      const [row, index] = pair;
      if (!(row >= 0 && row < rowStarts.length && index >= 0 && index < (tokens[row]?.length ?? 0))) continue;
      const span = spans[rowStarts[row] + index];
      span?.classList.add("nw-marked");
      span?.setAttribute("aria-current", "true");
    }
  };

  /** Colour the existing spans from `values` (no DOM rebuild), then update legend and status. */
  const restyle = () => {
    localError = "";
    const encoded = model.get("values");
    let data: ArrayLike<number> = new Float32Array(0);
    try {
      if (encoded) data = decodeArray(encoded).data;
    } catch (err) {
      localError = `Cannot read the values: ${(err as Error).message}`;
    }
    if (!localError && data.length !== spans.length) {
      localError = `Got ${data.length} values for ${spans.length} tokens.`;
    }
    if (localError) {
      showError();
      return;
    }
    values = data;
    for (let i = 0; i < spans.length; i++) spans[i].setAttribute("data-value", String(data[i]));
    paint();
    status.textContent = model.get("label") ?? "";
    body.removeAttribute("aria-busy");
    showError();
    if (active >= 0) showTooltip(spans[active]);
  };

  /** Apply palette colours to spans and legend (also on theme changes). */
  const paint = () => {
    const scale = symmetricScale(values);
    for (let i = 0; i < spans.length; i++) {
      const tile = valueColour(values[i], scale, palette);
      const style = spans[i].style;
      style.backgroundColor = toCss(tile);
      style.color = toCss(textColour(tile, palette));
    }
    legend.update(scale, palette);
  };

  const syncControls = () => {
    const sites = model.get("sites") ?? [];
    const grans = model.get("granularities") ?? [];
    const widths = model.get("widths") ?? {};
    const [site, index] = splitNeuron(model.get("neuron") ?? "");
    const fixed = Boolean(model.get("export_fixed"));
    siteField.hidden = neuronField.hidden = sites.length === 0;
    granField.hidden = grans.length < 2;
    const noteText = model.get("export_note") ?? "";
    note.textContent = noteText;
    note.hidden = !noteText;
    controls.hidden = siteField.hidden && granField.hidden && note.hidden;
    if ([...siteSel.options].map((o) => o.value).join("\n") !== sites.join("\n")) {
      siteSel.replaceChildren(...sites.map((s) => h("option", "", { value: s }, s)));
    }
    if (grans.length >= 2 && [...granSel.options].map((o) => o.value).join("\n") !== grans.join("\n")) {
      granSel.replaceChildren(...grans.map((g) => h("option", "", { value: g }, GRANULARITY_NAMES[g] ?? g)));
    }
    siteSel.value = site;
    neuronIn.value = index;
    const width = widths[site];
    if (width) {
      neuronIn.max = String(width - 1);
      widthText.textContent = `of 0\u2013${width - 1}`;
    }
    granSel.value = model.get("granularity") ?? "";
    siteSel.disabled = neuronIn.disabled = fixed;
  };

  // -- tooltip and keyboard reading -------------------------------------------------------------------
  const describe = (span: HTMLSpanElement) => {
    const k = position.get(span) ?? -1;
    let where = `sentence ${span.getAttribute("data-sentence")}, token ${span.getAttribute("data-index")}`;
    if (span.classList.contains("nw-marked")) where += ", marked";
    return { token: span.textContent ?? "", value: formatFloat32(values[k]), where };
  };

  function showTooltip(span: HTMLSpanElement): void {
    const d = describe(span);
    const tok = h("span", "nw-tooltip-token", {}, d.token);
    const val = h("span", "nw-tooltip-value", {}, d.value);
    tooltip.replaceChildren(tok, val, h("span", "nw-tooltip-where", {}, d.where));
    placeTooltip(tooltip, span, root);
  }

  function hideTooltip(): void {
    tooltip.hidden = true;
  }

  const setActive = (k: number) => {
    if (!spans.length) return;
    spans[active]?.classList.remove("nw-active");
    active = Math.max(0, Math.min(spans.length - 1, k));
    const span = spans[active];
    span.classList.add("nw-active");
    span.scrollIntoView?.({ block: "nearest", inline: "nearest" });
    showTooltip(span);
    const d = describe(span);
    readout.textContent = `${d.token}: ${d.value} (${d.where})`;
  };

  /** First token of the sentence before (-1) or after (+1) the active one. */
  const sentenceStart = (dir: number) => {
    const row = spans[active]?.closest(".nw-sentence");
    const next = (dir > 0 ? row?.nextElementSibling : row?.previousElementSibling)?.querySelector(".nw-token");
    return next ? (position.get(next) ?? active) : active;
  };

  // -- events (one delegated listener per kind; all removed by the cleanup) --------------------------
  const commit = (neuron: string) => {
    localError = "";
    if (neuron === model.get("neuron")) {
      if (model.get("error")) {
        model.set("error", ""); // re-choosing the shown neuron dismisses a refusal
        model.save_changes();
      }
      showError();
      return;
    }
    body.setAttribute("aria-busy", "true");
    model.set("neuron", neuron);
    model.save_changes();
  };
  const on = <K extends keyof HTMLElementEventMap>(
    target: HTMLElement,
    type: K,
    fn: (e: HTMLElementEventMap[K]) => void,
  ) => target.addEventListener(type, fn as EventListener, { signal });

  on(siteSel, "change", () => {
    const width = (model.get("widths") ?? {})[siteSel.value] ?? 1;
    const [, current] = splitNeuron(model.get("neuron") ?? "");
    const index = Math.min(Number(/^\d+$/.test(neuronIn.value) ? neuronIn.value : current) || 0, width - 1);
    commit(`${siteSel.value}:${index}`);
  });
  on(neuronIn, "change", () => {
    const raw = neuronIn.value.trim();
    if (!/^\d+$/.test(raw)) {
      const width = (model.get("widths") ?? {})[siteSel.value];
      localError = `The neuron index must be a whole number${width ? ` from 0 to ${width - 1}` : ""}.`;
      showError();
      return;
    }
    commit(`${siteSel.value}:${Number(raw)}`);
  });
  // JupyterLab's shortcuts may swallow Enter before a number input commits: commit on Enter ourselves,
  // and keep keys typed into our controls away from the notebook's shortcuts.
  on(controls, "keydown", (e) => {
    e.stopPropagation();
    if (e.key === "Enter" && e.target === neuronIn) neuronIn.dispatchEvent(new Event("change"));
  });
  on(granSel, "change", () => {
    body.setAttribute("aria-busy", "true");
    model.set("granularity", granSel.value);
    model.save_changes();
  });
  on(body, "mouseover", (e) => {
    const span = (e.target as Element).closest?.(".nw-token");
    if (span) showTooltip(span as HTMLSpanElement);
  });
  on(body, "mouseleave", () => (active >= 0 ? showTooltip(spans[active]) : hideTooltip()));
  on(body, "focus", () => setActive(active < 0 ? 0 : active));
  on(body, "blur", () => {
    spans[active]?.classList.remove("nw-active");
    hideTooltip();
  });
  on(body, "keydown", (e) => {
    const moves: Record<string, () => number> = {
      ArrowRight: () => active + 1,
      ArrowLeft: () => active - 1,
      ArrowDown: () => sentenceStart(1),
      ArrowUp: () => sentenceStart(-1),
      Home: () => 0,
      End: () => spans.length - 1,
    };
    if (e.key === "Escape") {
      hideTooltip();
    } else if (moves[e.key]) {
      e.preventDefault();
      e.stopPropagation(); // arrows read tokens here, they do not move the notebook's cell cursor
      setActive(moves[e.key]());
    }
  });

  // -- theme: follow host theme switches --------------------------------------------------------------
  const stopTheme = followTheme(root, el.ownerDocument, palette, (next) => {
    palette = next;
    paint();
  });

  // -- model events ------------------------------------------------------------------------------------
  const handlers: [string, () => void][] = [
    ["change:tokens", rebuild],
    ["change:sentences", rebuild],
    ["change:word_ids", rebuild],
    ["change:values", restyle],
    ["change:label", restyle],
    ["change:error", showError],
    ["change:marked", mark],
    ["change:neuron", syncControls],
    ["change:sites", syncControls],
    ["change:widths", syncControls],
    ["change:granularity", syncControls],
    ["change:granularities", syncControls],
  ];
  // Several keys can change in one update (tokens + values): draw once per batch.
  const unbind = bindBatched(model, handlers, signal, rebuild, [restyle, mark]);

  syncControls();
  rebuild();

  return () => {
    abort.abort();
    unbind();
    stopTheme();
    root.remove();
  };
}

export default { render };
