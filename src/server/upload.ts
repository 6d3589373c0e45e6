/**
 * Uploaded images, decoded with bounds: the type is recognised from the signature bytes (PNG, JPEG,
 * WebP, as image/io.ts's readImage; anything else is 415), and the pixel count is read from the
 * header and refused before the image is decoded (sharp's limitInputPixels also stops a header that
 * lies), so a decompression bomb costs a header read. The conversion to 8-bit sRGB follows readImage.
 */
import sharp, { type Metadata } from "sharp";
import type { RgbImage } from "../image/index.js";

export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

function sniff(bytes: Uint8Array): string | undefined {
  const at = (sig: number[], offset = 0) => sig.every((b, i) => bytes[offset + i] === b);
  if (at([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])) return "png";
  if (at([0xff, 0xd8, 0xff])) return "jpeg";
  if (at([0x52, 0x49, 0x46, 0x46]) && at([0x57, 0x45, 0x42, 0x50], 8)) return "webp";
  return undefined;
}

export async function decodeUpload(bytes: Uint8Array, maxPixels: number): Promise<RgbImage> {
  if (bytes.length === 0) throw new HttpError(400, "image: the file is empty");
  const format = sniff(bytes);
  if (!format) throw new HttpError(415, "image: not a PNG, JPEG or WebP file");
  let meta: Metadata;
  try {
    meta = await sharp(bytes, { limitInputPixels: false }).metadata();
  } catch (err) {
    throw new HttpError(400, `image: cannot read the ${format} header (${(err as Error).message})`);
  }
  const pixels = (meta.width ?? 0) * (meta.height ?? 0);
  if (!(pixels > 0)) throw new HttpError(400, `image: the ${format} header gives no size`);
  if (pixels > maxPixels)
    throw new HttpError(
      413,
      `image: ${meta.width}×${meta.height} is ${pixels} pixels; at most ${maxPixels} are accepted`,
    );
  try {
    const { data, info } = await sharp(bytes, { failOn: "error", autoOrient: true, limitInputPixels: maxPixels })
      .flatten({ background: { r: 255, g: 255, b: 255 } })
      .toColourspace("srgb")
      .raw({ depth: "uchar" })
      .toBuffer({ resolveWithObject: true });
    if (info.channels !== 3) throw new Error(`decoded ${info.channels} channels`);
    return { width: info.width, height: info.height, data: new Uint8Array(data.buffer, data.byteOffset, data.length) };
  } catch (err) {
    throw new HttpError(
      400,
      `image: cannot decode the ${format} file (corrupt or truncated?): ${(err as Error).message}`,
    );
  }
}
