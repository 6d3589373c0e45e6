import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import {
  DDIM_CONFIG_DEFAULTS,
  type DDIMConfig,
  ddimAlphasCumprod,
  ddimInvertStep,
  ddimSchedule,
  ddimStep,
  ddimStepCoefficients,
  ddimTimesteps,
  parseDDIMConfig,
} from "../../src/schedulers/ddim.js";

// Goldens from diffusers 0.21.4 on PyTorch 1.13 (float32, CPU); see shared/parity/README.md.
const PARITY = new URL("../../../shared/parity/", import.meta.url);

/** A minimal reader for the golden file (F32 only): 8-byte header length, JSON header, raw little-endian data. */
function readSafetensorsF32(url: URL): Map<string, { shape: number[]; data: Float32Array }> {
  const bytes = readFileSync(url);
  const headerLength = Number(bytes.readBigUInt64LE(0));
  const header = JSON.parse(bytes.subarray(8, 8 + headerLength).toString("utf8")) as Record<
    string,
    { dtype: string; shape: number[]; data_offsets: [number, number] }
  >;
  const tensors = new Map<string, { shape: number[]; data: Float32Array }>();
  for (const [name, entry] of Object.entries(header)) {
    if (name === "__metadata__") continue;
    if (entry.dtype !== "F32") throw new Error(`${url.pathname}: ${name} is ${entry.dtype}, this reader takes F32`);
    const [begin, end] = entry.data_offsets;
    const raw = bytes.subarray(8 + headerLength + begin, 8 + headerLength + end);
    const data = new Float32Array(raw.byteLength / 4);
    for (let i = 0; i < data.length; i++) data[i] = raw.readFloatLE(4 * i);
    expect(data.length).toBe(entry.shape.reduce((a, b) => a * b, 1));
    tensors.set(name, { shape: entry.shape, data });
  }
  return tensors;
}

const goldens = readSafetensorsF32(new URL("golden.safetensors", PARITY));
const goldenJson = JSON.parse(readFileSync(new URL("golden.json", PARITY), "utf8")) as {
  scheduler: { config: Record<string, unknown>; num_inference_steps: number; timesteps_50: number[] };
};
const schedulerConfigUrl = new URL("model/scheduler/scheduler_config.json", PARITY);

function golden(name: string): Float32Array {
  const tensor = goldens.get(name);
  if (!tensor) throw new Error(`golden.safetensors has no ${name}`);
  return tensor.data;
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i]! - b[i]!));
  return max;
}

function maxAbs(a: ArrayLike<number>): number {
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i]!));
  return max;
}

const sdConfig = parseDDIMConfig(JSON.parse(readFileSync(schedulerConfigUrl, "utf8")), schedulerConfigUrl.pathname);
const sd50 = ddimSchedule(sdConfig, 50);
const modelOutput = golden("ddim.model_output");
const sample = golden("ddim.sample");
const goldenAlphas = golden("scheduler.alphas_cumprod");
const SCHEDULER_TOLERANCE = 1e-6; // shared/parity/README.md: scheduler values, absolute

