/**
 * Whether the graphs run at every step of a call (the editing denoiser, the inversion's forward step)
 * keep their own (prepacked) copy of big UNet weights: only with unetWeights "auto", only when the
 * platform reports room for twice the weights and a 2 GiB margin, never where the platform cannot tell
 * (browsers); otherwise "auto"'s rule (fed from the shared host copy above the inline limit).
 */
import os from "node:os";
import { afterEach, describe, expect, it } from "vitest";
import * as G from "../../src/graph/index.js";
import { getPlatform, type Platform, setPlatform } from "../../src/platform/platform.js";
import { roomForOwnWeights, unetCompileOptions } from "../../src/runtime/session.js";

const GiB = 2 ** 30;
const node = getPlatform();
const withMemory = (bytes: number | undefined) => setPlatform({ ...node, availableMemory: () => bytes } as Platform);

describe("own weights for the step graphs", () => {
  afterEach(() => {
    setPlatform(node);
  });

  // 1 MiB of weights, over an inline limit below them (as SD's 3.4 GB are over the default 1 GiB)
  const w = G.weight("w", [512, 512], new Float32Array(512 * 512));
  const x = G.input("x", [1, 512]);
  const compiled = (options: Parameters<typeof unetCompileOptions>[0], use: "steps" | "forward" = "steps") =>
    G.compile({ y: G.matmul(x, w) }, { ...unetCompileOptions(options, use), inlineLimitBytes: 1024 });
  const ownWeights = (g: ReturnType<typeof compiled>) => g.weightInputs.length === 0;

  it("asks for twice the weights and 2 GiB free, with automatic weights only", () => {
    expect(compiled({ unetWeights: "shared" }).weightInputs.map((i) => i.data.byteLength)).toEqual([2 ** 20]);
    withMemory(2 * GiB + 2 * 2 ** 20);
    expect(roomForOwnWeights(2 ** 20)).toBe(true);
    expect(ownWeights(compiled({}))).toBe(true);
    expect(ownWeights(compiled({ unetWeights: "shared" }))).toBe(false);
    expect(ownWeights(compiled({ unetWeights: "per-session" }))).toBe(true); // its own whatever the memory
    expect(ownWeights(compiled({}, "forward"))).toBe(false); // other forward graphs share above the limit
    withMemory(2 * GiB + 2 * 2 ** 20 - 1);
    expect(roomForOwnWeights(2 ** 20)).toBe(false);
    expect(ownWeights(compiled({}))).toBe(false);
    withMemory(undefined);
    expect(ownWeights(compiled({}))).toBe(false);
  });

  it("reads the machine's available memory on Node", () => {
    const free = node.availableMemory() as number;
    expect(free).toBeGreaterThan(0);
    expect(free).toBeLessThanOrEqual(os.totalmem());
  });
});
