/**
 * Prompt-to-Prompt attention control (Hertz et al. 2022, §3.2 and the official notebooks'
 * AttentionReplace, AttentionRefine, AttentionReweight and LocalBlend), expressed as tensors that
 * the denoiser graph takes as inputs at every step:
 *
 *   for each edited prompt e, on the conditional branch:
 *     R_e   = ((P_src · M_e) ⊙ a_e + P_e ⊙ (1 − a_e)) ⊙ q_e          (replace: a = 1; reweight: q ≠ 1)
 *     P_e' = α_t,e ⊙ R_e + (1 − α_t,e) ⊙ P_e                          (cross-attention, per token)
 *     P_e' = P_src   while t is in the self-replace window             (self-attention at ≤ (latent/2)²)
 *
 * M_e is the 77×77 replacement mapper, or the one-hot form of the refinement mapper; a_e its alphas;
 * q_e the equalizer; α_t,e the cross-replace schedule.
 */
import type { ClipTokenizer } from "../models/clip_tokenizer.js";
import { MAX_TOKENS, refinementMapper, replacementMapper } from "./seq_aligner.js";

export type StepRange = number | [number, number];

export interface EditPrompt {
  prompt: string;
  /** "replace" (word swap, same word count) or "refine" (words added); default: replace when the word counts match. */
  mode?: "replace" | "refine";
  /** Attention re-weighting of words of this prompt (official AttentionReweight / get_equalizer). */
  reweight?: { word: string; scale: number }[];
}

export interface LocalBlendOptions {
  /** Words (or word positions) whose attention defines the edited region: per prompt, source first. */
  words: (string | number)[][];
  /** Words whose region is excluded (optional), per prompt. */
  subtractWords?: (string | number)[][];
  /** Mask thresholds [with pooling, without] (official th). */
  threshold?: [number, number];
  /** Fraction of the steps before blending starts (official start_blend). */
  start?: number;
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
  blend?: {
    /** [N, 77]: 1 on the tokens of the blend words of each prompt. */
    words: Float32Array;
    subtract?: Float32Array;
    threshold: [number, number];
    startStep: number;
  };
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

  let blend: AttentionEdit["blend"];
  if (o.localBlend) {
    const prompts = [source, ...edits.map((e) => e.prompt)];
    const lb = o.localBlend;
    const tokenMask = (words: (string | number)[][], what: string) => {
      if (words.length !== prompts.length)
        throw new Error(`local blend ${what}: give one word list per prompt (${prompts.length})`);
      const out = new Float32Array(prompts.length * K);
      words.forEach((list, n) => {
        for (const w of list) {
          const inds = tokenizer.wordTokenIndices(prompts[n] as string, w);
          if (inds.length === 0) throw new Error(`local blend: "${w}" is not a word of "${prompts[n]}"`);
          for (const i of inds) out[n * K + i] = 1;
        }
      });
      return out;
    };
    blend = {
      words: tokenMask(lb.words, "words"),
      subtract: lb.subtractWords ? tokenMask(lb.subtractWords, "subtract words") : undefined,
      threshold: lb.threshold ?? [0.3, 0.3],
      startStep: Math.floor((lb.start ?? 0.2) * steps),
    };
  }
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

/**
 * LocalBlend (official `LocalBlend.__call__`): from the cross-attention maps accumulated so far
 * ([N, r, r, 77], summed over steps), a mask per prompt of where its blend words attend; outside
 * the mask (or the source's mask), each edited latent is reset to the source latent. Returns the
 * blended latents and each edit's mask at latent resolution.
 */
export function localBlend(
  latents: Float32Array,
  latentShape: readonly [number, number, number],
  maps: Float32Array,
  resolution: number,
  blend: NonNullable<AttentionEdit["blend"]>,
): { latents: Float32Array; masks: Uint8Array[] } {
  const [c, h, w] = latentShape;
  const plane = h * w;
  const N = blend.words.length / MAX_TOKENS;
  const mask = (words: Float32Array, usePool: boolean, threshold: number): Uint8Array[] =>
    Array.from({ length: N }, (_, n) => {
      const r = resolution;
      const m = new Float32Array(r * r);
      for (let p = 0; p < r * r; p++) {
        let s = 0;
        for (let k = 0; k < MAX_TOKENS; k++)
          s += (maps[(n * r * r + p) * MAX_TOKENS + k] as number) * (words[n * MAX_TOKENS + k] as number);
        m[p] = s;
      }
      const pooled = usePool ? maxPool3(m, r) : m;
      // nearest upsampling to the latent size, then normalise by the maximum and threshold
      const up = new Float32Array(plane);
      let max = 0;
      for (let y = 0; y < h; y++)
        for (let x = 0; x < w; x++) {
          const v = pooled[Math.floor((y * r) / h) * r + Math.floor((x * r) / w)] as number;
          up[y * w + x] = v;
          max = Math.max(max, v);
        }
      return Uint8Array.from(up, (v) => (max > 0 && v / max > threshold ? 1 : 0));
    });
  const main = mask(blend.words, true, blend.threshold[0]);
  const sub = blend.subtract ? mask(blend.subtract, false, blend.threshold[1]) : null;
  const out = Float32Array.from(latents);
  const size = c * plane;
  const masks: Uint8Array[] = [];
  for (let n = 1; n < N; n++) {
    const mask = new Uint8Array(plane);
    for (let p = 0; p < plane; p++) {
      let keep = (main[0] as Uint8Array)[p] || (main[n] as Uint8Array)[p] ? 1 : 0;
      // official: mask = mask[:1] + mask for both; the subtraction mask is inverted
      if (sub && ((sub[0] as Uint8Array)[p] || (sub[n] as Uint8Array)[p])) keep = 0;
      mask[p] = keep;
      if (keep) continue;
      for (let ch = 0; ch < c; ch++) out[n * size + ch * plane + p] = latents[ch * plane + p] as number;
    }
    masks.push(mask);
  }
  return { latents: out, masks };
}

function maxPool3(m: Float32Array, r: number): Float32Array {
  const out = new Float32Array(r * r);
  for (let y = 0; y < r; y++)
    for (let x = 0; x < r; x++) {
      let best = Number.NEGATIVE_INFINITY;
      for (let dy = -1; dy <= 1; dy++)
        for (let dx = -1; dx <= 1; dx++) {
          const yy = y + dy;
          const xx = x + dx;
          if (yy >= 0 && yy < r && xx >= 0 && xx < r) best = Math.max(best, m[yy * r + xx] as number);
        }
      out[y * r + x] = best;
    }
  return out;
}
