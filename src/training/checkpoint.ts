/**
 * Training checkpoints: parameters, Adam moments and the EMA copy in one safetensors file, with the
 * step and phase in its metadata. Written atomically, so an interrupted run resumes from the last
 * complete checkpoint.
 */
import fs from "node:fs";
import { SafetensorsFile, type SafetensorsTensor, writeSafetensors } from "../models/safetensors.js";

export interface TrainingState {
  phase: string;
  step: number;
  params: Map<string, Float32Array>;
  adamM: Map<string, Float32Array>;
  adamV: Map<string, Float32Array>;
  ema: Map<string, Float32Array>;
  /**
   * Further EMA copies by decay (the loop's `emaTracks`), kept beside the exported one so that other
   * averaging windows can be compared after a run; they do not affect training.
   */
  emaTracks: Map<number, Map<string, Float32Array>>;
  /** Anything else the phase needs to resume (JSON-serialisable). */
  extra: Record<string, unknown>;
}

const GROUPS = ["params", "adamM", "adamV", "ema"] as const;
type Group = [name: string, weights: Map<string, Float32Array>];

/** Every per-parameter group of `s` under its name in the file: the four main ones, then `ema@D` per track. */
function groupsOf(s: TrainingState): Group[] {
  return [
    ...GROUPS.map((g): Group => [g, s[g]]),
    ...[...s.emaTracks].map(([decay, track]): Group => [`ema@${decay}`, track]),
  ];
}

export function saveCheckpoint(file: string, s: TrainingState): void {
  const tensors: Record<string, SafetensorsTensor> = {};
  for (const [group, weights] of groupsOf(s)) {
    for (const [key, data] of weights) tensors[`${group}/${key}`] = { dtype: "F32", shape: [data.length], data };
  }
  writeSafetensors(file, tensors, { phase: s.phase, step: String(s.step), extra: JSON.stringify(s.extra) });
}

/**
 * Throws unless `state` holds each trained parameter (`keys`, sized as in `arrays`) in every group: a
 * checkpoint of another model (another width or depth) is refused by name instead of being partly copied
 * into, or read past the end of, the model's arrays.
 */
export function checkCheckpointFits(
  file: string,
  state: TrainingState,
  keys: Iterable<string>,
  arrays: ReadonlyMap<string, Float32Array>,
): void {
  const groups = groupsOf(state);
  for (const key of keys) {
    const size = (arrays.get(key) as Float32Array).length;
    for (const [group, copy] of groups) {
      const saved = copy.get(key);
      if (!saved) throw new Error(`${file}: the checkpoint (phase ${state.phase}) lacks ${group} of parameter ${key}`);
      if (saved.length !== size)
        throw new Error(
          `${file}: parameter ${key} has ${saved.length} elements in the checkpoint, ${size} in this model ` +
            "(another model configuration): move the file away (or pass --work DIR) to train from scratch",
        );
    }
  }
}

export function loadCheckpoint(file: string): TrainingState | null {
  if (!fs.existsSync(file)) return null;
  const st = SafetensorsFile.open(file);
  try {
    const state: TrainingState = {
      phase: st.metadata.phase ?? "",
      step: Number(st.metadata.step ?? 0),
      params: new Map(),
      adamM: new Map(),
      adamV: new Map(),
      ema: new Map(),
      emaTracks: new Map(),
      extra: JSON.parse(st.metadata.extra ?? "{}"),
    };
    for (const name of st.entries.keys()) {
      const slash = name.indexOf("/");
      const group = name.slice(0, slash);
      const key = name.slice(slash + 1);
      const decay = group.startsWith("ema@") ? Number(group.slice(4)) : Number.NaN;
      if (decay > 0 && decay < 1) {
        const track = state.emaTracks.get(decay) ?? new Map<string, Float32Array>();
        state.emaTracks.set(decay, track);
        track.set(key, st.readFloat32(name));
      } else if ((GROUPS as readonly string[]).includes(group)) {
        state[group as (typeof GROUPS)[number]].set(key, st.readFloat32(name));
      } else throw new Error(`${file}: unexpected tensor '${name}'`);
    }
    return state;
  } finally {
    st.close();
  }
}

/** The decay of `state.ema`: as recorded, else (checkpoints from before decays were recorded) `unrecorded`. */
function mainDecay(state: TrainingState, unrecorded: number): number {
  return typeof state.extra.emaDecay === "number" ? state.extra.emaDecay : unrecorded;
}

/**
 * The EMA weights of `state` kept at `decay` (the main copy or a further track), if it has them;
 * `unrecorded` is the main copy's decay in a checkpoint that does not record it (the phase's own decay).
 */
export function savedEma(
  state: TrainingState,
  decay: number,
  unrecorded: number,
): Map<string, Float32Array> | undefined {
  return mainDecay(state, unrecorded) === decay ? state.ema : state.emaTracks.get(decay);
}

/** As `savedEma`, but throws, naming the decays the checkpoint has, when it lacks `decay`. */
export function emaWeights(
  file: string,
  state: TrainingState,
  decay: number,
  unrecorded: number,
): Map<string, Float32Array> {
  const found = savedEma(state, decay, unrecorded);
  if (found) return found;
  throw new Error(
    `${file}: no EMA with decay ${decay} in the checkpoint (it has ${[mainDecay(state, unrecorded), ...state.emaTracks.keys()].join(", ")}): ` +
      "move the file away (or pass --work DIR) to train from scratch",
  );
}
