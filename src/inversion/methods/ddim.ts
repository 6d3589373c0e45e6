/**
 * Plain DDIM inversion (Song et al. 2021; Dhariwal & Nichol 2021), the null-text paper's first
 * baseline (Mokady et al. 2023, §4): z_T of the DDIM trajectory at guidance 1, sampled back with the
 * empty prompt's embedding as ∅ at every step. Exact in the limit of small steps at guidance 1; at
 * w = 7.5 the guided steps drift from the trajectory (the paper's Fig. 3).
 */
import type { InversionMethodModule, InversionSettings } from "../method.js";
import { validateCommon } from "../method.js";

export const ddim: InversionMethodModule<InversionSettings> = {
  id: "ddim",
  summary: "DDIM inversion at guidance 1, sampled with the empty prompt's ∅ (Song et al. 2021)",
  defaults: { steps: 50, guidance: 7.5 },
  validate: validateCommon,
  async invert(run) {
    await run.pivots();
    return {};
  },
  checkStored() {},
  conditioning: (_tensors, _settings, { empty }) => ({ nulls: empty }),
};