describe("DDIM noise schedule", () => {
  it("parses the golden model's scheduler_config.json as the golden config", () => {
    expect(sdConfig).toMatchObject(goldenJson.scheduler.config);
    expect(sdConfig.timestep_spacing).toBe("leading");
  });

  it("reproduces alphas_cumprod of diffusers (scaled_linear, float32) within 1e-6, in fact bit for bit", () => {
    expect(sd50.alphasCumprod.length).toBe(1000);
    expect(maxAbsDiff(sd50.alphasCumprod, goldenAlphas)).toBeLessThanOrEqual(SCHEDULER_TOLERANCE);
    // The emulation of torch.linspace (FMA, 8-lane blocks) and of the float64-accumulated cumprod is exact.
    expect(Array.from(sd50.alphasCumprod)).toEqual(Array.from(goldenAlphas));
  });

  it("reproduces final_alpha_cumprod (alphas_cumprod[0] when set_alpha_to_one is false)", () => {
    expect(sd50.finalAlphaCumprod).toBe(golden("scheduler.final_alpha_cumprod")[0]);
    expect(ddimSchedule({ ...sdConfig, set_alpha_to_one: true }, 50).finalAlphaCumprod).toBe(1);
  });

  it("linear schedule matches the float64 formula", () => {
    const config = parseDDIMConfig({ beta_schedule: "linear", beta_start: 0.0001, beta_end: 0.02 });
    const expected: number[] = [];
    let product = 1;
    for (let i = 0; i < 1000; i++) {
      product *= 1 - (0.0001 + ((0.02 - 0.0001) * i) / 999);
      expected.push(product);
    }
    expect(maxAbsDiff(ddimAlphasCumprod(config), expected)).toBeLessThanOrEqual(1e-6);
  });

  it("scaled_linear matches the float64 formula as closely as the reference does (4.7e-7)", () => {
    const expected: number[] = [];
    let product = 1;
    const [rootStart, rootEnd] = [Math.sqrt(0.00085), Math.sqrt(0.012)];
    for (let i = 0; i < 1000; i++) {
      product *= 1 - (rootStart + ((rootEnd - rootStart) * i) / 999) ** 2;
      expected.push(product);
    }
    expect(maxAbsDiff(sd50.alphasCumprod, expected)).toBeLessThanOrEqual(1e-6);
  });

  it("squaredcos_cap_v2 telescopes to alpha_bar(t/T) / alpha_bar(0) (Nichol & Dhariwal 2021, eq. 17)", () => {
    const alphas = ddimAlphasCumprod(parseDDIMConfig({ beta_schedule: "squaredcos_cap_v2" }));
    const alphaBar = (t: number) => Math.cos(((t + 0.008) / 1.008) * (Math.PI / 2)) ** 2;
    // Below the 0.999 cap on beta (only the last beta reaches it), the product of alpha_bar(t2)/alpha_bar(t1) telescopes.
    const expected = Array.from({ length: 999 }, (_, i) => alphaBar((i + 1) / 1000) / alphaBar(0));
    expect(maxAbsDiff(alphas.subarray(0, 999), expected)).toBeLessThanOrEqual(1e-6);
    expect(alphas[999]! / alphas[998]!).toBeCloseTo(1 - 0.999, 6);
  });

  it("rescale_betas_zero_snr shifts and scales sqrt(alphas_cumprod) (Lin et al. 2023, Algorithm 1)", () => {
    const alphas = ddimAlphasCumprod({ ...sdConfig, rescale_betas_zero_snr: true });
    const root = Array.from(goldenAlphas, Math.sqrt);
    const [first, last] = [root[0]!, root[999]!];
    const expected = root.map((x) => ((x - last) * first) / (first - last)).map((x) => x * x);
    expect(maxAbsDiff(alphas, expected)).toBeLessThanOrEqual(1e-6);
    expect(alphas[999]).toBe(0);
  });

  it("uses trained_betas when given", () => {
    const config = parseDDIMConfig({ num_train_timesteps: 3, trained_betas: [0.1, 0.2, 0.5] });
    expect(maxAbsDiff(ddimAlphasCumprod(config), [0.9, 0.72, 0.36])).toBeLessThanOrEqual(1e-7);
  });
});

