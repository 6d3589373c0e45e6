/**
 * The inversion file: everything needed to reconstruct and edit an image without inverting it again
 * — z_T, the method's own tensors (e.g. null-text inversion's per-step ∅_t; optionally float16), the
 * prompt, every setting, the model's fingerprint (and where that model was loaded from, as a hint)
 * and the source image's hash — as one safetensors file with a versioned JSON header.
 *
 * Layout, version 3: tensors `z_T` [C, h, w] and `method.<name>` for each of the method's tensors;
 * the header (metadata key `nulltext`) lists the method's tensor names; metadata key
 * `nulltext_crc32` holds a CRC-32 over the header's text and every tensor (name, dtype, shape,
 * bytes), written at save and verified at load, so one flipped bit anywhere is refused. Version 2
 * is version 3 without the checksum and the model hint; version 1 (nulltext ≤ 0.1) stored the
 * optimised embeddings as `embeddings` [n, L, D]: read as the method's `embeddings`.
 *
 * Loading checks the checksum, the version, the model, every header field (a message names the file
 * and the field), every tensor's shape (asking the method which tensors it stores) and values:
 * finite, |z_T| ≤ LATENT_BOUND and |method tensors| ≤ EMBEDDING_BOUND.
 */
import { float32ArrayToHalf } from "../graph/index.js";
import {
  decodeFloat32,
  encodeSafetensors,
  SafetensorsFile,
  type SafetensorsTensor,
  writeSafetensors,
} from "../models/safetensors.js";
import type { InversionSettings, StoredTensor } from "./method.js";
import { getMethod, resolveSettings } from "./registry.js";

export const INVERSION_FORMAT = "nulltext-inversion";
export const INVERSION_VERSION = 3;
const READABLE_VERSIONS = [1, 2, 3];
const CHECKSUM_KEY = "nulltext_crc32";
/**
 * |z_T| bound: a DDIM-inverted latent of a VAE latent (SD: scaled by 0.18215) stays within a few
 * units; 1e3 leaves room for unusual models while refusing garbage such as 3e38.
 */
export const LATENT_BOUND = 1e3;
/** |value| bound of the method's tensors (text embeddings: CLIP's hidden states are within ±100). */
export const EMBEDDING_BOUND = 1e4;
/** Sizes no model has (a damaged header must not make an allocation of its size). */
const MAX_SIDE = 16384;
const MAX_STEPS = 1000;

/** An inversion made with another model than the loaded one; says which, and where it was loaded from. */
export class ModelMismatchError extends Error {
  constructor(
    readonly file: string,
    /** The fingerprint the inversion was made with. */
    readonly madeWith: string,
    /** Where that model was loaded from when the inversion was made (files of version ≥ 3). */
    readonly modelSource: string | undefined,
    readonly loaded: string,
  ) {
    super(
      `${file}: this inversion was made with another model (fingerprint ${madeWith}${modelSource ? `, loaded from '${modelSource}'` : ""}); the loaded model is ${loaded}. ${modelSource ? `Load '${modelSource}'` : "Load the model it was made with"}, or invert the image again with this one.`,
    );
  }
}

export interface Inversion {
  prompt: string;
  /** The method's id and its full settings. */
  settings: InversionSettings;
  /** The model's fingerprint (see loadStableDiffusion). */
  model: string;
  /** Where the model was loaded from (a path or name), for messages: "made with another model: load X". */
  modelSource?: string;
  /** sha256 of the source image's pixels at model resolution. */
  imageHash: string;
  width: number;
  height: number;
  /** [C, h, w] */
  latentShape: [number, number, number];
  zT: Float32Array;
  /** The method's own tensors by name (null-text inversion: `embeddings` [steps, L, D]). */
  tensors: Record<string, StoredTensor>;
  /** [L, D] of the model's text embeddings. */
  embeddingShape: [number, number];
  /** Reconstruction quality measured when the file was written (optional). */
  stats?: Record<string, number>;
}

interface Header {
  format: string;
  version: number;
  prompt: string;
  settings: InversionSettings;
  model: string;
  /** Version 3. */
  modelSource?: string;
  imageHash: string;
  width: number;
  height: number;
  latentShape: [number, number, number];
  embeddingShape: [number, number];
  /** Version ≥ 2: the method's tensor names. */
  tensors?: string[];
  /** Version 1: the number of stored embeddings. */
  embeddingCount?: number;
  stats?: Record<string, number>;
  created: string;
}

