/**
 * SDEdit (inversion/methods/sdedit.ts): the start step as diffusers' img2img picks it, the noised
 * latent against a float64 host computation of ᾱ from the betas, the sampler starting at that step
 * against the DDIM formula by hand, and on the parity model: no UNet evaluation to invert, the stored
 * start reproducible from the seed, reconstruction sampling only the last ⌊T·s⌋ steps, bad settings
 * named, and the command line.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Denoiser } from "../../../src/editing/denoiser.js";
import { sample } from "../../../src/editing/sample.js";
import { type RgbImage, writePng } from "../../../src/image/index.js";
import { decodeInversion, encodeInversion, readInversion } from "../../../src/inversion/file.js";
import { sdeditNoised, sdeditStartStep } from "../../../src/inversion/methods/sdedit.js";
import { resolveSettings } from "../../../src/inversion/registry.js";
import type { NullTextPipeline } from "../../../src/pipeline.js";
import { ddimSchedule } from "../../../src/schedulers/ddim.js";
import { gaussianArray } from "../../../src/util/rng.js";
import { loadParity, PARITY, runCli, SD_SCHEDULER } from "./support.js";

const SD = SD_SCHEDULER;

/** ᾱ_t = Π_{s ≤ t} (1 − β_s), β scaled-linear, in float64. */
function alphaBar64(t: number): number {
  let prod = 1;
  for (let s = 0; s <= t; s++) {
    const b = Math.sqrt(SD.beta_start) + ((Math.sqrt(SD.beta_end) - Math.sqrt(SD.beta_start)) * s) / 999;
    prod *= 1 - b * b;
  }
  return prod;
}

