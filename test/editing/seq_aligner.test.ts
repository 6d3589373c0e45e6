/** The Prompt-to-Prompt aligner's mappers and alphas on hand-checked cases (official seq_aligner.py semantics). */
import { fileURLToPath } from "node:url";
import { beforeAll, describe, expect, it } from "vitest";
import { buildAttentionEdit, localBlend } from "../../src/editing/prompt_to_prompt/index.js";
import {
  alignTokens,
  MAX_TOKENS,
  refinementMapper,
  replacementMapper,
} from "../../src/editing/prompt_to_prompt/seq_aligner.js";
import { ClipTokenizer } from "../../src/models/clip_tokenizer.js";

const K = MAX_TOKENS;
let tok: ClipTokenizer;
beforeAll(async () => {
  tok = await ClipTokenizer.fromFolder(fileURLToPath(new URL("../../../shared/clip-tokenizer", import.meta.url)));
});

const at = (m: Float32Array, i: number, j: number) => m[i * K + j];

describe("replacement mapper", () => {
  it("is the identity for a one-token word swap", () => {
    const m = replacementMapper("a cat sitting next to a mirror", "a tiger sitting next to a mirror", tok);
    for (let i = 0; i < K; i++) for (let j = 0; j < K; j++) expect(at(m, i, j)).toBe(i === j ? 1 : 0);
  });

  it("spreads a word over the tokens of a longer replacement, then follows the official j→j rule", () => {
    expect(tok.tokenize("8k")).toHaveLength(2);
    // "a cat on a mat": bos a cat on a mat; "a 8k on a mat": bos a 8 k on a mat
    const m = replacementMapper("a cat on a mat", "a 8k on a mat", tok);
    expect(at(m, 0, 0)).toBe(1);
    expect(at(m, 1, 1)).toBe(1);
    expect(at(m, 2, 2)).toBe(0.5);
    expect(at(m, 2, 3)).toBe(0.5);
    // After the last swapped word the official code writes mapper[j, j] (source row 3 stays empty).
    for (let j = 0; j < K; j++) expect(at(m, 3, j)).toBe(0);
    expect(at(m, 4, 4)).toBe(1);
    expect(at(m, 76, 76)).toBe(1);
    let total = 0;
    for (const v of m) total += v;
    expect(total).toBe(2 + 1 + 73); // rows 0,1; the split row; j = 4..76
  });

  it("refuses prompts with different word counts", () => {
    expect(() => replacementMapper("a cat", "a fluffy cat", tok)).toThrow(
      /same number of words: "a cat" has 2, "a fluffy cat" has 3/,
    );
  });
});

describe("refinement mapper (global alignment)", () => {
  it("aligns token sequences with gap 0, match 1, mismatch −1", () => {
    expect(alignTokens([1, 2, 3, 4], [1, 2, 9, 3, 4])).toEqual([0, 1, -1, 2, 3]);
    expect(alignTokens([1, 2, 5, 3, 4], [1, 2, 7, 8, 3, 4])).toEqual([0, 1, -1, -1, 3, 4]);
  });

  it("maps an added word to nothing (alpha 0) and the rest to their source tokens", () => {
    const { mapper, alphas } = refinementMapper("a cat", "a fluffy cat", tok);
    expect(Array.from(mapper.slice(0, 6))).toEqual([0, 1, -1, 2, 3, 5]);
    expect(Array.from(alphas.slice(0, 6))).toEqual([1, 1, 0, 1, 1, 1]);
    expect(mapper[76]).toBe(76);
  });

  it("handles a replaced word plus an inserted one (red car → blue sports car)", () => {
    const { mapper, alphas } = refinementMapper("a red car", "a blue sports car", tok);
    expect(Array.from(mapper.slice(0, 7))).toEqual([0, 1, -1, -1, 3, 4, 6]);
    expect(Array.from(alphas.slice(0, 7))).toEqual([1, 1, 0, 0, 1, 1, 1]);
  });
});

