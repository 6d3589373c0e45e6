/** The element types a graph tensor can carry, with their ONNX codes and JS storage. */

export type DType = "float32" | "float64" | "float16" | "int64" | "int32" | "bool";

export type TypedArrayOf<D extends DType> = D extends "float32"
  ? Float32Array
  : D extends "float64"
    ? Float64Array
    : D extends "float16"
      ? Uint16Array
      : D extends "int64"
        ? BigInt64Array
        : D extends "int32"
          ? Int32Array
          : Uint8Array;

export type AnyTypedArray = Float32Array | Float64Array | Uint16Array | BigInt64Array | Int32Array | Uint8Array;

interface DTypeInfo {
  /** TensorProto.DataType code. */
  onnx: number;
  bytes: number;
  /** Name onnxruntime-common uses for the element type. */
  ort: string;
  floating: boolean;
}

export const DTYPES: Record<DType, DTypeInfo> = {
  float32: { onnx: 1, bytes: 4, ort: "float32", floating: true },
  float64: { onnx: 11, bytes: 8, ort: "float64", floating: true },
  float16: { onnx: 10, bytes: 2, ort: "float16", floating: true },
  int64: { onnx: 7, bytes: 8, ort: "int64", floating: false },
  int32: { onnx: 6, bytes: 4, ort: "int32", floating: false },
  bool: { onnx: 9, bytes: 1, ort: "bool", floating: false },
};

export function isFloating(dtype: DType): boolean {
  return DTYPES[dtype].floating;
}

export function dtypeFromOrt(type: string): DType {
  for (const [name, info] of Object.entries(DTYPES)) if (info.ort === type) return name as DType;
  throw new Error(`unsupported ONNX Runtime element type '${type}'`);
}

export function allocate(dtype: DType, size: number): AnyTypedArray {
  switch (dtype) {
    case "float32":
      return new Float32Array(size);
    case "float64":
      return new Float64Array(size);
    case "float16":
      return new Uint16Array(size);
    case "int64":
      return new BigInt64Array(size);
    case "int32":
      return new Int32Array(size);
    case "bool":
      return new Uint8Array(size);
  }
}

/** A one-element array holding `value` in `dtype` (float16 scalars are built in float32 and cast). */
export function scalarArray(value: number, dtype: DType): AnyTypedArray {
  switch (dtype) {
    case "float32":
      return Float32Array.of(value);
    case "float64":
      return Float64Array.of(value);
    case "int64":
      return BigInt64Array.of(BigInt(value));
    case "int32":
      return Int32Array.of(value);
    case "bool":
      return Uint8Array.of(value ? 1 : 0);
    case "float16":
      throw new Error("float16 scalars are not supported: build them in float32 and cast");
  }
}

export function numel(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/** IEEE 754 binary16 bits to a JS number (exact). */
export function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24;
  if (exp === 31) return frac ? Number.NaN : sign * Number.POSITIVE_INFINITY;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** A JS number to IEEE 754 binary16 bits, rounding to nearest even (as numpy and PyTorch do). */
export function floatToHalf(value: number): number {
  f32[0] = value;
  const x = u32[0] as number;
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  let e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    let half = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    const mid = 1 << (shift - 1);
    if (rem > mid || (rem === mid && half & 1)) half++;
    return sign | half;
  }
  let half = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && half & 1)) half++;
  e = half >>> 10;
  return sign | half;
}

/** Decode float16 bits into float32 values, through a 65536-entry table. */
export function halfArrayToFloat32(src: Uint16Array, dst = new Float32Array(src.length)): Float32Array {
  const table = halfTable();
  for (let i = 0; i < src.length; i++) dst[i] = table[src[i] as number] as number;
  return dst;
}

export function float32ArrayToHalf(src: Float32Array | Float64Array, dst = new Uint16Array(src.length)): Uint16Array {
  for (let i = 0; i < src.length; i++) dst[i] = floatToHalf(src[i] as number);
  return dst;
}

let table: Float32Array | undefined;
function halfTable(): Float32Array {
  if (!table) {
    table = new Float32Array(65536);
    for (let h = 0; h < 65536; h++) table[h] = halfToFloat(h);
  }
  return table;
}

/** bfloat16 bits to float32: the top half of a float32. */
export function bf16ArrayToFloat32(src: Uint16Array, dst = new Float32Array(src.length)): Float32Array {
  const bits = new Uint32Array(dst.buffer, dst.byteOffset, dst.length);
  for (let i = 0; i < src.length; i++) bits[i] = (src[i] as number) << 16;
  return dst;
}
