/**
 * Whether the editing denoiser keeps its own (prepacked) copy of shared UNet weights: only with
 * unetWeights "auto", only when the platform reports room for twice the weights and a 2 GiB margin,
 * never where the platform cannot tell (browsers).
 */
import os from "node:os";
import { afterEach, describe, expect, it } from "vitest";
import * as G from "../../src/graph/index.js";
import { getPlatform, type Platform, setPlatform } from "../../src/platform/platform.js";
import { keepsOwnWeights } from "../../src/runtime/session.js";

const GiB = 2 ** 30;
const node = getPlatform();
const withMemory = (bytes: number | undefined) => setPlatform({ ...node, availableMemory: () => bytes } as Platform);

describe("keepsOwnWeights", () => {
  afterEach(() => {
    setPlatform(node);
  });

  // 1 MiB of weights, fed as inputs because the inline limit is below them (as SD's 3.4 GB are)
  const w = G.weight("w", [512, 512], new Float32Array(512 * 512));
  const x = G.input("x", [1, 512]);
  const shared = G.compile({ y: G.matmul(x, w) }, { frozenWeights: "auto", inlineLimitBytes: 1024 });
  const own = G.compile({ y: G.matmul(x, w) }, { frozenWeights: "auto" });

  it("asks for twice the weights and 2 GiB free, with automatic weights only", () => {
    expect(shared.weightInputs.map((i) => i.data.byteLength)).toEqual([2 ** 20]);
    withMemory(2 * GiB + 2 * 2 ** 20);
    expect(keepsOwnWeights({}, shared)).toBe(true);
    expect(keepsOwnWeights({ unetWeights: "shared" }, shared)).toBe(false);
    expect(keepsOwnWeights({ unetWeights: "per-session" }, shared)).toBe(false); // already its own
    withMemory(2 * GiB + 2 * 2 ** 20 - 1);
    expect(keepsOwnWeights({}, shared)).toBe(false);
    withMemory(undefined);
    expect(keepsOwnWeights({}, shared)).toBe(false);
    withMemory(64 * GiB);
    expect(keepsOwnWeights({}, own)).toBe(false); // nothing shared to copy
  });

  it("reads the machine's available memory on Node", () => {
    const free = node.availableMemory() as number;
    expect(free).toBeGreaterThan(0);
    expect(free).toBeLessThanOrEqual(os.totalmem());
  });
});
