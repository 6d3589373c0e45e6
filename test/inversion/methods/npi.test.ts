/**
 * Negative-prompt inversion (inversion/methods/npi.ts) samples with the source's ∅ equal to its own
 * prompt, so the source's guided ε is its conditional ε and the sampler leaves its ∅ row out: one
 * latent per step for a reconstruction, 2N − 1 for an edit of N prompts. On the parity model
 * (128×128), the reconstruction and a Prompt-to-Prompt edit with local blending equal the sampling
 * with the full 2N batch and the source prompt fed as ∅ (the method as the paper states it).
 *
 * Measured: the two batchings agree bit for bit here (max |Δ| = 0, reconstruction and edit); the
 * tests allow float32 rounding, 1e-5 of the largest value, as a batch size may change the kernels.
 */

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Denoiser } from "../../../src/editing/denoiser.js";
import { buildAttentionEdit } from "../../../src/editing/prompt_to_prompt/index.js";
import { sample } from "../../../src/editing/sample.js";
import type { RgbImage } from "../../../src/image/index.js";
import type { NullTextPipeline } from "../../../src/pipeline.js";
import { loadParity, maxDiff } from "./support.js";

const maxAbs = (a: Float32Array) => a.reduce((m, v) => Math.max(m, Math.abs(v)), 0);

describe("npi on the parity model", () => {
  let pipe: NullTextPipeline;
  let image: RgbImage;
  const prompt = "a photo of a cat";
  beforeAll(async () => ({ pipe, image } = await loadParity()));
  afterAll(async () => pipe.release());

  it("samples without the source's ∅ row, with the full batch's result", async () => {
    const steps = 4;
    const { inversion, stats } = await pipe.invert(image, prompt, { method: "npi", steps });
    expect([stats.unetEvals, stats.vjps]).toEqual([steps, 0]);
    const batches: number[] = [];
    const eps = Denoiser.prototype.eps;
    Denoiser.prototype.eps = function (this: Denoiser, ...args: Parameters<Denoiser["eps"]>) {
      batches.push(this.batch);
      return eps.apply(this, args);
    };
    const edits = [{ prompt: "a photo of a dog" }];
    const options = { localBlend: { words: [["cat"], ["dog"]] }, crossReplaceSteps: 0.5, selfReplaceSteps: 0.5 };
    let reconstruction: Float32Array;
    let edited: Float32Array;
    try {
      reconstruction = await pipe.reconstructLatent(inversion);
      expect(batches).toEqual([1, 1, 1, 1]);
      batches.length = 0;
      edited = await pipe.editLatents(inversion, edits, { ...options, nullSteps: 0.5 });
      expect(batches).toEqual([3, 3, 3, 3]);
    } finally {
      Denoiser.prototype.eps = eps;
    }
    // the reference: ∅ = the source prompt in a batch of 2N, guidance 7.5
    const [cond, dog, empty] = (await pipe.encodePrompts([prompt, edits[0]?.prompt ?? "", ""])) as Float32Array[];
    const [, h, w] = pipe.latentShape;
    const schedule = pipe.schedule(steps);
    const one = await Denoiser.create(pipe.model, 1, [h, w], { threads: 2 });
    const two = await Denoiser.create(pipe.model, 2, [h, w], { attentionControl: true, threads: 2 });
    try {
      const common = { schedule, zT: inversion.zT, guidance: 7.5, nullEmbeddings: cond as Float32Array };
      const alone = await sample({ ...common, denoiser: one, promptEmbeddings: [cond as Float32Array] });
      expect(maxDiff(reconstruction, alone)).toBeLessThan(1e-5 * maxAbs(alone));
      const pair = await sample({
        ...common,
        denoiser: two,
        promptEmbeddings: [cond as Float32Array, dog as Float32Array],
        // the edit's ∅: the source's on the first half of the steps, the empty prompt's after
        editNullEmbeddings: [cond, cond, empty, empty] as Float32Array[],
        edit: buildAttentionEdit(prompt, edits, steps, pipe.model.tokenizer, options),
      });
      expect(maxDiff(edited, pair)).toBeLessThan(1e-5 * maxAbs(pair));
      // the source branch is the reconstruction; the edit is sampled, not copied
      const size = alone.length;
      expect(maxDiff(edited.subarray(0, size), alone)).toBeLessThan(1e-5 * maxAbs(alone));
      expect(maxDiff(edited.subarray(size), alone)).toBeGreaterThan(1e-3 * maxAbs(alone));
    } finally {
      await one.release();
      await two.release();
    }
  });
});
