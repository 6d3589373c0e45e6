/**
 * Parity with the reference implementation (diffusers/transformers goldens in ../shared/parity):
 * every entry, from the diffusers folder and from the same weights written as one CompVis-format
 * checkpoint (so the single-file key mapping is exercised by the same numbers).
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { GuidedStep } from "../../src/inversion/guided_step.js";
import { loadStableDiffusion } from "../../src/models/loader.js";
import { writeCompVisCheckpoint } from "../../src/models/single_file.js";
import { runParity } from "../../src/parity/run.js";

const PARITY = fileURLToPath(new URL("../../../shared/parity", import.meta.url));

describe("parity with the reference implementation", () => {
  it("passes every golden entry from the diffusers folder", async () => {
    const lines = await runParity(PARITY);
    const failures = lines.filter((l) => !l.ok).map((l) => `${l.name}: ${l.maxDiff} > ${l.allowed} ${l.note ?? ""}`);
    expect(failures).toEqual([]);
    // 31 tokenizer cases + 38 tensors
    expect(lines.length).toBe(69);
  });

  it("passes the null-text step with the UNet's weights fed at run time, as Stable Diffusion's are", async () => {
    // Fed weights take other paths in the gradient (the conv input gradient's kernel flipped on the
    // host once per process, not in the graph), so the gradient golden checks them too.
    const lines = await runParity(PARITY, { unetWeights: "shared" });
    const nulltext = lines.filter((l) => l.name.startsWith("nulltext."));
    expect(nulltext.map((l) => l.name)).toContain("nulltext.grad_uncond");
    expect(nulltext.filter((l) => !l.ok).map((l) => `${l.name}: ${l.maxDiff} > ${l.allowed}`)).toEqual([]);
  });

  it("gives the same ε from the forward-only step as from the one with the gradient, and no gradient", async () => {
    const model = await loadStableDiffusion(path.join(PARITY, "model"));
    const [withGrad, forward] = await Promise.all([
      GuidedStep.create(model, [8, 8]),
      GuidedStep.create(model, [8, 8], {}, { gradient: false }),
    ]);
    const latent = Float32Array.from({ length: 4 * 64 }, (_, i) => Math.sin(i));
    const context = Float32Array.from({ length: 77 * model.unet.crossAttentionDim }, (_, i) => Math.cos(i / 3));
    const a = await withGrad.eps(latent, 501, context);
    const b = await forward.eps(latent, 501, context);
    expect(Math.max(...a.map((v) => Math.abs(v)))).toBeGreaterThan(0.1);
    expect(Math.max(...a.map((v, i) => Math.abs(v - (b[i] as number))))).toBeLessThan(1e-5);
    expect(forward.flops.gradient).toBe(0);
    await expect(
      forward.lossAndGrad({
        latent,
        timestep: 501,
        context,
        fixedEps: latent,
        target: latent,
        guidance: 7.5,
        variableIsNull: true,
        sampleCoef: 1,
        epsCoef: 0,
      }),
    ).rejects.toThrow(/compiled without its gradient/);
    await Promise.all([withGrad.release(), forward.release()]);
  });

  it("passes the model entries from a single CompVis-format checkpoint of the same weights", async () => {
    const model = await loadStableDiffusion(path.join(PARITY, "model"));
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "nulltext-compvis-"));
    const file = path.join(dir, "parity-compvis.safetensors");
    writeCompVisCheckpoint(
      path.join(PARITY, "model"),
      file,
      model.unet.config,
      model.vae.config.block_out_channels.length,
    );
    const lines = await runParity(PARITY, { model: file, configFrom: path.join(PARITY, "model") });
    fs.rmSync(dir, { recursive: true, force: true });
    expect(lines.filter((l) => !l.ok).map((l) => l.name)).toEqual([]);
    expect(lines.filter((l) => /^(unet|vae|text_encoder)\./.test(l.name) && l.note !== "input").length).toBe(10);
  });
});