describe("DDIM timesteps", () => {
  it("leading with steps_offset 1 gives the golden 981, 961, ..., 1", () => {
    expect(sd50.timesteps).toEqual(goldenJson.scheduler.timesteps_50);
    expect(sd50.timesteps).toEqual(Array.from(golden("scheduler.timesteps_50")));
    expect(sd50.stepRatio).toBe(20);
  });

  it("leading: k * (T // n) + steps_offset", () => {
    const leading = parseDDIMConfig({ timestep_spacing: "leading", steps_offset: 1 });
    expect(ddimTimesteps(leading, 16)).toEqual([
      931, 869, 807, 745, 683, 621, 559, 497, 435, 373, 311, 249, 187, 125, 63, 1,
    ]);
    expect(ddimTimesteps(parseDDIMConfig({}), 3)).toEqual([666, 333, 0]);
  });

  it("trailing: round(arange(T, 0, -T/n)) - 1, halves to even", () => {
    const trailing = parseDDIMConfig({ timestep_spacing: "trailing" });
    expect(ddimTimesteps(trailing, 10)).toEqual([999, 899, 799, 699, 599, 499, 399, 299, 199, 99]);
    // 1000 - 62.5k: 937.5 -> 938, 812.5 -> 812, 687.5 -> 688, ...
    expect(ddimTimesteps(trailing, 16)).toEqual([
      999, 937, 874, 811, 749, 687, 624, 561, 499, 437, 374, 311, 249, 187, 124, 61,
    ]);
    expect(ddimTimesteps(trailing, 3)).toEqual([999, 666, 332]);
  });

  it("linspace: round(linspace(0, T-1, n)) reversed, halves to even", () => {
    const linspace = parseDDIMConfig({ timestep_spacing: "linspace" });
    expect(ddimTimesteps(linspace, 10)).toEqual([999, 888, 777, 666, 555, 444, 333, 222, 111, 0]);
    // 999/6 = 166.5: 166.5 -> 166, 499.5 -> 500, 832.5 -> 832.
    expect(ddimTimesteps(linspace, 7)).toEqual([999, 832, 666, 500, 333, 166, 0]);
    expect(ddimTimesteps(linspace, 1)).toEqual([0]);
  });

  it("refuses step counts and offsets that leave [0, T)", () => {
    expect(() => ddimTimesteps(sdConfig, 0)).toThrow(/num_inference_steps is 0; expected an integer in \[1, 1000\]/);
    expect(() => ddimTimesteps(sdConfig, 1001)).toThrow(/1001/);
    expect(() => ddimTimesteps(sdConfig, 12.5)).toThrow(/12.5/);
    // leading: 999 * 1 + 1 = 1000 is past the last training timestep.
    expect(() => ddimTimesteps(sdConfig, 1000)).toThrow(/leading spacing of 1000 steps with steps_offset 1/);
    // numpy's float arange gives 62 values for 61 steps, the last one -1; diffusers would index alphas_cumprod[-1].
    expect(() => ddimTimesteps(parseDDIMConfig({ timestep_spacing: "trailing" }), 61)).toThrow(/trailing.*-1\]/);
  });
});

describe("ddimStep (DDIMScheduler.step, eta = 0)", () => {
  for (const timestep of [981, 501, 1]) {
    it(`reproduces prev_sample and pred_original_sample at t = ${timestep}`, () => {
      const { prevSample, predOriginalSample } = ddimStep(sd50, modelOutput, timestep, sample);
      const prevError = maxAbsDiff(prevSample, golden(`ddim.step.t${timestep}.prev_sample`));
      const originalError = maxAbsDiff(predOriginalSample, golden(`ddim.step.t${timestep}.pred_original_sample`));
      expect(prevError).toBeLessThanOrEqual(SCHEDULER_TOLERANCE);
      expect(originalError).toBeLessThanOrEqual(SCHEDULER_TOLERANCE);
      // Same float32 operations in the same order as diffusers: exact.
      expect(prevError).toBe(0);
      expect(originalError).toBe(0);
    });
  }

  /** DDIM eq. 12 (sigma = 0) in float64 from the golden alphas, x_0 and eps recovered per prediction type. */
  function closedFormStep(
    predictionType: DDIMConfig["prediction_type"],
    alphaFrom: number,
    alphaTo: number,
    clipRange: number | null,
  ): Float64Array {
    const out = new Float64Array(sample.length);
    for (let i = 0; i < sample.length; i++) {
      const [x, m] = [sample[i]!, modelOutput[i]!];
      let [original, epsilon] = [0, 0];
      if (predictionType === "epsilon") {
        original = (x - Math.sqrt(1 - alphaFrom) * m) / Math.sqrt(alphaFrom);
        epsilon = m;
      } else if (predictionType === "v_prediction") {
        // v = sqrt(a) eps - sqrt(1-a) x_0 (Salimans & Ho 2022), with x = sqrt(a) x_0 + sqrt(1-a) eps.
        original = Math.sqrt(alphaFrom) * x - Math.sqrt(1 - alphaFrom) * m;
        epsilon = Math.sqrt(alphaFrom) * m + Math.sqrt(1 - alphaFrom) * x;
      } else {
        original = m;
        epsilon = (x - Math.sqrt(alphaFrom) * m) / Math.sqrt(1 - alphaFrom);
      }
      if (clipRange !== null) original = Math.min(Math.max(original, -clipRange), clipRange);
      out[i] = Math.sqrt(alphaTo) * original + Math.sqrt(1 - alphaTo) * epsilon;
    }
    return out;
  }

  // float32 steps against float64 closed forms: a handful of float32 roundings of values below ~10 (|x|, |m| < 3.6);
  // observed <= 4e-7, bounded here by 1e-6, about two float32 ulps at the outputs' magnitude (~4).
  const cases = [
    { prediction_type: "v_prediction", timestep: 981 },
    { prediction_type: "v_prediction", timestep: 501 },
    { prediction_type: "v_prediction", timestep: 1 },
    { prediction_type: "sample", timestep: 981 },
    { prediction_type: "sample", timestep: 501 },
    { prediction_type: "sample", timestep: 1 },
  ] as const;
  for (const { prediction_type, timestep } of cases) {
    it(`${prediction_type} at t = ${timestep} matches the float64 closed form within 1e-6`, () => {
      const schedule = ddimSchedule({ ...sdConfig, prediction_type }, 50);
      const alphaTo = timestep - 20 >= 0 ? goldenAlphas[timestep - 20]! : goldenAlphas[0]!;
      const expected = closedFormStep(prediction_type, goldenAlphas[timestep]!, alphaTo, null);
      const { prevSample } = ddimStep(schedule, modelOutput, timestep, sample);
      expect(maxAbsDiff(prevSample, expected)).toBeLessThanOrEqual(1e-6);
    });
  }

  it("clip_sample clamps x_0 to clip_sample_range", () => {
    const schedule = ddimSchedule({ ...sdConfig, clip_sample: true, clip_sample_range: 1.5 }, 50);
    const { prevSample, predOriginalSample } = ddimStep(schedule, modelOutput, 981, sample);
    expect(maxAbs(predOriginalSample)).toBe(1.5);
    const expected = closedFormStep("epsilon", goldenAlphas[981]!, goldenAlphas[961]!, 1.5);
    expect(maxAbsDiff(prevSample, expected)).toBeLessThanOrEqual(1e-6);
  });

  it("with set_alpha_to_one the last step lands on x_0", () => {
    const schedule = ddimSchedule({ ...sdConfig, set_alpha_to_one: true }, 50);
    const { prevSample, predOriginalSample } = ddimStep(schedule, modelOutput, 1, sample);
    expect(Array.from(prevSample)).toEqual(Array.from(predOriginalSample));
  });

  it("names the offending timestep or length", () => {
    expect(() => ddimStep(sd50, modelOutput, 1000, sample)).toThrow(/timestep 1000 is not an integer in \[0, 999\]/);
    expect(() => ddimStep(sd50, modelOutput, 20.5, sample)).toThrow(/20.5/);
    expect(() => ddimStep(sd50, modelOutput.subarray(1), 981, sample)).toThrow(
      /modelOutput has 1023 .* sample has 1024/,
    );
  });
});

