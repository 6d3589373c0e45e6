import { describe, expect, it } from "vitest";
import { checkRgbImage, fromTensor, grid, type RgbImage, toTensor } from "../../src/image/rgb_image.js";

const f32 = Math.fround;

describe("toTensor", () => {
  it("lays out [1, 3, H, W] planes with x / 127.5 − 1", () => {
    // 2×1 image: pixel 0 = (0, 51, 255), pixel 1 = (255, 204, 127).
    const img: RgbImage = { width: 2, height: 1, data: new Uint8Array([0, 51, 255, 255, 204, 127]) };
    const t = toTensor(img);
    expect(t).toBeInstanceOf(Float32Array);
    // R plane, G plane, B plane; 51 / 127.5 − 1 = −0.6, 204 / 127.5 − 1 = 0.6, 127 / 127.5 − 1 = −1/255.
    const expected = [-1, 1, -0.6, 0.6, 1, -1 / 255];
    expected.forEach((v, i) => {
      expect(t[i]).toBeCloseTo(v, 7);
    });
    expect([t[0], t[1], t[5]]).toEqual([-1, 1, f32(f32(127 / 127.5) - 1)]);
  });

  it("equals torch's float32 `x.float() / 127.5 - 1` for every level", () => {
    // float32 division, then float32 subtraction: each step rounded to float32, as torch does.
    const data = new Uint8Array(256 * 3).map((_, i) => Math.floor(i / 3));
    const t = toTensor({ width: 256, height: 1, data });
    for (let v = 0; v < 256; v++) expect(t[v]).toBe(f32(f32(v / 127.5) - 1));
  });
});

describe("fromTensor", () => {
  it("inverts toTensor exactly for every level and layout", () => {
    const data = new Uint8Array(16 * 16 * 3).map((_, i) => (i * 89 + 7) % 256);
    const img: RgbImage = { width: 16, height: 16, data };
    expect(fromTensor(toTensor(img), 16, 16)).toEqual(img);
    const wide: RgbImage = { width: 256, height: 1, data: new Uint8Array(768).map((_, i) => i % 256) };
    expect(fromTensor(toTensor(wide), 256, 1)).toEqual(wide);
  });

  it("clamps to [0, 255] and maps 0 to 128 (127.5 rounds to even)", () => {
    const t = new Float32Array([-3, -1, 0, 1, 7, Number.POSITIVE_INFINITY]);
    // 2×1 image: R plane = [-3, -1], G = [0, 1], B = [7, +inf].
    expect([...fromTensor(t, 2, 1).data]).toEqual([0, 128, 255, 0, 255, 255]);
  });

  it("rounds exact halves to even, as numpy's round", () => {
    // Find float32 tensor values whose float32 chain (t / 2 + 0.5) · 255 lands exactly on k + 0.5.
    const ties: { t: number; k: number }[] = [];
    for (let k = 60; k < 70; k++) {
      const x = f32((k + 0.5) / 255);
      for (const nudge of [-2e-7, -1e-7, 0, 1e-7, 2e-7]) {
        const t = f32((f32(x + nudge) - 0.5) * 2);
        if (f32(f32(f32(t / 2) + 0.5) * 255) === k + 0.5) {
          ties.push({ t, k });
          break;
        }
      }
    }
    expect(ties.some(({ k }) => k % 2 === 0) && ties.some(({ k }) => k % 2 === 1)).toBe(true);
    for (const { t, k } of ties) {
      const expected = k % 2 === 0 ? k : k + 1;
      expect(fromTensor(new Float32Array([t, t, t]), 1, 1).data[0]).toBe(expected);
    }
  });

  it("rejects NaN naming its position, and a wrong length", () => {
    const t = new Float32Array(12);
    t[4 + 3] = Number.NaN; // channel 1 (G), pixel 3 of a 2×2 image: row 1, column 1
    expect(() => fromTensor(t, 2, 2)).toThrow("fromTensor: NaN at channel 1, row 1, column 1");
    expect(() => fromTensor(new Float32Array(11), 2, 2)).toThrow(/\[1, 3, 2, 2\] tensor has 12 values, got 11/);
  });
});

describe("grid", () => {
  const solid = (width: number, height: number, v: number): RgbImage => ({
    width,
    height,
    data: new Uint8Array(width * height * 3).fill(v),
  });
  const levelsOf = (img: RgbImage) =>
    Array.from({ length: img.height }, (_, y) =>
      Array.from({ length: img.width }, (_, x) => img.data[(y * img.width + x) * 3]),
    );

  it("places images side by side with a white gap", () => {
    const out = grid([solid(2, 2, 10), solid(2, 2, 20)], undefined, 1);
    expect([out.width, out.height]).toEqual([5, 2]);
    expect(levelsOf(out)).toEqual([
      [10, 10, 255, 20, 20],
      [10, 10, 255, 20, 20],
    ]);
  });

  it("wraps into rows and centres smaller images in their cells", () => {
    const out = grid([solid(1, 1, 1), solid(3, 2, 2), solid(1, 2, 3)], 2, 0);
    // Cells 3×2; two columns, two rows.
    expect([out.width, out.height]).toEqual([6, 4]);
    expect(levelsOf(out)).toEqual([
      [255, 1, 255, 2, 2, 2],
      [255, 255, 255, 2, 2, 2],
      [255, 3, 255, 255, 255, 255],
      [255, 3, 255, 255, 255, 255],
    ]);
  });

  it("rejects an empty list and bad columns", () => {
    expect(() => grid([])).toThrow(/at least one image/);
    expect(() => grid([solid(1, 1, 0)], 0)).toThrow(/columns must be a positive integer, got 0/);
  });
});

describe("checkRgbImage", () => {
  it("names the problem", () => {
    expect(() => checkRgbImage({ width: 2, height: 2, data: new Uint8Array(11) }, "x")).toThrow(
      "x: data holds 11 bytes, but a 2×2 RGB image needs 12",
    );
    expect(() => checkRgbImage({ width: 0, height: 2, data: new Uint8Array(0) }, "x")).toThrow(/got 0×2/);
    expect(() => checkRgbImage({ width: 1, height: 1, data: [1, 2, 3] as unknown as Uint8Array }, "x")).toThrow(
      /Uint8Array of RGB bytes, got Array/,
    );
  });
});
