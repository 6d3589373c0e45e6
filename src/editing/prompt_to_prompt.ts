/**
 * Kept while src/pipeline.ts, src/cli/* and scripts/eval-shapes.ts still import this path:
 * Prompt-to-Prompt now lives in prompt_to_prompt/ (import "./prompt_to_prompt/index.js").
 */
export * from "./prompt_to_prompt/index.js";
