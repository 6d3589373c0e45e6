/**
 * Prompt-to-Prompt's edit as tensors (Hertz et al. 2022, "Prompt-to-Prompt Image Editing with
 * Cross Attention Control", arXiv 2208.01626, §3.2; the official notebooks' AttentionReplace,
 * AttentionRefine and AttentionReweight): everything that is fixed for one sampling, built once on
 * the host and fed to the denoiser graph, where controller.ts applies it.
 *
 * The paper's Edit(M_t, M*_t, t) for the three edits, one formula with these tensors:
 *
 *   R_e = ((M_t · M_e) ⊙ a_e + M*_t ⊙ (1 − a_e)) ⊙ q_e
 *
 *   word swap       M_e the replacement mapper, a_e = 1, q_e = 1        (§3.2 "Word Swap")
 *   adding a phrase M_e one-hot of the alignment A, a_e = [A(j) ≠ None]  (§3.2 "Adding a New Phrase")
 *   re-weighting    q_e = c on the re-weighted word's tokens, 1 elsewhere (§3.2 "Attention Re-weighting")
 *
 * and the injection schedule: cross-attention takes R_e while t < τ (α_t,e = 1, per token, the
 * official `get_time_words_attention_alpha`), self-attention takes the source's in the self-replace
 * window (the official notebook's self_replace_steps).
 */
import type { ClipTokenizer } from "../../models/clip_tokenizer.js";
import { buildLocalBlend, type LocalBlend, type LocalBlendOptions } from "./local_blend.js";
import { MAX_TOKENS, refinementMapper, replacementMapper } from "./seq_aligner.js";

export type StepRange = number | [number, number];

export interface EditPrompt {
  prompt: string;
  /** "replace" (word swap, same word count) or "refine" (words added); default: replace when the word counts match. */
  mode?: "replace" | "refine";
  /** Attention re-weighting of words of this prompt (official AttentionReweight / get_equalizer). */
  reweight?: { word: string; scale: number }[];
}

/** The injection fractions used when none are given: the null-text notebook's. */
export const P2P_DEFAULTS = { crossReplaceSteps: 0.8, selfReplaceSteps: 0.5 } as const;

export interface PromptToPromptOptions {
  /** Fraction (or [from, to] fractions) of steps where cross-attention is injected; per-word ranges by word. Default 0.8. */
  crossReplaceSteps?: StepRange | { default?: StepRange; words?: Record<string, StepRange> };
  /** Fraction (or range) of steps where self-attention is injected. Default 0.5 (the null-text notebook's). */
  selfReplaceSteps?: StepRange;
  localBlend?: LocalBlendOptions;
}

/** The per-edit tensors, fixed for the whole sampling. */
export interface AttentionEdit {
  edits: number;
  /** [E, 77, 77] */
  mapper: Float32Array;
  /** [E, 77] */
  refineAlphas: Float32Array;
  /** [E, 77] */
  equalizer: Float32Array;
  /** [steps + 1, E, 77]: α_t,e per token. */
  crossAlpha: Float32Array;
  /** Steps [from, to) where self-attention is replaced. */
  selfReplace: [number, number];
  blend?: LocalBlend;
}

const range = (r: StepRange): [number, number] => (typeof r === "number" ? [0, r] : r);

export function checkFraction(r: [number, number], what: string): void {
  if (!(r[0] >= 0 && r[0] <= r[1] && r[1] <= 1)) throw new Error(`${what}: [${r}] must be fractions 0 ≤ from ≤ to ≤ 1`);
}

/** Builds the attention control of Prompt-to-Prompt for a source prompt and its edits. */
export function buildAttentionEdit(
  source: string,
  edits: readonly EditPrompt[],
  steps: number,
  tokenizer: ClipTokenizer,
  o: PromptToPromptOptions = {},
): AttentionEdit {
  const E = edits.length;
  if (E === 0) throw new Error("Prompt-to-Prompt needs at least one edited prompt");
  const K = MAX_TOKENS;
  const mapper = new Float32Array(E * K * K);
  const refineAlphas = new Float32Array(E * K).fill(1);
  const equalizer = new Float32Array(E * K).fill(1);
  edits.forEach((edit, e) => {
    const tokens = tokenizer.encodeUnpadded(edit.prompt).length;
    if (tokens > K) throw new Error(`edited prompt "${edit.prompt}" has ${tokens} tokens; the text encoder takes ${K}`);
    const mode = edit.mode ?? (edit.prompt.split(" ").length === source.split(" ").length ? "replace" : "refine");
    if (mode === "replace") {
      mapper.set(replacementMapper(source, edit.prompt, tokenizer), e * K * K);
    } else {
      const { mapper: m, alphas } = refinementMapper(source, edit.prompt, tokenizer);
      // attention[..., m] as a product with a one-hot matrix; −1 indexes the last token, as in PyTorch.
      m.forEach((src, j) => {
        const row = src < 0 ? K + src : src;
        mapper[e * K * K + row * K + j] = 1;
      });
      refineAlphas.set(alphas, e * K);
    }
    for (const { word, scale } of edit.reweight ?? []) {
      const inds = tokenizer.wordTokenIndices(edit.prompt, word);
      if (inds.length === 0) throw new Error(`reweight: "${word}" is not a word of "${edit.prompt}"`);
      for (const i of inds) equalizer[e * K + i] = scale;
    }
  });

  // α_t,e: official get_time_words_attention_alpha, default range then per-word ranges.
  const crossOpt = o.crossReplaceSteps ?? P2P_DEFAULTS.crossReplaceSteps;
  const spec = typeof crossOpt === "number" || Array.isArray(crossOpt) ? { default: crossOpt } : crossOpt;
  const crossAlpha = new Float32Array((steps + 1) * E * K);
  const setRange = (r: StepRange, e: number, tokens: readonly number[] | null) => {
    const [from, to] = range(r);
    checkFraction([from, to], "cross-replace steps");
    const start = Math.floor(from * (steps + 1));
    const end = Math.floor(to * (steps + 1));
    for (let s = 0; s <= steps; s++) {
      const v = s >= start && s < end ? 1 : 0;
      for (const k of tokens ?? Array.from({ length: K }, (_, i) => i)) crossAlpha[(s * E + e) * K + k] = v;
    }
  };
  for (let e = 0; e < E; e++) setRange(spec.default ?? [0, 1], e, null);
  for (const [word, r] of Object.entries(spec.words ?? {})) {
    edits.forEach((edit, e) => {
      const inds = tokenizer.wordTokenIndices(edit.prompt, word);
      if (inds.length) setRange(r, e, inds);
    });
  }
  const self = range(o.selfReplaceSteps ?? P2P_DEFAULTS.selfReplaceSteps);
  checkFraction(self, "self-replace steps");

  const prompts = [source, ...edits.map((e) => e.prompt)];
  const blend = o.localBlend ? buildLocalBlend(prompts, o.localBlend, steps, tokenizer) : undefined;
  return {
    edits: E,
    mapper,
    refineAlphas,
    equalizer,
    crossAlpha,
    selfReplace: [Math.floor(steps * self[0]), Math.floor(steps * self[1])],
    blend,
  };
}
