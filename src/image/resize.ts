/**
 * Resizing as Pillow's `Image.resize(size)` does for RGB images (default filter BICUBIC since
 * Pillow 7), so that `fitToSquare` reproduces the null-text notebook's `load_512`
 * (google/prompt-to-prompt, null_text_w_ptp.ipynb): crop the centred square, then
 * `Image.fromarray(image).resize((512, 512))`.
 *
 * Algorithm of Pillow's libImaging/Resample.c, re-derived here:
 * - a separable convolution, horizontal pass first, the intermediate rounded and clipped to 8 bits;
 * - Keys' cubic kernel with a = -0.5 and support 2, stretched by the scale factor when shrinking
 *   (so a downscale averages every source pixel under the output pixel: antialiased, not sampled);
 * - output pixel x is centred on source coordinate (x + 0.5) * scale, its taps run over
 *   [trunc(center - support + 0.5), trunc(center + support + 0.5)) clipped to the image, and the
 *   weights are normalised to sum 1 over the taps that remain (so edges are not darkened);
 * - weights are stored in fixed point with 22 fraction bits, rounded half away from zero, and each
 *   output is (Σ pixel·weight + 2^21) >> 22 clipped to [0, 255].
 * Not compared bit for bit with Pillow here (Pillow is not installed on the build machine); the tests
 * check hand-derived values of this algorithm.
 */
import { checkRgbImage, type RgbImage } from "./rgb_image.js";

const PRECISION_BITS = 22;
const ONE = 2 ** PRECISION_BITS;
const HALF = 2 ** (PRECISION_BITS - 1);

const BICUBIC_SUPPORT = 2;

/** Keys (1981) cubic convolution kernel with a = -0.5, as Pillow's `bicubic_filter`. */
function bicubic(x: number): number {
  const a = -0.5;
  const t = Math.abs(x);
  if (t < 1) return ((a + 2) * t - (a + 3)) * t * t + 1;
  if (t < 2) return (((t - 5) * t + 8) * t - 4) * a;
  return 0;
}

/** For each output position: first source index and integer weights of its taps. */
interface Taps {
  first: Int32Array;
  weights: Int32Array[];
}

function computeTaps(inSize: number, outSize: number): Taps {
  const scale = inSize / outSize;
  const filterScale = Math.max(scale, 1);
  const support = BICUBIC_SUPPORT * filterScale;
  const first = new Int32Array(outSize);
  const weights: Int32Array[] = [];
  for (let out = 0; out < outSize; out++) {
    const center = (out + 0.5) * scale;
    const start = Math.max(0, Math.trunc(center - support + 0.5));
    const end = Math.min(inSize, Math.trunc(center + support + 0.5));
    const real: number[] = [];
    let total = 0;
    for (let x = start; x < end; x++) {
      const w = bicubic((x - center + 0.5) / filterScale);
      real.push(w);
      total += w;
    }
    first[out] = start;
    weights.push(
      Int32Array.from(real, (w) => {
        const normalised = total !== 0 ? w / total : w;
        return normalised < 0 ? Math.trunc(normalised * ONE - 0.5) : Math.trunc(normalised * ONE + 0.5);
      }),
    );
  }
  return { first, weights };
}

function clip8(accumulator: number): number {
  const value = Math.floor(accumulator / ONE);
  return Math.min(255, Math.max(0, value));
}

function resizeHorizontal(src: RgbImage, width: number): RgbImage {
  const { first, weights } = computeTaps(src.width, width);
  const out = new Uint8Array(width * src.height * 3);
  for (let y = 0; y < src.height; y++) {
    const rowIn = y * src.width * 3;
    const rowOut = y * width * 3;
    for (let x = 0; x < width; x++) {
      const taps = weights[x]!;
      const start = rowIn + first[x]! * 3;
      for (let c = 0; c < 3; c++) {
        let acc = HALF;
        for (let k = 0; k < taps.length; k++) acc += src.data[start + k * 3 + c]! * taps[k]!;
        out[rowOut + x * 3 + c] = clip8(acc);
      }
    }
  }
  return { width, height: src.height, data: out };
}

