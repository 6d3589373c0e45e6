import { describe, expect, it } from "vitest";
import { crop, fitToSquare, resizeBicubic } from "../../src/image/resize.js";
import type { RgbImage } from "../../src/image/rgb_image.js";

/** A gray image (R = G = B) from rows of levels. */
function gray(rows: number[][]): RgbImage {
  const height = rows.length;
  const width = rows[0]!.length;
  return { width, height, data: new Uint8Array(rows.flat().flatMap((v) => [v, v, v])) };
}

/** Rows of levels of a gray image, checking R = G = B. */
function levels(img: RgbImage): number[][] {
  const rows: number[][] = [];
  for (let y = 0; y < img.height; y++) {
    const row: number[] = [];
    for (let x = 0; x < img.width; x++) {
      const i = (y * img.width + x) * 3;
      expect(img.data[i + 1]).toBe(img.data[i]);
      expect(img.data[i + 2]).toBe(img.data[i]);
      row.push(img.data[i]!);
    }
    rows.push(row);
  }
  return rows;
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

// Hand derivation of the two basic cases, from Keys' cubic with a = -0.5:
// K(0.25) = 0.8671875, K(0.75) = 0.2265625, K(1.25) = -0.0703125.
// Shrinking 4 → 2 (scale 2, kernel stretched ×2): output 0 is centred at 1.0 and its taps x = 0..3
// have weights K((x + 0.5 − 1) / 2) = [0.8671875, 0.8671875, 0.2265625, −0.0703125], sum 1.890625.
// Row [0, 0, 255, 255] → 255 · 0.15625 / 1.890625 = 21.07 → 21, and by symmetry 234 (233.93).
// Growing 2 → 4 (scale 0.5): centres 0.25, 0.75, 1.25, 1.75; taps x = 0, 1 with weights K(x + 0.5 − c):
// [0.8672, −0.0703] → 255 · −0.0703 / 0.7969 < 0 → 0; [0.8672, 0.2266] → 255 · 0.2266 / 1.0938 = 52.8 → 53;
// mirrored: 202.2 → 202 and 277.5 → 255.
describe("resizeBicubic (Pillow's algorithm)", () => {
  it("shrinks a step 4 → 2 to the hand-derived [21, 234]", () => {
    expect(levels(resizeBicubic(gray([[0, 0, 255, 255]]), 2, 1))).toEqual([[21, 234]]);
  });

  it("grows a step 2 → 4 to the hand-derived [0, 53, 202, 255], clipping the overshoot", () => {
    expect(levels(resizeBicubic(gray([[0, 255]]), 4, 1))).toEqual([[0, 53, 202, 255]]);
  });

  it("works the same vertically", () => {
    expect(levels(resizeBicubic(gray([[0], [0], [255], [255]]), 1, 2))).toEqual([[21], [234]]);
  });

  it("shrinks in two passes: a 4×4 corner square → 2×2", () => {
    // Horizontal: rows 2, 3 become [21, 234]; vertical on columns [0, 0, 21, 21] and [0, 0, 234, 234]
    // with the same weights: 21 · 0.08264 = 1.74 → 2, 21 · 0.91736 = 19.3 → 19, 234 · 0.08264 = 19.3 → 19,
    // 234 · 0.91736 = 214.7 → 215.
    const corner = gray([
      [0, 0, 0, 0],
      [0, 0, 0, 0],
      [0, 0, 255, 255],
      [0, 0, 255, 255],
    ]);
    expect(levels(resizeBicubic(corner, 2, 2))).toEqual([
      [2, 19],
      [19, 215],
    ]);
  });

  it("keeps a constant image constant at any size", () => {
    const flat: RgbImage = { width: 7, height: 5, data: new Uint8Array(7 * 5 * 3).fill(173) };
    for (const [w, h] of [
      [3, 2],
      [16, 11],
      [1, 1],
      [7, 13],
    ] as const) {
      const out = resizeBicubic(flat, w, h);
      expect([out.width, out.height]).toEqual([w, h]);
      expect(out.data.every((v) => v === 173)).toBe(true);
    }
  });

  it("returns a copy, not the same buffer, when the size does not change", () => {
    const img = randomImage(3, 2, 1);
    const same = resizeBicubic(img, 3, 2);
    expect(same.data).toEqual(img.data);
    expect(same.data).not.toBe(img.data);
  });

  // An independent float64 statement of the same filter: every source pixel whose kernel value is
  // non-zero, weights normalised in floating point, each pass rounded to the nearest level. Pillow's
  // fixed-point weights may move a value sitting near a half level by one.
  function referenceResize(img: RgbImage, width: number, height: number): RgbImage {
    const kernel = (x: number) => {
      const t = Math.abs(x);
      if (t < 1) return 1.5 * t ** 3 - 2.5 * t ** 2 + 1;
      if (t < 2) return -0.5 * t ** 3 + 2.5 * t ** 2 - 4 * t + 2;
      return 0;
    };
    const resample1d = (line: number[], outSize: number): number[] => {
      const scale = line.length / outSize;
      const stretch = Math.max(1, scale);
      return Array.from({ length: outSize }, (_, o) => {
        const centre = (o + 0.5) * scale;
        let sum = 0;
        let weights = 0;
        line.forEach((v, i) => {
          const w = kernel((i + 0.5 - centre) / stretch);
          sum += w * v;
          weights += w;
        });
        return Math.min(255, Math.max(0, Math.round(sum / weights)));
      });
    };
    const at = (src: RgbImage, x: number, y: number, c: number) => src.data[(y * src.width + x) * 3 + c]!;
    const wide: RgbImage = { width, height: img.height, data: new Uint8Array(width * img.height * 3) };
    for (let y = 0; y < img.height; y++) {
      for (let c = 0; c < 3; c++) {
        const line = Array.from({ length: img.width }, (_, x) => at(img, x, y, c));
        resample1d(line, width).forEach((v, x) => {
          wide.data[(y * width + x) * 3 + c] = v;
        });
      }
    }
    const out: RgbImage = { width, height, data: new Uint8Array(width * height * 3) };
    for (let x = 0; x < width; x++) {
      for (let c = 0; c < 3; c++) {
        const line = Array.from({ length: img.height }, (_, y) => at(wide, x, y, c));
        resample1d(line, height).forEach((v, y) => {
          out.data[(y * width + x) * 3 + c] = v;
        });
      }
    }
    return out;
  }

  it.each([
    [9, 7, 4, 3],
    [5, 6, 13, 11],
    [12, 12, 5, 5],
    [3, 10, 8, 4],
    [31, 17, 7, 9],
  ] as const)("matches a float64 reference within one level: %i×%i → %i×%i", (w, h, outW, outH) => {
    const img = randomImage(w, h, w * 100 + h);
    const ours = resizeBicubic(img, outW, outH);
    const reference = referenceResize(img, outW, outH);
    let offByOne = 0;
    ours.data.forEach((v, i) => {
      const d = Math.abs(v - reference.data[i]!);
      expect(d).toBeLessThanOrEqual(1);
      if (d === 1) offByOne++;
    });
    expect(offByOne).toBeLessThan(ours.data.length * 0.05);
  });

  it("rejects a bad target size", () => {
    expect(() => resizeBicubic(gray([[1]]), 0, 2)).toThrow(/positive integers, got 0×2/);
  });
});

describe("crop", () => {
  it("cuts the rectangle and rejects one outside the image", () => {
    const img = gray([
      [1, 2, 3],
      [4, 5, 6],
    ]);
    expect(levels(crop(img, 1, 0, 2, 2))).toEqual([
      [2, 3],
      [5, 6],
    ]);
    expect(() => crop(img, 2, 0, 2, 1)).toThrow(/2×1 at \(2, 0\) does not lie inside the 3×2 image/);
  });
});

describe("fitToSquare", () => {
  it("center-crop of a wide image keeps the centred square: offset ⌊(5 − 2) / 2⌋ = 1", () => {
    const wide = gray([
      [10, 11, 12, 13, 14],
      [20, 21, 22, 23, 24],
    ]);
    expect(levels(fitToSquare(wide, 2))).toEqual([
      [11, 12],
      [21, 22],
    ]);
  });

  it("center-crop of a tall image keeps the centred rows; an even surplus splits evenly", () => {
    const tall = gray([
      [1, 2],
      [3, 4],
      [5, 6],
      [7, 8],
    ]);
    expect(levels(fitToSquare(tall, 2, "center-crop"))).toEqual([
      [3, 4],
      [5, 6],
    ]);
  });

  it("center-crop crops first, then resizes (load_512's order): the cut columns do not bleed in", () => {
    // 6×4: columns 0 and 5 (value 99) are cut away; the 4×4 square [0, 0, 255, 255] shrinks to [21, 234].
    const row = [99, 0, 0, 255, 255, 99];
    expect(levels(fitToSquare(gray([row, row, row, row]), 2))).toEqual([
      [21, 234],
      [21, 234],
    ]);
  });

  it("stretch resizes both axes, ignoring the aspect ratio", () => {
    const row = [0, 0, 255, 255];
    expect(levels(fitToSquare(gray([row, row]), 2, "stretch"))).toEqual([
      [21, 234],
      [21, 234],
    ]);
  });

  it("pad centres the resized image on white", () => {
    // 4×2 into 4: long side already 4, short side round(2 · 4 / 4) = 2; rows 1–2 hold the image.
    expect(
      levels(
        fitToSquare(
          gray([
            [1, 2, 3, 4],
            [5, 6, 7, 8],
          ]),
          4,
          "pad",
        ),
      ),
    ).toEqual([
      [255, 255, 255, 255],
      [1, 2, 3, 4],
      [5, 6, 7, 8],
      [255, 255, 255, 255],
    ]);
    // 2×8 into 4: shrinks to 1×4 (round(2 · 4 / 8) = 1), placed at column ⌊(4 − 1) / 2⌋ = 1.
    const tall = fitToSquare(gray(Array.from({ length: 8 }, () => [50, 50])), 4, "pad");
    expect(levels(tall)).toEqual(Array.from({ length: 4 }, () => [255, 50, 255, 255]));
  });

  it("rejects a bad size or mode", () => {
    expect(() => fitToSquare(gray([[1]]), 0)).toThrow(/size must be a positive integer, got 0/);
    expect(() => fitToSquare(gray([[1]]), 2, "fill" as never)).toThrow(/mode must be .* got "fill"/);
  });
});
