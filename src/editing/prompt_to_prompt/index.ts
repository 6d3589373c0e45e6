/**
 * Prompt-to-Prompt (Hertz et al. 2022, arXiv 2208.01626) in one place: the edit's tensors
 * (tensors.ts), the attention controller that applies them in the denoiser graph (controller.ts),
 * local blending (local_blend.ts) and the token aligner (seq_aligner.ts).
 */
export { type Feeds, PromptToPromptController, PromptToPromptRun } from "./controller.js";
export {
  buildLocalBlend,
  chooseBlendResolution,
  type LocalBlend,
  LocalBlender,
  type LocalBlendOptions,
  localBlend,
} from "./local_blend.js";
export { alignTokens, MAX_TOKENS, refinementMapper, replacementMapper } from "./seq_aligner.js";
export {
  type AttentionEdit,
  buildAttentionEdit,
  checkFraction,
  type EditPrompt,
  P2P_DEFAULTS,
  type PromptToPromptOptions,
  type StepRange,
} from "./tensors.js";
