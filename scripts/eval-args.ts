/** Command-line arguments the evaluation scripts share, checked before the model loads. */
import { argValue } from "../bench/common.js";
import { checkFraction, P2P_DEFAULTS } from "../src/editing/prompt_to_prompt/index.js";
import { EDIT_NULL_STEPS } from "../src/pipeline.js";

/** `--seeds A..B` (default `fallback`), refusing the training scenes' seeds (1 000 000 on). */
export function seedsArg(fallback: string): number[] {
  const range = argValue("--seeds") ?? fallback;
  const m = range.match(/^(\d+)\.\.(\d+)$/);
  if (!m || Number(m[1]) > Number(m[2])) throw new Error(`--seeds ${range}: expected A..B with A ≤ B`);
  const [from, to] = [Number(m[1]), Number(m[2])];
  if (to >= 1_000_000) throw new Error("--seeds: seeds from 1000000 on are training scenes");
  return Array.from({ length: to - from + 1 }, (_, i) => from + i);
}

/** The word swaps' Prompt-to-Prompt fractions: `--cross-steps`, `--self-steps`, `--null-steps`. */
export function wordSwapArgs(): { crossReplaceSteps: number; selfReplaceSteps: number; nullSteps: number } {
  const fraction = (flag: string, fallback: number): number => {
    const f = Number(argValue(flag) ?? fallback);
    checkFraction([0, f], flag);
    return f;
  };
  return {
    crossReplaceSteps: fraction("--cross-steps", P2P_DEFAULTS.crossReplaceSteps),
    selfReplaceSteps: fraction("--self-steps", P2P_DEFAULTS.selfReplaceSteps),
    nullSteps: fraction("--null-steps", EDIT_NULL_STEPS),
  };
}
