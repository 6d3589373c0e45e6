/**
 * The inversion file: everything needed to reconstruct and edit an image without inverting it again
 * — z_T, the method's own tensors (e.g. null-text inversion's per-step ∅_t; optionally float16), the
 * prompt, every setting, the model's fingerprint and the source image's hash — as one safetensors
 * file with a versioned JSON header. Loading checks the version, the model, the header's fields and
 * every tensor's shape (asking the method which tensors it stores) and values.
 *
 * Layout, version 2: tensors `z_T` [C, h, w] and `method.<name>` for each of the method's tensors;
 * the header (metadata key `nulltext`) lists the method's tensor names. Version 1 (nulltext ≤ 0.1)
 * stored the optimised embeddings as `embeddings` [n, L, D]: read as the method's `embeddings`.
 */
import { float32ArrayToHalf } from "../graph/index.js";
import { encodeSafetensors, SafetensorsFile, type SafetensorsTensor, writeSafetensors } from "../models/safetensors.js";
import type { InversionSettings, StoredTensor } from "./method.js";
import { getMethod } from "./registry.js";

export const INVERSION_FORMAT = "nulltext-inversion";
export const INVERSION_VERSION = 2;
const READABLE_VERSIONS = [1, 2];

export interface Inversion {
  prompt: string;
  /** The method's id and its full settings. */
  settings: InversionSettings;
  /** The model's fingerprint (see loadStableDiffusion). */
  model: string;
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
  imageHash: string;
  width: number;
  height: number;
  latentShape: [number, number, number];
  embeddingShape: [number, number];
  /** Version 2: the method's tensor names. */
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
    imageHash: inv.imageHash,
    width: inv.width,
    height: inv.height,
    latentShape: inv.latentShape,
    embeddingShape: inv.embeddingShape,
    tensors: Object.keys(inv.tensors),
    stats: inv.stats,
    created: new Date().toISOString(),
  };
  return { tensors, metadata: { nulltext: JSON.stringify(header) } };
}

/** Reads an inversion; `expectModel` (a fingerprint) makes a file from another model an error. */
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
    const h = parseHeader(path, st.metadata.nulltext);
    if (expectModel && h.model !== expectModel) {
      throw new Error(
        `${path}: this inversion was made with another model (fingerprint ${h.model}); the loaded model is ${expectModel}. Invert the image again with this model.`,
      );
    }
    const z = st.entry("z_T");
    if (z.shape.join() !== h.latentShape.join())
      throw new Error(`${path}: z_T has shape [${z.shape}], the header says [${h.latentShape}]`);
    const zT = checkFinite(path, "z_T", st.readFloat32("z_T"));
    const read = (file: string): StoredTensor => ({
      shape: [...st.entry(file).shape],
      data: checkFinite(path, file, st.readFloat32(file)),
    });
    const tensors: Record<string, StoredTensor> = {};
    if (h.version === 1) {
      if ((h.embeddingCount ?? 0) > 0) tensors.embeddings = read("embeddings");
    } else {
      for (const name of h.tensors ?? []) tensors[name] = read(METHOD_PREFIX + name);
    }
    let method: ReturnType<typeof getMethod>;
    try {
      method = getMethod(h.settings.method);
    } catch (err) {
      throw new Error(`${path}: ${(err as Error).message}`);
    }
    try {
      method.checkStored(tensors, h.settings, h.embeddingShape);
    } catch (err) {
      throw new Error(`${path}: ${(err as Error).message}`);
    }
    return {
      prompt: h.prompt,
      settings: h.settings,
      model: h.model,
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
    throw new Error(`${path}: corrupt inversion header (not an object)`);
  if (h.format !== INVERSION_FORMAT) throw new Error(`${path}: not a nulltext inversion file (format '${h.format}')`);
  if (!READABLE_VERSIONS.includes(h.version)) {
    throw new Error(
      `${path}: inversion format version ${h.version}; this nulltext reads versions ${READABLE_VERSIONS.join(" and ")}`,
    );
  }
  const bad = (field: string, expected: string) =>
    new Error(
      `${path}: corrupt inversion header: '${field}' is ${JSON.stringify(h[field as keyof Header])}, expected ${expected}`,
    );
  const ints = (v: unknown, n: number) =>
    Array.isArray(v) && v.length === n && v.every((x) => Number.isInteger(x) && x > 0);
  if (typeof h.prompt !== "string") throw bad("prompt", "a string");
  if (typeof h.model !== "string") throw bad("model", "a fingerprint string");
  if (typeof h.imageHash !== "string") throw bad("imageHash", "a string");
  if (!Number.isInteger(h.width) || h.width <= 0) throw bad("width", "a positive integer");
  if (!Number.isInteger(h.height) || h.height <= 0) throw bad("height", "a positive integer");
  if (!ints(h.latentShape, 3)) throw bad("latentShape", "[C, h, w]");
  if (!ints(h.embeddingShape, 2)) throw bad("embeddingShape", "[L, D]");
  const s = h.settings;
  if (s === null || typeof s !== "object" || typeof s.method !== "string" || !Number.isInteger(s.steps) || s.steps < 1)
    throw bad("settings", "an object with method and steps");
  if (h.version >= 2 && !(Array.isArray(h.tensors) && h.tensors.every((t) => typeof t === "string")))
    throw bad("tensors", "a list of tensor names");
  return h;
}

function checkFinite(path: string, name: string, data: Float32Array): Float32Array {
  for (let i = 0; i < data.length; i++) {
    if (!Number.isFinite(data[i] as number))
      throw new Error(`${path}: '${name}' holds ${data[i]} at index ${i}: the file is corrupt`);
  }
  return data;
}
