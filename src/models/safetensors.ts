/**
 * Reader and writer for the safetensors format (https://github.com/huggingface/safetensors):
 * an 8-byte little-endian u64 header length N, N bytes of UTF-8 JSON
 * `{ "<name>": {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {str: str} }`,
 * then the data buffer, to which `data_offsets` are relative.
 *
 * The reader validates the header as strictly as the reference Rust crate (`Metadata::validate` in
 * safetensors/src/tensor.rs): tensors must tile the data buffer exactly, with no gap, no overlap and
 * no trailing bytes. `open` reads only the header; each tensor is read on demand with positioned reads,
 * so a multi-GB checkpoint is never held in memory twice, and each entry's absolute file offset is
 * exposed so that a compiled graph can reference the bytes in place (ONNX external data).
 * `fromBytes` reads the same format from memory and `fromReader` from a byte-range source (a URL),
 * for front ends without a file system.
 */
import { bf16ArrayToFloat32, type DType, halfArrayToFloat32 } from "../graph/dtype.js";
import { type ByteRangeReader, fileError, getPlatform, type Platform } from "../platform/platform.js";
import { compareBytes, concatBytes, isLittleEndianHost } from "../util/bytes.js";

/** Element types of the format with a whole number of bytes per element (the reference's 4-bit types are not). */
export type SafetensorsDType =
  | "F64"
  | "F32"
  | "F16"
  | "BF16"
  | "F8_E5M2"
  | "F8_E4M3"
  | "I64"
  | "I32"
  | "I16"
  | "I8"
  | "U64"
  | "U32"
  | "U16"
  | "U8"
  | "BOOL";

/**
 * Bytes per element, listed in the reference's `Dtype` enum order (increasing alignment). The writer
 * lays tensors out in the reverse of this order, as the reference does, so every tensor starts at a
 * multiple of its element size.
 */
export const SAFETENSORS_DTYPE_BYTES: Readonly<Record<SafetensorsDType, number>> = {
  BOOL: 1,
  U8: 1,
  I8: 1,
  F8_E5M2: 1,
  F8_E4M3: 1,
  I16: 2,
  U16: 2,
  F16: 2,
  BF16: 2,
  I32: 4,
  U32: 4,
  F32: 4,
  F64: 8,
  I64: 8,
  U64: 8,
};

const DTYPE_ORDER = Object.keys(SAFETENSORS_DTYPE_BYTES) as SafetensorsDType[];

export interface SafetensorsEntry {
  readonly name: string;
  readonly dtype: SafetensorsDType;
  readonly shape: readonly number[];
  /** Absolute byte offset of the tensor's data in the file: 8 + header length + data_offsets[0]. */
  readonly offset: number;
  readonly byteLength: number;
}

export interface SafetensorsTensor {
  dtype: SafetensorsDType;
  shape: readonly number[];
  /** Little-endian, row-major element bytes; its byteLength must equal product(shape) × element size. */
  data: ArrayBufferView;
}

/** The reference reader's limit (`MAX_HEADER_SIZE` in safetensors/src/tensor.rs). */
export const MAX_HEADER_BYTES = 100_000_000;
const METADATA_KEY = "__metadata__";

/** Where a safetensors file's bytes are: an open file, or memory (which can also lend views). */
interface ByteStore {
  readonly size: number;
  read(offset: number, length: number, what: string): Uint8Array;
  /** The bytes without a copy, where they are in memory. */
  view?(offset: number, length: number): Uint8Array;
  close(): void;
}

function memoryStore(bytes: Uint8Array, name: string): ByteStore {
  let open = true;
  const check = (offset: number, length: number, what: string) => {
    if (!open) throw new Error(`${what}: cannot read: the file was closed`);
    if (offset + length > bytes.byteLength) {
      throw new Error(
        `${what}: the file ended after ${Math.max(0, bytes.byteLength - offset)} of ${length} bytes at offset ${offset}`,
      );
    }
  };
  return {
    size: bytes.byteLength,
    read: (offset, length, what) => {
      check(offset, length, what);
      return bytes.slice(offset, offset + length);
    },
    view: (offset, length) => {
      check(offset, length, name);
      return bytes.subarray(offset, offset + length);
    },
    close: () => {
      open = false;
    },
  };
}

