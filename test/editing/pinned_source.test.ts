/**
 * A denoiser for a pinned source (Direct Inversion: the source latent is set to the stored
 * trajectory after every step, so its guided ε is never read) leaves out the source's ∅ row: 2N − 1
 * latents per UNet run. On the parity model, one Prompt-to-Prompt step of a two-prompt edit with
 * local-blend maps, inside and outside the self-replace window: the edit's guided ε and the maps
 * equal the full 2N batch's (the same UNet rows, evaluated in a smaller batch), and the source's ε is
 * its conditional ε (the full batch's at guidance 1). With the source's ∅ its own prompt (negative-prompt
 * inversion) the same smaller batch gives every row of the full batch's guided ε.
 */
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Denoiser } from "../../src/editing/denoiser.js";
import { buildAttentionEdit } from "../../src/editing/prompt_to_prompt/index.js";
import { loadStableDiffusion, type StableDiffusion } from "../../src/models/loader.js";
import { random } from "../graph/reference.js";

const PARITY = fileURLToPath(new URL("../../../shared/parity/model", import.meta.url));

describe("denoiser with the source pinned", () => {
  let model: StableDiffusion;
  let full: Denoiser;
  let pinned: Denoiser;
  beforeAll(async () => {
    model = await loadStableDiffusion(PARITY);
    const hw: [number, number] = [16, 16];
    full = await Denoiser.create(model, 2, hw, { attentionControl: true, threads: 2 });
    pinned = await Denoiser.create(model, 2, hw, { attentionControl: true, sourceUnguided: true, threads: 2 });
  });
  afterAll(async () => {
    await full.release();
    await pinned.release();
  });

  it("evaluates 2N − 1 latents and gives the edits the full batch's guided ε and attention maps", async () => {
    expect([full.batch, pinned.batch]).toEqual([4, 3]);
    const steps = 4;
    const edit = buildAttentionEdit("a photo of a cat", [{ prompt: "a photo of a dog" }], steps, model.tokenizer, {
      selfReplaceSteps: 0.5,
      localBlend: { words: [["cat"], ["dog"]] },
    });
    const [L, D] = full.contextShape;
    const row = L * D;
    const [nul, src, dog] = [random(row, 1), random(row, 2), random(row, 3)].map((a) => Float32Array.from(a)) as [
      Float32Array,
      Float32Array,
      Float32Array,
    ];
    const stack = (rows: Float32Array[]) => {
      const out = new Float32Array(rows.length * row);
      rows.forEach((r, i) => out.set(r, i * row));
      return out;
    };
    const size = full.latentShape.reduce((a, b) => a * b, 1);
    const latents = Float32Array.from(random(2 * size, 4));
    const maxDiff = (a: Float32Array, b: Float32Array) =>
      a.reduce((m, v, i) => Math.max(m, Math.abs(v - (b[i] as number))), 0);
    const maxAbs = (a: Float32Array) => a.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
    for (const step of [0, 3]) {
      const feeds = (d: Denoiser) => d.controller?.begin(edit, d.latentShape).feeds(step);
      const a = await full.eps(latents, 801, stack([nul, nul, src, dog]), 7.5, feeds(full));
      const b = await pinned.eps(latents, 801, stack([nul, src, dog]), 7.5, feeds(pinned));
      const editA = a.eps.subarray(size);
      expect(maxDiff(b.eps.subarray(size), editA)).toBeLessThan(1e-5 * maxAbs(editA));
      expect(Object.keys(b.outputs)).toEqual(["maps"]);
      const mapsA = a.outputs.maps as Float32Array;
      expect(maxDiff(b.outputs.maps as Float32Array, mapsA)).toBeLessThan(1e-5 * maxAbs(mapsA));
      // the source's ε unguided: the full batch's source row at guidance 1
      const cond = await full.eps(latents, 801, stack([nul, nul, src, dog]), 1, feeds(full));
      const srcA = cond.eps.subarray(0, size);
      expect(maxDiff(b.eps.subarray(0, size), srcA)).toBeLessThan(1e-5 * maxAbs(srcA));
      // and it is not the guided one
      expect(maxDiff(b.eps.subarray(0, size), a.eps.subarray(0, size))).toBeGreaterThan(1e-3 * maxAbs(srcA));
      // negative-prompt inversion: with the source's ∅ its own prompt, the full batch's guided ε is
      // the unguided denoiser's on every row
      const npi = await full.eps(latents, 801, stack([src, nul, src, dog]), 7.5, feeds(full));
      expect(maxDiff(b.eps, npi.eps)).toBeLessThan(1e-5 * maxAbs(npi.eps));
    }
  });
});
