/**
 * Edit-friendly DDPM inversion (Huberman-Spiegelglas, Kulikov & Michaeli, "An Edit Friendly DDPM
 * Noise Space: Inversion and Manipulations", CVPR 2024, arXiv 2304.06140, §3 and Algorithm 1).
 *
 * The stochastic sampler is DDIM's step with η = 1 (schedulers/ddim.ts, ddimStepEta), the paper's
 * eq. 3 in the form its code runs on Stable Diffusion's DDIM scheduler:
 *
 *   x_{t-1} = μ_t(x_t) + σ_t·z_t,   μ_t = sqrt(ᾱ_{t-1})·x̂_0 + sqrt(1 − ᾱ_{t-1} − σ_t²)·ε̂,   σ_t = σ_t(η = 1).
 *
 * Inversion (eq. 5–6): every x_t is drawn independently from the image latent x_0,
 *
 *   x_t = sqrt(ᾱ_t)·x_0 + sqrt(1 − ᾱ_t)·ñ_t,   ñ_t ~ N(0, I) (seeded; eq. 5),
 *
 * and the noise maps are what makes the sampler land on them,
 *
 *   σ_t·z_t = x_{t-1} − μ_t(x_t)   (eq. 6, the last step landing on x_0 itself),
 *
 * with ε̂ the guided ε of the source prompt at the inversion's guidance (the official code's
 * cfg_scale_src, 3.5). Sampling from x_T with these maps and the same ε reproduces x_0 up to float
 * rounding, whatever the guidance. The module stores σ_t·z_t rather than z_t: the same numbers up
 * to the scalar σ_t, and a step with σ_t = 0 (the last one under set_alpha_to_one) still lands.
 *
 * T_skip (`skip`, §4): sampling starts T_skip steps later, from x_{T−T_skip}; only those maps and
 * that latent are stored. Editing replaces the prompt and keeps the noise maps; the paper's code
 * samples the target at cfg_scale_tar = 15 with 100 steps and skip 36 — here steps 50 and skip 18
 * (the same fraction), and the edit's guidance is the edit call's (`--guidance`). The sampler uses
 * one guidance for all prompts, so an edit at a guidance other than the inversion's changes the
 * source prompt's row as well: it reconstructs exactly only at the inversion's guidance, which
 * matters only when Prompt-to-Prompt controls take attention from it.
 */
import type { MethodSampler, MethodSamplerRun } from "../../editing/sample.js";
import { type DDIMSchedule, ddimStepEta } from "../../schedulers/ddim.js";
import { guidedNoise } from "../../schedulers/guidance.js";
import { gaussianArray } from "../../util/rng.js";
import {
  type InversionMethodModule,
  type InversionRun,
  type InversionSettings,
  invalidSetting,
  type StoredTensor,
  stack,
  throwIfAborted,
  unstack,
  validateCommon,
} from "../method.js";

export interface DdpmSettings extends InversionSettings {
  /** T_skip: steps left out at the start of sampling (sampling starts from x_{T−T_skip}). */
  skip: number;
  /** Seed of the independent noises ñ_t of eq. 5. */
  noiseSeed: number;
}

/** The guided ε of the source prompt on one latent, as the sampler's denoiser computes it. */
async function guidedEps(run: InversionRun<DdpmSettings>, x: Float32Array, t: number): Promise<Float32Array> {
  const { guidance } = run.settings;
  const epsCond = await run.step.eps(x, t, run.cond);
  run.counters.unetEvals++;
  if (guidance === 1) return epsCond;
  const epsUncond = await run.step.eps(x, t, run.uncond);
  run.counters.unetEvals++;
  return guidedNoise(epsUncond, epsCond, guidance);
}

/** x_t = sqrt(ᾱ_t)·x_0 + sqrt(1 − ᾱ_t)·ñ (eq. 5), in float32. */
function noised(schedule: DDIMSchedule, x0: Float32Array, t: number, noise: Float32Array): Float32Array {
  const a = schedule.alphasCumprod[t] as number;
  const sa = Math.fround(Math.sqrt(a));
  const sb = Math.fround(Math.sqrt(1 - a));
  return x0.map((v, k) => sa * v + sb * (noise[k] as number));
}