export class SafetensorsFile {
  private constructor(
    /** The file's path, or the name given to bytes in memory (for messages). */
    readonly path: string,
    private readonly store: ByteStore,
    readonly entries: ReadonlyMap<string, SafetensorsEntry>,
    readonly metadata: Readonly<Record<string, string>>,
  ) {}

  /** Opens `path`, reads and validates its header, and keeps the file open for `readRaw` until `close`. */
  static open(path: string): SafetensorsFile {
    let file: ReturnType<Platform["openFile"]>;
    try {
      file = getPlatform().openFile(path);
    } catch (error) {
      throw fileError(error, path, "a safetensors file");
    }
    return SafetensorsFile.withStore(path, file);
  }

  /** A safetensors file held in memory (`name` is used in messages); tensors are read from `bytes` without copying it. */
  static fromBytes(bytes: Uint8Array, name = "<memory>"): SafetensorsFile {
    return SafetensorsFile.withStore(name, memoryStore(bytes, name));
  }

  /**
   * A safetensors file behind a byte-range reader (a URL): the header is fetched and validated
   * first, then the data buffer, in pieces of `chunkBytes` (default 64 MiB), into one buffer.
   */
  static async fromReader(reader: ByteRangeReader, options: { chunkBytes?: number } = {}): Promise<SafetensorsFile> {
    const size = await reader.size();
    let head = size >= 8 ? await reader.read(0, 8) : new Uint8Array(0);
    if (size >= 8) head = concatBytes([head, await reader.read(8, checkedHeaderLength(reader.name, head, size))]);
    // The header is validated (against the full size) before the data is fetched.
    readHeader(reader.name, memoryStore(head, reader.name), size);
    const chunk = options.chunkBytes ?? 64 * 2 ** 20;
    const bytes = new Uint8Array(size);
    bytes.set(head);
    for (let at = head.byteLength; at < size; at += chunk) {
      const length = Math.min(chunk, size - at);
      const piece = await reader.read(at, length);
      if (piece.byteLength !== length) {
        throw new Error(`${reader.name}: asked for ${length} bytes at offset ${at}, got ${piece.byteLength}`);
      }
      bytes.set(piece, at);
    }
    return SafetensorsFile.fromBytes(bytes, reader.name);
  }

  private static withStore(name: string, store: ByteStore): SafetensorsFile {
    try {
      const { entries, metadata } = readHeader(name, store);
      return new SafetensorsFile(name, store, entries, metadata);
    } catch (error) {
      store.close();
      throw error;
    }
  }

  /** The entry for `name`; an unknown name raises an error that lists the most similar names. */
  entry(name: string): SafetensorsEntry {
    const entry = this.entries.get(name);
    if (entry) return entry;
    const similar = closestNames(name, [...this.entries.keys()], 5);
    const hint = similar.length > 0 ? `; similar names: ${similar.map((n) => `'${n}'`).join(", ")}` : "";
    throw new Error(`${this.path}: no tensor '${name}' among its ${this.entries.size} tensors${hint}`);
  }

  /** The tensor's exact bytes, in a fresh buffer that starts at offset 0 (so any typed-array view is aligned). */
  readRaw(name: string): Uint8Array {
    const entry = this.entry(name);
    return this.store.read(entry.offset, entry.byteLength, `${this.path}: tensor '${name}'`);
  }

  /** The tensor's bytes without a copy, for a file held in memory; undefined for a file on disk. */
  viewRaw(name: string): Uint8Array | undefined {
    const entry = this.entry(name);
    return this.store.view?.(entry.offset, entry.byteLength);
  }

  /** The file's size in bytes. */
  get size(): number {
    return this.store.size;
  }

  /** Bytes `[offset, offset + length)` of the file, header included, in a fresh buffer. */
  readBytes(offset: number, length: number): Uint8Array {
    return this.store.read(offset, length, `${this.path}: bytes [${offset}, ${offset + length})`);
  }

  /** Whether the tensors are in memory (`fromBytes`, `fromReader`) rather than read from a file. */
  get inMemory(): boolean {
    return this.store.view !== undefined;
  }

  /** The tensor as float32: F32 as stored, F16/BF16 upcast exactly, F64 rounded to nearest. */
  readFloat32(name: string): Float32Array {
    const entry = this.entry(name);
    if (!FLOAT32_SOURCES.includes(entry.dtype)) {
      throw new Error(
        `${this.path}: tensor '${name}': dtype ${entry.dtype} has no float32 conversion; accepted: ${FLOAT32_SOURCES.join(", ")}`,
      );
    }
    return decodeFloat32(entry.dtype, this.readRaw(name), `${this.path}: tensor '${name}'`);
  }

