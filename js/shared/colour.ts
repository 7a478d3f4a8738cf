/**
 * The diverging colour scale shared by every widget: negative → purple, zero → the theme's background,
 * positive → orange (PuOr ends, safe for the common colour-vision deficiencies). The scale is symmetric
 * (±max |value|), so equal magnitudes get equal intensity whatever their sign.
 */

export type RGB = [number, number, number];

/** Palette ends for light and dark backgrounds (dark ones are lighter so intensity grows away from bg). */
export const PALETTES = {
  light: { neg: "#5e3c99", pos: "#e66101" },
  dark: { neg: "#a08ae0", pos: "#f5923e" },
} as const;

export interface Palette {
  bg: RGB;
  fg: RGB;
  neg: RGB;
  pos: RGB;
}

/** Parse `#rgb`, `#rrggbb`, `#rrggbbaa`, `rgb(…)` / `rgba(…)`; null for anything else or transparent. */
export function parseColour(text: string | null | undefined): RGB | null {
  if (!text) return null;
  const s = text.trim().toLowerCase();
  let m = /^#([0-9a-f]{3}|[0-9a-f]{6}|[0-9a-f]{8})$/.exec(s);
  if (m) {
    let hex = m[1];
    if (hex.length === 3) hex = [...hex].map((c) => c + c).join("");
    if (hex.length === 8 && hex.slice(6) === "00") return null;
    return [0, 2, 4].map((i) => parseInt(hex.slice(i, i + 2), 16)) as RGB;
  }
  m = /^rgba?\(\s*([\d.]+)[\s,]+([\d.]+)[\s,]+([\d.]+)(?:[\s,/]+([\d.]+%?))?\s*\)$/.exec(s);
  if (m) {
    if (m[4] !== undefined && parseFloat(m[4]) === 0) return null;
    return [m[1], m[2], m[3]].map((x) => Math.round(Number(x))) as RGB;
  }
  return null;
}

/** Linear interpolation from `a` (t = 0) to `b` (t = 1) in sRGB, like a CSS gradient. */
export function mix(a: RGB, b: RGB, t: number): RGB {
  const u = Math.min(1, Math.max(0, t));
  return [0, 1, 2].map((i) => a[i] + (b[i] - a[i]) * u) as RGB;
}

/** WCAG relative luminance in [0, 1]. */
export function luminance(c: RGB): number {
  const lin = c.map((v) => {
    const x = v / 255;
    return x <= 0.03928 ? x / 12.92 : ((x + 0.055) / 1.055) ** 2.4;
  });
  return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2];
}

/** WCAG contrast ratio between two colours (1 … 21). */
export function contrast(a: RGB, b: RGB): number {
  const [hi, lo] = [luminance(a), luminance(b)].sort((x, y) => y - x);
  return (hi + 0.05) / (lo + 0.05);
}

export function isDarkColour(c: RGB): boolean {
  return luminance(c) < 0.2;
}

export function toCss(c: RGB): string {
  return `rgb(${Math.round(c[0])}, ${Math.round(c[1])}, ${Math.round(c[2])})`;
}

/** Half-width of the symmetric scale: max |value| over the finite values (0 if none). */
export function symmetricScale(values: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < values.length; i++) {
    const a = Math.abs(values[i]);
    if (a > m && Number.isFinite(a)) m = a;
  }
  return m;
}

/** Tile colour of `value` on the scale ±`scale`: the background at 0, full `neg`/`pos` at the ends. */
export function valueColour(value: number, scale: number, p: Palette): RGB {
  if (!(scale > 0) || !Number.isFinite(value) || value === 0) return p.bg;
  const t = Math.min(1, Math.abs(value) / scale);
  return mix(p.bg, value < 0 ? p.neg : p.pos, t);
}

const BLACK: RGB = [0, 0, 0];
const WHITE: RGB = [255, 255, 255];

/**
 * Text colour for a tile: the theme's foreground or background, whichever contrasts more, if that reaches
 * WCAG AA (4.5); otherwise black or white (one of them always does).
 */
export function textColour(tile: RGB, p: Palette): RGB {
  const theme = contrast(tile, p.fg) >= contrast(tile, p.bg) ? p.fg : p.bg;
  if (contrast(tile, theme) >= 4.5) return theme;
  return contrast(tile, BLACK) >= contrast(tile, WHITE) ? BLACK : WHITE;
}
