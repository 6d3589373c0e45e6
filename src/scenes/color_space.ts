/**
 * sRGB to CIELAB, so that colour distances roughly follow perceived differences (CIE 1976 ΔE*ab).
 * Formulas: IEC 61966-2-1 (sRGB transfer curve and primaries, D65 white) and CIE 15:2004 (L*a*b*).
 */

export type Lab = readonly [l: number, a: number, b: number];

/** sRGB byte -> linear light, tabulated because every checked pixel needs three of them. */
const SRGB_TO_LINEAR = new Float64Array(256);
for (let v = 0; v < 256; v++) {
  const c = v / 255;
  SRGB_TO_LINEAR[v] = c <= 0.04045 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
}

// D65 reference white in XYZ (Y = 1).
const WHITE_X = 0.95047;
const WHITE_Z = 1.08883;

function labCompand(t: number): number {
  // (6/29)^3 and the linear segment's slope 1/(3 (6/29)^2), from CIE 15.
  return t > 0.008856451679035631 ? Math.cbrt(t) : t * 7.787037037037037 + 4 / 29;
}

/** CIELAB of an sRGB colour given as bytes 0..255 (values outside are clamped). */
export function rgbToLab(r: number, g: number, b: number): Lab {
  const rl = SRGB_TO_LINEAR[clampByte(r)]!;
  const gl = SRGB_TO_LINEAR[clampByte(g)]!;
  const bl = SRGB_TO_LINEAR[clampByte(b)]!;
  const x = 0.4124564 * rl + 0.3575761 * gl + 0.1804375 * bl;
  const y = 0.2126729 * rl + 0.7151522 * gl + 0.072175 * bl;
  const z = 0.0193339 * rl + 0.119192 * gl + 0.9503041 * bl;
  const fx = labCompand(x / WHITE_X);
  const fy = labCompand(y);
  const fz = labCompand(z / WHITE_Z);
  return [116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)];
}

/** CIE 1976 colour difference ΔE*ab. */
export function deltaE(p: Lab, q: Lab): number {
  return Math.sqrt((p[0] - q[0]) ** 2 + (p[1] - q[1]) ** 2 + (p[2] - q[2]) ** 2);
}

function clampByte(v: number): number {
  return v <= 0 ? 0 : v >= 255 ? 255 : Math.round(v);
}
