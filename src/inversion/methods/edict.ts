/**
 * EDICT: Exact Diffusion Inversion via Coupled Transformations (Wallace, Gokul & Naik, CVPR 2023,
 * arXiv 2211.12446, §3, eq. 14–15, Algorithms 1 and 2).
 *
 * Two latent sequences (x, y), both starting at the image latent x_0 = y_0, are carried through the
 * DDIM step, each denoised with the noise predicted from the other, followed by two mixing layers
 * with weight p (`mix`, 0.93 in the paper). With the DDIM step written as x_{t−1} = a_t·x_t + b_t·ε
 * (a_t = sqrt(ᾱ_{t−1}/ᾱ_t), b_t = sqrt(1 − ᾱ_{t−1}) − sqrt(ᾱ_{t−1}(1 − ᾱ_t)/ᾱ_t);
 * schedulers/ddim.ts, ddimStepCoefficients), one denoising step (eq. 14, Algorithm 2) is
 *
 *   x^inter = a_t·x_t + b_t·ε(y_t, t)
 *   y^inter = a_t·y_t + b_t·ε(x^inter, t)
 *   x_{t−1} = p·x^inter + (1 − p)·y^inter
 *   y_{t−1} = p·y^inter + (1 − p)·x_{t−1}
 *
 * and its exact inverse (eq. 15, Algorithm 1), which is the inversion, run from t = 1 up to T:
 *
 *   y^inter = (y_{t−1} − (1 − p)·x_{t−1}) / p
 *   x^inter = (x_{t−1} − (1 − p)·y^inter) / p
 *   y_t     = (y^inter − b_t·ε(x^inter, t)) / a_t
 *   x_t     = (x^inter − b_t·ε(y_t, t)) / a_t
 *
 * Every ε is evaluated on the same latent in both directions, so sampling (x_T, y_T) back with the
 * same prompt and guidance gives (x_0, y_0) up to float rounding, with no optimisation; ε is the
 * guided ε of the source prompt (the paper's guidance 3 by default). Editing samples (x_T, y_T) with
 * the edited prompt (the paper's "editing by prompt change"); the output is the x sequence. The
 * official code (salesforce/EDICT) also alternates which sequence is updated first at each step
 * ("leapfrog"); this module implements the paper's equations without it, and inverts all steps
 * (the code's init_image_strength 1).
 *
 * Stored: x_T (`start`, where sampling starts) and y_T (`y`), [C, h, w] each. The arithmetic is in
 * float64 per element, rounded to float32 once per update. The coupled steps amplify rounding by the
 * UNet's Jacobian: exact to ~3e-5 on the built-in model, but 1.7e-3 on the parity model's random UNet
 * in float32, and 0.065 (of |z_0| ≤ 0.12) from a float16 file there — prefer float32 files for edict.
 */
import type { MethodSampler, MethodSamplerRun } from "../../editing/sample.js";
import { type DDIMSchedule, ddimStepCoefficients } from "../../schedulers/ddim.js";
import { guidedNoise } from "../../schedulers/guidance.js";
import {
  type InversionMethodModule,
  type InversionRun,
  type InversionSettings,
  invalidSetting,
  type StoredTensor,
  throwIfAborted,
  validateCommon,
} from "../method.js";

export interface EdictSettings extends InversionSettings {
  /** p: the mixing layers' weight. */
  mix: number;
}

/** a·u + b·v elementwise (float64, then float32). */
function affine(a: number, u: Float32Array, b: number, v: Float32Array): Float32Array {
  const out = new Float32Array(u.length);
  for (let k = 0; k < u.length; k++) out[k] = a * (u[k] as number) + b * (v[k] as number);
  return out;
}

/** The coefficients (a_t, b_t) of the DDIM denoising step at timestep t. */
function coefficients(schedule: DDIMSchedule, t: number): { a: number; b: number } {
  const c = ddimStepCoefficients(schedule, t, "denoise");
  return { a: c.sample, b: c.modelOutput };
}

/** Algorithm 2, one step: (x_t, y_t) → (x_{t−1}, y_{t−1}) with eps evaluated on [N] latents. */
export async function edictDenoiseStep(
  schedule: DDIMSchedule,
  t: number,
  p: number,
  x: Float32Array,
  y: Float32Array,
  eps: (z: Float32Array) => Promise<Float32Array>,
): Promise<{ x: Float32Array; y: Float32Array }> {
  const { a, b } = coefficients(schedule, t);
  const xInter = affine(a, x, b, await eps(y));
  const yInter = affine(a, y, b, await eps(xInter));
  const xPrev = affine(p, xInter, 1 - p, yInter);
  const yPrev = affine(p, yInter, 1 - p, xPrev);
  return { x: xPrev, y: yPrev };
}

