import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { crc32, deflateSync } from "node:zlib";
import sharp from "sharp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readImage, writePng } from "../../src/image/io.js";
import type { RgbImage } from "../../src/image/rgb_image.js";

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "nulltext-image-io-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

// A PNG encoder written from the PNG specification (chunks: length, type, data, CRC-32 of type and
// data; IDAT: zlib stream of scanlines, each prefixed with filter type 0 = none), so the decoder is
// checked against files whose every byte the test controls.
function pngChunk(type: string, data: Uint8Array): Buffer {
  const length = Buffer.alloc(4);
  length.writeUInt32BE(data.length);
  const body = Buffer.concat([Buffer.from(type, "ascii"), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(body));
  return Buffer.concat([length, body, crc]);
}

const PNG_GRAY = 0;
const PNG_RGB = 2;
const PNG_PALETTE = 3;
const PNG_GRAY_ALPHA = 4;
const PNG_RGBA = 6;

function encodePng(
  width: number,
  height: number,
  bitDepth: number,
  colorType: number,
  rows: number[][],
  extraChunks: Buffer[] = [],
): Buffer {
  const header = Buffer.alloc(13);
  header.writeUInt32BE(width, 0);
  header.writeUInt32BE(height, 4);
  header[8] = bitDepth;
  header[9] = colorType;
  const scanlines = Buffer.concat(rows.map((row) => Buffer.from([0, ...row])));
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    pngChunk("IHDR", header),
    ...extraChunks,
    pngChunk("IDAT", deflateSync(scanlines)),
    pngChunk("IEND", new Uint8Array(0)),
  ]);
}

/** 16-bit samples as big-endian byte pairs. */
const be16 = (...samples: number[]) => samples.flatMap((v) => [v >> 8, v & 0xff]);

async function readBytes(name: string, bytes: Uint8Array): Promise<RgbImage> {
  const path = join(dir, name);
  await writeFile(path, bytes);
  return readImage(path);
}

const pixels = (img: RgbImage) => [...img.data];

/** Left half (x < width/2) one colour, right half another. */
function halves(width: number, height: number, left: number[], right: number[]): Buffer {
  const data = Buffer.alloc(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) data.set(x < width / 2 ? left : right, (y * width + x) * 3);
  }
  return data;
}

