/**
 * The training loop's progress lines: each metric is the mean over the steps since the previous line,
 * checked against the mean of the batch inputs it reads, computed here from the same formula.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import * as G from "../../src/graph/index.js";
import { init, WeightStore } from "../../src/models/weights.js";
import { trainLoop } from "../../src/training/loop.js";

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "nulltext-loop-"));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

const target = (step: number, i: number) => Math.cos(step + i);

describe("training loop progress", () => {
  it("reports each metric as its mean over the steps since the last line, also for a short last window", async () => {
    const store = WeightStore.forTraining("toy", 3);
    const w = store.get("w", [2], init.fanIn(2));
    const x = G.input("x", [4, 2]);
    const y = G.input("y", [4]);
    const diff = G.sub(G.reduceSum(G.mul(x, w), [1]), y);
    const lines: string[] = [];
    await trainLoop({
      phase: "toy",
      loss: G.reduceMean(G.mul(diff, diff)),
      metrics: { ymean: G.reduceMean(y) },
      params: store.trainableTensors(),
      arrays: store.trainableArrays(),
      steps: 62,
      lr: 0.01,
      warmup: 2,
      emaDecay: 0.9,
      batch: (step) => ({
        x: Float32Array.from({ length: 8 }, (_, i) => Math.sin(step * 7 + i)),
        y: Float32Array.from({ length: 4 }, (_, i) => target(step, i)),
      }),
      checkpointFile: path.join(dir, "toy.safetensors"),
      resume: null,
      threads: 1,
      log: (line) => lines.push(line),
    });
    const reported = lines.flatMap((l) => {
      const m = /toy step (\d+)\/62 .* ymean (\S+)/.exec(l);
      return m ? [[Number(m[1]), Number(m[2])] as const] : [];
    });
    expect(reported.map(([s]) => s)).toEqual([50, 62]);
    const mean = (from: number, to: number) => {
      let s = 0;
      for (let step = from; step < to; step++) for (let i = 0; i < 4; i++) s += target(step, i) / 4;
      return s / (to - from);
    };
    // printed with 4 significant digits
    expect(reported[0]?.[1]).toBeCloseTo(mean(0, 50), 3);
    expect(reported[1]?.[1]).toBeCloseTo(mean(50, 62), 3);
    // a window of 12 steps divided by 50 would read 12/50 of it
    expect(Math.abs(mean(50, 62))).toBeGreaterThan(0.01);
  });
});
