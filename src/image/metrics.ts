/**
 * Image-quality metrics on 8-bit RGB images, computed in float64 on the [0, 1] scale (byte / 255).
 */
import { checkRgbImage, checkSameSize, type RgbImage } from "./rgb_image.js";

/** A per-pixel selection: `data[y * width + x]` is 1 (selected) or 0. */
export interface PixelMask {
  width: number;
  height: number;
  data: Uint8Array;
}

function checkPair(a: RgbImage, b: RgbImage, what: string): void {
  checkRgbImage(a, `${what} image a`);
  checkRgbImage(b, `${what} image b`);
  checkSameSize(a, b, what);
}

function squaredErrorSum(a: RgbImage, b: RgbImage, mask?: PixelMask): { sum: number; count: number } {
  let sum = 0;
  let pixels = 0;
  const plane = a.width * a.height;
  for (let i = 0; i < plane; i++) {
    if (mask !== undefined && mask.data[i] === 0) continue;
    pixels++;
    for (let c = 0; c < 3; c++) {
      const d = (a.data[i * 3 + c]! - b.data[i * 3 + c]!) / 255;
      sum += d * d;
    }
  }
  return { sum, count: pixels * 3 };
}

/** Mean squared error over all pixels and channels, on the [0, 1] scale. */
export function mse(a: RgbImage, b: RgbImage): number {
  checkPair(a, b, "mse");
  const { sum, count } = squaredErrorSum(a, b);
  return sum / count;
}

function psnrOf(meanSquaredError: number): number {
  // Peak 1.0; identical images give 10·log10(1/0) = Infinity, as skimage's peak_signal_noise_ratio.
  return 10 * Math.log10(1 / meanSquaredError);
}

/** Peak signal-to-noise ratio in dB with peak 1.0 on [0, 1] images; identical images → Infinity. */
export function psnr(a: RgbImage, b: RgbImage): number {
  return psnrOf(mse(a, b));
}

/**
 * PSNR over the pixels where `mask` is 1 (all three channels of each), e.g. the background outside
 * an edited object, to measure how well an edit preserves what it should not touch.
 */
export function maskedPsnr(a: RgbImage, b: RgbImage, mask: PixelMask): number {
  checkPair(a, b, "maskedPsnr");
  const { width, height, data } = mask;
  if (width !== a.width || height !== a.height) {
    throw new Error(`maskedPsnr: mask is ${width}×${height}, images are ${a.width}×${a.height}`);
  }
  if (!(data instanceof Uint8Array) || data.length !== width * height) {
    throw new Error(`maskedPsnr: mask data must be a Uint8Array of ${width * height} values (one per pixel)`);
  }
  const invalid = data.findIndex((v) => v !== 0 && v !== 1);
  if (invalid >= 0) {
    throw new Error(`maskedPsnr: mask values must be 0 or 1, got ${data[invalid]} at pixel index ${invalid}`);
  }
  const { sum, count } = squaredErrorSum(a, b, mask);
  if (count === 0) throw new Error("maskedPsnr: the mask selects no pixel (all values are 0)");
  return psnrOf(sum / count);
}

const SSIM_SIGMA = 1.5;
/** scipy.ndimage's radius int(truncate·σ + 0.5) with skimage's truncate = 3.5: 5, an 11-tap window. */
const SSIM_RADIUS = 5;
const SSIM_WINDOW = 2 * SSIM_RADIUS + 1;
const SSIM_K1 = 0.01;
const SSIM_K2 = 0.03;

/** Normalised samples of exp(−x²/2σ²) at x = −5…5, as scipy's `_gaussian_kernel1d`. */
function gaussianTaps(): Float64Array {
  const taps = new Float64Array(SSIM_WINDOW);
  let total = 0;
  for (let i = 0; i < SSIM_WINDOW; i++) {
    const x = i - SSIM_RADIUS;
    taps[i] = Math.exp((-0.5 * x * x) / (SSIM_SIGMA * SSIM_SIGMA));
    total += taps[i]!;
  }
  for (let i = 0; i < SSIM_WINDOW; i++) taps[i] = taps[i]! / total;
  return taps;
}