  close(): void {
    this.store.close();
  }
}

const FLOAT32_SOURCES: readonly SafetensorsDType[] = ["F32", "F16", "BF16", "F64"];

/**
 * Decodes little-endian F32/F16/BF16/F64 bytes to float32; `what` names the tensor in errors.
 * For F32 at an aligned offset the result is a view of `bytes`' memory, not a copy.
 */
export function decodeFloat32(dtype: SafetensorsDType, bytes: Uint8Array, what = "tensor"): Float32Array {
  assertLittleEndianHost();
  const count = bytes.byteLength / SAFETENSORS_DTYPE_BYTES[dtype];
  if (!Number.isInteger(count)) {
    throw new Error(`${what}: ${bytes.byteLength} bytes are not a whole number of ${dtype} elements`);
  }
  // Typed-array views need an aligned start; copy only when the caller's bytes are not aligned.
  const aligned = bytes.byteOffset % 8 === 0 ? bytes : bytes.slice();
  const { buffer, byteOffset } = aligned;
  switch (dtype) {
    case "F32":
      return new Float32Array(buffer, byteOffset, count);
    case "F16":
      return halfArrayToFloat32(new Uint16Array(buffer, byteOffset, count));
    case "BF16":
      return bf16ArrayToFloat32(new Uint16Array(buffer, byteOffset, count));
    case "F64":
      return Float32Array.from(new Float64Array(buffer, byteOffset, count));
    default:
      throw new Error(`${what}: dtype ${dtype} has no float32 conversion; accepted: ${FLOAT32_SOURCES.join(", ")}`);
  }
}

/** The graph dtype that holds a safetensors dtype bit for bit (for weights referenced in place), if any. */
export function graphDType(dtype: SafetensorsDType): DType | undefined {
  return GRAPH_DTYPES[dtype];
}

const GRAPH_DTYPES: Partial<Record<SafetensorsDType, DType>> = {
  F32: "float32",
  F64: "float64",
  F16: "float16",
  I64: "int64",
  I32: "int32",
  BOOL: "bool",
};

/**
 * `tensors` in the safetensors format, laid out as the reference serializer does: tensors ordered
 * by decreasing dtype alignment, then by name (UTF-8 byte order); `__metadata__` first with its
 * keys sorted (the reference leaves them in hash order); header padded with spaces to a multiple
 * of 8. `name` prefixes error messages.
 */
export function encodeSafetensors(
  tensors: Readonly<Record<string, SafetensorsTensor>>,
  metadata: Readonly<Record<string, string>> = {},
  name = "safetensors",
): Uint8Array {
  return concatBytes(encodeChunks(name, tensors, metadata));
}

/**
 * Writes `tensors` as a safetensors file (laid out as `encodeSafetensors` does). The file is written
 * to `<path>.partial`, flushed and renamed, so `path` is either the old file or the complete new
 * one, never a partial write.
 */
export function writeSafetensors(
  path: string,
  tensors: Readonly<Record<string, SafetensorsTensor>>,
  metadata: Readonly<Record<string, string>> = {},
): void {
  getPlatform().writeFileAtomic(path, encodeChunks(path, tensors, metadata));
}

/** The length prefix, the padded header and each tensor's bytes (views of the caller's arrays). */
function encodeChunks(
  name: string,
  tensors: Readonly<Record<string, SafetensorsTensor>>,
  metadata: Readonly<Record<string, string>>,
): Uint8Array[] {
  assertLittleEndianHost();
  const layout = layoutTensors(name, tensors);
  const header = new TextEncoder().encode(headerJson(name, layout, metadata));
  const padded = new Uint8Array(Math.ceil(header.length / 8) * 8).fill(0x20);
  padded.set(header);
  const prefix = new Uint8Array(8);
  new DataView(prefix.buffer).setBigUint64(0, BigInt(padded.length), true);
  return [prefix, padded, ...layout.map((t) => t.bytes)];
}

// ---------------------------------------------------------------------------------------------
// Reading

interface Span {
  name: string;
  begin: number;
  end: number;
}

