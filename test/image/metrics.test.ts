import { describe, expect, it } from "vitest";
import { maskedPsnr, mse, type PixelMask, psnr, ssim } from "../../src/image/metrics.js";
import type { RgbImage } from "../../src/image/rgb_image.js";

function filled(width: number, height: number, rgb: [number, number, number]): RgbImage {
  const data = new Uint8Array(width * height * 3);
  for (let i = 0; i < width * height; i++) data.set(rgb, i * 3);
  return { width, height, data };
}

/** Uniform random bytes from a seeded mulberry32 generator (32-bit integer arithmetic via Math.imul). */
function randomImage(width: number, height: number, seed: number): RgbImage {
  let state = seed >>> 0;
  const data = new Uint8Array(width * height * 3).map(() => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = Math.imul(state ^ (state >>> 15), state | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) & 0xff;
  });
  return { width, height, data };
}

/** `img` plus noise of at most ±amplitude levels, clipped to [0, 255]. */
function perturbed(img: RgbImage, amplitude: number, seed: number): RgbImage {
  const noise = randomImage(img.width, img.height, seed).data;
  const data = img.data.map((v, i) => Math.min(255, Math.max(0, v + (noise[i]! % (2 * amplitude + 1)) - amplitude)));
  return { width: img.width, height: img.height, data };
}

describe("mse and psnr", () => {
  it("uniform error e gives mse e² and psnr 10·log10(1 / e²)", () => {
    const a = filled(5, 4, [100, 20, 200]);
    const b = filled(5, 4, [110, 30, 190]);
    const e = 10 / 255;
    expect(mse(a, b)).toBeCloseTo(e * e, 15);
    expect(psnr(a, b)).toBeCloseTo(10 * Math.log10(1 / (e * e)), 10);
    expect(psnr(a, b)).toBeCloseTo(28.1308, 4); // 20·log10(25.5)
  });

  it("error on half the values halves the mse", () => {
    const a = filled(4, 1, [0, 0, 0]);
    const b: RgbImage = { width: 4, height: 1, data: new Uint8Array([51, 51, 51, 0, 0, 0, 51, 51, 51, 0, 0, 0]) };
    // e = 51/255 = 0.2 on 6 of 12 values: mse = 0.04 / 2 = 0.02, psnr = 10·log10(50) = 16.9897.
    expect(mse(a, b)).toBeCloseTo(0.02, 15);
    expect(psnr(a, b)).toBeCloseTo(10 * Math.log10(50), 10);
  });

  it("identical images: mse 0, psnr Infinity", () => {
    const a = randomImage(6, 3, 7);
    expect(mse(a, { ...a, data: a.data.slice() })).toBe(0);
    expect(psnr(a, a)).toBe(Number.POSITIVE_INFINITY);
  });

  it("size mismatch names both sizes", () => {
    expect(() => psnr(filled(4, 3, [0, 0, 0]), filled(3, 4, [0, 0, 0]))).toThrow(
      "mse: image sizes differ: a is 4×3, b is 3×4",
    );
  });
});

describe("maskedPsnr", () => {
  // 4×2 image; the left 2×2 block has error 5 levels, the right block error 40.
  const a = filled(4, 2, [120, 120, 120]);
  const b: RgbImage = {
    width: 4,
    height: 2,
    data: new Uint8Array(Array.from({ length: 8 }, (_, i) => (i % 4 < 2 ? [125, 115, 125] : [80, 160, 80])).flat()),
  };
  const left: PixelMask = { width: 4, height: 2, data: new Uint8Array([1, 1, 0, 0, 1, 1, 0, 0]) };
  const right: PixelMask = { width: 4, height: 2, data: left.data.map((v) => 1 - v) };

  it("measures only the selected pixels", () => {
    expect(maskedPsnr(a, b, left)).toBeCloseTo(10 * Math.log10(1 / (5 / 255) ** 2), 10);
    expect(maskedPsnr(a, b, right)).toBeCloseTo(10 * Math.log10(1 / (40 / 255) ** 2), 10);
    const all: PixelMask = { width: 4, height: 2, data: new Uint8Array(8).fill(1) };
    expect(maskedPsnr(a, b, all)).toBeCloseTo(psnr(a, b), 12);
  });

  it("is Infinity where the selected pixels agree", () => {
    const same = { ...b, data: b.data.slice() };
    same.data.set([120, 120, 120], 0);
    const first: PixelMask = { width: 4, height: 2, data: new Uint8Array([1, 0, 0, 0, 0, 0, 0, 0]) };
    expect(maskedPsnr(a, same, first)).toBe(Number.POSITIVE_INFINITY);
  });

  it("rejects empty, non-binary or mis-sized masks", () => {
    expect(() => maskedPsnr(a, b, { width: 4, height: 2, data: new Uint8Array(8) })).toThrow(/selects no pixel/);
    const two = left.data.slice();
    two[3] = 2;
    expect(() => maskedPsnr(a, b, { width: 4, height: 2, data: two })).toThrow(/0 or 1, got 2 at pixel index 3/);
    expect(() => maskedPsnr(a, b, { width: 2, height: 4, data: left.data })).toThrow(
      "maskedPsnr: mask is 2×4, images are 4×2",
    );
  });
});

/**
 * SSIM written straight from Wang et al. (2004), eq. 13, in float64, as a reference with a different
 * code path from the product: for every window position with the 11×11 window wholly inside, 2-D
 * Gaussian weights normalised over the window, means, then two-pass (co)variances Σw(x − μx)(y − μy)
 * (population statistics, skimage's use_sample_covariance=False), the SSIM of the window; averaged over
 * positions, then over channels.
 */