const METHOD_PREFIX = "method.";

/** Writes the inversion file atomically (a temporary file renamed over `path`). */
export function writeInversion(path: string, inv: Inversion, options: { float16?: boolean } = {}): void {
  const { tensors, metadata } = layout(inv, options);
  writeSafetensors(path, tensors, metadata);
}

/** The inversion file's bytes (for a download, an upload or a browser's storage). */
export function encodeInversion(inv: Inversion, options: { float16?: boolean } = {}): Uint8Array {
  const { tensors, metadata } = layout(inv, options);
  return encodeSafetensors(tensors, metadata, "inversion");
}

function layout(
  inv: Inversion,
  options: { float16?: boolean },
): { tensors: Record<string, SafetensorsTensor>; metadata: Record<string, string> } {
  const tensors: Record<string, SafetensorsTensor> = {
    z_T: { dtype: "F32", shape: inv.latentShape, data: inv.zT },
  };
  for (const [name, t] of Object.entries(inv.tensors)) {
    tensors[METHOD_PREFIX + name] = options.float16
      ? { dtype: "F16", shape: t.shape, data: float32ArrayToHalf(t.data) }
      : { dtype: "F32", shape: t.shape, data: t.data };
  }
  const header: Header = {
    format: INVERSION_FORMAT,
    version: INVERSION_VERSION,
    prompt: inv.prompt,
    settings: inv.settings,
    model: inv.model,
    ...(inv.modelSource !== undefined ? { modelSource: inv.modelSource } : {}),
    imageHash: inv.imageHash,
    width: inv.width,
    height: inv.height,
    latentShape: inv.latentShape,
    embeddingShape: inv.embeddingShape,
    tensors: Object.keys(inv.tensors),
    stats: inv.stats,
    created: new Date().toISOString(),
  };
  const text = JSON.stringify(header);
  const crc = checksum(
    text,
    Object.entries(tensors).map(([name, t]) => ({
      name,
      dtype: t.dtype,
      shape: t.shape,
      bytes: new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength),
    })),
  );
  return { tensors, metadata: { nulltext: text, [CHECKSUM_KEY]: crc } };
}

/** CRC-32 (IEEE) over the header text and each tensor's name, dtype, shape and bytes in name order, as 8 hex digits. */
function checksum(
  header: string,
  tensors: { name: string; dtype: string; shape: readonly number[]; bytes: Uint8Array }[],
): string {
  const encoder = new TextEncoder();
  let crc = crc32(encoder.encode(header));
  for (const t of [...tensors].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
    crc = crc32(encoder.encode(`\0${t.name}\0${t.dtype}\0${t.shape.join(",")}\0`), crc);
    crc = crc32(t.bytes, crc);
  }
  return crc.toString(16).padStart(8, "0");
}

let crcTable: Uint32Array | undefined;

function crc32(bytes: Uint8Array, previous = 0): number {
  if (!crcTable) {
    crcTable = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      crcTable[n] = c >>> 0;
    }
  }
  const table = crcTable;
  let c = ~previous >>> 0;
  for (let i = 0; i < bytes.length; i++) c = (table[(c ^ (bytes[i] as number)) & 0xff] as number) ^ (c >>> 8);
  return ~c >>> 0;
}

/**
 * Reads an inversion; `expectModel` (a fingerprint) makes a file from another model an error
 * (ModelMismatchError, naming the model the file was made with).
 */
export function readInversion(path: string, expectModel?: string): Inversion {
  return fromSafetensors(SafetensorsFile.open(path), expectModel);
}

/** An inversion file's bytes (`name` is used in messages); see readInversion. */
export function decodeInversion(bytes: Uint8Array, name = "inversion", expectModel?: string): Inversion {
  return fromSafetensors(SafetensorsFile.fromBytes(bytes, name), expectModel);
}