/** Gaussian-weighted mean of `map` (width×height) at every position where the window fits. */
function filterValid(map: Float64Array, width: number, height: number, taps: Float64Array): Float64Array {
  const outWidth = width - SSIM_WINDOW + 1;
  const outHeight = height - SSIM_WINDOW + 1;
  const rows = new Float64Array(outWidth * height);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < outWidth; x++) {
      let acc = 0;
      for (let k = 0; k < SSIM_WINDOW; k++) acc += taps[k]! * map[y * width + x + k]!;
      rows[y * outWidth + x] = acc;
    }
  }
  const out = new Float64Array(outWidth * outHeight);
  for (let y = 0; y < outHeight; y++) {
    for (let x = 0; x < outWidth; x++) {
      let acc = 0;
      for (let k = 0; k < SSIM_WINDOW; k++) acc += taps[k]! * rows[(y + k) * outWidth + x]!;
      out[y * outWidth + x] = acc;
    }
  }
  return out;
}

/**
 * Structural similarity (Wang, Bovik, Sheikh & Simoncelli 2004, eq. 13) with an 11×11 Gaussian
 * window (σ = 1.5), K1 = 0.01, K2 = 0.03 and L = 1 on [0, 1] images, computed per channel and
 * averaged over R, G, B.
 *
 * Meant to equal scikit-image's `structural_similarity(a / 255, b / 255, gaussian_weights=True,
 * sigma=1.5, use_sample_covariance=False, data_range=1, channel_axis=-1)`: local statistics are
 * population (co)variances, and the SSIM map is averaged over the valid region only — the pixels
 * at least 5 from every border, where the window lies wholly inside the image (skimage filters with
 * mode="reflect" and then crops those 5-pixel borders away, which leaves exactly this region).
 * Both sides must be at least 11 pixels, as in skimage.
 */
export function ssim(a: RgbImage, b: RgbImage): number {
  checkPair(a, b, "ssim");
  const { width, height } = a;
  if (width < SSIM_WINDOW || height < SSIM_WINDOW) {
    throw new Error(
      `ssim: images must be at least ${SSIM_WINDOW}×${SSIM_WINDOW} (the window size), got ${width}×${height}`,
    );
  }
  const taps = gaussianTaps();
  const c1 = (SSIM_K1 * 1) ** 2;
  const c2 = (SSIM_K2 * 1) ** 2;
  const plane = width * height;
  const x = new Float64Array(plane);
  const y = new Float64Array(plane);
  const xx = new Float64Array(plane);
  const yy = new Float64Array(plane);
  const xy = new Float64Array(plane);
  let channelSum = 0;
  for (let c = 0; c < 3; c++) {
    for (let i = 0; i < plane; i++) {
      const u = a.data[i * 3 + c]! / 255;
      const v = b.data[i * 3 + c]! / 255;
      x[i] = u;
      y[i] = v;
      xx[i] = u * u;
      yy[i] = v * v;
      xy[i] = u * v;
    }
    const meanX = filterValid(x, width, height, taps);
    const meanY = filterValid(y, width, height, taps);
    const meanXX = filterValid(xx, width, height, taps);
    const meanYY = filterValid(yy, width, height, taps);
    const meanXY = filterValid(xy, width, height, taps);
    let mapSum = 0;
    for (let i = 0; i < meanX.length; i++) {
      const mx = meanX[i]!;
      const my = meanY[i]!;
      const varianceX = meanXX[i]! - mx * mx;
      const varianceY = meanYY[i]! - my * my;
      const covariance = meanXY[i]! - mx * my;
      mapSum +=
        ((2 * mx * my + c1) * (2 * covariance + c2)) / ((mx * mx + my * my + c1) * (varianceX + varianceY + c2));
    }
    channelSum += mapSum / meanX.length;
  }
  return channelSum / 3;
}
