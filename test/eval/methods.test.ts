/**
 * eval:methods on the shipped model, one scene and few steps, against the same quantities computed
 * here one by one: the VAE's PSNR, each method's reconstruction PSNR/SSIM and inversion counts, and
 * the word swaps read by the checker and measured outside the true edit region; Direct Inversion's
 * reconstruction is the VAE's round trip (its PSNR equals vae_psnr).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DEFAULT_MODEL } from "../../src/cli/main.js";
import { evaluateMethods } from "../../src/eval/methods.js";
import { wordSwaps } from "../../src/eval/shapes.js";
import { maskedPsnr, psnr, type RgbImage, ssim } from "../../src/image/index.js";
import { METHODS } from "../../src/inversion/registry.js";
import { NullTextPipeline } from "../../src/pipeline.js";
import {
  checkPrompt,
  editedWord,
  editPrompt,
  editRegion,
  editScene,
  randomScene,
  renderScene,
  scenePrompt,
} from "../../src/scenes/index.js";

let pipe: NullTextPipeline;
beforeAll(async () => {
  pipe = await NullTextPipeline.load(DEFAULT_MODEL);
});
afterAll(async () => pipe.release());

describe("evaluateMethods", () => {
  it("scores each method's reconstruction and word swaps as computed one by one", async () => {
    const seed = 11;
    const steps = 6;
    const methods = ["ddim", "direct", "sdedit"];
    const r = await evaluateMethods(pipe, { seeds: [seed], methods, steps });
    expect(r.rows.map((x) => x.method)).toEqual(methods);
    for (const row of r.rows)
      expect(Object.keys(row)).toEqual([
        "method",
        "recon_psnr",
        "recon_ssim",
        "edit_success",
        "psnr_outside",
        "psnr_truth",
        "invert_seconds",
        "edit_seconds",
        "unet_evals",
        "vjps",
      ]);

    const scene = randomScene(seed, { objects: "any" });
    const image = renderScene(scene, pipe.resolution);
    const prompt = scenePrompt(scene);
    const [vae] = await pipe.decodeLatents(await pipe.encodeImage(image));
    const vaePsnr = psnr(image, vae as RgbImage);
    expect(r.vae_psnr).toBeCloseTo(vaePsnr, 6);
    const direct = r.rows[1];
    // Direct Inversion reconstructs the encoded latent exactly: the VAE's own round trip
    expect(direct?.recon_psnr).toBeCloseTo(vaePsnr, 6);

    for (const row of r.rows) {
      const { inversion, stats } = await pipe.invert(image, prompt, { method: row.method, steps });
      expect([row.unet_evals, row.vjps]).toEqual([stats.unetEvals, stats.vjps]);
      const rec = await pipe.reconstruct(inversion);
      expect(row.recon_psnr).toBeCloseTo(psnr(image, rec), 6);
      expect(row.recon_ssim).toBeCloseTo(ssim(image, rec), 6);
      let success = 0;
      let outside = 0;
      let truth = 0;
      for (const edit of wordSwaps(scene, seed)) {
        const word = editedWord(scene, edit);
        const words = [word.index, edit.kind === "color" ? word.index + 1 : word.index - 1];
        const [, result] = (await pipe.edit(inversion, [{ prompt: editPrompt(scene, edit), mode: "replace" }], {
          localBlend: { words: [words, words] },
        })) as [RgbImage, RgbImage];
        const edited = editScene(scene, edit);
        const read = checkPrompt(result, edited).objects[edit.objectIndex];
        if (read?.found && (edit.kind === "color" ? read.color : read.shape)) success += 0.5;
        const mask = editRegion(scene, edit, pipe.resolution, 2).map((v) => 1 - v);
        outside += maskedPsnr(result, image, { width: image.width, height: image.height, data: mask }) / 2;
        truth += psnr(result, renderScene(edited, pipe.resolution)) / 2;
      }
      expect(row.edit_success).toBe(success);
      expect(row.psnr_outside).toBeCloseTo(outside, 6);
      expect(row.psnr_truth).toBeCloseTo(truth, 6);
      expect(row.invert_seconds).toBeGreaterThan(0);
      expect(row.edit_seconds).toBeGreaterThan(0);
    }
    // the inversion's cost: DDIM inversion only for direct; nothing for ddim's and sdedit's own part
    expect(r.rows.map((x) => [x.unet_evals, x.vjps])).toEqual([
      [steps, 0],
      [steps, 0],
      [0, 0],
    ]);
  });

  it("names an unknown method with the registered ones, and refuses no seeds", async () => {
    await expect(evaluateMethods(pipe, { seeds: [1], methods: ["direct", "magic"] })).rejects.toThrow(
      new RegExp(`unknown method "magic" \\(methods: ${[...METHODS.keys()].join(", ")}\\)`),
    );
    await expect(evaluateMethods(pipe, { seeds: [] })).rejects.toThrow(/no seeds/);
  });
});
