/**
 * What the method tests share: the parity model's path and pipeline, a test image, a checked max |Δ|, Stable
 * Diffusion's scheduler config and a quiet run of the CLI.
 */
import { fileURLToPath } from "node:url";
import { expect, vi } from "vitest";
import { main } from "../../../src/cli/main.js";
import type { RgbImage } from "../../../src/image/index.js";
import { NullTextPipeline } from "../../../src/pipeline.js";
import { DDIM_CONFIG_DEFAULTS } from "../../../src/schedulers/ddim.js";

export const PARITY = fileURLToPath(new URL("../../../../shared/parity/model", import.meta.url));

/** A size × size image of fixed pseudo-random pixels. */
export function patternImage(size: number): RgbImage {
  return { width: size, height: size, data: new Uint8Array(size * size * 3).map((_, i) => (i * 7919) % 251) };
}

/** The parity model's pipeline (2 threads) and a pattern image at its resolution. */
export async function loadParity(): Promise<{ pipe: NullTextPipeline; image: RgbImage }> {
  const pipe = await NullTextPipeline.load(PARITY, { threads: 2 });
  return { pipe, image: patternImage(pipe.resolution) };
}

/** max |a − b| of two arrays of one length. */
export function maxDiff(a: Float32Array, b: Float32Array): number {
  expect(a.length).toBe(b.length);
  return a.reduce((m, v, i) => Math.max(m, Math.abs(v - (b[i] as number))), 0);
}

/** Stable Diffusion's scheduler (as the parity and built-in models ship it). */
export const SD_SCHEDULER = {
  ...DDIM_CONFIG_DEFAULTS,
  beta_start: 0.00085,
  beta_end: 0.012,
  beta_schedule: "scaled_linear" as const,
  clip_sample: false,
  set_alpha_to_one: false,
  steps_offset: 1,
};

/** Runs `nulltext ARGS` in process with its output silenced: the exit code and what it printed as errors. */
export async function runCli(...args: string[]): Promise<{ rc: number; err: string }> {
  const err: string[] = [];
  const e = vi.spyOn(console, "error").mockImplementation((...a) => void err.push(a.join(" ")));
  const o = vi.spyOn(console, "log").mockImplementation(() => {});
  const s = vi.spyOn(process.stderr, "write").mockImplementation(() => true);
  try {
    return { rc: await main(args), err: err.join("\n") };
  } finally {
    e.mockRestore();
    o.mockRestore();
    s.mockRestore();
  }
}
