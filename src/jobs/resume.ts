/**
 * The resume state of an interrupted inversion, as a safetensors file beside the output
 * (`out.resume`): the pivot trajectory and the method's state as tensors, everything else as JSON
 * metadata. Written atomically after every finished unit of work, removed when the inversion is written.
 */

import { SafetensorsFile, writeSafetensors } from "../models/safetensors.js";
import type { InversionResume } from "../pipeline.js";
import { getPlatform } from "../platform/platform.js";

export interface ResumeStore {
  load(): InversionResume | null;
  save(state: InversionResume): void;
  clear(): void;
}

const RESUME_FORMAT = "nulltext-resume";
const RESUME_VERSION = 2;

/**
 * A resume store in `file`. `onNote` hears why a stored state is not used (unreadable, or of
 * another version).
 */
export function fileResumeStore(file: string, onNote: (message: string) => void = () => {}): ResumeStore {
  return {
    load() {
      if (!getPlatform().stat(file)) return null;
      try {
        return readResume(file);
      } catch (err) {
        onNote(`ignoring unreadable resume file ${file}: ${(err as Error).message}`);
        return null;
      }
    },
    save: (state) => writeResume(file, state),
    clear: () => getPlatform().remove(file),
  };
}

function writeResume(file: string, r: InversionResume): void {
  const f32 = (data: Float32Array) => ({ dtype: "F32" as const, shape: [data.length], data });
  const tensors: Record<string, ReturnType<typeof f32>> = {};
  r.pivots?.forEach((z, i) => {
    tensors[`pivot.${i}`] = f32(z);
  });
  for (const [name, t] of Object.entries(r.state?.tensors ?? {})) tensors[`state.${name}`] = f32(t);
  const meta = {
    format: RESUME_FORMAT,
    version: RESUME_VERSION,
    settings: r.settings,
    prompt: r.prompt,
    imageHash: r.imageHash,
    model: r.model,
    pivots: r.pivots?.length ?? 0,
    state: r.state ? { completed: r.state.completed, meta: r.state.meta, tensors: Object.keys(r.state.tensors) } : null,
  };
  writeSafetensors(file, tensors, { resume: JSON.stringify(meta) });
}

function readResume(file: string): InversionResume {
  const st = SafetensorsFile.open(file);
  try {
    const m = JSON.parse(st.metadata.resume ?? "null");
    if (m?.format !== RESUME_FORMAT || m.version !== RESUME_VERSION)
      throw new Error(`not a version ${RESUME_VERSION} resume file`);
    const pivots = Array.from({ length: m.pivots as number }, (_, i) => st.readFloat32(`pivot.${i}`));
    const state = m.state
      ? {
          completed: m.state.completed as number,
          meta: m.state.meta as Record<string, unknown>,
          tensors: Object.fromEntries(
            (m.state.tensors as string[]).map((name) => [name, st.readFloat32(`state.${name}`)]),
          ),
        }
      : undefined;
    return {
      settings: m.settings,
      prompt: m.prompt,
      imageHash: m.imageHash,
      model: m.model,
      pivots: pivots.length ? pivots : undefined,
      state,
    };
  } finally {
    st.close();
  }
}