function resizeVertical(src: RgbImage, height: number): RgbImage {
  const { first, weights } = computeTaps(src.height, height);
  const rowBytes = src.width * 3;
  const out = new Uint8Array(rowBytes * height);
  for (let y = 0; y < height; y++) {
    const taps = weights[y]!;
    const start = first[y]! * rowBytes;
    for (let i = 0; i < rowBytes; i++) {
      let acc = HALF;
      for (let k = 0; k < taps.length; k++) acc += src.data[start + k * rowBytes + i]! * taps[k]!;
      out[y * rowBytes + i] = clip8(acc);
    }
  }
  return { width: src.width, height, data: out };
}

/** Bicubic resize to `width`×`height`, matching Pillow's `Image.resize` (see the module comment). */
export function resizeBicubic(img: RgbImage, width: number, height: number): RgbImage {
  checkRgbImage(img, "resizeBicubic");
  if (!Number.isInteger(width) || width < 1 || !Number.isInteger(height) || height < 1) {
    throw new Error(`resizeBicubic: target size must be positive integers, got ${width}×${height}`);
  }
  // Pillow skips a pass whose size does not change; a same-size pass would still filter.
  const wide = width === img.width ? img : resizeHorizontal(img, width);
  const resized = height === img.height ? wide : resizeVertical(wide, height);
  return resized === img ? { width, height, data: img.data.slice() } : resized;
}

/** The `width`×`height` rectangle whose top-left corner is (`left`, `top`). */
export function crop(img: RgbImage, left: number, top: number, width: number, height: number): RgbImage {
  checkRgbImage(img, "crop");
  if (left < 0 || top < 0 || width < 1 || height < 1 || left + width > img.width || top + height > img.height) {
    throw new Error(
      `crop: rectangle ${width}×${height} at (${left}, ${top}) does not lie inside the ${img.width}×${img.height} image`,
    );
  }
  const data = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) {
    const from = ((top + y) * img.width + left) * 3;
    data.set(img.data.subarray(from, from + width * 3), y * width * 3);
  }
  return { width, height, data };
}

export type FitMode = "center-crop" | "pad" | "stretch";

/**
 * A `size`×`size` image from any image:
 * - "center-crop" (default): as the null-text notebook's `load_512` — cut the largest centred
 *   square (offset ⌊(long − short) / 2⌋, so an odd surplus leaves the extra pixel on the right or
 *   bottom), then resize it to `size` with Pillow's bicubic filter;
 * - "pad": resize so the long side is `size` (short side round(short · size / long), at least 1),
 *   then centre it on a white square (white, as readImage composites transparency on white);
 * - "stretch": resize to `size`×`size`, ignoring the aspect ratio.
 */
export function fitToSquare(img: RgbImage, size: number, mode: FitMode = "center-crop"): RgbImage {
  checkRgbImage(img, "fitToSquare");
  if (!Number.isInteger(size) || size < 1) throw new Error(`fitToSquare: size must be a positive integer, got ${size}`);
  const { width, height } = img;
  switch (mode) {
    case "center-crop": {
      const side = Math.min(width, height);
      const square = crop(img, Math.floor((width - side) / 2), Math.floor((height - side) / 2), side, side);
      return resizeBicubic(square, size, size);
    }
    case "pad": {
      const long = Math.max(width, height);
      const scaledShort = Math.max(1, Math.round((Math.min(width, height) * size) / long));
      const scaled = width >= height ? resizeBicubic(img, size, scaledShort) : resizeBicubic(img, scaledShort, size);
      const data = new Uint8Array(size * size * 3).fill(255);
      const left = Math.floor((size - scaled.width) / 2);
      const top = Math.floor((size - scaled.height) / 2);
      for (let y = 0; y < scaled.height; y++) {
        const from = y * scaled.width * 3;
        data.set(scaled.data.subarray(from, from + scaled.width * 3), ((top + y) * size + left) * 3);
      }
      return { width: size, height: size, data };
    }
    case "stretch":
      return resizeBicubic(img, size, size);
    default:
      throw new Error(`fitToSquare: mode must be "center-crop", "pad" or "stretch", got ${JSON.stringify(mode)}`);
  }
}
