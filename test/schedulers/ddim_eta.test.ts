import { describe, expect, it } from "vitest";
import {
  DDIM_CONFIG_DEFAULTS,
  ddimAlphasCumprod,
  ddimSchedule,
  ddimStep,
  ddimStepEta,
  ddimVariance,
} from "../../src/schedulers/ddim.js";

// Stable Diffusion's scheduler (as the parity and built-in models ship it).
const SD = {
  ...DDIM_CONFIG_DEFAULTS,
  beta_start: 0.00085,
  beta_end: 0.012,
  beta_schedule: "scaled_linear" as const,
  clip_sample: false,
  set_alpha_to_one: false,
  steps_offset: 1,
};

/**
 * diffusers' DDIMScheduler.step with eta (scheduling_ddim.py, v0.21.4) in float64 on scalars:
 * variance = (1−ᾱ_prev)/(1−ᾱ_t)·(1−ᾱ_t/ᾱ_prev), std = η·sqrt(variance),
 * x0 = (x − sqrt(1−ᾱ_t)·ε)/sqrt(ᾱ_t), prev = sqrt(ᾱ_prev)·x0 + sqrt(1−ᾱ_prev−std²)·ε + std·noise.
 */
function diffusersStep(aT: number, aPrev: number, eta: number, x: number, eps: number, noise: number) {
  const variance = ((1 - aPrev) / (1 - aT)) * (1 - aT / aPrev);
  const std = eta * Math.sqrt(variance);
  const x0 = (x - Math.sqrt(1 - aT) * eps) / Math.sqrt(aT);
  return { variance, std, prev: Math.sqrt(aPrev) * x0 + Math.sqrt(1 - aPrev - std * std) * eps + std * noise };
}

describe("ddimStepEta (DDIMScheduler.step with eta > 0)", () => {
  const schedule = ddimSchedule(SD, 50);
  const x = Float32Array.of(0.5, -1.25, 2.0, 0.03125);
  const eps = Float32Array.of(-0.3, 0.75, 1.5, -2.0);
  const noise = Float32Array.of(1.2, -0.4, 0.0, 2.5);

  it("matches diffusers' formula on hand-computed values at eta 0.5 and 1, mid-schedule and at the last step", () => {
    for (const t of [981, 501, 21, 1]) {
      const aT = schedule.alphasCumprod[t] as number;
      const aPrev = t - 20 >= 0 ? (schedule.alphasCumprod[t - 20] as number) : schedule.finalAlphaCumprod;
      for (const eta of [0.5, 1]) {
        const out = ddimStepEta(schedule, eps, t, x, eta, noise);
        for (let i = 0; i < x.length; i++) {
          const ref = diffusersStep(aT, aPrev, eta, x[i] as number, eps[i] as number, noise[i] as number);
          expect(Math.abs((out.prevSample[i] as number) - ref.prev)).toBeLessThan(2e-6 * (1 + Math.abs(ref.prev)));
          expect(out.stdDev).toBeCloseTo(ref.std, 6);
          // the mean is the step without the noise
          const mean = ref.prev - ref.std * (noise[i] as number);
          expect(Math.abs((out.mean[i] as number) - mean)).toBeLessThan(2e-6 * (1 + Math.abs(mean)));
        }
      }
    }
  });

  it("one hand-computed step: t = 501 → 481, eta = 1", () => {
    // ᾱ from the scaled_linear betas in float64: ᾱ_t = Π (1 − β_s), β_s = (sqrt(0.00085) + s/999·(sqrt(0.012) − sqrt(0.00085)))²
    let a = 1;
    const alphas: number[] = [];
    for (let s = 0; s < 1000; s++) {
      const b = (Math.sqrt(0.00085) + (s / 999) * (Math.sqrt(0.012) - Math.sqrt(0.00085))) ** 2;
      a *= 1 - b;
      alphas.push(a);
    }
    const aT = alphas[501] as number;
    const aPrev = alphas[481] as number;
    expect(Math.abs((ddimAlphasCumprod(SD)[501] as number) - aT)).toBeLessThan(1e-6);
    const ref = diffusersStep(aT, aPrev, 1, 0.5, -0.3, 1.2);
    const out = ddimStepEta(schedule, Float32Array.of(-0.3), 501, Float32Array.of(0.5), 1, Float32Array.of(1.2));
    expect(Math.abs((out.prevSample[0] as number) - ref.prev)).toBeLessThan(5e-6);
    expect(Math.abs(ddimVariance(schedule, 501) - ref.variance)).toBeLessThan(1e-5 * ref.variance);
  });

  it("with eta = 0 equals ddimStep bit for bit, and adds no noise", () => {
    for (const t of schedule.timesteps) {
      const a = ddimStepEta(schedule, eps, t, x, 0, noise);
      const b = ddimStep(schedule, eps, t, x);
      expect(Array.from(a.prevSample)).toEqual(Array.from(b.prevSample));
      expect(a.stdDev).toBe(0);
    }
  });

  it("the variance of adjacent training steps is the DDPM posterior variance β̃_t (Ho et al. 2020, eq. 7)", () => {
    const fine = ddimSchedule({ ...SD, steps_offset: 0 }, 1000); // stepRatio 1
    const alphas = ddimAlphasCumprod(SD);
    for (const t of [999, 500, 10, 1]) {
      const beta = 1 - (alphas[t] as number) / (alphas[t - 1] as number);
      const tilde = ((1 - (alphas[t - 1] as number)) / (1 - (alphas[t] as number))) * beta;
      expect(Math.abs(ddimVariance(fine, t) - tilde) / tilde).toBeLessThan(1e-4);
    }
  });

  it("without noise returns the mean; refuses a bad eta or noise length", () => {
    const out = ddimStepEta(schedule, eps, 501, x, 1);
    expect(Array.from(out.prevSample)).toEqual(Array.from(out.mean));
    expect(() => ddimStepEta(schedule, eps, 501, x, -0.5, noise)).toThrow(/eta -0.5/);
    expect(() => ddimStepEta(schedule, eps, 501, x, Number.NaN, noise)).toThrow(/eta NaN/);
    expect(() => ddimStepEta(schedule, eps, 501, x, 1, Float32Array.of(1))).toThrow(/noise has 1 values/);
  });
});