describe("attention edit tensors", () => {
  it("builds the cross-replace schedule per step and word, the self-replace window and the equalizer", () => {
    const e = buildAttentionEdit(
      "a cat on a mat",
      [{ prompt: "a dog on a mat", reweight: [{ word: "dog", scale: 2 }] }],
      10,
      tok,
      {
        crossReplaceSteps: { default: 0.8, words: { dog: [0.2, 0.5] } },
        selfReplaceSteps: 0.5,
      },
    );
    // official update_alpha_time_word: steps [int(a·(T+1)), int(b·(T+1))) of T+1 rows
    const alphaAt = (s: number, k: number) => e.crossAlpha[s * K + k];
    for (let s = 0; s <= 10; s++) {
      expect(alphaAt(s, 1)).toBe(s < 8 ? 1 : 0);
      expect(alphaAt(s, 2)).toBe(s >= 2 && s < 5 ? 1 : 0);
    }
    expect(e.selfReplace).toEqual([0, 5]);
    expect(e.equalizer[2]).toBe(2);
    expect(e.equalizer[1]).toBe(1);
    expect(e.refineAlphas.every((v) => v === 1)).toBe(true);
  });

  it("uses the refinement mapper as a one-hot matrix, −1 indexing the last token as PyTorch does", () => {
    const e = buildAttentionEdit("a cat", [{ prompt: "a fluffy cat" }], 10, tok);
    expect(at(e.mapper, 2, 3)).toBe(1); // target token 3 ("cat") reads source token 2
    expect(at(e.mapper, 76, 2)).toBe(1); // target token 2 ("fluffy") has source −1
    expect(e.refineAlphas[2]).toBe(0);
  });

  it("names unknown words", () => {
    expect(() =>
      buildAttentionEdit("a cat", [{ prompt: "a dog", reweight: [{ word: "tiger", scale: 2 }] }], 10, tok),
    ).toThrow(/"tiger" is not a word of "a dog"/);
    expect(() =>
      buildAttentionEdit("a cat", [{ prompt: "a dog" }], 10, tok, { localBlend: { words: [["cat"], ["cow"]] } }),
    ).toThrow(/"cow" is not a word of "a dog"/);
  });
});

describe("local blend", () => {
  it("keeps the source latent outside where the blend words attend, and the edit inside", () => {
    // N = 2 prompts, maps at resolution 2 over a 4×4 latent with 1 channel; the word (token 2) attends to the top-left cell.
    const r = 2;
    const maps = new Float32Array(2 * r * r * K);
    maps[(0 * r * r + 0) * K + 2] = 1; // source prompt, cell (0,0)
    maps[(1 * r * r + 0) * K + 2] = 1; // edited prompt, cell (0,0)
    const words = new Float32Array(2 * K);
    words[2] = 1;
    words[K + 2] = 1;
    const latents = new Float32Array(32);
    latents.fill(1, 0, 16); // source
    latents.fill(5, 16, 32); // edit
    const out = localBlend(latents, [1, 4, 4], maps, r, { words, threshold: [0.3, 0.3], startStep: 0 });
    // max-pooling 3×3 over the 2×2 map spreads the cell to all four cells: everything is "inside"
    expect(Array.from(out.latents.slice(16))).toEqual(new Array(16).fill(5));
    expect(Array.from(out.masks[0] as Uint8Array)).toEqual(new Array(16).fill(1));
    const sharp = localBlend(latents, [1, 4, 4], maps, r, {
      words,
      subtract: words,
      threshold: [0.3, 0.3],
      startStep: 0,
    });
    // with the same words subtracted (no pooling) the top-left 2×2 latent cells are excluded, and only they
    expect(Array.from(sharp.latents.slice(16))).toEqual([1, 1, 5, 5, 1, 1, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5]);
    expect(Array.from(sharp.masks[0] as Uint8Array)).toEqual([0, 0, 1, 1, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]);
    expect(Array.from(sharp.latents.slice(0, 16))).toEqual(new Array(16).fill(1));
  });
});
