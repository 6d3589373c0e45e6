/**
 * Training checkpoints: a run interrupted after a checkpoint and resumed ends with exactly the weights,
 * EMA and Adam moments of an uninterrupted run, and a checkpoint of another model size is refused by
 * parameter name.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import * as G from "../../src/graph/index.js";
import { init, WeightStore } from "../../src/models/weights.js";
import { loadCheckpoint, type TrainingState } from "../../src/training/checkpoint.js";
import { trainLoop } from "../../src/training/loop.js";

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "nulltext-ckpt-"));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

/** Least squares on a fixed batch per step: loss = mean((x·w − y)²) with w of `width` elements. */
function toyRun(width: number, file: string, resume: TrainingState | null, stopAt = Number.POSITIVE_INFINITY) {
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
    steps: 8,
    lr: 0.05,
    warmup: 2,
    emaDecay: 0.9,
    batch: (step) => {
      if (step >= stopAt) throw new Error("interrupted");
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
    // and training moved the weights (the comparison is not between two untouched initialisations)
    const fresh = WeightStore.forTraining("toy", 7);
    fresh.get("w", [3], init.fanIn(3));
    expect(Array.from(straight.params.get("w") as Float32Array)).not.toEqual(
      Array.from(fresh.trainableArrays().get("w") as Float32Array),
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
