/** Accessibility helpers shared by the widgets. */
import { h } from "./dom";

/** A visually hidden polite live region: screen readers announce what is written into it. */
export function liveRegion(className = ""): HTMLDivElement {
  return h("div", `nw-sr-only ${className}`.trim(), { "aria-live": "polite", "aria-atomic": "true" });
}

/** Format a float32 value exactly and briefly: the shortest decimal that reads back as the same float32. */
export function formatFloat32(v: number): string {
  if (!Number.isFinite(v)) return String(v);
  for (let p = 1; p <= 9; p++) {
    const s = v.toPrecision(p);
    if (Math.fround(Number(s)) === v) return String(Number(s));
  }
  return String(v);
}

/** Short label for scale ends: 3 significant digits, with a true minus sign. */
export function formatShort(v: number): string {
  const s = String(Number(v.toPrecision(3)));
  return s.startsWith("-") ? `\u2212${s.slice(1)}` : s;
}