/** The header length from the 8-byte prefix of a `fileSize`-byte file, checked before any allocation. */
function checkedHeaderLength(path: string, prefix: Uint8Array, fileSize: number): number {
  const fail = (detail: string): never => {
    throw new Error(`${path}: invalid safetensors file: ${detail}`);
  };
  // Compared as a bigint: a hostile u64 must be rejected before it becomes a (lossy) number or an allocation size.
  const declared = new DataView(prefix.buffer, prefix.byteOffset, 8).getBigUint64(0, true);
  if (declared < 2n) fail(`header length ${declared} is below 2, the size of an empty JSON object '{}'`);
  if (declared > BigInt(MAX_HEADER_BYTES))
    fail(`header length ${declared} exceeds the limit of ${MAX_HEADER_BYTES} bytes`);
  if (declared > BigInt(fileSize - 8)) {
    fail(`header length ${declared} exceeds the ${fileSize - 8} bytes after the length field (truncated file?)`);
  }
  return Number(declared);
}

function readHeader(
  path: string,
  store: ByteStore,
  fileSize = store.size,
): { entries: Map<string, SafetensorsEntry>; metadata: Record<string, string> } {
  const fail = (detail: string): never => {
    throw new Error(`${path}: invalid safetensors file: ${detail}`);
  };
  if (fileSize < 8) fail(`the file has ${fileSize} bytes, fewer than the 8-byte header length`);

  const prefix = store.read(0, 8, `${path}: header length`);
  const headerLength = checkedHeaderLength(path, prefix, fileSize);
  const headerBytes = store.view?.(8, headerLength) ?? store.read(8, headerLength, `${path}: header`);
  let text = "";
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(headerBytes);
  } catch {
    fail("the header is not valid UTF-8");
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    fail(`the header is not valid JSON (${(error as Error).message})`);
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
    fail(`the header must be a JSON object, got ${describe(parsed)}`);
  }

  const dataStart = 8 + headerLength;
  const dataLength = fileSize - dataStart;
  let metadata: Record<string, string> = {};
  const infos: { name: string; dtype: SafetensorsDType; shape: number[]; begin: number; end: number }[] = [];
  for (const [name, value] of Object.entries(parsed as Record<string, unknown>)) {
    if (name === METADATA_KEY) {
      metadata = parseMetadata(value, fail);
      continue;
    }
    const info = parseTensorInfo(value, (detail) => fail(`tensor '${name}': ${detail}`));
    if (info.end > dataLength) {
      fail(
        `tensor '${name}': data_offsets [${info.begin}, ${info.end}] end past the data buffer, ` +
          `which has ${dataLength} bytes (truncated file?)`,
      );
    }
    infos.push({ name, ...info });
  }

  checkTiling(infos, dataLength, fail);
  const entries = new Map<string, SafetensorsEntry>();
  for (const info of infos) {
    const entry: SafetensorsEntry = {
      name: info.name,
      dtype: info.dtype,
      shape: Object.freeze(info.shape),
      offset: dataStart + info.begin,
      byteLength: info.end - info.begin,
    };
    entries.set(info.name, Object.freeze(entry));
  }
  return { entries, metadata: Object.freeze(metadata) };
}

function parseMetadata(value: unknown, fail: (detail: string) => never): Record<string, string> {
  // The reference deserialises `__metadata__` as Option<HashMap<String, String>>, so null means none.
  if (value === null) return {};
  if (typeof value !== "object" || Array.isArray(value)) {
    return fail(`'${METADATA_KEY}' must be an object of strings, got ${describe(value)}`);
  }
  const pairs = Object.entries(value as Record<string, unknown>);
  for (const [key, item] of pairs) {
    if (typeof item !== "string") fail(`'${METADATA_KEY}.${key}' must be a string, got ${describe(item)}`);
  }
  return Object.fromEntries(pairs as [string, string][]);
}