describe("ddimInvertStep (null-text NullInversion.next_step)", () => {
  for (const timestep of [1, 501, 981]) {
    it(`reproduces next_sample at t = ${timestep}`, () => {
      const { nextSample } = ddimInvertStep(sd50, modelOutput, timestep, sample);
      const error = maxAbsDiff(nextSample, golden(`ddim.invert.t${timestep}.next_sample`));
      expect(error).toBeLessThanOrEqual(SCHEDULER_TOLERANCE);
      expect(error).toBe(0);
    });
  }

  it("matches the closed form for v_prediction, read at the starting level", () => {
    const schedule = ddimSchedule({ ...sdConfig, prediction_type: "v_prediction" }, 50);
    const { nextSample } = ddimInvertStep(schedule, modelOutput, 501, sample);
    let expectedMax = 0;
    const [a, aNext] = [goldenAlphas[481]!, goldenAlphas[501]!];
    for (let i = 0; i < sample.length; i++) {
      const [x, v] = [sample[i]!, modelOutput[i]!];
      const original = Math.sqrt(a) * x - Math.sqrt(1 - a) * v;
      const epsilon = Math.sqrt(a) * v + Math.sqrt(1 - a) * x;
      const expected = Math.sqrt(aNext) * original + Math.sqrt(1 - aNext) * epsilon;
      expectedMax = Math.max(expectedMax, Math.abs(nextSample[i]! - expected));
    }
    expect(expectedMax).toBeLessThanOrEqual(1e-6);
  });

  it("is undone by ddimStep with the same model output", () => {
    const { nextSample } = ddimInvertStep(sd50, modelOutput, 501, sample);
    const { prevSample } = ddimStep(sd50, modelOutput, 501, nextSample);
    // Exact in real arithmetic; two float32 steps leave a few ulps of |x| < 3.6.
    expect(maxAbsDiff(prevSample, sample)).toBeLessThanOrEqual(2e-6);
  });
});

