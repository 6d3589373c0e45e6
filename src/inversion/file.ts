/**
 * The inversion file: everything needed to reconstruct and edit an image without inverting it again
 * — z_T, the per-step null embeddings (optionally float16), the prompt, every setting, the model's
 * fingerprint and the source image's hash — as one safetensors file with a versioned JSON header.
 * Loading checks the version, the model and every tensor's shape and values.
 */
import { float32ArrayToHalf } from "../graph/index.js";
import { SafetensorsFile, type SafetensorsTensor, writeSafetensors } from "../models/safetensors.js";

export const INVERSION_FORMAT = "nulltext-inversion";
export const INVERSION_VERSION = 1;

export type InversionMethod = "nti" | "npi" | "ddim" | "nti-global" | "nti-conditional";

export interface InversionSettings {
  method: InversionMethod;
  steps: number;
  guidance: number;
  innerSteps: number;
  lr: number;
  earlyStop: number;
  earlyStopSlope: number;
}

export interface Inversion {
  prompt: string;
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
  /**
   * Per-step embeddings [steps][L·D]: ∅_t for nti; one shared ∅ for nti-global; the prompt's C_t
   * for nti-conditional; none for ddim and npi (their ∅ follows from the method and prompt).
   */
  embeddings: Float32Array[];
  /** [L, D] */
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
  embeddingCount: number;
  stats?: Record<string, number>;
  created: string;
}

export function writeInversion(path: string, inv: Inversion, options: { float16?: boolean } = {}): void {
  const [L, D] = inv.embeddingShape;
  const tensors: Record<string, SafetensorsTensor> = {
    z_T: { dtype: "F32", shape: inv.latentShape, data: inv.zT },
  };
  if (inv.embeddings.length) {
    const all = new Float32Array(inv.embeddings.length * L * D);
    inv.embeddings.forEach((e, i) => {
      all.set(e, i * L * D);
    });
    tensors.embeddings = options.float16
      ? { dtype: "F16", shape: [inv.embeddings.length, L, D], data: float32ArrayToHalf(all) }
      : { dtype: "F32", shape: [inv.embeddings.length, L, D], data: all };
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
    embeddingCount: inv.embeddings.length,
    stats: inv.stats,
    created: new Date().toISOString(),
  };
  writeSafetensors(path, tensors, { nulltext: JSON.stringify(header) });
}

/** Reads an inversion; `expectModel` (a fingerprint) makes a file from another model an error. */
export function readInversion(path: string, expectModel?: string): Inversion {
  const st = SafetensorsFile.open(path);
  try {
    const raw = st.metadata.nulltext;
    if (!raw) throw new Error(`${path}: not a nulltext inversion file (no 'nulltext' header)`);
    let h: Header;
    try {
      h = JSON.parse(raw) as Header;
    } catch (err) {
      throw new Error(`${path}: corrupt inversion header (${(err as Error).message})`);
    }
    if (h.format !== INVERSION_FORMAT) throw new Error(`${path}: not a nulltext inversion file (format '${h.format}')`);
    if (h.version !== INVERSION_VERSION) {
      throw new Error(
        `${path}: inversion format version ${h.version}; this nulltext reads version ${INVERSION_VERSION}`,
      );
    }
    if (expectModel && h.model !== expectModel) {
      throw new Error(
        `${path}: this inversion was made with another model (fingerprint ${h.model}); the loaded model is ${expectModel}. Invert the image again with this model.`,
      );
    }
    const z = st.entry("z_T");
    if (z.shape.join() !== h.latentShape.join())
      throw new Error(`${path}: z_T has shape [${z.shape}], the header says [${h.latentShape}]`);
    const zT = checkFinite(path, "z_T", st.readFloat32("z_T"));
    const [L, D] = h.embeddingShape;
    const embeddings: Float32Array[] = [];
    if (h.embeddingCount > 0) {
      const e = st.entry("embeddings");
      if (e.shape.join() !== [h.embeddingCount, L, D].join()) {
        throw new Error(
          `${path}: embeddings have shape [${e.shape}], the header says [${h.embeddingCount}, ${L}, ${D}]`,
        );
      }
      const all = checkFinite(path, "embeddings", st.readFloat32("embeddings"));
      for (let i = 0; i < h.embeddingCount; i++) embeddings.push(all.slice(i * L * D, (i + 1) * L * D));
    }
    const expected = { nti: h.settings.steps, "nti-conditional": h.settings.steps, "nti-global": 1, npi: 0, ddim: 0 }[
      h.settings.method
    ];
    if (expected === undefined) throw new Error(`${path}: unknown inversion method '${h.settings.method}'`);
    if (embeddings.length !== expected) {
      throw new Error(
        `${path}: ${embeddings.length} embeddings for method ${h.settings.method} with ${h.settings.steps} steps (expected ${expected})`,
      );
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
      embeddings,
      embeddingShape: h.embeddingShape,
      stats: h.stats,
    };
  } finally {
    st.close();
  }
}

function checkFinite(path: string, name: string, data: Float32Array): Float32Array {
  for (let i = 0; i < data.length; i++) {
    if (!Number.isFinite(data[i] as number))
      throw new Error(`${path}: '${name}' holds ${data[i]} at index ${i}: the file is corrupt`);
  }
  return data;
}
