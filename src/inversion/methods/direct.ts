/**
 * Direct Inversion (Ju, Zhang, Liu, Xu & Xu 2023, "PnP Inversion: Boosting Diffusion-based Editing
 * with 3 Lines of Code", arXiv 2310.01506, §4 and Algorithm 1): the DDIM trajectory z*_0 … z*_T of
 * the image at guidance 1 is kept, and sampling from z*_T with guidance w corrects the source branch
 * after every DDIM step by the difference to the trajectory,
 *
 *   z^src_{t-1} ← z̃^src_{t-1} + (z*_{t-1} − z̃^src_{t-1}),   z̃^src_{t-1} = DDIM(z^src_t, ε_w(z^src_t, t, C, ∅)),
 *
 * with ∅ the empty prompt's embedding (the paper's Algorithm 1, Part II). The source branch therefore
 * stays on the trajectory and reconstructs z*_0 = z_0 exactly; the edited branches are sampled freely
 * and follow the source through Prompt-to-Prompt's attention control.
 *
 * Where the correction is applied, as in the authors' code (cure-lab/PnPInversion,
 * `direct_inversion_p2p_guidance_diffusion_step`): after the scheduler step and before the
 * controller's step callback (local blend), at the guidance the edit samples with. Their code
 * computes the differences once during inversion (`offset_calculate`, T extra guided UNet
 * evaluations) from the source branch sitting on z*_t; since the source branch is on z*_t at every
 * sampling step, the difference measured while sampling is the same number, so this module stores
 * the trajectory instead (no UNet evaluation beyond the DDIM inversion) and sets the source branch to
 * z*_{t-1}, which also holds at any guidance the edit is sampled with.
 *
 * `correctEdits` adds the same difference to the edited branches: the paper's ablation "add target"
 * (`ablation_directinversion_add-target+p2p` in the authors' code); the paper's method (false)
 * corrects the source branch only.
 */
import type { InversionMethodModule, InversionSettings, StoredTensor } from "../method.js";
import { invalidSetting, stack, validateCommon } from "../method.js";

export interface DirectSettings extends InversionSettings {
  correctEdits: boolean;
}

export const direct: InversionMethodModule<DirectSettings> = {
  id: "direct",
  summary: "Direct Inversion: the source branch pulled back onto the DDIM trajectory after each step (Ju et al. 2023)",
  defaults: { steps: 50, guidance: 7.5, correctEdits: false },
  help: {
    correctEdits: "also add the source's correction to the edited prompts (the paper's 'add target' ablation)",
  },
  validate(s) {
    validateCommon(s);
    if (typeof s.correctEdits !== "boolean")
      throw invalidSetting(s.method, "correctEdits", s.correctEdits, "true or false");
  },
  async invert(run) {
    const pivots = await run.pivots();
    // z*_0 … z*_{T-1}: the latents the source branch is set to after each step (z*_T is the file's z_T)
    return { pivots: stack(pivots.slice(0, run.settings.steps), run.latentShape) };
  },
  checkStored(tensors, settings) {
    const t = tensors.pivots;
    if (!t) throw new Error("method direct stores 'pivots', which is missing");
    if (t.shape.length !== 4 || t.shape[0] !== settings.steps)
      throw new Error(`method direct: 'pivots' has shape [${t.shape}], expected [${settings.steps}, C, h, w]`);
  },
  conditioning: (tensors, settings, { empty }) => ({
    nulls: empty,
    afterStep: pullBack(tensors.pivots as StoredTensor, settings.steps, settings.correctEdits),
    // the source's own step only matters to the edits it corrects ("add target")
    sourcePinned: !settings.correctEdits,
  }),
};

/**
 * The correction after sampling step i (timestep index i, landing on z*_{T-1-i}): the source (first)
 * latent is set to the stored pivot; with `correctEdits` the others get the same difference added.
 */
export function pullBack(
  pivots: StoredTensor,
  steps: number,
  correctEdits: boolean,
): (step: number, latents: Float32Array) => Float32Array {
  const size = pivots.data.length / steps;
  return (step, latents) => {
    if (latents.length % size !== 0)
      throw new Error(`direct: ${latents.length} latent values are not whole latents of ${size}`);
    const k = steps - 1 - step;
    if (!(k >= 0 && k < steps)) throw new Error(`direct: step ${step} is outside the ${steps} stored steps`);
    const target = pivots.data.subarray(k * size, (k + 1) * size);
    const out = Float32Array.from(latents);
    out.set(target, 0);
    if (correctEdits) {
      for (let n = 1; n < latents.length / size; n++) {
        const o = n * size;
        for (let j = 0; j < size; j++)
          out[o + j] = (latents[o + j] as number) + (target[j] as number) - (latents[j] as number);
      }
    }
    return out;
  };
}
