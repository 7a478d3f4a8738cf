/** Tiny DOM helpers shared by the widgets (text always goes in through textContent). */

let counter = 0;

/** A page-unique id (for label/aria references between elements of one view). */
export function uid(prefix = "nw"): string {
  counter += 1;
  return `${prefix}-${counter}-${Math.random().toString(36).slice(2, 7)}`;
}

/** Create an element with classes, attributes and optional text (set as textContent, never HTML). */
export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  className = "",
  attrs: Record<string, string> = {},
  text?: string,
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  if (className) el.className = className;
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  if (text !== undefined) el.textContent = text;
  return el;
}

/** Show `tooltip` (absolutely positioned inside `root`) just below `anchor`, kept within `root`'s width. */
export function placeTooltip(tooltip: HTMLElement, anchor: Element, root: HTMLElement): void {
  tooltip.hidden = false;
  const r = anchor.getBoundingClientRect();
  const base = root.getBoundingClientRect();
  const left = Math.max(0, Math.min(r.left - base.left, base.width - tooltip.offsetWidth));
  tooltip.style.left = `${left}px`;
  tooltip.style.top = `${r.bottom - base.top + 4}px`;
}
