/**
 * Training checkpoints: a run interrupted after a checkpoint and resumed ends with exactly the weights,
 * EMA copies and Adam moments of an uninterrupted run, each EMA copy is the warmed-up average of the
 * weights, and a checkpoint of another model size is refused by parameter name.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import * as G from "../../src/graph/index.js";
import { init, WeightStore } from "../../src/models/weights.js";
import { emaWeights, loadCheckpoint, type TrainingState } from "../../src/training/checkpoint.js";
import { trainLoop } from "../../src/training/loop.js";

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "nulltext-ckpt-"));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

/** Least squares on a fixed batch per step: loss = mean((x·w − y)²) with w of `width` elements. */
function toyRun(
  width: number,
  file: string,
  resume: TrainingState | null,
  stopAt = Number.POSITIVE_INFINITY,
  seen: Float32Array[] = [],
  steps = 8,
) {
  const store = WeightStore.forTraining("toy", 7);
  const w = store.get("w", [width], init.fanIn(width));
  const x = G.input("x", [4, width]);
  const y = G.input("y", [4]);
  const diff = G.sub(G.reduceSum(G.mul(x, w), [1]), y);
  return trainLoop({
    phase: "toy",
    loss: G.reduceMean(G.mul(diff, diff)),
    params: store.trainableTensors(),
    arrays: store.trainableArrays(),
    steps,
    lr: 0.05,
    warmup: 2,
    emaDecay: 0.9,
    emaTracks: [0.5, 0.99],
    batch: (step) => {
      if (step >= stopAt) throw new Error("interrupted");
      seen.push(Float32Array.from(store.trainableArrays().get("w") as Float32Array));
      const xs = Float32Array.from({ length: 4 * width }, (_, i) => Math.sin(step * 13 + i));
      return { x: xs, y: Float32Array.from({ length: 4 }, (_, i) => Math.cos(step + i)) };
    },
    checkpointFile: file,
    checkpointSeconds: 0,
    resume,
    threads: 1,
    log: () => {},
  });
}

describe("training checkpoints", () => {
  it("an interrupted run resumes to the uninterrupted run's weights, EMA and Adam moments", async () => {
    const straight = await toyRun(3, path.join(dir, "a.safetensors"), null);
    const file = path.join(dir, "b.safetensors");
    await expect(toyRun(3, file, null, 5)).rejects.toThrow("interrupted");
    const saved = loadCheckpoint(file) as TrainingState;
    expect(saved.step).toBe(5);
    const resumed = await toyRun(3, file, saved);
    expect(resumed.step).toBe(8);
    for (const group of ["params", "ema", "adamM", "adamV"] as const) {
      expect(Array.from(resumed[group].get("w") as Float32Array)).toEqual(
        Array.from(straight[group].get("w") as Float32Array),
      );
    }
    for (const decay of [0.5, 0.99]) {
      expect(Array.from(resumed.emaTracks.get(decay)?.get("w") as Float32Array)).toEqual(
        Array.from(straight.emaTracks.get(decay)?.get("w") as Float32Array),
      );
    }
    // and training moved the weights (the comparison is not between two untouched initialisations)
    const fresh = WeightStore.forTraining("toy", 7);
    fresh.get("w", [3], init.fanIn(3));
    expect(Array.from(straight.params.get("w") as Float32Array)).not.toEqual(
      Array.from(fresh.trainableArrays().get("w") as Float32Array),
    );
  });

  it("keeps each EMA track as the warmed-up exponential average of the weights after every step", async () => {
    const seen: Float32Array[] = [];
    const file = path.join(dir, "d.safetensors");
    const state = await toyRun(3, file, null, Number.POSITIVE_INFINITY, seen, 40);
    // seen[s] holds the weights before step s; the weights after step s are seen[s + 1] (the last: state.params)
    const after = [...seen.slice(1), state.params.get("w") as Float32Array];
    const saved = loadCheckpoint(file) as TrainingState;
    for (const decay of [0.9, 0.5, 0.99]) {
      const expected = Array.from(seen[0] as Float32Array, (v) => v);
      after.forEach((p, s) => {
        const keep = Math.min(decay, (1 + s) / (10 + s));
        for (let i = 0; i < 3; i++) expected[i] = keep * (expected[i] as number) + (1 - keep) * (p[i] as number);
      });
      const got = Array.from(emaWeights(file, saved, decay, 0.9).get("w") as Float32Array);
      got.forEach((v, i) => {
        expect(v).toBeCloseTo(expected[i] as number, 6);
      });
    }
    // the tracks are not one copy: past the warm-up (step 8 for decay 0.5) the short average follows the weights
    expect(emaWeights(file, saved, 0.5, 0.9).get("w")?.[0]).not.toBeCloseTo(
      emaWeights(file, saved, 0.9, 0.9).get("w")?.[0] as number,
      3,
    );
    expect(() => emaWeights(file, saved, 0.95, 0.9)).toThrow(
      /no EMA with decay 0.95 in the checkpoint \(it has 0.9, 0.5, 0.99\)/,
    );
  });

  it("refuses a checkpoint of another model size, naming the parameter and both sizes", async () => {
    const file = path.join(dir, "c.safetensors");
    await toyRun(3, file, null);
    await expect(toyRun(4, file, loadCheckpoint(file))).rejects.toThrow(
      /parameter w has 3 elements in the checkpoint, 4 in this model/,
    );
  });
});
