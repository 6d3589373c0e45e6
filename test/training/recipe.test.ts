/**
 * The built-in model's UNet training recipe: the Min-SNR-γ weight (Hang et al. 2023) against its
 * definition computed from the SD schedule's ᾱ_t, and stratified timesteps (one per slice of [0, T),
 * uniform marginal).
 */
import { describe, expect, it } from "vitest";
import { ddimAlphasCumprod, parseDDIMConfig } from "../../src/schedulers/ddim.js";
import {
  checkUnetResume,
  MIN_SNR_GAMMA,
  minSnrWeight,
  stratifiedTimesteps,
  UNET_RECIPE,
} from "../../src/training/shapes.js";
import { SHAPES_CONFIGS } from "../../src/training/shapes_config.js";
import { Rng } from "../../src/util/rng.js";

describe("Min-SNR-γ weight", () => {
  it("is 1 up to SNR = γ and γ / SNR above it", () => {
    // SNR = ᾱ / (1 − ᾱ): ᾱ = 0.5 → 1, ᾱ = 5/6 → 5, ᾱ = 0.95 → 19, ᾱ = 0.01 → 1/99
    expect(minSnrWeight(0.5, 5)).toBeCloseTo(1, 12);
    expect(minSnrWeight(5 / 6, 5)).toBeCloseTo(1, 12);
    expect(minSnrWeight(0.95, 5)).toBeCloseTo(5 / 19, 12);
    expect(minSnrWeight(0.01, 5)).toBeCloseTo(1, 12);
    expect(minSnrWeight(0.95, 1)).toBeCloseTo(1 / 19, 12);
  });

  it("on the SD schedule: t = 0 weighs γ(1 − ᾱ_0)/ᾱ_0 ≈ 0.00426, and every t from the crossing on weighs 1", () => {
    const alphas = ddimAlphasCumprod(parseDDIMConfig(SHAPES_CONFIGS.scheduler));
    // scaled_linear: β_0 = 0.00085 → ᾱ_0 = 0.99915
    expect(minSnrWeight(alphas[0] as number, MIN_SNR_GAMMA)).toBeCloseTo((5 * 0.00085) / 0.99915, 6);
    const crossing = alphas.findIndex((a) => a / (1 - a) <= MIN_SNR_GAMMA);
    expect(crossing).toBeGreaterThan(50);
    expect(crossing).toBeLessThan(300);
    for (let t = crossing; t < alphas.length; t++) expect(minSnrWeight(alphas[t] as number, MIN_SNR_GAMMA)).toBe(1);
    for (let t = 0; t < crossing; t++) expect(minSnrWeight(alphas[t] as number, MIN_SNR_GAMMA)).toBeLessThan(1);
  });
});

describe("stratified timesteps", () => {
  it("puts one timestep in each of the batch's slices of [0, T), in shuffled order", () => {
    const rng = new Rng(7);
    const ts = stratifiedTimesteps(rng, 32, 1000);
    const sorted = [...ts].sort((a, b) => a - b);
    sorted.forEach((t, i) => {
      expect(t).toBeGreaterThanOrEqual(Math.floor((i * 1000) / 32));
      expect(t).toBeLessThan(Math.ceil(((i + 1) * 1000) / 32));
    });
    expect(ts).not.toEqual(sorted);
  });

  it("has a uniform marginal: 20 000 batches fill ten bins of [0, 1000) within 2%", () => {
    const rng = new Rng(11);
    const bins = new Array(10).fill(0);
    for (let b = 0; b < 20_000; b++) for (const t of stratifiedTimesteps(rng, 7, 1000)) bins[Math.floor(t / 100)]++;
    for (const n of bins) expect(Math.abs(n / 14_000 - 1)).toBeLessThan(0.02);
  });
});

describe("UNet resume check", () => {
  it("continues a run of the same recipe and batch, and re-exports a finished one whatever the batch", () => {
    expect(() => checkUnetResume("u.safetensors", { recipe: UNET_RECIPE, batch: 16 }, 16)).not.toThrow();
    expect(() => checkUnetResume("u.safetensors", { recipe: UNET_RECIPE, batch: 16, done: true }, 32)).not.toThrow();
    // checkpoints written before the batch was recorded were batch 32
    expect(() => checkUnetResume("u.safetensors", { recipe: UNET_RECIPE }, 32)).not.toThrow();
  });

  it("refuses another batch size or another recipe, naming both", () => {
    expect(() => checkUnetResume("u.safetensors", { recipe: UNET_RECIPE, batch: 16 }, 32)).toThrow(
      "u.safetensors is a run with batches of 16, not 32: resume it with --unet-batch 16",
    );
    expect(() => checkUnetResume("u.safetensors", { recipe: UNET_RECIPE }, 16)).toThrow("batches of 32, not 16");
    expect(() => checkUnetResume("u.safetensors", { recipe: "eps", batch: 32 }, 32)).toThrow(
      'u.safetensors was written by training recipe "eps"',
    );
    expect(() => checkUnetResume("u.safetensors", {}, 32)).toThrow("none recorded");
  });
});