/** Algorithm 1, one step: (x_{t−1}, y_{t−1}) → (x_t, y_t), the exact inverse of edictDenoiseStep. */
export async function edictInvertStep(
  schedule: DDIMSchedule,
  t: number,
  p: number,
  xPrev: Float32Array,
  yPrev: Float32Array,
  eps: (z: Float32Array) => Promise<Float32Array>,
): Promise<{ x: Float32Array; y: Float32Array }> {
  const { a, b } = coefficients(schedule, t);
  const yInter = affine(1 / p, yPrev, -(1 - p) / p, xPrev);
  const xInter = affine(1 / p, xPrev, -(1 - p) / p, yInter);
  const y = affine(1 / a, yInter, -b / a, await eps(xInter));
  const x = affine(1 / a, xInter, -b / a, await eps(y));
  return { x, y };
}

async function invert(run: InversionRun<EdictSettings>): Promise<Record<string, StoredTensor>> {
  const { settings: s, schedule } = run;
  const eps = async (z: Float32Array, t: number): Promise<Float32Array> => {
    const epsCond = await run.step.eps(z, t, run.cond);
    run.counters.unetEvals++;
    if (s.guidance === 1) return epsCond;
    const epsUncond = await run.step.eps(z, t, run.uncond);
    run.counters.unetEvals++;
    return guidedNoise(epsUncond, epsCond, s.guidance);
  };
  const saved = run.resume;
  let x: Float32Array;
  let y: Float32Array;
  let done: number;
  if (saved) {
    const sx = saved.tensors.x;
    const sy = saved.tensors.y;
    if (!sx || !sy) throw new Error("edict resume state: 'x' or 'y' is missing");
    [x, y, done] = [sx, sy, saved.completed];
    run.counters.unetEvals += saved.meta.unetEvals as number;
  } else {
    x = await run.latent();
    y = x;
    done = 0;
  }
  const ascending = [...schedule.timesteps].reverse();
  for (let k = done; k < ascending.length; k++) {
    throwIfAborted(run.signal);
    const t = ascending[k] as number;
    ({ x, y } = await edictInvertStep(schedule, t, s.mix, x, y, (z) => eps(z, t)));
    run.progress({ step: k + 1, total: ascending.length });
    await run.checkpoint({ completed: k + 1, meta: { unetEvals: run.counters.unetEvals }, tensors: { x, y } });
  }
  const shape = [...run.latentShape];
  return { start: { shape, data: x }, y: { shape, data: y } };
}

/** Samples the coupled pair (x, y) from (x_T, y_T) for every prompt; the loop's latents are the x sequence. */
function edictSampler(yT: Float32Array, p: number): MethodSampler {
  return {
    begin(_zT, prompts, schedule): MethodSamplerRun {
      let y: Float32Array = new Float32Array(prompts * yT.length);
      for (let n = 0; n < prompts; n++) y.set(yT, n * yT.length);
      const size = yT.length;
      return {
        async step(_i, t, x, eps) {
          const next = await edictDenoiseStep(schedule, t, p, x, y, eps);
          y = next.y;
          return next.x;
        },
        // local blending reset the edits' x outside each mask to the source's: the same for y
        blended(masks) {
          const plane = (masks[0] as Uint8Array).length;
          const channels = size / plane;
          masks.forEach((mask, e) => {
            for (let c = 0; c < channels; c++)
              for (let q = 0; q < plane; q++)
                if (!mask[q]) y[(e + 1) * size + c * plane + q] = y[c * plane + q] as number;
          });
        },
      };
    },
  };
}

export const edict: InversionMethodModule<EdictSettings> = {
  id: "edict",
  summary: "EDICT: coupled latents with mixing, an exactly invertible sampler (Wallace et al. 2023)",
  defaults: { steps: 50, guidance: 3, mix: 0.93 },
  help: { mix: "p, the weight of the mixing layers, in (0, 1] (default 0.93, the paper's)" },
  validate(s) {
    validateCommon(s);
    if (!(typeof s.mix === "number" && s.mix > 0 && s.mix <= 1))
      throw invalidSetting(s.method, "mix", s.mix, "a number in (0, 1]");
  },
  invert,
  checkStored(tensors) {
    const start = tensors.start;
    const y = tensors.y;
    if (!start) throw new Error("method edict stores 'start', which is missing");
    if (!y) throw new Error("method edict stores 'y', which is missing");
    if (start.shape.length !== 3 || y.shape.join() !== start.shape.join())
      throw new Error(`method edict: 'start' [${start.shape}] and 'y' [${y.shape}] must both be [C, h, w]`);
  },
  conditioning: (tensors, s, { empty }) => ({
    nulls: empty,
    start: (tensors.start as StoredTensor).data,
    sampler: edictSampler((tensors.y as StoredTensor).data, s.mix),
  }),
};
