/**
 * Direct Inversion (inversion/methods/direct.ts): the correction on hand-computed latents; exact
 * reconstruction of the encoded latent on the parity model (128×128) and the built-in model (64×64),
 * also at another guidance and under every Prompt-to-Prompt control (the source branch of an edit);
 * the inversion file's round trip in float32 (bit-exact reconstruction) and float16 (within the
 * float16 rounding of z_0); bad settings and stored tensors named; and the command line end to end.
 *
 * Measured bound: the reconstruction equals the encoded latent z_0 bit for bit (max |Δ| = 0) in
 * float32, because the last correction sets the source branch to z*_0 = z_0; with the float16 file
 * it is z_0 rounded to float16 (|Δ| ≤ 2^-11·|z_0|).
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DEFAULT_MODEL } from "../../../src/cli/main.js";
import { Denoiser } from "../../../src/editing/denoiser.js";
import { psnr, type RgbImage, readImage, writePng } from "../../../src/image/index.js";
import { decodeInversion, encodeInversion, readInversion } from "../../../src/inversion/file.js";
import { GuidedStep } from "../../../src/inversion/guided_step.js";
import { pullBack } from "../../../src/inversion/methods/direct.js";
import { getMethod, resolveSettings } from "../../../src/inversion/registry.js";
import { NullTextPipeline } from "../../../src/pipeline.js";
import { randomScene, renderScene, scenePrompt } from "../../../src/scenes/index.js";
import { loadParity, maxDiff, PARITY, runCli } from "./support.js";

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "nulltext-direct-"));
const at = (name: string) => path.join(dir, name);

describe("direct: the correction", () => {
  it("sets the source onto the pivot of the step, and adds the same difference to the edits only with correctEdits", () => {
    // 2 steps of latents of 2 values; pivots z*_0 = (1, 2), z*_1 = (3, 4)
    const pivots = { shape: [2, 2, 1, 1], data: Float32Array.of(1, 2, 3, 4) };
    const latents = Float32Array.of(10, 20, 30, 50); // source (10, 20), edit (30, 50)
    // step 0 lands on z*_1, step 1 on z*_0
    expect(Array.from(pullBack(pivots, 2, false)(0, latents))).toEqual([3, 4, 30, 50]);
    expect(Array.from(pullBack(pivots, 2, false)(1, latents))).toEqual([1, 2, 30, 50]);
    // add-target: the edit moves by z*_0 − source = (−9, −18)
    expect(Array.from(pullBack(pivots, 2, true)(1, latents))).toEqual([1, 2, 21, 32]);
    expect(Array.from(latents)).toEqual([10, 20, 30, 50]); // the input is left as it was
    expect(() => pullBack(pivots, 2, false)(0, Float32Array.of(1, 2, 3))).toThrow(
      /3 latent values are not whole latents of 2/,
    );
    expect(() => pullBack(pivots, 2, false)(2, latents)).toThrow(/step 2 is outside the 2 stored steps/);
  });

  it("answers bad settings and stored tensors with what is wrong", () => {
    expect(resolveSettings({ method: "direct" })).toEqual({
      method: "direct",
      steps: 50,
      guidance: 7.5,
      correctEdits: false,
    });
    expect(() => resolveSettings({ method: "direct", correctEdits: "yes" })).toThrow(
      /setting 'correctEdits' is "yes", expected a boolean/,
    );
    expect(() => resolveSettings({ method: "direct", steps: 0 })).toThrow(/steps 0 is invalid/);
    expect(() => resolveSettings({ method: "direct", strength: 0.5 })).toThrow(
      /setting 'strength' applies to sdedit, not to direct/,
    );
    expect(() => resolveSettings({ method: "nti", correctEdits: true })).toThrow(
      /setting 'correctEdits' applies to direct, not to nti/,
    );
    const direct = getMethod("direct");
    const settings = resolveSettings({ method: "direct", steps: 3 });
    expect(() => direct.checkStored({}, settings, [77, 8])).toThrow(/stores 'pivots', which is missing/);
    expect(() =>
      direct.checkStored({ pivots: { shape: [2, 4, 8, 8], data: new Float32Array(512) } }, settings, [77, 8]),
    ).toThrow(/'pivots' has shape \[2,4,8,8\], expected \[3, C, h, w\]/);
  });
});

describe("direct on the parity model", () => {
  let pipe: NullTextPipeline;
  let image: RgbImage;
  const prompt = "a photo of a cat";
  beforeAll(async () => ({ pipe, image } = await loadParity()));
  afterAll(async () => pipe.release());

  it("reconstructs the encoded latent bit for bit, at any guidance, and as the source of every kind of edit", async () => {
    const { inversion, stats } = await pipe.invert(image, prompt, { method: "direct", steps: 4 });
    // the DDIM inversion only: no optimisation, no extra pass
    expect([stats.unetEvals, stats.vjps]).toEqual([4, 0]);
    expect(inversion.tensors.pivots?.shape).toEqual([4, ...pipe.latentShape]);
    const z0 = await pipe.encodeImage(image);
    expect(maxDiff(await pipe.reconstructLatent(inversion), z0)).toBe(0);
    expect(maxDiff(await pipe.reconstructLatent(inversion, { guidance: 2 }), z0)).toBe(0);
    const size = z0.length;
    const edits = [
      { prompt: "a photo of a dog", mode: "replace" as const },
      { prompt: "a photo of a small cat", mode: "refine" as const, reweight: [{ word: "small", scale: 2 }] },
    ];
    const plain = await pipe.editLatents(inversion, edits, {});
    const controlled = await pipe.editLatents(inversion, edits, {
      localBlend: { words: [["cat"], ["dog"], ["cat"]] },
      crossReplaceSteps: { default: 0.5, words: { dog: 1 } },
      selfReplaceSteps: [0.25, 0.75],
    });
    for (const latents of [plain, controlled]) {
      expect(maxDiff(latents.subarray(0, size), z0)).toBe(0);
      // the edits are sampled, not copied
      expect(maxDiff(latents.subarray(size, 2 * size), z0)).toBeGreaterThan(1e-3);
    }
    // add-target: the edits get the source's corrections, so they differ from the paper's edits
    const addTarget = await pipe.invert(image, prompt, { method: "direct", steps: 4, correctEdits: true });
    const corrected = await pipe.editLatents(addTarget.inversion, edits, {});
    expect(maxDiff(corrected.subarray(0, size), z0)).toBe(0);
    expect(maxDiff(corrected.subarray(size), plain.subarray(size))).toBeGreaterThan(1e-3);
  });

  it("evaluates the edits alone on the steps where no control reads the pinned source, with the same result", async () => {
    const { inversion } = await pipe.invert(image, prompt, { method: "direct", steps: 6 });
    const z0 = await pipe.encodeImage(image);
    const size = z0.length;
    const edits = [{ prompt: "a photo of a dog" }];
    // α = 1 on steps 0..2 (⌊0.5·7⌋ = 3), self-replace on step 0 (⌊0.3·6⌋ = 1): steps 3..5 read nothing of the source
    const options = { crossReplaceSteps: 0.5, selfReplaceSteps: 0.3 };
    const batches: number[] = [];
    let forwards = 0;
    const eps = Denoiser.prototype.eps;
    const forward = GuidedStep.prototype.eps;
    Denoiser.prototype.eps = function (this: Denoiser, ...args: Parameters<Denoiser["eps"]>) {
      batches.push(this.batch);
      return eps.apply(this, args);
    };
    GuidedStep.prototype.eps = function (this: GuidedStep, ...args: Parameters<GuidedStep["eps"]>) {
      forwards++;
      return forward.apply(this, args);
    };
    try {
      // after the inversion, its batch-1 forward runs the edits-alone steps: ∅ and prompt, 3 steps
      const alone = await pipe.editLatents(inversion, edits, options);
      expect(batches).toEqual([3, 3, 3, 2, 2, 2]);
      expect(forwards).toBe(6);
      batches.length = 0;
      // asking for every step's attention maps keeps the source's row (the reference here)
      const full = await pipe.editLatents(inversion, edits, { ...options, onAttentionMaps: () => {} });
      expect(batches).toEqual([3, 3, 3, 3, 3, 3]);
      expect(maxDiff(alone.subarray(0, size), z0)).toBe(0);
      const edit = full.subarray(size);
      const scale = edit.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
      expect(maxDiff(alone.subarray(size), edit)).toBeLessThan(1e-5 * scale);
      // without the inversion's forward compiled (sessions released), a batched graph of their own
      await pipe.release();
      batches.length = 0;
      forwards = 0;
      const batched = await pipe.editLatents(inversion, edits, options);
      expect(batches).toEqual([3, 3, 3, 2, 2, 2]);
      expect(forwards).toBe(0);
      expect(maxDiff(batched.subarray(size), edit)).toBeLessThan(1e-5 * scale);
      // with local blending every step reads the source
      batches.length = 0;
      await pipe.editLatents(inversion, edits, { ...options, localBlend: { words: [["cat"], ["dog"]] } });
      expect(batches).toEqual([3, 3, 3, 3, 3, 3]);
    } finally {
      Denoiser.prototype.eps = eps;
      GuidedStep.prototype.eps = forward;
    }
  });

  it("round-trips the inversion file: float32 bit-exact, float16 within z_0's float16 rounding", async () => {
    const { inversion } = await pipe.invert(image, prompt, { method: "direct", steps: 3 });
    const z0 = await pipe.encodeImage(image);
    const back = decodeInversion(encodeInversion(inversion));
    expect(back.settings).toEqual(inversion.settings);
    expect(maxDiff(back.tensors.pivots?.data as Float32Array, inversion.tensors.pivots?.data as Float32Array)).toBe(0);
    expect(maxDiff(await pipe.reconstructLatent(back), z0)).toBe(0);
    const half = decodeInversion(encodeInversion(inversion, { float16: true }));
    const rec = await pipe.reconstructLatent(half);
    let worst = 0;
    rec.forEach((v, i) => {
      const z = z0[i] as number;
      worst = Math.max(worst, Math.abs(v - z) / Math.max(Math.abs(z), 2 ** -14));
    });
    expect(worst).toBeGreaterThan(0); // float16 does round
    expect(worst).toBeLessThanOrEqual(2 ** -11);
    // a file whose stored pivots are missing is refused with the method's message
    const broken = encodeInversion({ ...inversion, tensors: {} });
    expect(() => decodeInversion(broken)).toThrow(/stores 'pivots', which is missing/);
  });

  it("runs from the command line: invert --method direct, edit, reconstruct", async () => {
    const r = pipe.resolution;
    await writePng(at("photo.png"), image);
    const common = ["--model", PARITY, "--threads", "2"];
    const cli = runCli;
    const inv = at("photo.nti");
    const inverted = await cli(
      "invert",
      at("photo.png"),
      "--prompt",
      prompt,
      "--out",
      inv,
      "--method",
      "direct",
      "--steps",
      "4",
      ...common,
    );
    expect(inverted.err).toBe("");
    expect(inverted.rc).toBe(0);
    const stored = readInversion(inv);
    expect(stored.settings).toEqual({ method: "direct", steps: 4, guidance: 7.5, correctEdits: false });
    expect(stored.tensors.pivots?.shape).toEqual([4, ...pipe.latentShape]);
    const edited = await cli(
      "edit",
      inv,
      "--prompt",
      "a photo of a dog",
      "--blend",
      "cat:dog",
      "--out",
      at("dog.png"),
      ...common,
    );
    expect(edited.err).toBe("");
    expect(edited.rc).toBe(0);
    expect((await readImage(at("dog.png"))).width).toBe(r);
    const rec = await cli("reconstruct", inv, "--out", at("rec.png"), ...common);
    expect(rec.rc).toBe(0);
    // the reconstruction is the VAE's own round trip of the image
    const [vae] = await pipe.decodeLatents(await pipe.encodeImage(image));
    const png = await readImage(at("rec.png"));
    expect(psnr(png, vae as RgbImage)).toBeGreaterThan(50);
    expect(
      (
        await cli(
          "invert",
          at("photo.png"),
          "--prompt",
          prompt,
          "--out",
          at("x.nti"),
          "--method",
          "direct",
          "--strength",
          "0.5",
          ...common,
        )
      ).err,
    ).toMatch(/strength.*applies to sdedit, not to direct|--strength/);
  });
});

describe("direct on the built-in model", () => {
  let pipe: NullTextPipeline;
  beforeAll(async () => {
    pipe = await NullTextPipeline.load(DEFAULT_MODEL);
  });
  afterAll(async () => pipe.release());

  it("reconstructs the encoded latent bit for bit; the decoded image is the VAE's round trip", async () => {
    const scene = randomScene(7, { objects: "any" });
    const image = renderScene(scene, pipe.resolution);
    const { inversion } = await pipe.invert(image, scenePrompt(scene), { method: "direct", steps: 10 });
    const z0 = await pipe.encodeImage(image);
    const rec = await pipe.reconstructLatent(inversion);
    expect(maxDiff(rec, z0)).toBe(0);
    const [a, b] = await pipe.decodeLatents(Float32Array.of(...rec, ...z0));
    expect(psnr(a as RgbImage, image)).toBe(psnr(b as RgbImage, image));
  });
});