async function invert(run: InversionRun<DdpmSettings>): Promise<Record<string, StoredTensor>> {
  const { settings: s, schedule } = run;
  const x0 = await run.latent();
  const size = x0.length;
  const count = s.steps - s.skip;
  const timesteps = schedule.timesteps;
  // ñ for the sampled steps skip..steps−1, one seeded stream
  const noise = gaussianArray(count * size, s.noiseSeed);
  const xs = Array.from({ length: count }, (_, k) =>
    noised(schedule, x0, timesteps[s.skip + k] as number, noise.subarray(k * size, (k + 1) * size)),
  );
  const resumed = run.resume;
  const maps: Float32Array[] = [];
  for (let k = 0; k < (resumed?.completed ?? 0); k++) maps.push(resumed?.tensors[`noise.${k}`] as Float32Array);
  if (resumed) {
    run.counters.unetEvals += resumed.meta.unetEvals as number;
  }
  for (let k = maps.length; k < count; k++) {
    throwIfAborted(run.signal);
    const t = timesteps[s.skip + k] as number;
    const x = xs[k] as Float32Array;
    const eps = await guidedEps(run, x, t);
    const { mean } = ddimStepEta(schedule, eps, t, x, 1);
    const target = k + 1 < count ? (xs[k + 1] as Float32Array) : x0;
    maps.push(target.map((v, j) => v - (mean[j] as number))); // σ_t·z_t (eq. 6)
    run.progress({ step: k + 1, total: count });
    const tensors: Record<string, Float32Array> = {};
    maps.forEach((m, j) => {
      tensors[`noise.${j}`] = m;
    });
    await run.checkpoint({ completed: k + 1, meta: { unetEvals: run.counters.unetEvals }, tensors });
  }
  return { start: { shape: [...run.latentShape], data: xs[0] as Float32Array }, noise: stack(maps, run.latentShape) };
}

/** The η = 1 step with the stored σ_t·z_t added to every prompt's latent (the edit keeps the noise). */
function ddpmSampler(noise: StoredTensor, skip: number): MethodSampler {
  const maps = unstack(noise);
  return {
    begin(_zT, prompts, schedule): MethodSamplerRun {
      return {
        async step(i, t, latents, eps) {
          const map = maps[i - skip];
          if (!map) throw new Error(`ddpm: no stored noise map for step ${i} (skip ${skip}, ${maps.length} maps)`);
          const { mean } = ddimStepEta(schedule, await eps(latents), t, latents, 1);
          const size = map.length;
          for (let n = 0; n < prompts; n++)
            for (let j = 0; j < size; j++) mean[n * size + j] = (mean[n * size + j] as number) + (map[j] as number);
          return mean;
        },
      };
    },
  };
}

export const ddpm: InversionMethodModule<DdpmSettings> = {
  id: "ddpm",
  summary: "edit-friendly DDPM inversion: noise maps for the η = 1 sampler (Huberman-Spiegelglas et al. 2024)",
  defaults: { steps: 50, guidance: 3.5, skip: 18, noiseSeed: 0 },
  help: {
    skip: "T_skip: sampling starts this many steps later, from x_{T−skip} (default 18 of 50, the paper's 36 of 100)",
    noiseSeed: "seed of the independently drawn noisy latents x_t (default 0)",
  },
  validate(s) {
    validateCommon(s);
    if (!(Number.isInteger(s.skip) && s.skip >= 0 && s.skip < s.steps))
      throw invalidSetting(
        s.method,
        "skip",
        s.skip,
        `an integer in 0..${s.steps - 1}, fewer than the ${s.steps} steps`,
      );
    if (!(Number.isInteger(s.noiseSeed) && s.noiseSeed >= 0 && s.noiseSeed <= 0xffffffff))
      throw invalidSetting(s.method, "noiseSeed", s.noiseSeed, "an integer in 0..4294967295");
  },
  invert,
  checkStored(tensors, s) {
    const start = tensors.start;
    const noise = tensors.noise;
    if (!start) throw new Error("method ddpm stores 'start', which is missing");
    if (!noise) throw new Error("method ddpm stores 'noise', which is missing");
    if (start.shape.length !== 3)
      throw new Error(`method ddpm: 'start' has shape [${start.shape}], expected [C, h, w]`);
    const expected = [s.steps - s.skip, ...start.shape];
    if (noise.shape.join() !== expected.join())
      throw new Error(`method ddpm: 'noise' has shape [${noise.shape}], expected [${expected}] (steps − skip maps)`);
  },
  conditioning: (tensors, s, { empty }) => ({
    nulls: empty,
    startStep: s.skip,
    start: (tensors.start as StoredTensor).data,
    sampler: ddpmSampler(tensors.noise as StoredTensor, s.skip),
  }),
};