describe("readImage: PNG variants become 8-bit RGB", () => {
  it("8-bit RGB", async () => {
    const img = await readBytes(
      "rgb8.png",
      encodePng(2, 2, 8, PNG_RGB, [
        [1, 2, 3, 250, 251, 252],
        [0, 0, 0, 255, 128, 7],
      ]),
    );
    expect([img.width, img.height]).toEqual([2, 2]);
    expect(pixels(img)).toEqual([1, 2, 3, 250, 251, 252, 0, 0, 0, 255, 128, 7]);
  });

  it("width 3, height 1 keeps row-major order", async () => {
    const img = await readBytes("row.png", encodePng(3, 1, 8, PNG_RGB, [[10, 11, 12, 20, 21, 22, 30, 31, 32]]));
    expect([img.width, img.height]).toEqual([3, 1]);
    expect(pixels(img)).toEqual([10, 11, 12, 20, 21, 22, 30, 31, 32]);
  });

  it("8-bit and 1-bit grayscale replicate into R, G, B", async () => {
    expect(pixels(await readBytes("gray8.png", encodePng(2, 1, 8, PNG_GRAY, [[7, 200]])))).toEqual([
      7, 7, 7, 200, 200, 200,
    ]);
    // 1-bit: bits 1,0,1,1,0,0,0,1 → white, black, white, white, black, black, black, white.
    const bits = await readBytes("gray1.png", encodePng(8, 1, 1, PNG_GRAY, [[0b10110001]]));
    expect(pixels(bits)).toEqual([1, 0, 1, 1, 0, 0, 0, 1].flatMap((b) => [b * 255, b * 255, b * 255]));
  });

  it("16-bit samples keep their high byte", async () => {
    // 0x01ff → 1 (a rounding v/257 would give 2), 0x7fff → 127, 0x8000 → 128, 0xffff → 255.
    const rgb = await readBytes(
      "rgb16.png",
      encodePng(2, 1, 16, PNG_RGB, [be16(0x01ff, 0x7fff, 0x8000, 0xffff, 0, 0x1234)]),
    );
    expect(pixels(rgb)).toEqual([1, 127, 128, 255, 0, 0x12]);
    const gray = await readBytes("gray16.png", encodePng(2, 1, 16, PNG_GRAY, [be16(0xfe80, 0x0042)]));
    expect(pixels(gray)).toEqual([0xfe, 0xfe, 0xfe, 0, 0, 0]);
  });

  it("alpha is composited on white: a·c + (1 − a)·255", async () => {
    // RGBA 8-bit: opaque keeps its colour, transparent becomes white, alpha 128 blends.
    const rgba = await readBytes(
      "rgba8.png",
      encodePng(3, 1, 8, PNG_RGBA, [[10, 20, 30, 255, 10, 20, 30, 0, 255, 0, 100, 128]]),
    );
    const blend = (c: number, a: number) => (a / 255) * c + (1 - a / 255) * 255;
    expect(pixels(rgba).slice(0, 6)).toEqual([10, 20, 30, 255, 255, 255]);
    [blend(255, 128), blend(0, 128), blend(100, 128)].forEach((expected, i) => {
      expect(Math.abs(rgba.data[6 + i]! - expected)).toBeLessThanOrEqual(1);
    });
    // Gray + alpha: 100 at alpha 128 → 0.502·100 + 0.498·255 = 177.2.
    const grayAlpha = await readBytes("ga8.png", encodePng(2, 1, 8, PNG_GRAY_ALPHA, [[100, 128, 0, 255]]));
    expect(Math.abs(grayAlpha.data[0]! - blend(100, 128))).toBeLessThanOrEqual(1);
    expect(pixels(grayAlpha).slice(1, 6)).toEqual([grayAlpha.data[0], grayAlpha.data[0], 0, 0, 0]);
    // 16-bit RGBA: red at alpha 0x8000 (0.500008) → G and B = 255·0.499992 = 127.498 → 127.
    const rgba16 = await readBytes(
      "rgba16.png",
      encodePng(2, 1, 16, PNG_RGBA, [be16(0xffff, 0, 0, 0x8000, 0, 0xffff, 0, 0xffff)]),
    );
    expect(pixels(rgba16)).toEqual([255, 127, 127, 0, 255, 0]);
  });

  it("palette with a tRNS entry: the transparent index becomes white", async () => {
    const palette = pngChunk("PLTE", new Uint8Array([255, 0, 0, 0, 0, 255]));
    const transparency = pngChunk("tRNS", new Uint8Array([0]));
    const img = await readBytes("palette.png", encodePng(2, 1, 8, PNG_PALETTE, [[0, 1]], [palette, transparency]));
    expect(pixels(img)).toEqual([255, 255, 255, 0, 0, 255]);
  });

  it("an embedded ICC profile is converted to sRGB", async () => {
    // sharp converts the sRGB pixels into Display P3 numbers and attaches the P3 profile; reading
    // must undo that. Stored numbers differ from the sRGB ones by ~13 levels, so this is no no-op.
    const srgb = [200, 100, 100];
    const p3 = await sharp(halves(16, 16, srgb, srgb), { raw: { width: 16, height: 16, channels: 3 } })
      .png()
      .withIccProfile("p3")
      .toBuffer();
    const stored = await sharp(p3, { ignoreIcc: true }).raw().toBuffer();
    expect(Math.abs(stored[0]! - srgb[0]!)).toBeGreaterThan(8);
    const img = await readBytes("p3.png", p3);
    srgb.forEach((v, c) => {
      expect(Math.abs(img.data[c]! - v)).toBeLessThanOrEqual(2);
    });
  });
});