describe("sdedit: start step, noise and sampler", () => {
  it("starts at T − ⌊T·s⌋ and refuses strengths that sample no step", () => {
    // diffusers img2img get_timesteps: init = min(int(T·s), T), start = T − init
    expect([0.5, 0.75, 1, 0.02, 0.3].map((s) => sdeditStartStep(50, s))).toEqual([25, 13, 0, 49, 35]);
    expect(sdeditStartStep(4, 0.6)).toBe(2);
    expect(resolveSettings({ method: "sdedit" })).toEqual({
      method: "sdedit",
      steps: 50,
      guidance: 7.5,
      strength: 0.5,
      seed: 0,
    });
    const bad: [Record<string, unknown>, RegExp][] = [
      [{ strength: 0 }, /strength 0 is invalid \(a number in \(0, 1\]\)/],
      [{ strength: 1.5 }, /strength 1\.5 is invalid/],
      [{ strength: Number.NaN }, /strength NaN is invalid/],
      [{ strength: 0.01 }, /strength 0\.01 is invalid \(at least 1\/steps = 0\.02, so that one of the 50 steps/],
      [{ seed: -1 }, /seed -1 is invalid \(an integer in 0\.\.4294967295\)/],
      [{ seed: 1.5 }, /seed 1\.5 is invalid/],
      [{ seed: "1" }, /setting 'seed' is "1", expected a number/],
      [{ correctEdits: true }, /'correctEdits' applies to direct, not to sdedit/],
    ];
    for (const [s, message] of bad) expect(() => resolveSettings({ method: "sdedit", ...s })).toThrow(message);
  });

  it("noises z_0 to √ᾱ z_0 + √(1 − ᾱ) ε at the start step (ᾱ in float64 from the betas)", () => {
    const schedule = ddimSchedule(SD, 50);
    const z0 = Float32Array.from({ length: 64 }, (_, i) => Math.sin(i));
    for (const [start, t] of [
      [25, 481],
      [13, 721],
      [0, 981],
    ] as const) {
      expect(schedule.timesteps[start]).toBe(t);
      const eps = gaussianArray(64, 9);
      const a = alphaBar64(t);
      const got = sdeditNoised(schedule, z0, start, 9);
      got.forEach((v, i) => {
        expect(v).toBeCloseTo(Math.sqrt(a) * (z0[i] as number) + Math.sqrt(1 - a) * (eps[i] as number), 5);
      });
    }
  });

  it("samples from the start step on, with the DDIM step by hand", async () => {
    const steps = 5;
    const schedule = ddimSchedule(SD, steps);
    const visited: number[] = [];
    const seen: number[] = [];
    // a stand-in denoiser: ε = 0.1·x
    const denoiser = {
      prompts: 1,
      unconditional: 1,
      latentShape: [1, 1, 1],
      async eps(latents: Float32Array, t: number) {
        visited.push(t);
        seen.push(latents[0] as number);
        return { eps: latents.map((x) => 0.1 * x), outputs: {} };
      },
    } as unknown as Denoiser;
    const out = await sample({
      denoiser,
      schedule,
      zT: Float32Array.of(2),
      startStep: 3,
      nullEmbeddings: new Float32Array(2),
      promptEmbeddings: [new Float32Array(2)],
      guidance: 7.5,
    });
    expect(visited).toEqual([201, 1]);
    let x = 2;
    for (const t of [201, 1]) {
      // past t = 0 the step lands on ᾱ_0 (set_alpha_to_one false, as SD)
      const [a, ap] = [alphaBar64(t), alphaBar64(Math.max(t - 200, 0))];
      const e = 0.1 * x;
      x = Math.sqrt(ap) * ((x - Math.sqrt(1 - a) * e) / Math.sqrt(a)) + Math.sqrt(1 - ap) * e;
    }
    expect(seen[0]).toBe(2);
    expect(out[0]).toBeCloseTo(x, 5);
    await expect(
      sample({
        denoiser,
        schedule,
        zT: Float32Array.of(2),
        startStep: 5,
        nullEmbeddings: new Float32Array(2),
        promptEmbeddings: [new Float32Array(2)],
        guidance: 7.5,
      }),
    ).rejects.toThrow(/start step 5 is not a step index in 0\.\.4/);
  });
});

describe("sdedit on the parity model", () => {
  let pipe: NullTextPipeline;
  let image: RgbImage;
  const prompt = "a photo of a cat";
  beforeAll(async () => ({ pipe, image } = await loadParity()));
  afterAll(async () => pipe.release());

  it("inverts with no UNet evaluation, reproducibly from the seed, and samples only the last ⌊T·s⌋ steps", async () => {
    const settings = { method: "sdedit", steps: 4, strength: 0.5, seed: 3 };
    const { inversion, stats } = await pipe.invert(image, prompt, settings);
    expect([stats.unetEvals, stats.vjps]).toEqual([0, 0]);
    const z0 = await pipe.encodeImage(image);
    expect(Array.from(inversion.zT)).toEqual(Array.from(z0));
    const want = sdeditNoised(pipe.schedule(4), z0, 2, 3);
    expect(Array.from(inversion.tensors.start?.data as Float32Array)).toEqual(Array.from(want));
    const again = await pipe.invert(image, prompt, settings);
    expect(Array.from(again.inversion.tensors.start?.data as Float32Array)).toEqual(Array.from(want));
    const other = await pipe.invert(image, prompt, { ...settings, seed: 4 });
    expect(other.inversion.tensors.start?.data).not.toEqual(want);

    const steps: number[] = [];
    const rec = await pipe.reconstructLatent(inversion, { onStep: (s) => steps.push(s) });
    expect(steps).toEqual([3, 4]);
    // the file round trip keeps the start, so the reconstruction is the same
    const back = decodeInversion(encodeInversion(inversion));
    expect(Array.from(await pipe.reconstructLatent(back))).toEqual(Array.from(rec));
    expect(() => decodeInversion(encodeInversion({ ...inversion, tensors: {} }))).toThrow(
      /stores 'start', which is missing/,
    );
    const edited = await pipe.editLatents(inversion, [{ prompt: "a photo of a dog" }], {});
    expect(Array.from(edited.subarray(0, rec.length))).toEqual(Array.from(rec));
  });

  it("runs from the command line, and names a bad strength", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "nulltext-sdedit-"));
    await writePng(path.join(dir, "photo.png"), image);
    const common = ["--model", PARITY, "--threads", "2"];
    const cli = (...args: string[]) => runCli(...args, ...common);
    const inv = path.join(dir, "photo.nti");
    const photo = path.join(dir, "photo.png");
    const r = await cli("invert", photo, "--prompt", prompt, "--out", inv, "--method", "sdedit", "--steps", "4");
    expect(r.err).toBe("");
    expect(r.rc).toBe(0);
    expect(readInversion(inv).settings).toEqual({ method: "sdedit", steps: 4, guidance: 7.5, strength: 0.5, seed: 0 });
    expect((await cli("reconstruct", inv, "--out", path.join(dir, "rec.png"))).rc).toBe(0);
    const bad = await cli("invert", photo, "--prompt", prompt, "--out", inv, "--method", "sdedit", "--strength", "2");
    expect(bad.rc).not.toBe(0);
    expect(bad.err).toMatch(/strength 2 is invalid \(a number in \(0, 1\]\)/);
  });
});