function fromSafetensors(st: SafetensorsFile, expectModel: string | undefined): Inversion {
  const path = st.path;
  try {
    const raw = new Map([...st.entries.values()].map((e) => [e.name, st.readRaw(e.name)]));
    const text = st.metadata.nulltext;
    const stored = st.metadata[CHECKSUM_KEY];
    for (const key of Object.keys(st.metadata)) {
      if (key !== "nulltext" && key !== CHECKSUM_KEY)
        throw new Error(`${path}: corrupt inversion file: unknown metadata key '${key}'`);
    }
    if (stored !== undefined && text !== undefined) {
      const actual = checksum(
        text,
        [...st.entries.values()].map((e) => ({
          name: e.name,
          dtype: e.dtype,
          shape: e.shape,
          bytes: raw.get(e.name) as Uint8Array,
        })),
      );
      if (actual !== stored) {
        throw new Error(
          `${path}: corrupt inversion file: checksum ${actual} of the header and tensors ≠ the stored ${stored} (the file was changed or damaged after it was written)`,
        );
      }
    }
    const h = parseHeader(path, text);
    if (h.version >= 3 && stored === undefined)
      throw new Error(`${path}: corrupt inversion file: version ${h.version} without its checksum '${CHECKSUM_KEY}'`);
    if (expectModel && h.model !== expectModel) throw new ModelMismatchError(path, h.model, h.modelSource, expectModel);
    const expected = new Set(
      h.version === 1
        ? ["z_T", ...((h.embeddingCount ?? 0) > 0 ? ["embeddings"] : [])]
        : ["z_T", ...(h.tensors ?? []).map((n) => METHOD_PREFIX + n)],
    );
    for (const name of st.entries.keys()) {
      if (!expected.has(name))
        throw new Error(`${path}: corrupt inversion file: tensor '${name}' is not in the header`);
    }
    const float = (name: string, bound: number): Float32Array => {
      const entry = st.entry(name);
      const data = decodeFloat32(entry.dtype, raw.get(name) as Uint8Array, `${path}: tensor '${name}'`);
      return checkRange(path, name, data, bound);
    };
    const z = st.entry("z_T");
    if (z.shape.join() !== h.latentShape.join())
      throw new Error(`${path}: z_T has shape [${z.shape}], the header says [${h.latentShape}]`);
    const zT = float("z_T", LATENT_BOUND);
    const read = (file: string): StoredTensor => ({
      shape: [...st.entry(file).shape],
      data: float(file, EMBEDDING_BOUND),
    });
    const tensors: Record<string, StoredTensor> = {};
    if (h.version === 1) {
      if ((h.embeddingCount ?? 0) > 0) tensors.embeddings = read("embeddings");
    } else {
      for (const name of h.tensors ?? []) tensors[name] = read(METHOD_PREFIX + name);
    }
    try {
      getMethod(h.settings.method).checkStored(tensors, h.settings, h.embeddingShape);
    } catch (err) {
      throw new Error(`${path}: ${(err as Error).message}`);
    }
    return {
      prompt: h.prompt,
      settings: h.settings,
      model: h.model,
      modelSource: h.modelSource,
      imageHash: h.imageHash,
      width: h.width,
      height: h.height,
      latentShape: h.latentShape,
      zT,
      tensors,
      embeddingShape: h.embeddingShape,
      stats: h.stats,
    };
  } finally {
    st.close();
  }
}

const HEADER_FIELDS = new Set([
  "format",
  "version",
  "prompt",
  "settings",
  "model",
  "modelSource",
  "imageHash",
  "width",
  "height",
  "latentShape",
  "embeddingShape",
  "tensors",
  "embeddingCount",
  "stats",
  "created",
]);

