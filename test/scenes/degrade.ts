/**
 * Test helper: the kinds of damage a small diffusion model does to a render, to measure the
 * checker's robustness. Not a test file itself.
 */

import type { RgbImage } from "../../src/scenes/render.js";
import { Rng } from "../../src/util/rng.js";

export type Degradation = {
  /** Gaussian blur standard deviation in pixels. */
  blurSigma: number;
  /** Additive Gaussian noise standard deviation, in 0..255 units. */
  noiseSigma: number;
  /** Per-channel offset drawn uniformly from [-colorShift, colorShift] once per image (a colour cast). */
  colorShift: number;
};

/** `img` with a colour cast, then a Gaussian blur (edges clamped), then noise; deterministic from `seed`. */
export function degrade(img: RgbImage, seed: number, d: Degradation): RgbImage {
  const { width, height } = img;
  const rng = new Rng(seed);
  const offsets = [0, 1, 2].map(() => rng.uniform(-d.colorShift, d.colorShift));
  const radius = Math.ceil(3 * d.blurSigma);
  const taps: number[] = [];
  for (let i = -radius; i <= radius; i++) taps.push(d.blurSigma > 0 ? Math.exp(-(i * i) / (2 * d.blurSigma ** 2)) : 1);
  const total = taps.reduce((a, b) => a + b, 0);
  const kernel = taps.map((t) => t / total);
  const clamp = (v: number, n: number) => (v < 0 ? 0 : v >= n ? n - 1 : v);

  const shifted = Float64Array.from(img.data, (v, i) => v + offsets[i % 3]!);
  const horizontal = new Float64Array(shifted.length);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      for (let c = 0; c < 3; c++) {
        let sum = 0;
        for (let i = -radius; i <= radius; i++)
          sum += kernel[i + radius]! * shifted[(y * width + clamp(x + i, width)) * 3 + c]!;
        horizontal[(y * width + x) * 3 + c] = sum;
      }
    }
  }
  const data = new Uint8Array(shifted.length);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      for (let c = 0; c < 3; c++) {
        let sum = 0;
        for (let i = -radius; i <= radius; i++)
          sum += kernel[i + radius]! * horizontal[(clamp(y + i, height) * width + x) * 3 + c]!;
        const noisy = Math.round(sum + d.noiseSigma * rng.gaussian());
        data[(y * width + x) * 3 + c] = noisy < 0 ? 0 : noisy > 255 ? 255 : noisy;
      }
    }
  }
  return { width, height, data };
}
