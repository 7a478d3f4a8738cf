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
