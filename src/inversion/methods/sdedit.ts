/**
 * SDEdit (Meng, He, Song, Song, Wu, Zhu & Ermon 2022, "SDEdit: Guided Image Synthesis and Editing
 * with Stochastic Differential Equations", ICLR 2022, arXiv 2108.01073), the baseline the null-text
 * paper compares against (Mokady et al. 2023, §4): no inversion; the image latent is noised to an
 * intermediate time t_0 and denoised with the (edited) prompt. For a variance-preserving model the
 * perturbation is the forward marginal (the paper's Algorithm 1 with the VP-SDE of its Appendix):
 *
 *   x(t_0) = √ᾱ_{t_0} · z_0 + √(1 − ᾱ_{t_0}) · ε,   ε ~ N(0, I) drawn from `seed`,
 *
 * then sampled from t_0 to 0 — here with DDIM (η = 0) and classifier-free guidance w with the empty
 * prompt's ∅, as diffusers' img2img pipeline runs it with a DDIM scheduler. The strength s ∈ (0, 1]
 * picks t_0 as that pipeline does: of the T steps the last ⌊T·s⌋ are sampled, from
 * timesteps[T − ⌊T·s⌋]. Reconstruction denoises with the source prompt, so it is not exact: the
 * strength trades faithfulness (small s) for editability (large s), the paper's Fig. 3.
 *
 * The noised latent is drawn once at inversion and stored, so every reconstruction and edit of one
 * inversion starts from the same x(t_0) (reproducible); a Prompt-to-Prompt edit then shares the
 * source's attention from t_0 on.
 */
import type { DDIMSchedule } from "../../schedulers/ddim.js";
import { gaussianArray } from "../../util/rng.js";
import type { InversionMethodModule, InversionSettings, StoredTensor } from "../method.js";
import { invalidSetting, validateCommon } from "../method.js";

export interface SDEditSettings extends InversionSettings {
  strength: number;
  seed: number;
}

/** Index of the first sampled step: T − ⌊T·s⌋ (diffusers' img2img `get_timesteps`). */
export function sdeditStartStep(steps: number, strength: number): number {
  return steps - Math.min(Math.floor(steps * strength), steps);
}

/** x(t_0) = √ᾱ z_0 + √(1 − ᾱ) ε at t_0 = timesteps[startStep], ε from the seed. */
export function sdeditNoised(schedule: DDIMSchedule, z0: Float32Array, startStep: number, seed: number): Float32Array {
  const t = schedule.timesteps[startStep] as number;
  const alphaBar = schedule.alphasCumprod[t] as number;
  const [a, b] = [Math.sqrt(alphaBar), Math.sqrt(1 - alphaBar)];
  const eps = gaussianArray(z0.length, seed);
  return z0.map((z, i) => a * z + b * (eps[i] as number));
}

export const sdedit: InversionMethodModule<SDEditSettings> = {
  id: "sdedit",
  summary: "SDEdit: the image latent noised to a strength and denoised with the prompt (Meng et al. 2022)",
  defaults: { steps: 50, guidance: 7.5, strength: 0.5, seed: 0 },
  help: {
    strength: "fraction of the steps sampled from the noised image latent, in (0, 1] (default 0.5)",
    seed: "seed of the noise added to the image latent (default 0)",
  },
  validate(s) {
    validateCommon(s);
    if (!(typeof s.strength === "number" && s.strength > 0 && s.strength <= 1))
      throw invalidSetting(s.method, "strength", s.strength, "a number in (0, 1]");
    if (Math.floor(s.steps * s.strength) < 1)
      throw invalidSetting(
        s.method,
        "strength",
        s.strength,
        `at least 1/steps = ${1 / s.steps}, so that one of the ${s.steps} steps is sampled`,
      );
    if (!(Number.isInteger(s.seed) && s.seed >= 0 && s.seed < 2 ** 32))
      throw invalidSetting(s.method, "seed", s.seed, "an integer in 0..4294967295");
  },
  async invert(run) {
    const { settings } = run;
    const z0 = await run.latent();
    const start = sdeditStartStep(settings.steps, settings.strength);
    const noised = sdeditNoised(run.schedule, z0, start, settings.seed);
    run.progress({ step: 1, total: 1 });
    return { start: { shape: [...run.latentShape], data: noised } };
  },
  checkStored(tensors) {
    const t = tensors.start;
    if (!t) throw new Error("method sdedit stores 'start', which is missing");
    if (t.shape.length !== 3) throw new Error(`method sdedit: 'start' has shape [${t.shape}], expected [C, h, w]`);
  },
  conditioning: (tensors, settings, { empty }) => ({
    nulls: empty,
    startStep: sdeditStartStep(settings.steps, settings.strength),
    start: (tensors.start as StoredTensor).data,
  }),
};
