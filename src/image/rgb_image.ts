/**
 * The in-memory image every other module exchanges: 8-bit RGB, row-major, channels interleaved
 * (`data[(y * width + x) * 3 + c]`). Structurally identical to `src/scenes/`' `RgbImage`, so
 * either can be passed where the other is expected.
 */
export interface RgbImage {
  width: number;
  height: number;
  data: Uint8Array;
}

/** Throws unless `img` is a well-formed RgbImage; `what` names it in the message. */
export function checkRgbImage(img: RgbImage, what: string): void {
  const { width, height, data } = img;
  if (!Number.isInteger(width) || width < 1 || !Number.isInteger(height) || height < 1) {
    throw new Error(`${what}: width and height must be positive integers, got ${width}×${height}`);
  }
  if (!(data instanceof Uint8Array)) {
    throw new Error(`${what}: data must be a Uint8Array of RGB bytes, got ${describeValue(data)}`);
  }
  if (data.length !== width * height * 3) {
    throw new Error(
      `${what}: data holds ${data.length} bytes, but a ${width}×${height} RGB image needs ${width * height * 3}`,
    );
  }
}

export function sizeOf(img: RgbImage): string {
  return `${img.width}×${img.height}`;
}

/** Throws, naming both sizes, unless `a` and `b` have the same width and height. */
export function checkSameSize(a: RgbImage, b: RgbImage, what: string): void {
  if (a.width !== b.width || a.height !== b.height) {
    throw new Error(`${what}: image sizes differ: a is ${sizeOf(a)}, b is ${sizeOf(b)}`);
  }
}

function describeValue(value: unknown): string {
  if (value === null || value === undefined) return String(value);
  return (value as object).constructor?.name ?? typeof value;
}

/**
 * Image → tensor `[1, 3, H, W]` (planar) in [-1, 1]: `x / 127.5 - 1`, as the null-text notebook's
 * `image2latent` (`torch.from_numpy(image).float() / 127.5 - 1`) does in float32. The quotient is
 * rounded to float32 before the subtraction so every value equals torch's bit for bit.
 */
export function toTensor(img: RgbImage): Float32Array {
  checkRgbImage(img, "toTensor");
  const plane = img.width * img.height;
  const out = new Float32Array(3 * plane);
  for (let i = 0; i < plane; i++) {
    for (let c = 0; c < 3; c++) {
      out[c * plane + i] = Math.fround(img.data[i * 3 + c]! / 127.5) - 1;
    }
  }
  return out;
}

/**
 * Tensor `[1, 3, H, W]` in [-1, 1] → image, as diffusers' `VaeImageProcessor.postprocess` does:
 * `(x / 2 + 0.5).clamp(0, 1)` then `(x * 255).round()` (numpy: round half to even), each step in
 * float32. NaN is an error (diffusers would silently cast it to 0).
 */
export function fromTensor(data: Float32Array, width: number, height: number): RgbImage {
  if (!Number.isInteger(width) || width < 1 || !Number.isInteger(height) || height < 1) {
    throw new Error(`fromTensor: width and height must be positive integers, got ${width}×${height}`);
  }
  const plane = width * height;
  if (data.length !== 3 * plane) {
    throw new Error(`fromTensor: a [1, 3, ${height}, ${width}] tensor has ${3 * plane} values, got ${data.length}`);
  }
  const out = new Uint8Array(3 * plane);
  for (let c = 0; c < 3; c++) {
    for (let i = 0; i < plane; i++) {
      const value = data[c * plane + i]!;
      if (Number.isNaN(value)) {
        const y = Math.floor(i / width);
        throw new Error(`fromTensor: NaN at channel ${c}, row ${y}, column ${i - y * width}`);
      }
      const unit = Math.min(1, Math.max(0, Math.fround(Math.fround(value / 2) + 0.5)));
      out[i * 3 + c] = roundHalfToEven(Math.fround(unit * 255));
    }
  }
  return { width, height, data: out };
}

/** numpy's `round`: ties go to the even neighbour (127.5 → 128, 126.5 → 126). */
function roundHalfToEven(x: number): number {
  const floor = Math.floor(x);
  const fraction = x - floor;
  if (fraction > 0.5) return floor + 1;
  if (fraction < 0.5) return floor;
  return floor % 2 === 0 ? floor : floor + 1;
}

const WHITE = 255;

/**
 * Images side by side in a grid of `columns` columns (default: one row), `gap` white pixels
 * between cells. Every cell is as large as the largest image; smaller images sit centred on white.
 * Labels are not drawn: text rendering would need a font, which this module does not carry.
 */
export function grid(images: RgbImage[], columns: number = images.length, gap = 0): RgbImage {
  if (images.length === 0) throw new Error("grid: needs at least one image, got an empty list");
  images.forEach((img, i) => {
    checkRgbImage(img, `grid image ${i}`);
  });
  if (!Number.isInteger(columns) || columns < 1) {
    throw new Error(`grid: columns must be a positive integer, got ${columns}`);
  }
  if (!Number.isInteger(gap) || gap < 0) throw new Error(`grid: gap must be a non-negative integer, got ${gap}`);
  const cellWidth = Math.max(...images.map((img) => img.width));
  const cellHeight = Math.max(...images.map((img) => img.height));
  const usedColumns = Math.min(columns, images.length);
  const rows = Math.ceil(images.length / usedColumns);
  const width = usedColumns * cellWidth + (usedColumns - 1) * gap;
  const height = rows * cellHeight + (rows - 1) * gap;
  const data = new Uint8Array(width * height * 3).fill(WHITE);
  images.forEach((img, i) => {
    const left = (i % usedColumns) * (cellWidth + gap) + Math.floor((cellWidth - img.width) / 2);
    const top = Math.floor(i / usedColumns) * (cellHeight + gap) + Math.floor((cellHeight - img.height) / 2);
    const rowBytes = img.width * 3;
    for (let y = 0; y < img.height; y++) {
      data.set(img.data.subarray(y * rowBytes, (y + 1) * rowBytes), ((top + y) * width + left) * 3);
    }
  });
  return { width, height, data };
}
