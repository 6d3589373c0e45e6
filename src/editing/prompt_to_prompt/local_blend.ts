/**
 * Local editing of Prompt-to-Prompt (Hertz et al. 2022, arXiv 2208.01626, "Local editing"; the
 * official notebooks' LocalBlend): the edited latents keep the source's content outside the region
 * the blend words attend to,
 *
 *   α = B(M̄_t, w) ∪ B(M̄*_t, w*)
 *   z*_{t−1} ← (1 − α) ⊙ z_{t−1} + α ⊙ z*_{t−1}
 *
 * where M̄_t is the source's cross-attention map of the words w (averaged over heads and the layers
 * at one resolution, summed over the steps so far: the official AttentionStore), M̄*_t the edited
 * prompt's for w*, and B max-pools (3×3), upsamples to the latent, divides by the maximum and
 * thresholds. With subtract words, their region (the same way, without pooling) is taken out of α.
 */
import type { ClipTokenizer } from "../../models/clip_tokenizer.js";
import type { UNet2DConditionConfig } from "../../models/unet.js";
import { MAX_TOKENS } from "./seq_aligner.js";

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

/** Local blending's tensors for one sampling. */
export interface LocalBlend {
  /** [N, 77]: 1 on the tokens of the blend words of each prompt (w, w*). */
  words: Float32Array;
  subtract?: Float32Array;
  threshold: [number, number];
  startStep: number;
}

/** The blend words as token masks, one row per prompt (source first). */
export function buildLocalBlend(
  prompts: readonly string[],
  o: LocalBlendOptions,
  steps: number,
  tokenizer: ClipTokenizer,
): LocalBlend {
  const K = MAX_TOKENS;
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
  return {
    words: tokenMask(o.words, "words"),
    subtract: o.subtractWords ? tokenMask(o.subtractWords, "subtract words") : undefined,
    threshold: o.threshold ?? [0.3, 0.3],
    startStep: Math.floor((o.start ?? 0.2) * steps),
  };
}

/**
 * The resolution whose cross-attention maps drive local blending: a quarter of the latent (16² for
 * SD's 64² latents, as the official code's down_cross[2:4] + up_cross[:3]) when the UNet has
 * cross-attention there, else the next finer one that has.
 */
export function chooseBlendResolution(config: UNet2DConditionConfig, latentH: number): number {
  const levels = config.down_block_types.map((t, i) => ({
    res: latentH / 2 ** i,
    cross: t === "CrossAttnDownBlock2D",
  }));
  const candidates = levels.filter((l) => l.cross).map((l) => l.res);
  if (candidates.length === 0) throw new Error("local blend needs cross-attention layers in the UNet");
  const quarter = latentH / 4;
  const fine = candidates.filter((r) => r >= quarter).sort((a, b) => a - b);
  return fine[0] ?? Math.max(...candidates);
}

/**
 * One sampling's local blending: sums the maps the denoiser returns at every step (M̄_t; the mask
 * is normalised by its maximum, so the sum serves as the mean) and, from blend.startStep on,
 * blends the latents of that step.
 */
export class LocalBlender {
  private accumulated?: Float32Array;

  constructor(
    private readonly blend: LocalBlend,
    private readonly latentShape: readonly [number, number, number],
    /** Resolution r of the maps [N, r·r, 77]. */
    private readonly resolution: number,
  ) {}

  afterStep(latents: Float32Array, maps: Float32Array, step: number): { latents: Float32Array; masks?: Uint8Array[] } {
    if (!this.accumulated) this.accumulated = new Float32Array(maps.length);
    const acc = this.accumulated;
    for (let k = 0; k < maps.length; k++) acc[k] = (acc[k] as number) + (maps[k] as number);
    if (step < this.blend.startStep) return { latents };
    return localBlend(latents, this.latentShape, acc, this.resolution, this.blend);
  }
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
  blend: LocalBlend,
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