function parseTensorInfo(
  value: unknown,
  fail: (detail: string) => never,
): { dtype: SafetensorsDType; shape: number[]; begin: number; end: number } {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    return fail(`expected an object with dtype, shape and data_offsets, got ${describe(value)}`);
  }
  const { dtype, shape, data_offsets: offsets } = value as Record<string, unknown>;
  if (typeof dtype !== "string" || !Object.hasOwn(SAFETENSORS_DTYPE_BYTES, dtype)) {
    fail(`unknown dtype ${describe(dtype)}; accepted: ${DTYPE_ORDER.join(", ")}`);
  }
  const elementBytes = SAFETENSORS_DTYPE_BYTES[dtype as SafetensorsDType];
  if (!Array.isArray(shape) || !shape.every(isNonNegativeInteger)) {
    fail(`shape must be an array of non-negative integers, got ${describe(shape)}`);
  }
  if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isNonNegativeInteger)) {
    fail(`data_offsets must be two non-negative integers [begin, end], got ${describe(offsets)}`);
  }
  const [begin, end] = offsets as [number, number];
  if (begin > end) fail(`data_offsets [${begin}, ${end}] begin after they end`);
  const count = elementCount(shape as number[]);
  if (count === undefined || count * elementBytes !== end - begin) {
    fail(
      `shape [${(shape as number[]).join(", ")}] of ${dtype} needs ${count === undefined ? "over 2^53" : count * elementBytes} ` +
        `bytes but data_offsets [${begin}, ${end}] hold ${end - begin}`,
    );
  }
  return { dtype: dtype as SafetensorsDType, shape: [...(shape as number[])], begin, end };
}

/**
 * The reference requires the tensors, sorted by offsets, to tile the data buffer: each begins where
 * the previous ends (else `InvalidOffset`) and the last ends at the end of the file (else
 * `MetadataIncompleteBuffer`). Gaps are rejected too, so every byte of the file is accounted for.
 */
function checkTiling(spans: Span[], dataLength: number, fail: (detail: string) => never): void {
  spans.sort((a, b) => a.begin - b.begin || a.end - b.end);
  let previous: Span | undefined;
  for (const span of spans) {
    const expected = previous?.end ?? 0;
    const where = `tensor '${span.name}' (bytes [${span.begin}, ${span.end}))`;
    if (previous && span.begin < expected) {
      fail(`${where} overlaps tensor '${previous.name}' (bytes [${previous.begin}, ${previous.end}))`);
    }
    if (span.begin > expected) {
      const before = previous ? `tensor '${previous.name}' ends at ${expected}` : "the data buffer starts at 0";
      fail(`${where} leaves a gap of ${span.begin - expected} bytes: ${before}; tensors must tile the data buffer`);
    }
    previous = span;
  }
  const covered = previous?.end ?? 0;
  if (covered !== dataLength) {
    fail(
      `the tensors cover ${covered} bytes of the ${dataLength}-byte data buffer; ${dataLength - covered} trailing bytes`,
    );
  }
}

// ---------------------------------------------------------------------------------------------
// Writing

interface LaidOut {
  name: string;
  dtype: SafetensorsDType;
  shape: readonly number[];
  bytes: Uint8Array;
  begin: number;
}

function layoutTensors(path: string, tensors: Readonly<Record<string, SafetensorsTensor>>): LaidOut[] {
  const items: Omit<LaidOut, "begin">[] = [];
  for (const [name, tensor] of Object.entries(tensors)) {
    const what = `${path}: cannot write tensor '${name}'`;
    if (name === METADATA_KEY) throw new Error(`${what}: the name is reserved for the metadata`);
    const { dtype, shape, data } = tensor;
    if (!Object.hasOwn(SAFETENSORS_DTYPE_BYTES, dtype)) {
      throw new Error(`${what}: unknown dtype ${describe(dtype)}; accepted: ${DTYPE_ORDER.join(", ")}`);
    }
    if (!Array.isArray(shape) || !shape.every(isNonNegativeInteger)) {
      throw new Error(`${what}: shape must be an array of non-negative integers, got ${describe(shape)}`);
    }
    if (!ArrayBuffer.isView(data)) throw new Error(`${what}: data must be a typed array or DataView`);
    const count = elementCount(shape);
    const expected = count === undefined ? Number.POSITIVE_INFINITY : count * SAFETENSORS_DTYPE_BYTES[dtype];
    if (data.byteLength !== expected) {
      throw new Error(
        `${what}: shape [${shape.join(", ")}] of ${dtype} needs ${expected} bytes, but data has ${data.byteLength}`,
      );
    }
    items.push({
      name,
      dtype,
      shape: [...shape],
      bytes: new Uint8Array(data.buffer, data.byteOffset, data.byteLength),
    });
  }
  const rank = (d: SafetensorsDType) => DTYPE_ORDER.indexOf(d);
  items.sort((a, b) => rank(b.dtype) - rank(a.dtype) || compareUtf8(a.name, b.name));
  let begin = 0;
  return items.map((item) => {
    const laid = { ...item, begin };
    begin += item.bytes.byteLength;
    return laid;
  });
}

