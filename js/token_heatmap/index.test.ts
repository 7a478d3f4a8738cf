import { describe, expect, it } from "vitest";
import { encodeFloat32 } from "../shared/codecs";
import { flush, mountEach, XSS } from "../shared/mount";
import widget from "./index";

const { render } = widget;

function baseState(values: number[]) {
  return {
    tokens: [
      ["The", "movie", XSS],
      ["un", "bel", "ievable"],
    ],
    word_ids: [
      [0, 1, 2],
      [0, 0, 0],
    ],
    sentences: [3, 7],
    values: encodeFloat32(new Float32Array(values)),
    label: "layer.1.resid:5",
    neuron: "layer.1.resid:5",
    sites: ["embed.resid", "layer.1.mlp", "layer.1.resid"],
    widths: { "embed.resid": 8, "layer.1.mlp": 32, "layer.1.resid": 8 } as Record<string, number>,
    granularity: "token",
    granularities: ["word", "token"],
    marked: [] as number[][],
    error: "",
  };
}

const ui = mountEach(render, () => baseState([0.1, -2, 0, 1.5, 2, -0.5]));
const { show, q } = ui;
const tokens = () => [...ui.el.querySelectorAll<HTMLSpanElement>("span.nw-token")];

describe("TokenHeatmap view", () => {
  it("follows the DOM contract: root classes, one span per token with exact text and data attributes", () => {
    show();
    expect(q(".nw-root.nw-heatmap")).not.toBeNull();
    const spans = tokens();
    expect(spans.map((s) => s.textContent)).toEqual(["The", "movie", XSS, "un", "bel", "ievable"]);
    expect(spans.map((s) => s.dataset.sentence)).toEqual(["3", "3", "3", "7", "7", "7"]);
    expect(spans.map((s) => s.dataset.index)).toEqual(["0", "1", "2", "0", "1", "2"]);
    expect(spans[0].dataset.value).toBe(String(Math.fround(0.1)));
    expect(spans[1].dataset.value).toBe("-2");
    expect(q(".nw-status").textContent).toBe("layer.1.resid:5");
    expect(q(".nw-status").getAttribute("aria-live")).toBe("polite");
  });

  it("inserts tokens as text: an <img> token creates no element", () => {
    show();
    expect(ui.el.querySelector("img")).toBeNull();
    expect(tokens()[2].children.length).toBe(0);
    expect(tokens()[2].textContent).toBe(XSS);
  });

  it("colours zero with the background, signs with distinct hues, and shows the symmetric scale", () => {
    show();
    const [, neg, zero, , pos] = tokens();
    expect(zero.style.backgroundColor).toBe("rgb(255, 255, 255)");
    const rgb = (s: HTMLElement) => s.style.backgroundColor.match(/\d+/g)!.map(Number);
    expect(rgb(pos)[0]).toBeGreaterThan(rgb(pos)[2]); // orange
    expect(rgb(neg)[2]).toBeGreaterThan(rgb(neg)[0]); // purple
    expect(q(".nw-legend-min").textContent).toBe("\u22122");
    expect(q(".nw-legend-zero").textContent).toBe("0");
    expect(q(".nw-legend-max").textContent).toBe("2");
    expect(tokens()[4].classList.contains("nw-cont")).toBe(true); // "bel" continues "un"
    expect(tokens()[3].classList.contains("nw-cont")).toBe(false);
    const word = tokens()[3].parentElement!; // a word's subword tokens never wrap apart
    expect(word.classList.contains("nw-word")).toBe(true);
    expect([...word.children].map((c) => c.textContent)).toEqual(["un", "bel", "ievable"]);
    expect(tokens()[0].parentElement!.classList.contains("nw-sentence")).toBe(true);
  });

  it("updates colours and data-value in place when values change (no rebuild)", async () => {
    show();
    const before = tokens();
    const oldColour = before[0].style.backgroundColor;
    ui.model.update({ values: encodeFloat32(new Float32Array([3, 0, 0, 0, 0, -1])), label: "layer.1.resid:6" });
    await flush();
    const after = tokens();
    expect(after).toHaveLength(6);
    after.forEach((s, i) => expect(s).toBe(before[i]));
    expect(after[0].dataset.value).toBe("3");
    expect(after[0].style.backgroundColor).not.toBe(oldColour);
    expect(after[1].style.backgroundColor).toBe("rgb(255, 255, 255)");
    expect(q(".nw-status").textContent).toBe("layer.1.resid:6");
    expect(q(".nw-legend-max").textContent).toBe("3");
  });

  it("rebuilds the spans when the tokens change (word view)", async () => {
    show();
    ui.model.update({
      tokens: [["The", "movie", "x"], ["unbelievable"]],
      word_ids: [],
      values: encodeFloat32(new Float32Array([1, 2, 3, 4])),
      granularity: "word",
    });
    await flush();
    expect(tokens().map((s) => s.textContent)).toEqual(["The", "movie", "x", "unbelievable"]);
    expect(tokens()[3].dataset.value).toBe("4");
  });

  it("commits a neuron index with set + save_changes", () => {
    show();
    const input = q<HTMLInputElement>("input.nw-neuron");
    expect(input.type).toBe("number");
    expect(input.value).toBe("5");
    expect(input.max).toBe("7");
    input.value = "6";
    input.dispatchEvent(new Event("change"));
    expect(ui.model.sets).toEqual([["neuron", "layer.1.resid:6"]]);
    expect(ui.model.saves).toBe(1);
  });

  it("lists the sites and commits a site change, keeping the index when it fits", () => {
    show();
    const select = q<HTMLSelectElement>("select.nw-site");
    expect([...select.options].map((o) => o.value)).toEqual(["embed.resid", "layer.1.mlp", "layer.1.resid"]);
    expect(select.value).toBe("layer.1.resid");
    select.value = "layer.1.mlp";
    select.dispatchEvent(new Event("change"));
    expect(ui.model.sets.at(-1)).toEqual(["neuron", "layer.1.mlp:5"]);
    expect(ui.model.saves).toBe(1);
  });

  it("clamps the index to the new site's width", () => {
    show({ ...baseState([0, 0, 0, 0, 0, 0]), neuron: "layer.1.mlp:30", label: "layer.1.mlp:30" });
    const select = q<HTMLSelectElement>("select.nw-site");
    select.value = "embed.resid";
    select.dispatchEvent(new Event("change"));
    expect(ui.model.sets.at(-1)).toEqual(["neuron", "embed.resid:7"]);
  });

  it("commits the index on Enter too (JupyterLab may swallow the native change)", () => {
    show();
    const input = q<HTMLInputElement>("input.nw-neuron");
    input.value = "2";
    input.dispatchEvent(new KeyboardEvent("keydown", { key: "Enter", bubbles: true }));
    expect(ui.model.sets).toEqual([["neuron", "layer.1.resid:2"]]);
    input.dispatchEvent(new Event("change")); // the browser's own change afterwards sends nothing more
    expect(ui.model.saves).toBe(1);
  });

  it("refuses a non-integer index locally, without sending it", () => {
    show();
    const input = q<HTMLInputElement>("input.nw-neuron");
    input.value = "";
    input.dispatchEvent(new Event("change"));
    expect(ui.model.sets).toEqual([]);
    expect(q<HTMLElement>(".nw-error").hidden).toBe(false);
    expect(q(".nw-error").textContent).toMatch(/whole number from 0 to 7/);
  });

  it("toggles word/subword with select.nw-granularity", () => {
    show();
    const select = q<HTMLSelectElement>("select.nw-granularity");
    expect([...select.options].map((o) => o.value)).toEqual(["word", "token"]);
    select.value = "word";
    select.dispatchEvent(new Event("change"));
    expect(ui.model.sets).toEqual([["granularity", "word"]]);
    expect(ui.model.saves).toBe(1);
  });

  it("shows Python's error and hides the box when it clears", async () => {
    show();
    const box = q<HTMLElement>(".nw-error");
    expect(box.hidden).toBe(true);
    ui.model.update({ error: "neuron index 99 is out of range for layer.1.resid: valid indices are 0 … 7" });
    await flush();
    expect(box.hidden).toBe(false);
    expect(box.textContent).toMatch(/out of range/);
    ui.model.update({ error: "" });
    await flush();
    expect(box.hidden).toBe(true);
  });

  it("hides the neuron controls for plain scores and the toggle with one granularity", () => {
    show({ ...baseState([1, 2, 3, 4, 5, 6]), sites: [], widths: {}, neuron: "", granularities: [], label: "IG" });
    expect(q<HTMLElement>(".nw-controls").hidden).toBe(true);
    expect(q(".nw-status").textContent).toBe("IG");
    ui.cleanup();
    show({ ...baseState([1, 2, 3, 4, 5, 6]), granularities: ["token"] });
    expect(q<HTMLElement>(".nw-controls").hidden).toBe(false);
    expect((q<HTMLSelectElement>("select.nw-granularity").closest(".nw-field") as HTMLElement).hidden).toBe(true);
  });

  it("reports values that do not match the tokens instead of drawing them", async () => {
    show();
    ui.model.update({ values: encodeFloat32(new Float32Array([1, 2])) });
    await flush();
    expect(q<HTMLElement>(".nw-error").hidden).toBe(false);
    expect(q(".nw-error").textContent).toMatch(/2 values for 6 tokens/);
  });

  it("shows the exact value on hover and reads it out with the keyboard", () => {
    show();
    const body = q<HTMLElement>(".nw-sentences");
    tokens()[1].dispatchEvent(new MouseEvent("mouseover", { bubbles: true }));
    const tip = q<HTMLElement>(".nw-tooltip");
    expect(tip.hidden).toBe(false);
    expect(tip.textContent).toContain("-2");
    body.dispatchEvent(new FocusEvent("focus"));
    body.dispatchEvent(new KeyboardEvent("keydown", { key: "ArrowRight" }));
    expect(tokens()[1].classList.contains("nw-active")).toBe(true);
    expect(q(".nw-readout").textContent).toBe("movie: -2 (sentence 3, token 1)");
    body.dispatchEvent(new KeyboardEvent("keydown", { key: "ArrowDown" }));
    expect(q(".nw-readout").textContent).toBe("un: 1.5 (sentence 7, token 0)");
  });

  it("outlines the marked tokens, says so in the readout, and follows changes of marked and tokens", async () => {
    show({ ...baseState([0.1, -2, 0, 1.5, 2, -0.5]), marked: [[1, 2], [0, 0], [5, 0], [0, 9]] });
    const marked = () => tokens().filter((s) => s.classList.contains("nw-marked"));
    // rows are positions among the shown sentences (7 is row 1); out-of-range pairs are ignored
    expect(marked().map((s) => [s.dataset.sentence, s.dataset.index])).toEqual([
      ["3", "0"],
      ["7", "2"],
    ]);
    expect(marked().every((s) => s.getAttribute("aria-current") === "true")).toBe(true);
    expect(tokens()[1].hasAttribute("aria-current")).toBe(false);
    tokens()[5].dispatchEvent(new MouseEvent("mouseover", { bubbles: true }));
    expect(q(".nw-tooltip").textContent).toContain("marked");
    const body = q<HTMLElement>(".nw-sentences");
    body.dispatchEvent(new FocusEvent("focus"));
    expect(q(".nw-readout").textContent).toBe("The: 0.1 (sentence 3, token 0, marked)");
    body.dispatchEvent(new KeyboardEvent("keydown", { key: "ArrowRight" }));
    expect(q(".nw-readout").textContent).toBe("movie: -2 (sentence 3, token 1)");

    ui.model.update({ marked: [[0, 1]] });
    await flush();
    expect(marked().map((s) => s.textContent)).toEqual(["movie"]);
    expect(ui.el.querySelectorAll("[aria-current]")).toHaveLength(1);

    // new tokens and marks in one message: the marks apply to the new spans
    ui.model.update({
      tokens: [["good"], ["bad", "film"]],
      sentences: [0, 1],
      word_ids: [],
      values: encodeFloat32(new Float32Array([1, -1, 0.5])),
      marked: [[1, 1]],
    });
    await flush();
    expect(marked().map((s) => s.textContent)).toEqual(["film"]);
    ui.model.update({ marked: [] });
    await flush();
    expect(marked()).toHaveLength(0);
  });

  it("cleanup removes every model and DOM listener", () => {
    show();
    expect(ui.model.listeners()).toBeGreaterThan(0);
    const input = q<HTMLInputElement>("input.nw-neuron");
    ui.cleanup();
    expect(ui.model.listeners()).toBe(0);
    input.value = "3";
    input.dispatchEvent(new Event("change"));
    expect(ui.model.sets).toEqual([]);
    expect(ui.el.querySelector(".nw-root")).toBeNull();
  });
});
