/**
 * Cross-attention maps per token, as Prompt-to-Prompt's `show_cross_attention` shows them: the
 * conditional rows' attention probabilities at one resolution (the controller's local-blend
 * resolution: a quarter of the latent, 16² for SD 1.x at 512², where it has cross-attention),
 * averaged over heads and layers (in the graph) and over the sampling steps (here). They come from
 * the attention hook of the edit's own sampling, not from a second model.
 */
import type { ClipTokenizer } from "../models/clip_tokenizer.js";

export interface TokenMap {
  /** Token position in the 77-token sequence (0 is the start token). */
  index: number;
  text: string;
  /** Index of the word (prompt split on spaces) the token belongs to. */
  word: number;
  /** r·r values, row-major, normalised to a maximum of 1 (the raw maximum is `max`). */
  map: number[];
  max: number;
}

export interface PromptAttention {
  prompt: string;
  tokens: TokenMap[];
}

export interface AttentionMaps {
  resolution: number;
  steps: number;
  prompts: PromptAttention[];
}

/** Sums the maps [N, r·r, 77] of every step. */
export class AttentionAccumulator {
  private sum?: Float32Array;
  private steps = 0;

  add = (_step: number, maps: Float32Array): void => {
    if (!this.sum) this.sum = new Float32Array(maps.length);
    const s = this.sum;
    for (let i = 0; i < maps.length; i++) s[i] = (s[i] as number) + (maps[i] as number);
    this.steps++;
  };

  /** The mean over steps of each prompt's tokens (without the start and end tokens). */
  result(prompts: readonly string[], tokenizer: ClipTokenizer, tokens = 77): AttentionMaps {
    const sum = this.sum;
    if (!sum || this.steps === 0) throw new Error("no attention maps were recorded");
    const rr = sum.length / (prompts.length * tokens);
    const r = Math.round(Math.sqrt(rr));
    if (r * r !== rr) throw new Error(`attention maps of ${sum.length} values do not fit ${prompts.length} prompts`);
    return {
      resolution: r,
      steps: this.steps,
      prompts: prompts.map((prompt, n) => {
        const ids = tokenizer.encodeUnpadded(prompt).slice(1, -1);
        const words = prompt.split(" ");
        const wordOf = new Map<number, number>();
        words.forEach((_, w) => {
          for (const t of tokenizer.wordTokenIndices(prompt, w)) wordOf.set(t, w);
        });
        return {
          prompt,
          tokens: ids.map((id, k) => {
            const index = k + 1;
            const map = Array.from(
              { length: rr },
              (_, p) => (sum[(n * rr + p) * tokens + index] as number) / this.steps,
            );
            const max = Math.max(...map);
            return {
              index,
              text: tokenizer.decode([id]).trim(),
              word: wordOf.get(index) ?? -1,
              map: map.map((v) => (max > 0 ? Math.round((v / max) * 1000) / 1000 : 0)),
              max,
            };
          }),
        };
      }),
    };
  }
}
