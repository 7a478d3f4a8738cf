import { describe, expect, it } from "vitest";
import { formatFloat32, formatShort } from "./a11y";
import {
  type Palette,
  type RGB,
  contrast,
  parseColour,
  symmetricScale,
  textColour,
  valueColour,
} from "./colour";

const light: Palette = { bg: [255, 255, 255], fg: [31, 31, 31], neg: [94, 60, 153], pos: [230, 97, 1] };
const dark: Palette = { bg: [17, 17, 17], fg: [230, 230, 230], neg: [160, 138, 224], pos: [245, 146, 62] };
const dist = (a: RGB, b: RGB) => Math.hypot(a[0] - b[0], a[1] - b[1], a[2] - b[2]);

describe("diverging colour scale", () => {
  it("maps zero to the background colour in light and dark themes", () => {
    expect(valueColour(0, 3, light)).toEqual(light.bg);
    expect(valueColour(0, 3, dark)).toEqual(dark.bg);
    expect(valueColour(-0, 3, dark)).toEqual(dark.bg);
  });

  it("gives positive and negative values distinct hues (orange vs purple)", () => {
    const pos = valueColour(2, 2, light);
    const neg = valueColour(-2, 2, light);
    expect(pos).toEqual(light.pos);
    expect(neg).toEqual(light.neg);
    expect(pos[0]).toBeGreaterThan(pos[2]); // orange: red over blue
    expect(neg[2]).toBeGreaterThan(neg[0]); // purple: blue over red
    const halfPos = valueColour(1, 2, light);
    const halfNeg = valueColour(-1, 2, light);
    expect(halfPos[0]).toBeGreaterThan(halfPos[2]);
    expect(halfNeg[2]).toBeGreaterThan(halfNeg[0]);
  });

  it("is symmetric: the scale is max |value| and equal magnitudes are equally far from the background", () => {
    const values = new Float32Array([0.5, -4, 2, 1]);
    const scale = symmetricScale(values);
    expect(scale).toBe(4);
    expect(valueColour(-4, scale, light)).toEqual(light.neg);
    expect(valueColour(4, scale, light)).toEqual(light.pos);
    const tPos = dist(valueColour(2, scale, light), light.bg) / dist(light.pos, light.bg);
    const tNeg = dist(valueColour(-2, scale, light), light.bg) / dist(light.neg, light.bg);
    expect(tPos).toBeCloseTo(0.5, 6);
    expect(tNeg).toBeCloseTo(0.5, 6);
  });

  it("ignores non-finite values in the scale and survives an all-zero input", () => {
    expect(symmetricScale([NaN, -Infinity, 1.5])).toBe(1.5);
    expect(symmetricScale([0, 0])).toBe(0);
    expect(valueColour(0, 0, light)).toEqual(light.bg);
  });

  it("picks a text colour with enough contrast on every tile", () => {
    for (const p of [light, dark]) {
      for (let v = -1; v <= 1; v += 0.01) {
        const tile = valueColour(v, 1, p);
        expect(contrast(tile, textColour(tile, p))).toBeGreaterThan(4.5);
      }
    }
  });

  it("parses the colour formats browsers report", () => {
    expect(parseColour("#fff")).toEqual([255, 255, 255]);
    expect(parseColour("#5e3c99")).toEqual([94, 60, 153]);
    expect(parseColour("rgb(17, 17, 17)")).toEqual([17, 17, 17]);
    expect(parseColour("rgba(1, 2, 3, 0.5)")).toEqual([1, 2, 3]);
    expect(parseColour("rgba(0, 0, 0, 0)")).toBeNull();
    expect(parseColour("var(--x)")).toBeNull();
  });
});

describe("number formatting", () => {
  it("shows the shortest text that reads back as the same float32", () => {
    expect(formatFloat32(Math.fround(0.1))).toBe("0.1");
    expect(formatFloat32(Math.fround(-1.2345678))).toBe("-1.2345678");
    expect(Math.fround(Number(formatFloat32(Math.fround(3.14159e-5))))).toBe(Math.fround(3.14159e-5));
    expect(formatShort(-2.8712)).toBe("\u22122.87");
    expect(formatShort(0)).toBe("0");
  });
});
