/** The colour bar shared by the widgets that colour values on the symmetric diverging scale. */
import { formatShort } from "./a11y";
import { type Palette, toCss } from "./colour";
import { h } from "./dom";

export interface Legend {
  /** `.nw-legend` (role="img"): the bar and its min / 0 / max ticks, as text. */
  el: HTMLDivElement;
  /** Show the scale ±`scale` in the `palette`'s colours. */
  update(scale: number, palette: Palette): void;
}

export function createLegend(): Legend {
  const el = h("div", "nw-legend", { role: "img" });
  const bar = h("div", "nw-legend-bar");
  const ticks = h("div", "nw-legend-ticks");
  const [minText, zeroText, maxText] = ["nw-legend-min", "nw-legend-zero", "nw-legend-max"].map((c) =>
    h("span", c),
  );
  zeroText.textContent = "0";
  ticks.append(minText, zeroText, maxText);
  el.append(bar, ticks);
  return {
    el,
    update(scale: number, palette: Palette): void {
      bar.style.background = `linear-gradient(to right, ${toCss(palette.neg)}, ${toCss(palette.bg)}, ${toCss(palette.pos)})`;
      minText.textContent = formatShort(-scale);
      maxText.textContent = formatShort(scale);
      el.setAttribute(
        "aria-label",
        `Colour scale: ${formatShort(-scale)} purple, 0 background colour, ${formatShort(scale)} orange`,
      );
    },
  };
}
