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