describe("readImage: JPEG and WebP", () => {
  const red = [220, 30, 40];
  const blue = [20, 40, 200];

  it("JPEG decodes within a few levels (lossy)", async () => {
    const jpeg = await sharp(halves(16, 16, red, blue), { raw: { width: 16, height: 16, channels: 3 } })
      .jpeg({ quality: 95, chromaSubsampling: "4:4:4" })
      .toBuffer();
    const img = await readBytes("halves.jpg", jpeg);
    expect([img.width, img.height]).toEqual([16, 16]);
    // Block-aligned halves (8×8 blocks) leave only quantisation error.
    for (const [x, colour] of [
      [2, red],
      [13, blue],
    ] as const) {
      colour.forEach((v, c) => {
        expect(Math.abs(img.data[(5 * 16 + x) * 3 + c]! - v)).toBeLessThanOrEqual(4);
      });
    }
  });

  // Orientation tags (EXIF 2.3, tag 0x0112): 3 = rotate 180°, 6 = rotate 90° clockwise to display,
  // 8 = rotate 90° counter-clockwise. Stored: red left half, blue right half, 16×8.
  it.each([
    [3, 16, 8, [blue, red], "horizontal"],
    [6, 8, 16, [red, blue], "vertical"],
    [8, 8, 16, [blue, red], "vertical"],
  ] as const)("JPEG EXIF orientation %i is applied", async (orientation, width, height, [first, second], axis) => {
    const jpeg = await sharp(halves(16, 8, red, blue), { raw: { width: 16, height: 8, channels: 3 } })
      .jpeg({ quality: 95, chromaSubsampling: "4:4:4" })
      .withMetadata({ orientation })
      .toBuffer();
    expect((await sharp(jpeg).metadata()).orientation).toBe(orientation);
    const img = await readBytes(`orientation${orientation}.jpg`, jpeg);
    expect([img.width, img.height]).toEqual([width, height]);
    // Sample the middle of the first and second halves along the axis the halves now lie on.
    const at = (x: number, y: number) => [...img.data.subarray((y * width + x) * 3, (y * width + x) * 3 + 3)];
    const [a, b] = axis === "horizontal" ? [at(3, 4), at(12, 4)] : [at(4, 3), at(4, 12)];
    first.forEach((v, c) => {
      expect(Math.abs(a[c]! - v)).toBeLessThanOrEqual(4);
    });
    second.forEach((v, c) => {
      expect(Math.abs(b[c]! - v)).toBeLessThanOrEqual(4);
    });
  });

  it("lossless WebP decodes exactly, lossy within tolerance", async () => {
    const raw = Buffer.alloc(4 * 3 * 3);
    for (let i = 0; i < raw.length; i++) raw[i] = (i * 37) % 256;
    const lossless = await sharp(raw, { raw: { width: 4, height: 3, channels: 3 } })
      .webp({ lossless: true })
      .toBuffer();
    const img = await readBytes("exact.webp", lossless);
    expect([img.width, img.height]).toEqual([4, 3]);
    expect(pixels(img)).toEqual([...raw]);

    const lossy = await sharp(halves(16, 16, red, blue), { raw: { width: 16, height: 16, channels: 3 } })
      .webp({ quality: 100 })
      .toBuffer();
    const decoded = await readBytes("lossy.webp", lossy);
    red.forEach((v, c) => {
      expect(Math.abs(decoded.data[(8 * 16 + 2) * 3 + c]! - v)).toBeLessThanOrEqual(8);
    });
  });

  it("WebP alpha is composited on white", async () => {
    const rgba = Buffer.from([10, 20, 30, 255, 10, 20, 30, 0]);
    const webp = await sharp(rgba, { raw: { width: 2, height: 1, channels: 4 } })
      .webp({ lossless: true })
      .toBuffer();
    expect(pixels(await readBytes("alpha.webp", webp))).toEqual([10, 20, 30, 255, 255, 255]);
  });
});