describe("ddimStepCoefficients", () => {
  function apply(coefficients: { sample: number; modelOutput: number }, roundToFloat32: boolean): Float64Array {
    const out = new Float64Array(sample.length);
    const f = roundToFloat32 ? Math.fround : (x: number) => x;
    const [cSample, cModel] = [f(coefficients.sample), f(coefficients.modelOutput)];
    for (let i = 0; i < sample.length; i++) out[i] = f(f(cSample * sample[i]!) + f(cModel * modelOutput[i]!));
    return out;
  }

  // The goldens carry diffusers' float32 rounding: of x_0 (|x_0| up to 58 at t = 981, half an ulp 1.9e-6, scaled
  // by sqrt(alpha_prev) ~ 0.07), of the two products and of the sum (|out| < 4, half an ulp 2.4e-7 each); the linear
  // form skips x_0 and rounds differently. Observed: <= 5.2e-7 applied in float64, <= 5.4e-7 applied in float32 as an
  // ONNX graph would (float32 coefficients, two multiplies and an add). Bound: 1e-6, about two ulps at |out| ~ 4.
  for (const timestep of [981, 501, 1]) {
    it(`reproduce the golden denoising step at t = ${timestep}`, () => {
      const expected = golden(`ddim.step.t${timestep}.prev_sample`);
      const coefficients = ddimStepCoefficients(sd50, timestep);
      expect(maxAbsDiff(apply(coefficients, false), expected)).toBeLessThanOrEqual(1e-6);
      expect(maxAbsDiff(apply(coefficients, true), expected)).toBeLessThanOrEqual(1e-6);
    });

    it(`reproduce the golden inversion step at t = ${timestep}`, () => {
      const expected = golden(`ddim.invert.t${timestep}.next_sample`);
      const coefficients = ddimStepCoefficients(sd50, timestep, "invert");
      expect(maxAbsDiff(apply(coefficients, false), expected)).toBeLessThanOrEqual(1e-6);
      expect(maxAbsDiff(apply(coefficients, true), expected)).toBeLessThanOrEqual(1e-6);
    });
  }

  for (const prediction_type of ["v_prediction", "sample"] as const) {
    it(`${prediction_type}: coefficients equal the float64 closed form recovering x_0 and eps`, () => {
      const schedule = ddimSchedule({ ...sdConfig, prediction_type }, 50);
      const [a, aPrev] = [goldenAlphas[501]!, goldenAlphas[481]!];
      // Closed form applied to unit inputs: (x, m) = (1, 0) gives the sample coefficient, (0, 1) the model one.
      const step = (x: number, m: number) => {
        const original = prediction_type === "sample" ? m : Math.sqrt(a) * x - Math.sqrt(1 - a) * m;
        const epsilon =
          prediction_type === "sample"
            ? (x - Math.sqrt(a) * m) / Math.sqrt(1 - a)
            : Math.sqrt(a) * m + Math.sqrt(1 - a) * x;
        return Math.sqrt(aPrev) * original + Math.sqrt(1 - aPrev) * epsilon;
      };
      const coefficients = ddimStepCoefficients(schedule, 501);
      expect(coefficients.sample).toBeCloseTo(step(1, 0), 14);
      expect(coefficients.modelOutput).toBeCloseTo(step(0, 1), 14);
    });
  }

  it("refuses a denoising step with clip_sample, which is not linear", () => {
    const schedule = ddimSchedule({ ...sdConfig, clip_sample: true }, 50);
    expect(() => ddimStepCoefficients(schedule, 981)).toThrow(/clip_sample is true/);
    expect(() => ddimStepCoefficients(schedule, 981, "invert")).not.toThrow();
  });
});

