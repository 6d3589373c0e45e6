/**
 * The training loop's learning-rate schedule: linear warm-up, then half a cosine down to a floor.
 * Expected values are the closed form evaluated by hand (cos(π/4) = 0.70711, cos(π/2) = 0).
 */
import { describe, expect, it } from "vitest";
import { learningRate } from "../../src/training/loop.js";

const o = { lr: 1e-3, warmup: 100, steps: 1100 };

describe("learningRate", () => {
  it("warms up linearly over the first `warmup` steps", () => {
    expect(learningRate(o, 0)).toBeCloseTo(1e-5, 15);
    expect(learningRate(o, 49)).toBeCloseTo(5e-4, 15);
    expect(learningRate(o, 99)).toBeCloseTo(1e-3, 15);
  });

  it("then follows half a cosine to 0.1·lr by default", () => {
    expect(learningRate(o, 100)).toBeCloseTo(1e-3, 15);
    // a quarter of the way: 0.1 + 0.9 · ½(1 + cos π/4) = 0.1 + 0.9 · 0.853553 = 0.868198
    expect(learningRate(o, 350)).toBeCloseTo(8.68198e-4, 9);
    // half-way: 0.1 + 0.9 · ½ = 0.55
    expect(learningRate(o, 600)).toBeCloseTo(5.5e-4, 12);
    // the last step is one step short of the floor: ½(1 + cos(π · 999/1000)) = 2.4674e-6
    expect(learningRate(o, 1099)).toBeCloseTo(1e-4 + 9e-4 * 2.4674e-6, 12);
  });

  it("ends at the floor it is given, zero included", () => {
    const zero = { ...o, finalLrFraction: 0 };
    expect(learningRate(zero, 600)).toBeCloseTo(5e-4, 12);
    expect(learningRate(zero, 1099)).toBeCloseTo(1e-3 * 2.4674e-6, 12);
    expect(learningRate(zero, 1099)).toBeGreaterThan(0);
    expect(learningRate({ ...o, finalLrFraction: 0.02 }, 1100)).toBeCloseTo(2e-5, 15);
  });
});
