/**
 * Edit-friendly DDPM inversion (methods/ddpm.ts) and EDICT (methods/edict.ts): their steps on
 * hand-computed values and synthetic ε; the sampler extension they use (SamplerConditioning.sampler);
 * reconstruction of the encoded latent on the parity model (128×128, random weights) and the built-in
 * model (64×64); the inversion file's round trip; bad settings and stored tensors named; and the
 * command line end to end.
 *
 * Measured bounds (max |Δ| between the reconstruction and the encoded latent z_0, in latent units):
 * - ddpm: 1.8e-5 on the parity model (5 steps, |z_0| ≤ 0.12), 1.0e-4 on the built-in model (10
 *   steps, |z_0| ≤ 1.7): the inversion's ε (the guided step, batch 1) and the sampler's (the denoiser,
 *   batch 2N) differ by ~1e-8, which the steps carry to z_0.
 * - edict: 3e-5 on the built-in model (10 steps, guidance 3); on the parity model's random UNet,
 *   1.7e-3 at 5 steps — the same with one ε function in both directions (so float32 rounding of the
 *   coupled updates amplified by the random network's large Jacobian, not a mismatch of ε), and 3e-6
 *   at 50 steps on the built-in model.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DEFAULT_MODEL } from "../../../src/cli/main.js";
import type { Denoiser } from "../../../src/editing/denoiser.js";
import { sample } from "../../../src/editing/sample.js";
import { psnr, type RgbImage, readImage, writePng } from "../../../src/image/index.js";
import { decodeInversion, encodeInversion, readInversion } from "../../../src/inversion/file.js";
import { edictDenoiseStep, edictInvertStep } from "../../../src/inversion/methods/edict.js";
import { getMethod, resolveSettings } from "../../../src/inversion/registry.js";
import { NullTextPipeline } from "../../../src/pipeline.js";
import { randomScene, renderScene, scenePrompt } from "../../../src/scenes/index.js";
import { ddimAlphasCumprod, ddimSchedule, ddimStepEta } from "../../../src/schedulers/ddim.js";
import { loadParity, maxDiff, PARITY, runCli, SD_SCHEDULER } from "./support.js";

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "nulltext-ddpm-edict-"));
const at = (name: string) => path.join(dir, name);
const SD = SD_SCHEDULER;

describe("ddpm and edict: steps and settings", () => {
  const schedule = ddimSchedule(SD, 10);
  // a nonlinear stand-in for the UNet: ε(z) = tanh(z + 0.3)
  const eps = async (z: Float32Array) => z.map((v) => Math.tanh(v + 0.3));

  it("EDICT's denoising step is eq. 14 with the DDIM coefficients, on hand-computed values", async () => {
    const t = 501; // to 401
    const alphas = ddimAlphasCumprod(SD);
    const [aT, aP] = [alphas[501] as number, alphas[401] as number];
    const a = Math.sqrt(aP / aT);
    const b = Math.sqrt(1 - aP) - Math.sqrt((aP * (1 - aT)) / aT);
    const p = 0.93;
    const [x, y] = [0.5, -0.25];
    const xi = a * x + b * Math.tanh(y + 0.3);
    const yi = a * y + b * Math.tanh(xi + 0.3);
    const xp = p * xi + (1 - p) * yi;
    const yp = p * yi + (1 - p) * xp;
    const out = await edictDenoiseStep(schedule, t, p, Float32Array.of(x), Float32Array.of(y), eps);
    expect(Math.abs((out.x[0] as number) - xp)).toBeLessThan(1e-6);
    expect(Math.abs((out.y[0] as number) - yp)).toBeLessThan(1e-6);
  });

  it("EDICT's inverse step undoes the denoising step (Algorithms 1 and 2) to float32 rounding", async () => {
    const x0 = Float32Array.from({ length: 64 }, (_, i) => Math.sin(i));
    let x: Float32Array = x0;
    let y: Float32Array = x0;
    const ascending = [...schedule.timesteps].reverse();
    for (const t of ascending) ({ x, y } = await edictInvertStep(schedule, t, 0.93, x, y, eps));
    expect(maxDiff(x, x0)).toBeGreaterThan(0.1); // it moved
    for (const t of schedule.timesteps) ({ x, y } = await edictDenoiseStep(schedule, t, 0.93, x, y, eps));
    expect(maxDiff(x, x0)).toBeLessThan(1e-5);
    expect(maxDiff(y, x0)).toBeLessThan(1e-5);
  });

  it("the DDPM sampler adds the stored σ_t·z_t to every prompt's η = 1 mean; local blending reaches EDICT's y", async () => {
    const s = resolveSettings({ method: "ddpm", steps: 3, skip: 1 }) as never;
    const maps = { shape: [2, 1, 1, 2], data: Float32Array.of(0.1, 0.2, 0.3, 0.4) };
    const start = { shape: [1, 1, 2], data: Float32Array.of(1, 2) };
    const c = getMethod("ddpm").conditioning({ start, noise: maps }, s, {
      cond: new Float32Array(2),
      empty: new Float32Array(2),
    });
    expect(c.startStep).toBe(1);
    expect(c.start).toBe(start.data);
    const sched = ddimSchedule(SD, 3);
    const run = c.sampler?.begin(Float32Array.of(1, 2, 1, 2), 2, sched);
    const latents = Float32Array.of(1, 2, 3, 4);
    const t = sched.timesteps[2] as number;
    const out = (await run?.step(2, t, latents, eps)) as Float32Array;
    const { mean } = ddimStepEta(sched, await eps(latents), t, latents, 1);
    // step 2 is the second stored map (skip 1): (0.3, 0.4) for both prompts
    expect(Array.from(out)).toEqual(Array.from(mean).map((v, i) => Math.fround(v + (i % 2 ? 0.4 : 0.3))));
    await expect(run?.step(0, t, latents, eps) as Promise<unknown>).rejects.toThrow(/no stored noise map for step 0/);

    // EDICT: the loop's latents are x; y follows the blend (edit rows outside the mask = source's)
    const e = getMethod("edict");
    const ec = e.conditioning(
      {
        start: { shape: [1, 1, 2], data: Float32Array.of(0, 0) },
        y: { shape: [1, 1, 2], data: Float32Array.of(5, 6) },
      },
      resolveSettings({ method: "edict", steps: 3 }),
      { cond: new Float32Array(2), empty: new Float32Array(2) },
    );
    const er = ec.sampler?.begin(new Float32Array(4), 2, sched);
    const seenY: number[][] = [];
    const spy = async (z: Float32Array) => {
      seenY.push(Array.from(z));
      return eps(z);
    };
    await er?.step(0, sched.timesteps[0] as number, Float32Array.of(0, 0, 1, 1), spy);
    expect(seenY[0]).toEqual([5, 6, 5, 6]); // the first ε is of y_T, broadcast to both prompts
    const yAfter = await (async () => {
      er?.blended?.([Uint8Array.of(0, 1)]); // the edit keeps its own y at the second position only
      const calls: number[][] = [];
      await er?.step(1, sched.timesteps[1] as number, Float32Array.of(0, 0, 0, 0), async (z) => {
        calls.push(Array.from(z));
        return eps(z);
      });
      return calls[0] as number[];
    })();
    expect(yAfter[2]).toBe(yAfter[0]); // reset to the source's
    expect(yAfter[3]).not.toBe(yAfter[1]);
  });

  it("the sampling loop calls the method's step instead of DDIM's", async () => {
    const denoiser = {
      prompts: 1,
      unconditional: 1,
      latentShape: [1, 1, 1],
      async eps(latents: Float32Array) {
        return { eps: new Float32Array(latents.length), outputs: {} };
      },
    } as unknown as Denoiser;
    const steps: number[] = [];
    const out = await sample({
      denoiser,
      schedule: ddimSchedule(SD, 4),
      zT: Float32Array.of(1),
      startStep: 1,
      nullEmbeddings: new Float32Array(2),
      promptEmbeddings: [new Float32Array(2)],
      guidance: 2,
      sampler: {
        begin: () => ({
          async step(i, _t, latents, eps) {
            steps.push(i);
            await eps(latents);
            return latents.map((v) => v + 1);
          },
        }),
      },
    });
    expect(steps).toEqual([1, 2, 3]);
    expect(Array.from(out)).toEqual([4]);
  });

  it("answers bad settings and stored tensors with what is wrong", () => {
    expect(resolveSettings({ method: "ddpm" })).toEqual({
      method: "ddpm",
      steps: 50,
      guidance: 3.5,
      skip: 18,
      noiseSeed: 0,
    });
    expect(resolveSettings({ method: "edict" })).toEqual({ method: "edict", steps: 50, guidance: 3, mix: 0.93 });
    expect(() => resolveSettings({ method: "ddpm", steps: 10 })).toThrow(
      /ddpm\): skip 18 is invalid \(an integer in 0..9, fewer than the 10 steps\)/,
    );
    expect(() => resolveSettings({ method: "ddpm", skip: -1 })).toThrow(/skip -1 is invalid/);
    expect(() => resolveSettings({ method: "ddpm", noiseSeed: 1.5 })).toThrow(/noiseSeed 1.5 is invalid/);
    expect(() => resolveSettings({ method: "edict", mix: 0 })).toThrow(/mix 0 is invalid \(a number in \(0, 1\]\)/);
    expect(() => resolveSettings({ method: "edict", mix: Number.NaN })).toThrow(/mix NaN is invalid/);
    expect(() => resolveSettings({ method: "edict", skip: 3 })).toThrow(/'skip' applies to ddpm, not to edict/);
    const s = resolveSettings({ method: "ddpm", steps: 4, skip: 1 });
    const ddpm = getMethod("ddpm");
    const start = { shape: [4, 2, 2], data: new Float32Array(16) };
    expect(() => ddpm.checkStored({ start }, s, [77, 8])).toThrow(/stores 'noise', which is missing/);
    expect(() =>
      ddpm.checkStored({ start, noise: { shape: [4, 4, 2, 2], data: new Float32Array(64) } }, s, [77, 8]),
    ).toThrow(/'noise' has shape \[4,4,2,2\], expected \[3,4,2,2\]/);
    expect(() => getMethod("edict").checkStored({ start }, s, [77, 8])).toThrow(/stores 'y', which is missing/);
  });
});

describe("ddpm and edict on the parity model", () => {
  let pipe: NullTextPipeline;
  let image: RgbImage;
  let z0: Float32Array;
  const prompt = "a photo of a cat";
  const edits = [{ prompt: "a photo of a dog", mode: "replace" as const }];
  beforeAll(async () => {
    ({ pipe, image } = await loadParity());
    z0 = await pipe.encodeImage(image);
  });
  afterAll(async () => pipe.release());

  it("ddpm reconstructs the encoded latent, with and without T_skip, and edits by prompt change with the stored noise", async () => {
    const { inversion, stats } = await pipe.invert(image, prompt, { method: "ddpm", steps: 4, skip: 0 });
    expect([stats.unetEvals, stats.vjps]).toEqual([8, 0]); // guided ε per step, no DDIM trajectory
    expect(inversion.tensors.noise?.shape).toEqual([4, ...pipe.latentShape]);
    expect(maxDiff(await pipe.reconstructLatent(inversion), z0)).toBeLessThan(6e-5);
    const skipped = await pipe.invert(image, prompt, { method: "ddpm", steps: 4, skip: 2 });
    expect(skipped.stats.unetEvals).toBe(4);
    expect(skipped.inversion.tensors.noise?.shape[0]).toBe(2);
    expect(maxDiff(await pipe.reconstructLatent(skipped.inversion), z0)).toBeLessThan(6e-5);
    // another noise seed: other x_t, the same exactness
    const other = await pipe.invert(image, prompt, { method: "ddpm", steps: 4, skip: 2, noiseSeed: 5 });
    expect(
      maxDiff(
        other.inversion.tensors.start?.data as Float32Array,
        skipped.inversion.tensors.start?.data as Float32Array,
      ),
    ).toBeGreaterThan(0.1);
    expect(maxDiff(await pipe.reconstructLatent(other.inversion), z0)).toBeLessThan(6e-5);
    const size = z0.length;
    const plain = await pipe.editLatents(inversion, edits, {});
    expect(maxDiff(plain.subarray(0, size), z0)).toBeLessThan(6e-5);
    expect(maxDiff(plain.subarray(size), z0)).toBeGreaterThan(1e-3);
    // with Prompt-to-Prompt controls (the source row is still the reconstruction)
    const controlled = await pipe.editLatents(inversion, edits, {
      localBlend: { words: [["cat"], ["dog"]] },
      selfReplaceSteps: [0, 0.5],
    });
    expect(maxDiff(controlled.subarray(0, size), z0)).toBeLessThan(6e-5);
    expect(maxDiff(controlled.subarray(size), z0)).toBeGreaterThan(1e-3);
  }, 600_000);

  it("edict reconstructs the encoded latent and edits by prompt change, local blending included", async () => {
    const { inversion, stats } = await pipe.invert(image, prompt, { method: "edict", steps: 4 });
    expect([stats.unetEvals, stats.vjps]).toEqual([16, 0]); // two guided ε per step
    expect(inversion.tensors.y?.shape).toEqual(pipe.latentShape);
    expect(maxDiff(await pipe.reconstructLatent(inversion), z0)).toBeLessThan(5e-3);
    const atOne = await pipe.invert(image, prompt, { method: "edict", steps: 4, guidance: 1 });
    expect(maxDiff(await pipe.reconstructLatent(atOne.inversion), z0)).toBeLessThan(2e-3);
    const size = z0.length;
    const plain = await pipe.editLatents(inversion, edits, {});
    expect(maxDiff(plain.subarray(0, size), z0)).toBeLessThan(5e-3);
    expect(maxDiff(plain.subarray(size), z0)).toBeGreaterThan(1e-2);
    const blended = await pipe.editLatents(inversion, edits, { localBlend: { words: [["cat"], ["dog"]] } });
    expect(maxDiff(blended.subarray(0, size), z0)).toBeLessThan(5e-3);
    expect(maxDiff(blended.subarray(size), z0)).toBeGreaterThan(1e-2);
  }, 600_000);

  it("round-trips the inversion files: float32 reconstructs identically, float16 within its rounding", async () => {
    for (const method of ["ddpm", "edict"]) {
      const { inversion } = await pipe.invert(image, prompt, {
        method,
        steps: 3,
        skip: method === "ddpm" ? 1 : undefined,
      });
      const rec = await pipe.reconstructLatent(inversion);
      const back = decodeInversion(encodeInversion(inversion));
      expect(back.settings).toEqual(inversion.settings);
      expect(maxDiff(await pipe.reconstructLatent(back), rec)).toBe(0);
      const half = decodeInversion(encodeInversion(inversion, { float16: true }));
      const d = maxDiff(await pipe.reconstructLatent(half), z0);
      expect(d).toBeGreaterThan(0);
      // measured at 3 steps: ddpm 1.6e-3; edict 0.065 — the float16 rounding of (x_T, y_T) amplified
      // by the random UNet as any other rounding is (see the header): float16 files do not suit edict here
      expect(d).toBeLessThan(method === "ddpm" ? 5e-3 : 0.15);
      const broken = encodeInversion({ ...inversion, tensors: { start: inversion.tensors.start as never } });
      expect(() => decodeInversion(broken)).toThrow(method === "ddpm" ? /stores 'noise'/ : /stores 'y'/);
    }
  }, 600_000);

  it("runs from the command line: invert --method ddpm|edict, edit, reconstruct", async () => {
    await writePng(at("photo.png"), image);
    const common = ["--model", PARITY, "--threads", "2"];
    const cli = runCli;
    const [vae] = await pipe.decodeLatents(z0);
    for (const [method, flags, settings] of [
      ["ddpm", ["--skip", "1", "--noise-seed", "3"], { skip: 1, noiseSeed: 3, guidance: 3.5 }],
      ["edict", ["--mix", "0.9"], { mix: 0.9, guidance: 3 }],
    ] as const) {
      const inv = at(`${method}.nti`);
      const inverted = await cli(
        "invert",
        at("photo.png"),
        "--prompt",
        prompt,
        "--out",
        inv,
        "--method",
        method,
        "--steps",
        "3",
        ...flags,
        ...common,
      );
      expect(inverted.err).toBe("");
      expect(inverted.rc).toBe(0);
      expect(readInversion(inv).settings).toEqual({ method, steps: 3, ...settings });
      const edited = await cli(
        "edit",
        inv,
        "--prompt",
        "a photo of a dog",
        "--out",
        at(`${method}-dog.png`),
        ...common,
      );
      expect(edited.err).toBe("");
      expect(edited.rc).toBe(0);
      expect((await readImage(at(`${method}-dog.png`))).width).toBe(pipe.resolution);
      const rec = await cli("reconstruct", inv, "--out", at(`${method}-rec.png`), ...common);
      expect(rec.rc).toBe(0);
      // the reconstruction is the VAE's own round trip of the image
      expect(psnr(await readImage(at(`${method}-rec.png`)), vae as RgbImage)).toBeGreaterThan(40);
    }
    const bad = await cli(
      "invert",
      at("photo.png"),
      "--prompt",
      prompt,
      "--out",
      at("x.nti"),
      "--method",
      "edict",
      "--mix",
      "1.5",
      ...common,
    );
    expect(bad.rc).not.toBe(0);
    expect(bad.err).toMatch(/mix 1.5 is invalid/);
  }, 600_000);
});

describe("ddpm and edict on the built-in model", () => {
  let pipe: NullTextPipeline;
  beforeAll(async () => {
    pipe = await NullTextPipeline.load(DEFAULT_MODEL);
  });
  afterAll(async () => pipe.release());

  it("reconstruct the encoded latent to float tolerance; the decoded image is within 0.01 dB of the VAE's", async () => {
    const scene = randomScene(7, { objects: "any" });
    const image = renderScene(scene, pipe.resolution);
    const z0 = await pipe.encodeImage(image);
    const [vae] = await pipe.decodeLatents(z0);
    for (const [method, bound] of [
      ["ddpm", 3e-4],
      ["edict", 1e-4],
    ] as const) {
      const { inversion } = await pipe.invert(image, scenePrompt(scene), {
        method,
        steps: 10,
        skip: method === "ddpm" ? 0 : undefined,
      });
      const rec = await pipe.reconstructLatent(inversion);
      expect(maxDiff(rec, z0)).toBeLessThan(bound);
      const [img] = await pipe.decodeLatents(rec);
      expect(Math.abs(psnr(img as RgbImage, image) - psnr(vae as RgbImage, image))).toBeLessThan(0.01);
    }
  }, 600_000);
});
