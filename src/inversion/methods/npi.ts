/**
 * Negative-prompt inversion (Miyake et al. 2023, "Negative-prompt Inversion: Fast Image Inversion for
 * Editing with Text-guided Diffusion Models", arXiv 2305.16807, eq. 9): null-text inversion's ∅_t
 * replaced by the source prompt's embedding C at every step, with no optimisation. With ∅ = C the
 * guided ε equals the conditional ε, so sampling retraces the DDIM trajectory at guidance 1 whatever w,
 * and the sampler evaluates the source's conditional row alone (SamplerConditioning.sourceNullIsPrompt).
 */
import type { InversionMethodModule, InversionSettings } from "../method.js";
import { validateCommon } from "../method.js";

export const npi: InversionMethodModule<InversionSettings> = {
  id: "npi",
  summary: "negative-prompt inversion: ∅_t := the prompt's embedding, no optimisation (Miyake et al. 2023)",
  defaults: { steps: 50, guidance: 7.5 },
  validate: validateCommon,
  async invert(run) {
    await run.pivots();
    return {};
  },
  checkStored() {},
  conditioning: (_tensors, _settings, { cond }) => ({ nulls: cond, sourceNullIsPrompt: true }),
};