/** The header, checked field by field: a damaged header is named, never a raw TypeError later. */
function parseHeader(path: string, raw: string | undefined): Header {
  if (!raw) throw new Error(`${path}: not a nulltext inversion file (no 'nulltext' header)`);
  let h: Header;
  try {
    h = JSON.parse(raw) as Header;
  } catch (err) {
    throw new Error(`${path}: corrupt inversion header (${(err as Error).message})`);
  }
  if (h === null || typeof h !== "object" || Array.isArray(h))
    throw new Error(`${path}: corrupt inversion header (not an object): ${JSON.stringify(h)}`);
  if (h.format !== INVERSION_FORMAT) throw new Error(`${path}: not a nulltext inversion file (format '${h.format}')`);
  if (!READABLE_VERSIONS.includes(h.version)) {
    throw new Error(
      `${path}: inversion format version ${JSON.stringify(h.version)}; this nulltext reads versions ${READABLE_VERSIONS.join(", ")}`,
    );
  }
  const bad = (field: string, expected: string) =>
    new Error(
      `${path}: corrupt inversion header: '${field}' is ${describe(h[field as keyof Header])}, expected ${expected}`,
    );
  for (const key of Object.keys(h)) {
    if (!HEADER_FIELDS.has(key)) throw new Error(`${path}: corrupt inversion header: unknown field '${key}'`);
  }
  const ints = (v: unknown, n: number, max: number) =>
    Array.isArray(v) && v.length === n && v.every((x) => Number.isInteger(x) && x > 0 && x <= max);
  const optionalString = (field: "modelSource" | "created") => {
    if (h[field] !== undefined && typeof h[field] !== "string") throw bad(field, "a string");
  };
  if (typeof h.prompt !== "string") throw bad("prompt", "a string");
  if (typeof h.model !== "string" || h.model.length === 0) throw bad("model", "a fingerprint string");
  optionalString("modelSource");
  optionalString("created");
  if (typeof h.imageHash !== "string") throw bad("imageHash", "a string");
  if (!Number.isInteger(h.width) || h.width <= 0 || h.width > MAX_SIDE)
    throw bad("width", `an integer in 1..${MAX_SIDE}`);
  if (!Number.isInteger(h.height) || h.height <= 0 || h.height > MAX_SIDE)
    throw bad("height", `an integer in 1..${MAX_SIDE}`);
  if (!ints(h.latentShape, 3, MAX_SIDE)) throw bad("latentShape", `[C, h, w] of integers in 1..${MAX_SIDE}`);
  if (!ints(h.embeddingShape, 2, MAX_SIDE)) throw bad("embeddingShape", `[L, D] of integers in 1..${MAX_SIDE}`);
  const s = h.settings as unknown;
  if (s === null || typeof s !== "object" || Array.isArray(s)) throw bad("settings", "an object");
  const settings = s as Record<string, unknown>;
  if (typeof settings.method !== "string") throw bad("settings", "an object with the method's id");
  if (!Number.isInteger(settings.steps) || (settings.steps as number) < 1 || (settings.steps as number) > MAX_STEPS)
    throw bad("settings", `an object whose steps is an integer in 1..${MAX_STEPS}`);
  try {
    // The method's own check of its settings: every value in its range, no setting of another method
    // (version 1 stored every method's settings in every file: the others are not looked at).
    const own = h.version === 1 ? ownSettings(settings) : settings;
    resolveSettings(own);
  } catch (err) {
    throw new Error(`${path}: corrupt inversion header: 'settings': ${(err as Error).message}`);
  }
  if (h.version >= 2 && !(Array.isArray(h.tensors) && h.tensors.every((t) => typeof t === "string")))
    throw bad("tensors", "a list of tensor names");
  if (
    h.version === 1 &&
    h.embeddingCount !== undefined &&
    !(Number.isInteger(h.embeddingCount) && h.embeddingCount >= 0)
  )
    throw bad("embeddingCount", "a non-negative integer");
  if (
    h.stats !== undefined &&
    (h.stats === null ||
      typeof h.stats !== "object" ||
      Array.isArray(h.stats) ||
      !Object.values(h.stats).every((v) => typeof v === "number"))
  )
    throw bad("stats", "an object of numbers");
  return h;
}

/** The settings of a version 1 file that belong to its method. */
function ownSettings(settings: Record<string, unknown>): Record<string, unknown> {
  const defaults = getMethod(settings.method as string).defaults as Record<string, unknown>;
  return Object.fromEntries(Object.entries(settings).filter(([k]) => k === "method" || k in defaults));
}

function describe(value: unknown): string {
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}

/** Every value finite and within ±bound, or an error naming the file, the tensor, the index and the value. */
function checkRange(path: string, name: string, data: Float32Array, bound: number): Float32Array {
  for (let i = 0; i < data.length; i++) {
    const v = data[i] as number;
    if (!(Math.abs(v) <= bound)) {
      throw new Error(
        `${path}: tensor '${name}' holds ${v} at index ${i}${Number.isFinite(v) ? `, beyond the bound ±${bound}` : ""}: the file is corrupt`,
      );
    }
  }
  return data;
}
