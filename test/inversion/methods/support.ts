/** What the method tests share: Stable Diffusion's scheduler config and a quiet run of the CLI. */
import { vi } from "vitest";
import { main } from "../../../src/cli/main.js";
import { DDIM_CONFIG_DEFAULTS } from "../../../src/schedulers/ddim.js";

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
