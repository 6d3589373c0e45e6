/**
 * Image files, decoded and encoded by sharp (libvips; prebuilt binaries ship as npm packages, so
 * nothing is compiled at install time).
 *
 * readImage accepts PNG, JPEG and WebP only, recognised by their signature bytes, not the file
 * name. Every image becomes 8-bit sRGB:
 * - EXIF orientation is applied (a portrait photo stored sideways comes out upright);
 * - an embedded ICC profile is converted to sRGB; PNG gAMA/cHRM chunks are ignored, as Pillow does;
 * - grayscale is replicated into R, G and B;
 * - transparency (alpha channel or tRNS) is composited on white: out = a·c + (1 − a)·255;
 * - 16-bit samples keep their high byte (v >> 8, libvips' conversion), after compositing.
 */
import { randomBytes } from "node:crypto";
import { open, readFile, rename, rm, stat } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import sharp from "sharp";
import { checkRgbImage, type RgbImage } from "./rgb_image.js";

type ImageFormat = "PNG" | "JPEG" | "WebP";

function sniffFormat(bytes: Uint8Array): ImageFormat | undefined {
  const startsWith = (signature: number[], at = 0) => signature.every((b, i) => bytes[at + i] === b);
  if (startsWith([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])) return "PNG";
  if (startsWith([0xff, 0xd8, 0xff])) return "JPEG";
  // RIFF container ("RIFF", 4-byte size, "WEBP").
  if (startsWith([0x52, 0x49, 0x46, 0x46]) && startsWith([0x57, 0x45, 0x42, 0x50], 8)) return "WebP";
  return undefined;
}

function messageOf(error: unknown): string {
  const text = error instanceof Error ? error.message : String(error);
  // libjpeg repeats its warnings once per pass; one of each is enough.
  return [...new Set(text.split("\n").map((line) => line.trim()))].filter((line) => line !== "").join("; ");
}

/** Reads a PNG, JPEG or WebP file as an 8-bit RGB image (conversion rules in the module comment). */
export async function readImage(path: string): Promise<RgbImage> {
  let bytes: Buffer;
  try {
    const info = await stat(path);
    if (info.isDirectory()) throw new Error("it is a directory, not a file");
    if (info.size === 0) throw new Error("the file is empty (0 bytes)");
    bytes = await readFile(path);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const reason = code === "ENOENT" ? "no such file" : messageOf(error);
    throw new Error(`Cannot read image "${path}": ${reason}`, { cause: error });
  }
  const format = sniffFormat(bytes);
  if (format === undefined) {
    const head = [...bytes.subarray(0, 8)].map((b) => b.toString(16).padStart(2, "0")).join(" ");
    throw new Error(`Cannot read image "${path}": not a PNG, JPEG or WebP file (it starts with bytes ${head})`);
  }
  try {
    // failOn "error" rejects truncated and corrupt data but tolerates libjpeg's harmless warnings.
    const { data, info } = await sharp(bytes, { failOn: "error", autoOrient: true })
      .flatten({ background: { r: 255, g: 255, b: 255 } })
      .toColourspace("srgb")
      .raw({ depth: "uchar" })
      .toBuffer({ resolveWithObject: true });
    if (info.channels !== 3 || info.width < 1 || info.height < 1 || data.length !== info.width * info.height * 3) {
      throw new Error(`decoder returned ${info.width}×${info.height} with ${info.channels} channels, expected RGB`);
    }
    return { width: info.width, height: info.height, data: new Uint8Array(data.buffer, data.byteOffset, data.length) };
  } catch (error) {
    throw new Error(`Cannot decode ${format} image "${path}" (corrupt or truncated?): ${messageOf(error)}`, {
      cause: error,
    });
  }
}

/** `img` as the bytes of an 8-bit RGB PNG file. */
export async function encodePng(img: RgbImage): Promise<Uint8Array> {
  checkRgbImage(img, "encodePng");
  const png = await sharp(img.data, { raw: { width: img.width, height: img.height, channels: 3 } })
    .png()
    .toBuffer();
  return new Uint8Array(png.buffer, png.byteOffset, png.length);
}

/**
 * Writes `img` as an 8-bit RGB PNG. Atomic: the bytes go to a temporary file in the same folder,
 * which is flushed and then renamed over `path`; on any failure the temporary file is removed and
 * an existing file at `path` is left as it was.
 */
export async function writePng(path: string, img: RgbImage): Promise<void> {
  checkRgbImage(img, `writePng "${path}"`);
  const encoded = await encodePng(img);
  const temporary = join(dirname(path), `.${basename(path)}.${process.pid}.${randomBytes(4).toString("hex")}.partial`);
  try {
    const handle = await open(temporary, "wx");
    try {
      await handle.writeFile(encoded);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temporary, path);
  } catch (error) {
    await rm(temporary, { force: true });
    const missingFolder = (error as NodeJS.ErrnoException).code === "ENOENT";
    const reason = missingFolder ? `the folder "${dirname(path)}" does not exist` : messageOf(error);
    throw new Error(`Cannot write PNG "${path}": ${reason}`, { cause: error });
  }
}