/** Compact JSON built by hand: a JS object would move integer-like tensor names ("0", "12") to the front. */
function headerJson(path: string, layout: LaidOut[], metadata: Readonly<Record<string, string>>): string {
  const parts: string[] = [];
  const metaKeys = Object.keys(metadata).sort(compareUtf8);
  if (metaKeys.length > 0) {
    const pairs = metaKeys.map((key) => {
      const value = metadata[key];
      if (typeof value !== "string") {
        throw new Error(`${path}: metadata '${key}' must be a string, got ${describe(value)}`);
      }
      return `${JSON.stringify(key)}:${JSON.stringify(value)}`;
    });
    parts.push(`${JSON.stringify(METADATA_KEY)}:{${pairs.join(",")}}`);
  }
  for (const t of layout) {
    const info = `{"dtype":"${t.dtype}","shape":[${t.shape.join(",")}],"data_offsets":[${t.begin},${t.begin + t.bytes.byteLength}]}`;
    parts.push(`${JSON.stringify(t.name)}:${info}`);
  }
  return `{${parts.join(",")}}`;
}

// ---------------------------------------------------------------------------------------------
// Helpers

/** Product of the dims, or undefined when it exceeds 2^53 (no real tensor is that large). */
function elementCount(shape: readonly number[]): number | undefined {
  if (shape.includes(0)) return 0;
  let count = 1;
  for (const dim of shape) {
    count *= dim;
    if (count > Number.MAX_SAFE_INTEGER) return undefined;
  }
  return count;
}

function isNonNegativeInteger(value: unknown): value is number {
  return typeof value === "number" && Number.isSafeInteger(value) && value >= 0;
}

function compareUtf8(a: string, b: string): number {
  const encoder = new TextEncoder();
  return compareBytes(encoder.encode(a), encoder.encode(b));
}

function describe(value: unknown): string {
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}

function assertLittleEndianHost(): void {
  // safetensors data is little-endian and typed arrays use the host's byte order.
  if (!isLittleEndianHost()) throw new Error("safetensors: big-endian hosts are not supported");
}

/** Up to `limit` of `names` nearest to `target` by edit distance. */
function closestNames(target: string, names: string[], limit: number): string[] {
  return names
    .map((name) => ({ name, distance: editDistance(target, name) }))
    .sort((a, b) => a.distance - b.distance || (a.name < b.name ? -1 : 1))
    .slice(0, limit)
    .map((scored) => scored.name);
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      const substitution = (previous[j - 1] as number) + (a[i - 1] === b[j - 1] ? 0 : 1);
      current.push(Math.min((previous[j] as number) + 1, (current[j - 1] as number) + 1, substitution));
    }
    previous = current;
  }
  return previous[b.length] as number;
}

/**
 * The index of the first NaN or ±Inf element of little-endian float bytes (by their exponent bits:
 * all ones), or -1; integer dtypes have none. Runs over the bytes as they are read (the
 * fingerprint's pass), so damaged weights are refused at load rather than found after a run.
 */
export function firstNonFinite(dtype: SafetensorsDType, bytes: Uint8Array): number {
  assertLittleEndianHost();
  const size = SAFETENSORS_DTYPE_BYTES[dtype];
  if (!["F32", "F16", "BF16", "F64"].includes(dtype)) return -1;
  const aligned = bytes.byteOffset % size === 0 ? bytes : bytes.slice();
  const count = Math.floor(aligned.byteLength / size);
  if (dtype === "F32") {
    const words = new Uint32Array(aligned.buffer, aligned.byteOffset, count);
    for (let i = 0; i < words.length; i++) {
      if (((words[i] as number) & 0x7f800000) === 0x7f800000) return i;
    }
    return -1;
  }
  if (dtype === "F64") {
    // The exponent is in the high word of each little-endian pair.
    const words = new Uint32Array(aligned.buffer, aligned.byteOffset, count * 2);
    for (let i = 1; i < words.length; i += 2) {
      if (((words[i] as number) & 0x7ff00000) === 0x7ff00000) return (i - 1) / 2;
    }
    return -1;
  }
  const halves = new Uint16Array(aligned.buffer, aligned.byteOffset, count);
  const mask = dtype === "F16" ? 0x7c00 : 0x7f80;
  for (let i = 0; i < halves.length; i++) {
    if (((halves[i] as number) & mask) === mask) return i;
  }
  return -1;
}