describe("parseDDIMConfig", () => {
  it("fills diffusers' defaults", () => {
    expect(parseDDIMConfig({})).toEqual({
      num_train_timesteps: 1000,
      beta_start: 0.0001,
      beta_end: 0.02,
      beta_schedule: "linear",
      trained_betas: null,
      clip_sample: true,
      set_alpha_to_one: true,
      steps_offset: 0,
      prediction_type: "epsilon",
      thresholding: false,
      dynamic_thresholding_ratio: 0.995,
      clip_sample_range: 1.0,
      sample_max_value: 1.0,
      timestep_spacing: "leading",
      rescale_betas_zero_snr: false,
    });
    expect(parseDDIMConfig({})).toEqual(DDIM_CONFIG_DEFAULTS);
  });

  it("accepts the PNDM config that SD 1.x folders ship, ignoring skip_prk_steps", () => {
    const pndm = {
      _class_name: "PNDMScheduler",
      _diffusers_version: "0.6.0",
      beta_end: 0.012,
      beta_schedule: "scaled_linear",
      beta_start: 0.00085,
      num_train_timesteps: 1000,
      set_alpha_to_one: false,
      skip_prk_steps: true,
      steps_offset: 1,
      trained_betas: null,
      clip_sample: false,
    };
    const config = parseDDIMConfig(pndm, "scheduler_config.json");
    expect(config).toEqual({ ...DDIM_CONFIG_DEFAULTS, ...goldenJson.scheduler.config, trained_betas: null });
    expect(ddimSchedule(config, 50).timesteps).toEqual(goldenJson.scheduler.timesteps_50);
  });

  it("accepts Euler, DPM-Solver and UniPC configs, whose sampler-only keys DDIM ignores", () => {
    const euler = { _class_name: "EulerDiscreteScheduler", interpolation_type: "linear", use_karras_sigmas: false };
    const dpm = {
      _class_name: "DPMSolverMultistepScheduler",
      solver_order: 2,
      algorithm_type: "dpmsolver++",
      solver_type: "midpoint",
      lower_order_final: true,
      lambda_min_clipped: Number.NEGATIVE_INFINITY,
      variance_type: null,
      thresholding: false,
      use_karras_sigmas: false,
      euler_at_final: false,
      final_sigmas_type: "zero",
    };
    const unipc = { predict_x0: true, solver_type: "bh2", disable_corrector: [], solver_p: null };
    for (const json of [euler, dpm, unipc]) expect(parseDDIMConfig(json)).toEqual(DDIM_CONFIG_DEFAULTS);
  });

  it("rejects unknown keys, naming file, key and value", () => {
    expect(() => parseDDIMConfig({ predict_epsilon: false }, "sched.json")).toThrow(
      /sched\.json: unknown scheduler config key "predict_epsilon" \(value false\)/,
    );
  });

  it("rejects unsupported values, naming key, value and what is accepted", () => {
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ thresholding: true }, /"thresholding" is true: dynamic thresholding .* Accepted: false/],
      [{ beta_schedule: "sigmoid" }, /"beta_schedule" is "sigmoid"; accepted: "linear", "scaled_linear"/],
      [{ prediction_type: "flow" }, /"prediction_type" is "flow"; accepted: "epsilon", "v_prediction", "sample"/],
      [{ timestep_spacing: "karras" }, /"timestep_spacing" is "karras"; accepted: "leading", "trailing", "linspace"/],
      [{ num_train_timesteps: "1000" }, /"num_train_timesteps" is "1000"; expected an integer/],
      [{ num_train_timesteps: 999.5 }, /"num_train_timesteps" is 999.5; expected an integer/],
      [{ steps_offset: -1 }, /"steps_offset" is -1; expected an integer in \[0,/],
      [{ clip_sample: "false" }, /"clip_sample" is "false"; expected true or false/],
      [{ beta_end: 2 }, /"beta_end" is 2; expected a number in \[0, 1\]/],
      [{ clip_sample_range: 0 }, /"clip_sample_range" is 0; expected a number/],
      [{ trained_betas: [0.1, 0.2] }, /"trained_betas" has 2 values but "num_train_timesteps" is 1000/],
      [{ trained_betas: "x" }, /"trained_betas" is "x"; expected null or an array/],
      [{ variance_type: "learned_range" }, /"variance_type" is "learned_range": a learned variance/],
    ];
    for (const [json, message] of cases)
      expect(() => parseDDIMConfig(json, "cfg.json"), JSON.stringify(json)).toThrow(message);
    expect(() => parseDDIMConfig([], "cfg.json")).toThrow(/cfg\.json: expected a JSON object .* an array of 0/);
    expect(() => parseDDIMConfig(null)).toThrow(/expected a JSON object .* got null/);
  });

  it("validates hand-built configs when a schedule is made", () => {
    expect(() => ddimSchedule({ ...sdConfig, thresholding: true }, 50)).toThrow(/DDIMConfig: "thresholding" is true/);
  });
});