function referenceSsim(a: RgbImage, b: RgbImage): number {
  const radius = 5;
  const sigma = 1.5;
  const c1 = (0.01 * 1) ** 2;
  const c2 = (0.03 * 1) ** 2;
  const weights: number[][] = [];
  let total = 0;
  for (let dy = -radius; dy <= radius; dy++) {
    const row: number[] = [];
    for (let dx = -radius; dx <= radius; dx++) {
      const w = Math.exp(-(dx * dx + dy * dy) / (2 * sigma * sigma));
      row.push(w);
      total += w;
    }
    weights.push(row);
  }
  const at = (img: RgbImage, x: number, y: number, c: number) => img.data[(y * img.width + x) * 3 + c]! / 255;
  let channels = 0;
  for (let c = 0; c < 3; c++) {
    let sum = 0;
    let count = 0;
    for (let cy = radius; cy < a.height - radius; cy++) {
      for (let cx = radius; cx < a.width - radius; cx++) {
        let mx = 0;
        let my = 0;
        for (let dy = -radius; dy <= radius; dy++) {
          for (let dx = -radius; dx <= radius; dx++) {
            const w = weights[dy + radius]![dx + radius]! / total;
            mx += w * at(a, cx + dx, cy + dy, c);
            my += w * at(b, cx + dx, cy + dy, c);
          }
        }
        let vx = 0;
        let vy = 0;
        let cov = 0;
        for (let dy = -radius; dy <= radius; dy++) {
          for (let dx = -radius; dx <= radius; dx++) {
            const w = weights[dy + radius]![dx + radius]! / total;
            const ex = at(a, cx + dx, cy + dy, c) - mx;
            const ey = at(b, cx + dx, cy + dy, c) - my;
            vx += w * ex * ex;
            vy += w * ey * ey;
            cov += w * ex * ey;
          }
        }
        sum += ((2 * mx * my + c1) * (2 * cov + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2));
        count++;
      }
    }
    channels += sum / count;
  }
  return channels / 3;
}

describe("ssim", () => {
  it("identical images → 1", () => {
    const a = randomImage(23, 17, 3);
    expect(ssim(a, { ...a, data: a.data.slice() })).toBe(1);
  });

  it("constant images reduce to the luminance term (2·μa·μb + C1) / (μa² + μb² + C1)", () => {
    // Variances and covariance vanish, so the contrast-structure factor is C2 / C2 = 1.
    const c1 = 0.01 ** 2;
    const luminance = (p: number, q: number) => (2 * p * q + c1) / (p * p + q * q + c1);
    const a = filled(12, 11, [100, 0, 255]);
    const b = filled(12, 11, [150, 10, 255]);
    const expected = (luminance(100 / 255, 150 / 255) + luminance(0, 10 / 255) + 1) / 3;
    expect(ssim(a, b)).toBeCloseTo(expected, 12);
    // For orientation: the black-vs-10 channel alone is 1e-4 / (0.001538 + 1e-4) = 0.0610.
    expect(luminance(0, 10 / 255)).toBeCloseTo(0.061, 3);
  });

  it("averages the channels: one identical channel contributes exactly 1", () => {
    const a = randomImage(14, 14, 11);
    const b = perturbed(a, 30, 12);
    for (let i = 0; i < a.width * a.height; i++) b.data[i * 3] = a.data[i * 3]!;
    const perChannel = [1, 2].map((c) => {
      const only = (img: RgbImage) => ({ ...img, data: img.data.map((_, i) => img.data[i - (i % 3) + c]!) });
      return ssim(only(a), only(b));
    });
    expect(ssim(a, b)).toBeCloseTo((1 + perChannel[0]! + perChannel[1]!) / 3, 12);
  });

  it.each([
    [11, 11, 20, 1],
    [16, 13, 8, 2],
    [24, 19, 40, 3],
    [30, 12, 120, 4],
  ] as const)("matches the direct float64 reference: %i×%i, noise ±%i", (width, height, amplitude, seed) => {
    const a = randomImage(width, height, seed);
    const b = perturbed(a, amplitude, seed + 100);
    const expected = referenceSsim(a, b);
    expect(expected).toBeGreaterThan(-1);
    expect(expected).toBeLessThan(1);
    expect(ssim(a, b)).toBeCloseTo(expected, 12);
    expect(ssim(b, a)).toBeCloseTo(expected, 12);
  });

  it("a smooth image with mild noise scores high, heavy noise low", () => {
    const smooth: RgbImage = { width: 32, height: 32, data: new Uint8Array(32 * 32 * 3) };
    for (let y = 0; y < 32; y++) {
      for (let x = 0; x < 32; x++) smooth.data.set([x * 8, y * 8, (x + y) * 4], (y * 32 + x) * 3);
    }
    const mild = ssim(smooth, perturbed(smooth, 3, 5));
    const heavy = ssim(smooth, perturbed(smooth, 100, 6));
    expect(mild).toBeCloseTo(referenceSsim(smooth, perturbed(smooth, 3, 5)), 12);
    expect(mild).toBeGreaterThan(0.9);
    expect(heavy).toBeLessThan(0.5);
  });

  it("needs 11×11 at least and equal sizes", () => {
    expect(() => ssim(filled(10, 20, [0, 0, 0]), filled(10, 20, [0, 0, 0]))).toThrow(
      "ssim: images must be at least 11×11 (the window size), got 10×20",
    );
    expect(() => ssim(filled(11, 12, [0, 0, 0]), filled(12, 11, [0, 0, 0]))).toThrow(
      "ssim: image sizes differ: a is 11×12, b is 12×11",
    );
  });
});
