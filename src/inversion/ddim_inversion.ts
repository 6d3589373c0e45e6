/**
 * DDIM inversion (Song et al. 2021, eq. 13 run backwards; Dhariwal & Nichol 2021): the deterministic
 * trajectory z*_0 → z*_T obtained by applying the DDIM step in reverse with the prompt's noise
 * prediction. With guidance w = 1 this is the pivot of null-text inversion (Mokady et al. 2023,
 * §3.1: "we perform DDIM inversion with w = 1"); the paper's baseline with w = 7.5 uses the guided ε.
 */

import { type DDIMSchedule, ddimInvertStep } from "../schedulers/ddim.js";
import { guidedNoise } from "../schedulers/guidance.js";
import type { GuidedStep } from "./guided_step.js";
import { throwIfAborted } from "./method.js";

export interface DDIMInversionOptions {
  /** Guidance scale; 1 (default) evaluates the prompt alone. */
  guidance?: number;
  /** The null embedding for w ≠ 1. */
  uncond?: Float32Array;
  onStep?: (step: number, total: number) => void;
  /** Checked before every step: an aborted run stops with the signal's reason. */
  signal?: AbortSignal;
}

/** Returns [z*_0, z*_1, ..., z*_T] (T = number of steps), z*_0 being the image latent. */
export async function ddimInversion(
  step: GuidedStep,
  schedule: DDIMSchedule,
  z0: Float32Array,
  cond: Float32Array,
  o: DDIMInversionOptions = {},
): Promise<Float32Array[]> {
  const w = o.guidance ?? 1;
  if (w !== 1 && !o.uncond) throw new Error("DDIM inversion with guidance ≠ 1 needs the null embedding");
  const trajectory = [z0];
  let z = z0;
  const timesteps = [...schedule.timesteps].reverse();
  for (let i = 0; i < timesteps.length; i++) {
    throwIfAborted(o.signal);
    const t = timesteps[i] as number;
    let eps = await step.eps(z, t, cond);
    if (w !== 1) {
      const epsU = await step.eps(z, t, o.uncond as Float32Array);
      eps = guidedNoise(epsU, eps, w);
    }
    z = ddimInvertStep(schedule, eps, t, z).nextSample;
    trajectory.push(z);
    o.onStep?.(i + 1, timesteps.length);
  }
  return trajectory;
}
