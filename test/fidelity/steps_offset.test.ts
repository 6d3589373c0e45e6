/**
 * A scheduler config with steps_offset ≠ 1 loads as diffusers' pipelines load it (as 1, with a
 * warning naming the file and the value); LoadOptions.stepsOffset runs it as written.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { loadStableDiffusion } from "../../src/models/loader.js";
import { getPlatform, setPlatform } from "../../src/platform/platform.js";
import { ddimTimesteps } from "../../src/schedulers/ddim.js";
import { PARITY_MODEL } from "./study.js";

const dir = mkdtempSync(join(tmpdir(), "nulltext-offset-"));
for (const part of ["model_index.json", "text_encoder", "tokenizer", "unet", "vae"])
  symlinkSync(join(PARITY_MODEL, part), join(dir, part));
mkdirSync(join(dir, "scheduler"));
const config = JSON.parse(readFileSync(join(PARITY_MODEL, "scheduler", "scheduler_config.json"), "utf8"));
const schedulerFile = join(dir, "scheduler", "scheduler_config.json");
// The official null-text notebook's scheduler: DDIMScheduler(..., set_alpha_to_one=False), steps_offset 0.
writeFileSync(schedulerFile, JSON.stringify({ ...config, steps_offset: 0 }));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function loadWarnings(options: { stepsOffset?: number }) {
  const warnings: string[] = [];
  const node = getPlatform();
  setPlatform({ ...node, warn: (m) => warnings.push(m) });
  try {
    return { sd: await loadStableDiffusion(dir, options), warnings };
  } finally {
    setPlatform(node);
  }
}

describe("scheduler steps_offset", () => {
  it("runs a config's steps_offset 0 as 1, as diffusers' pipelines, and says so", async () => {
    const { sd, warnings } = await loadWarnings({});
    expect(sd.scheduler.steps_offset).toBe(1);
    expect(ddimTimesteps(sd.scheduler, 50).slice(0, 2)).toEqual([981, 961]);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toContain(schedulerFile);
    expect(warnings[0]).toContain("steps_offset is 0");
  });

  it("runs it as written with stepsOffset, without a warning", async () => {
    const { sd, warnings } = await loadWarnings({ stepsOffset: 0 });
    expect(sd.scheduler.steps_offset).toBe(0);
    expect(ddimTimesteps(sd.scheduler, 50).slice(0, 2)).toEqual([980, 960]);
    expect(warnings).toEqual([]);
  });

  it("says nothing for a config with steps_offset 1", async () => {
    const node = getPlatform();
    const warnings: string[] = [];
    setPlatform({ ...node, warn: (m) => warnings.push(m) });
    try {
      expect((await loadStableDiffusion(PARITY_MODEL)).scheduler.steps_offset).toBe(1);
    } finally {
      setPlatform(node);
    }
    expect(warnings).toEqual([]);
  });
});
