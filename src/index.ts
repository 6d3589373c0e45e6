/**
 * nulltext: null-text inversion and Prompt-to-Prompt editing of real images with Stable Diffusion,
 * on ONNX Runtime, with reverse-mode gradients compiled into the same ONNX graphs.
 */

export { Denoiser } from "./editing/denoiser.js";
export {
  buildAttentionEdit,
  type EditPrompt,
  localBlend,
  PromptToPromptController,
  type PromptToPromptOptions,
  refinementMapper,
  replacementMapper,
} from "./editing/prompt_to_prompt/index.js";
export { type MethodSampler, type MethodSamplerRun, sample } from "./editing/sample.js";
export * as graph from "./graph/index.js";
export * from "./image/index.js";
export { ddimInversion } from "./inversion/ddim_inversion.js";
export {
  decodeInversion,
  encodeInversion,
  type Inversion,
  readInversion,
  writeInversion,
} from "./inversion/file.js";
export { GuidedStep } from "./inversion/guided_step.js";
export type {
  InversionMethodModule,
  InversionRun,
  InversionSettings,
  MethodState,
  SamplerConditioning,
  StoredTensor,
} from "./inversion/method.js";
export { type NullTextOptions, nullTextOptimization } from "./inversion/null_text.js";
export { DEFAULT_METHOD, getMethod, METHODS, resolveSettings } from "./inversion/registry.js";
export * from "./jobs/index.js";
export { CLIPTextModel } from "./models/clip_text.js";
export { ClipTokenizer } from "./models/clip_tokenizer.js";
export {
  type InMemoryFolder,
  type LoadOptions,
  loadStableDiffusion,
  type ModelSource,
  type RemoteFolder,
  type StableDiffusion,
} from "./models/loader.js";
export { SafetensorsFile, writeSafetensors } from "./models/safetensors.js";
export { type AttentionHook, type AttentionSite, UNet2DConditionModel } from "./models/unet.js";
export { AutoencoderKL } from "./models/vae.js";
export { WeightStore } from "./models/weights.js";
export { Adam } from "./optim/adam.js";
export {
  EDIT_NULL_STEPS,
  type EditOptions,
  type InversionResume,
  type InvertOptions,
  type InvertProgress,
  NullTextPipeline,
  type PipelineOptions,
} from "./pipeline.js";
export {
  type ByteRangeReader,
  getPlatform,
  memoryReader,
  type OrtBinding,
  type Platform,
  setPlatform,
} from "./platform/platform.js";
export { availableExecutionProviders, type HostTensor, Session, type SessionOptions } from "./runtime/session.js";
export {
  type DDIMConfig,
  type DDIMSchedule,
  ddimInvertStep,
  ddimSchedule,
  ddimStep,
  ddimStepCoefficients,
  ddimStepEta,
  ddimTimesteps,
  ddimVariance,
  parseDDIMConfig,
} from "./schedulers/ddim.js";
export { guidedNoise, guidedNoiseGraph } from "./schedulers/guidance.js";