describe("readImage: bad files give errors naming the path", () => {
  const validPng = encodePng(
    8,
    8,
    8,
    PNG_RGB,
    Array.from({ length: 8 }, (_, y) => Array.from({ length: 24 }, (_, i) => (i * 11 + y * 29) % 256)),
  );

  async function expectError(name: string, bytes: Uint8Array | undefined, pattern: RegExp): Promise<void> {
    const path = join(dir, name);
    if (bytes !== undefined) await writeFile(path, bytes);
    const error = await readImage(path).then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    expect(error, `${name} should not decode`).toBeInstanceOf(Error);
    expect(error!.message).toContain(path);
    expect(error!.message).toMatch(pattern);
  }

  it("missing file", async () => {
    await expectError("does-not-exist.png", undefined, /no such file/);
  });

  it("a directory", async () => {
    await mkdir(join(dir, "folder.png"));
    await expectError("folder.png", undefined, /directory/);
  });

  it("empty file", async () => {
    await expectError("empty.png", new Uint8Array(0), /empty \(0 bytes\)/);
  });

  it("not an image: the first bytes are shown", async () => {
    await expectError("notes.png", Buffer.from("hello, world"), /not a PNG, JPEG or WebP file.*68 65 6c 6c/);
  });

  it("PNG truncated inside the pixel data", async () => {
    await expectError("truncated.png", validPng.subarray(0, validPng.length - 30), /Cannot decode PNG/);
  });

  it("PNG with corrupted pixel data", async () => {
    const corrupt = Buffer.from(validPng);
    const at = corrupt.length - 30;
    corrupt[at] = corrupt[at]! ^ 0xff;
    await expectError("corrupt.png", corrupt, /Cannot decode PNG/);
  });

  it("PNG whose header says width 0", async () => {
    await expectError("zero-width.png", encodePng(0, 1, 8, PNG_RGB, [[]]), /Cannot decode PNG/);
  });

  it("JPEG truncated halfway", async () => {
    const jpeg = await sharp(halves(32, 32, [200, 10, 10], [10, 10, 200]), {
      raw: { width: 32, height: 32, channels: 3 },
    })
      .jpeg()
      .toBuffer();
    await expectError("truncated.jpg", jpeg.subarray(0, jpeg.length >> 1), /Cannot decode JPEG/);
  });

  it("WebP truncated", async () => {
    const webp = await sharp(halves(32, 32, [200, 10, 10], [10, 10, 200]), {
      raw: { width: 32, height: 32, channels: 3 },
    })
      .webp()
      .toBuffer();
    await expectError("truncated.webp", webp.subarray(0, webp.length - 10), /Cannot decode WebP/);
  });
});

describe("writePng", () => {
  const image: RgbImage = { width: 3, height: 2, data: new Uint8Array([...Array(18).keys()].map((i) => i * 14)) };

  it("round-trips exactly through readImage, leaving no temporary file", async () => {
    const folder = await mkdtemp(join(dir, "write-"));
    const path = join(folder, "out.png");
    await writePng(path, image);
    expect(await readdir(folder)).toEqual(["out.png"]);
    const bytes = await readFile(path);
    expect([...bytes.subarray(0, 8)]).toEqual([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
    // IHDR: width 3, height 2, bit depth 8, colour type 2 (RGB).
    expect([bytes.readUInt32BE(16), bytes.readUInt32BE(20), bytes[24], bytes[25]]).toEqual([3, 2, 8, PNG_RGB]);
    const back = await readImage(path);
    expect(back).toEqual({ width: 3, height: 2, data: image.data });
  });

  it("writes an image whose data is a view into a larger buffer", async () => {
    const backing = new Uint8Array(100).map((_, i) => 255 - i);
    const view: RgbImage = { width: 2, height: 2, data: backing.subarray(10, 22) };
    const path = join(dir, "view.png");
    await writePng(path, view);
    expect(pixels(await readImage(path))).toEqual([...backing.subarray(10, 22)]);
  });

  it("replaces an existing file", async () => {
    const path = join(dir, "replace.png");
    await writeFile(path, "old contents");
    await writePng(path, image);
    expect(pixels(await readImage(path))).toEqual([...image.data]);
  });

  it("an invalid image leaves an existing file untouched", async () => {
    const path = join(dir, "keep.png");
    await writeFile(path, "precious");
    const short: RgbImage = { width: 3, height: 2, data: new Uint8Array(17) };
    await expect(writePng(path, short)).rejects.toThrow(/17 bytes.*needs 18/);
    expect(await readFile(path, "utf8")).toBe("precious");
  });

  it("a failure after the temporary file is written (rename onto a folder) cleans up and keeps the target", async () => {
    const folder = await mkdtemp(join(dir, "fail-"));
    const target = join(folder, "taken.png");
    await mkdir(target);
    await writeFile(join(target, "inside.txt"), "untouched");
    await expect(writePng(target, image)).rejects.toThrow(`Cannot write PNG "${target}"`);
    expect((await stat(target)).isDirectory()).toBe(true);
    expect(await readFile(join(target, "inside.txt"), "utf8")).toBe("untouched");
    expect(await readdir(folder)).toEqual(["taken.png"]);
  });

  it("a missing folder is an error naming the path", async () => {
    const path = join(dir, "no-such-folder", "out.png");
    await expect(writePng(path, image)).rejects.toThrow(
      `Cannot write PNG "${path}": the folder "${join(dir, "no-such-folder")}" does not exist`,
    );
  });
});
