/**
 * DDIM sampling and inversion with eta = 0: Song et al. (2021), "Denoising Diffusion Implicit Models",
 * eq. 12 with sigma_t = 0, and its time-reversed step as the null-text inversion code runs it
 * (Mokady et al. 2023; google/prompt-to-prompt `null_text_w_ptp.ipynb`, `NullInversion.next_step`).
 *
 * Behaviour follows diffusers v0.21.4 `DDIMScheduler` (`schedulers/scheduling_ddim.py`): the same config keys
 * and defaults, the same timesteps, and the same float32 arithmetic in the same order, so `alphasCumprod` and
 * every step reproduce PyTorch's float32 results (bit for bit on the parity goldens).
 *
 * The caller writes the loop, as with diffusers:
 *
 *   const schedule = ddimSchedule(parseDDIMConfig(json, file), 50);
 *   for (const t of schedule.timesteps) latents = ddimStep(schedule, unet(latents, t), t, latents).prevSample;
 *
 * `ddimStepCoefficients` gives the same step as two scalars, for callers that build it from graph ops.
 * `ddimStepEta` is the stochastic step of eq. 12 with sigma_t(eta) of eq. 16 (eta > 0), with the caller's noise.
 */

export type BetaSchedule = "linear" | "scaled_linear" | "squaredcos_cap_v2";
export type PredictionType = "epsilon" | "v_prediction" | "sample";
/** Table 2 of Lin et al. (2023), "Common Diffusion Noise Schedules and Sample Steps are Flawed". */
export type TimestepSpacing = "leading" | "trailing" | "linspace";

/** diffusers' `DDIMScheduler` config (`scheduler/scheduler_config.json`); defaults are diffusers' defaults. */
export interface DDIMConfig {
  readonly num_train_timesteps: number;
  readonly beta_start: number;
  readonly beta_end: number;
  readonly beta_schedule: BetaSchedule;
  /** Explicit betas (one per training timestep), overriding beta_start, beta_end and beta_schedule. */
  readonly trained_betas: readonly number[] | null;
  /** Clamp the predicted x_0 to [-clip_sample_range, clip_sample_range] in `ddimStep`. */
  readonly clip_sample: boolean;
  /** Whether the step to t < 0 lands on alpha_cumprod = 1 (true) or on alphas_cumprod[0] (false, as SD does). */
  readonly set_alpha_to_one: boolean;
  /** Added to the "leading" timesteps (SD uses 1: 981, 961, ..., 1). */
  readonly steps_offset: number;
  readonly prediction_type: PredictionType;
  /** Dynamic thresholding (Imagen) is for pixel-space models; only `false` is supported. */
  readonly thresholding: boolean;
  readonly dynamic_thresholding_ratio: number;
  readonly clip_sample_range: number;
  readonly sample_max_value: number;
  readonly timestep_spacing: TimestepSpacing;
  /** Lin et al. (2023), Algorithm 1: shift and scale sqrt(alphas_cumprod) so the last timestep has zero SNR. */
  readonly rescale_betas_zero_snr: boolean;
}

export const DDIM_CONFIG_DEFAULTS: Readonly<DDIMConfig> = Object.freeze({
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

const BETA_SCHEDULES: readonly BetaSchedule[] = ["linear", "scaled_linear", "squaredcos_cap_v2"];
const PREDICTION_TYPES: readonly PredictionType[] = ["epsilon", "v_prediction", "sample"];
const TIMESTEP_SPACINGS: readonly TimestepSpacing[] = ["leading", "trailing", "linspace"];

/**
 * Keys that other diffusers schedulers save and DDIM ignores, as `DDIMScheduler.from_config` does. Each one tunes
 * that scheduler's own sampling algorithm; none changes the noise schedule or what the model predicts, so DDIM's
 * math is the same with or without it. (SD folders often ship a `PNDMScheduler` config.)
 */
const KEYS_OF_OTHER_SCHEDULERS: Readonly<Record<string, string>> = {
  skip_prk_steps: "PNDM: whether to skip its Runge-Kutta warm-up steps",
  interpolation_type: "Euler: how it interpolates sigmas between timesteps",
  use_karras_sigmas: "Euler/LMS/Heun/DPM-Solver/UniPC: Karras et al. (2022) sigma spacing for those samplers",
  solver_order: "DPM-Solver/UniPC/DEIS: multistep order",
  algorithm_type: "DPM-Solver/DEIS: solver variant",
  solver_type: "DPM-Solver/UniPC/DEIS: second-order update rule",
  lower_order_final: "DPM-Solver/UniPC/DEIS: lower order at the last steps",
  lambda_min_clipped: "DPM-Solver: clipping of log-SNR for the cosine schedule",
  euler_at_final: "DPM-Solver: Euler step at the end",
  use_lu_lambdas: "DPM-Solver: Lu et al. log-SNR spacing",
  final_sigmas_type: "DPM-Solver/Euler: sigma of the final step",
  predict_x0: "UniPC: data- or noise-prediction form of the solver",
  disable_corrector: "UniPC: steps without the corrector",
  solver_p: "UniPC: predictor solver",
  variance_type: "DDPM/DPM-Solver: variance of stochastic steps (only fixed types; learned variance is refused)",
};

/** `variance_type` values that leave the model's output as a plain prediction (no variance channels). */
const FIXED_VARIANCE_TYPES: readonly (string | null)[] = [
  null,
  "fixed_small",
  "fixed_small_log",
  "fixed_large",
  "fixed_large_log",
];

type MutableConfig = { -readonly [K in keyof DDIMConfig]: DDIMConfig[K] };

/**
 * Parses a diffusers scheduler config (the parsed `scheduler_config.json`), filling diffusers' defaults.
 * Keys starting with `_` (`_class_name`, `_diffusers_version`) are metadata and skipped; keys of other schedulers
 * listed in KEYS_OF_OTHER_SCHEDULERS are skipped; any other key, a value of the wrong type or an unsupported value
 * throws an error naming the file, the key and the value.
 */
export function parseDDIMConfig(json: unknown, file = "DDIM scheduler config"): DDIMConfig {
  if (typeof json !== "object" || json === null || Array.isArray(json)) {
    throw new Error(`${file}: expected a JSON object of scheduler settings, got ${describe(json)}`);
  }
  const config: MutableConfig = { ...DDIM_CONFIG_DEFAULTS };
  const where = (key: string) => `${file}: "${key}"`;
  for (const [key, value] of Object.entries(json)) {
    if (key.startsWith("_")) continue;
    switch (key) {
      case "num_train_timesteps":
        config.num_train_timesteps = integerIn(value, 1, Number.MAX_SAFE_INTEGER, where(key));
        break;
      case "beta_start":
      case "beta_end":
        config[key] = numberIn(value, 0, 1, where(key));
        break;
      case "beta_schedule":
        config.beta_schedule = oneOf(value, BETA_SCHEDULES, where(key));
        break;
      case "trained_betas":
        config.trained_betas = value === null ? null : numberArray(value, where(key));
        break;
      case "clip_sample":
      case "set_alpha_to_one":
      case "rescale_betas_zero_snr":
        config[key] = boolean(value, where(key));
        break;
      case "thresholding":
        config.thresholding = boolean(value, where(key));
        if (config.thresholding) {
          throw new Error(
            `${where(key)} is true: dynamic thresholding (Imagen) is not implemented; it is meant for pixel-space ` +
              "models, not latent diffusion. Accepted: false",
          );
        }
        break;
      case "steps_offset":
        config.steps_offset = integerIn(value, 0, Number.MAX_SAFE_INTEGER, where(key));
        break;
      case "prediction_type":
        config.prediction_type = oneOf(value, PREDICTION_TYPES, where(key));
        break;
      case "dynamic_thresholding_ratio":
        config.dynamic_thresholding_ratio = numberIn(value, 0, 1, where(key));
        break;
      case "clip_sample_range":
      case "sample_max_value":
        config[key] = numberIn(value, Number.MIN_VALUE, Number.MAX_VALUE, where(key));
        break;
      case "timestep_spacing":
        config.timestep_spacing = oneOf(value, TIMESTEP_SPACINGS, where(key));
        break;
      case "variance_type":
        if (!FIXED_VARIANCE_TYPES.includes(value as string | null)) {
          throw new Error(
            `${where(key)} is ${describe(value)}: a learned variance means the model outputs extra variance ` +
              `channels, which DDIM does not handle. Accepted: ${FIXED_VARIANCE_TYPES.map(describe).join(", ")}`,
          );
        }
        break;
      default:
        if (key in KEYS_OF_OTHER_SCHEDULERS) break;
        throw new Error(
          `${file}: unknown scheduler config key "${key}" (value ${describe(value)}). DDIM keys: ` +
            `${Object.keys(DDIM_CONFIG_DEFAULTS).join(", ")}; keys of other schedulers that DDIM ignores: ` +
            `${Object.keys(KEYS_OF_OTHER_SCHEDULERS).join(", ")}`,
        );
    }
  }
  const betas = config.trained_betas;
  if (betas !== null && betas.length !== config.num_train_timesteps) {
    throw new Error(
      `${file}: "trained_betas" has ${betas.length} values but "num_train_timesteps" is ${config.num_train_timesteps}`,
    );
  }
  return Object.freeze(config);
}

function describe(value: unknown): string {
  if (Array.isArray(value)) return `an array of ${value.length}`;
  return value === undefined ? "undefined" : JSON.stringify(value);
}

function boolean(value: unknown, where: string): boolean {
  if (typeof value !== "boolean") throw new Error(`${where} is ${describe(value)}; expected true or false`);
  return value;
}

function numberIn(value: unknown, min: number, max: number, where: string): number {
  if (typeof value !== "number" || !Number.isFinite(value) || value < min || value > max) {
    throw new Error(`${where} is ${describe(value)}; expected a number in [${min}, ${max}]`);
  }
  return value;
}

function integerIn(value: unknown, min: number, max: number, where: string): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < min || value > max) {
    throw new Error(`${where} is ${describe(value)}; expected an integer in [${min}, ${max}]`);
  }
  return value;
}

function oneOf<T extends string>(value: unknown, accepted: readonly T[], where: string): T {
  if (!accepted.includes(value as T)) {
    throw new Error(`${where} is ${describe(value)}; accepted: ${accepted.map((a) => `"${a}"`).join(", ")}`);
  }
  return value as T;
}

function numberArray(value: unknown, where: string): number[] {
  if (!Array.isArray(value)) throw new Error(`${where} is ${describe(value)}; expected null or an array of betas`);
  return value.map((beta, i) => numberIn(beta, 0, 1, `${where}[${i}]`));
}

// ---------------------------------------------------------------------------------------------------------------
// Noise schedule, in PyTorch's float32 arithmetic.

const f32 = Math.fround;

/**
 * Rounds a·b + c to float32 once, as a fused multiply-add does. a and b are float32 values, so a·b is exact in
 * float64; the TwoSum error term settles the one case where rounding the float64 sum again would go the wrong way
 * (the sum lying exactly halfway between two float32 values).
 */
function fusedMultiplyAddF32(a: number, b: number, c: number): number {
  const product = a * b;
  const sum = product + c;
  const virtualC = sum - product;
  const error = product - (sum - virtualC) + (c - virtualC);
  const rounded = f32(sum);
  if (error === 0 || rounded === sum) return rounded;
  const above = f32(nextFloat64(sum, 1));
  const below = f32(nextFloat64(sum, -1));
  if (above === below) return rounded;
  return error > 0 ? above : below;
}

function nextFloat64(x: number, direction: 1 | -1): number {
  const view = new DataView(new ArrayBuffer(8));
  view.setFloat64(0, x);
  const bits = view.getBigInt64(0);
  view.setBigInt64(0, bits + BigInt(x > 0 ? direction : -direction));
  return view.getFloat64(0);
}

/** Lanes of `Vectorized<float>` in PyTorch's AVX2 CPU kernels. */
const TORCH_FLOAT_LANES = 8;

/**
 * `torch.linspace(start, end, steps, dtype=torch.float32)` as PyTorch 1.13's CPU kernel computes it
 * (aten/src/ATen/native/cpu/RangeFactoriesKernel.cpp, AVX2 build): step = (end - start) / (steps - 1) in float32;
 * blocks of 8 lanes whose first lane is start + step·i for blocks starting before steps/2 and
 * end - step·(steps - 1 - i) after, each further lane adding j·step to the block's first; the tail past the last pair
 * of blocks is computed per element with the same two formulas. The compiler fuses each multiply-add (FMA).
 * This reproduces the SD `alphas_cumprod` bit for bit; an AVX-512 build (16 lanes) may differ by one ulp near the
 * middle. (Later PyTorch releases dropped the blocks, which also moves some values by one ulp.)
 */
function torchLinspaceF32(start: number, end: number, steps: number): Float32Array {
  const out = new Float32Array(steps);
  const first = f32(start);
  const last = f32(end);
  if (steps === 1) {
    out[0] = first;
    return out;
  }
  const step = f32(f32(last - first) / (steps - 1));
  const halfway = Math.floor(steps / 2);
  const elementAt = (i: number) =>
    i < halfway ? fusedMultiplyAddF32(step, i, first) : fusedMultiplyAddF32(-step, steps - 1 - i, last);
  // at::native::vectorized_loop handles two vectors per iteration while a full pair remains.
  const vectorized = Math.floor(steps / (2 * TORCH_FLOAT_LANES)) * 2 * TORCH_FLOAT_LANES;
  for (let block = 0; block < vectorized; block += TORCH_FLOAT_LANES) {
    const base = elementAt(block);
    out[block] = base;
    for (let lane = 1; lane < TORCH_FLOAT_LANES; lane++) out[block + lane] = fusedMultiplyAddF32(lane, step, base);
  }
  for (let i = vectorized; i < steps; i++) out[i] = elementAt(i);
  return out;
}

/**
 * `torch.cumprod` of float32 values on the CPU: the running product is kept in float64 (`acc_type<float>` is double)
 * and each output rounded to float32.
 */
function torchCumprodF32(values: Float32Array): Float32Array {
  const out = new Float32Array(values.length);
  let product = 1;
  for (let i = 0; i < values.length; i++) {
    product *= values[i]!;
    out[i] = product;
  }
  return out;
}

/**
 * diffusers' `betas_for_alpha_bar` with the cosine alpha_bar of Nichol & Dhariwal (2021), "Improved Denoising
 * Diffusion Probabilistic Models", eq. 17 (s = 0.008), betas capped at 0.999; computed in float64, then float32.
 */
function cosineBetas(numTrainTimesteps: number): Float32Array {
  const alphaBar = (t: number) => {
    const c = Math.cos(((t + 0.008) / 1.008) * Math.PI * 0.5);
    return c * c;
  };
  const betas = new Float32Array(numTrainTimesteps);
  for (let i = 0; i < numTrainTimesteps; i++) {
    const t1 = i / numTrainTimesteps;
    const t2 = (i + 1) / numTrainTimesteps;
    betas[i] = Math.min(1 - alphaBar(t2) / alphaBar(t1), 0.999);
  }
  return betas;
}

/** Lin et al. (2023), Algorithm 1, in float32 as diffusers' `rescale_zero_terminal_snr` computes it. */
function rescaleZeroTerminalSnr(betas: Float32Array): Float32Array {
  const alphasBarSqrt = torchCumprodF32(betas.map((beta) => f32(1 - beta))).map(Math.sqrt);
  const first = alphasBarSqrt[0]!;
  const last = alphasBarSqrt[alphasBarSqrt.length - 1]!;
  const scale = f32(first / f32(first - last));
  const alphasBar = alphasBarSqrt.map((x) => {
    const shifted = f32(f32(x - last) * scale);
    return shifted * shifted;
  });
  return alphasBar.map((alphaBar, i) => (i === 0 ? f32(1 - alphaBar) : f32(1 - f32(alphaBar / alphasBar[i - 1]!))));
}

/** The training betas of a config, float32 as diffusers holds them. */
export function ddimBetas(config: DDIMConfig): Float32Array {
  const n = config.num_train_timesteps;
  let betas: Float32Array;
  if (config.trained_betas !== null) betas = Float32Array.from(config.trained_betas);
  else if (config.beta_schedule === "linear") betas = torchLinspaceF32(config.beta_start, config.beta_end, n);
  else if (config.beta_schedule === "scaled_linear") {
    // "very specific to the latent diffusion model" (diffusers): linear in sqrt(beta), then squared.
    betas = torchLinspaceF32(Math.sqrt(config.beta_start), Math.sqrt(config.beta_end), n).map((x) => x * x);
  } else betas = cosineBetas(n);
  return config.rescale_betas_zero_snr ? rescaleZeroTerminalSnr(betas) : betas;
}

/** `DDIMScheduler.alphas_cumprod`: alpha-bar_t = prod_{s <= t} (1 - beta_s), float32 as PyTorch computes it. */
export function ddimAlphasCumprod(config: DDIMConfig): Float32Array {
  return torchCumprodF32(ddimBetas(config).map((beta) => f32(1 - beta)));
}

// ---------------------------------------------------------------------------------------------------------------
// Timesteps.

/** NumPy's `round`: halves go to the even neighbour. */
function roundHalfToEven(x: number): number {
  const floor = Math.floor(x);
  const fraction = x - floor;
  if (fraction !== 0.5) return Math.round(x);
  return floor % 2 === 0 ? floor : floor + 1;
}

/**
 * `DDIMScheduler.set_timesteps(numInferenceSteps).timesteps`, in the order the denoising loop visits them (descending):
 * - "leading": k · (T // n) + steps_offset for k = n-1, ..., 0 (SD: 981, 961, ..., 1);
 * - "trailing": round(np.arange(T, 0, -T/n)) - 1 (999, 979, ..., 19 for n = 50);
 * - "linspace": round(np.linspace(0, T-1, n)) reversed.
 * NumPy's float64 arithmetic and round-half-to-even are reproduced.
 */
export function ddimTimesteps(config: DDIMConfig, numInferenceSteps: number): number[] {
  const trainSteps = config.num_train_timesteps;
  const n = numInferenceSteps;
  if (!Number.isInteger(n) || n < 1 || n > trainSteps) {
    throw new Error(
      `DDIM: num_inference_steps is ${n}; expected an integer in [1, ${trainSteps}] (num_train_timesteps)`,
    );
  }
  let timesteps: number[];
  if (config.timestep_spacing === "leading") {
    const stepRatio = Math.floor(trainSteps / n);
    timesteps = Array.from({ length: n }, (_, k) => (n - 1 - k) * stepRatio + config.steps_offset);
  } else if (config.timestep_spacing === "trailing") {
    // np.arange(T, 0, -T/n): length ceil(-T / (-T/n)); element i is start + i·delta with delta re-derived from the
    // first two elements (numpy's DOUBLE_fill).
    const step = -trainSteps / n;
    const length = Math.ceil(-trainSteps / step);
    const delta = trainSteps + step - trainSteps;
    timesteps = Array.from({ length }, (_, i) => {
      const value = i === 0 ? trainSteps : i === 1 ? trainSteps + step : trainSteps + i * delta;
      return roundHalfToEven(value) - 1;
    });
  } else {
    // np.linspace(0, T-1, n): element i is i·((T-1)/(n-1)), the last one exactly T-1 (just 0 when n = 1).
    const step = n > 1 ? (trainSteps - 1) / (n - 1) : 0;
    timesteps = Array.from({ length: n }, (_, i) =>
      i === n - 1 && n > 1 ? trainSteps - 1 : roundHalfToEven(i * step),
    );
    timesteps.reverse();
  }
  const outOfRange = timesteps.find((t) => t < 0 || t >= trainSteps);
  if (timesteps.length !== n || outOfRange !== undefined) {
    throw new Error(
      `DDIM: ${config.timestep_spacing} spacing of ${n} steps with steps_offset ${config.steps_offset} gives ` +
        `timesteps [${timesteps.join(", ")}], outside [0, ${trainSteps - 1}] or not ${n} of them (diffusers would ` +
        `index alphas_cumprod out of range); ${
          config.timestep_spacing === "trailing"
            ? `NumPy's float arange overshoots for this count: use a step count that divides ${trainSteps}`
            : "use fewer steps or a smaller steps_offset"
        }`,
    );
  }
  return timesteps;
}

// ---------------------------------------------------------------------------------------------------------------
// Steps.

/** What diffusers' `DDIMScheduler` holds after `set_timesteps(numInferenceSteps)`. */
export interface DDIMSchedule {
  readonly config: DDIMConfig;
  readonly numInferenceSteps: number;
  /** Descending, as the denoising loop visits them; inversion visits them in reverse. */
  readonly timesteps: readonly number[];
  /** float32 values, indexed by training timestep. */
  readonly alphasCumprod: Float32Array;
  /** alpha-bar used past the last step (timestep < 0): 1, or alphas_cumprod[0] when set_alpha_to_one is false. */
  readonly finalAlphaCumprod: number;
  /**
   * num_train_timesteps // num_inference_steps: how far every step moves. diffusers 0.21 uses it whatever the
   * spacing, so with "trailing" or "linspace" a step may not land on the next listed timestep.
   */
  readonly stepRatio: number;
}

export function ddimSchedule(config: DDIMConfig, numInferenceSteps: number): DDIMSchedule {
  const checked = parseDDIMConfig(config, "DDIMConfig");
  const alphasCumprod = ddimAlphasCumprod(checked);
  return {
    config: checked,
    numInferenceSteps,
    timesteps: ddimTimesteps(checked, numInferenceSteps),
    alphasCumprod,
    finalAlphaCumprod: checked.set_alpha_to_one ? 1 : alphasCumprod[0]!,
    stepRatio: Math.floor(checked.num_train_timesteps / numInferenceSteps),
  };
}

export type DDIMDirection = "denoise" | "invert";

/**
 * The two noise levels of one step at `timestep`, as alpha-bar values:
 * - "denoise" (`DDIMScheduler.step`): from t to t - stepRatio (finalAlphaCumprod when that is < 0);
 * - "invert" (null-text `next_step`): from t - stepRatio (finalAlphaCumprod when < 0) up to t.
 * The model output is always the one evaluated at `timestep` and is read at the `from` level.
 */
function stepAlphas(
  schedule: DDIMSchedule,
  timestep: number,
  direction: DDIMDirection,
): { alphaFrom: number; alphaTo: number } {
  const trainSteps = schedule.config.num_train_timesteps;
  if (!Number.isInteger(timestep) || timestep < 0 || timestep >= trainSteps) {
    throw new Error(`DDIM ${direction} step: timestep ${timestep} is not an integer in [0, ${trainSteps - 1}]`);
  }
  const other = timestep - schedule.stepRatio;
  const alphaAtTimestep = schedule.alphasCumprod[timestep]!;
  const alphaAtOther = other >= 0 ? schedule.alphasCumprod[other]! : schedule.finalAlphaCumprod;
  return direction === "denoise"
    ? { alphaFrom: alphaAtTimestep, alphaTo: alphaAtOther }
    : { alphaFrom: alphaAtOther, alphaTo: alphaAtTimestep };
}

/**
 * DDIM eq. 12 with sigma = 0 from noise level alphaFrom to alphaTo, in diffusers' float32 operation order:
 * x_0 = (x - sqrt(1 - a_from) · eps) / sqrt(a_from), optionally clamped; x_to = sqrt(a_to) · x_0 + sqrt(1 - a_to) · eps.
 * For v_prediction and sample, x_0 and eps are first recovered from the model output at a_from.
 */
function ddimTransition(
  alphaFrom: number,
  alphaTo: number,
  modelOutput: Float32Array,
  sample: Float32Array,
  predictionType: PredictionType,
  clipRange: number | null,
  caller: string,
  /** The coefficient of eps in x_to: sqrt(1 - a_to) (eta = 0), or sqrt(1 - a_to - sigma²) (ddimStepEta). */
  direction?: number,
): { moved: Float32Array; predOriginalSample: Float32Array } {
  if (modelOutput.length !== sample.length) {
    throw new Error(`${caller}: modelOutput has ${modelOutput.length} values but sample has ${sample.length}`);
  }
  const sqrtAlphaFrom = f32(Math.sqrt(alphaFrom));
  const sqrtBetaFrom = f32(Math.sqrt(f32(1 - alphaFrom)));
  const sqrtAlphaTo = f32(Math.sqrt(alphaTo));
  const sqrtBetaTo = direction ?? f32(Math.sqrt(f32(1 - alphaTo)));
  const clip = clipRange === null ? null : f32(clipRange);
  const moved = new Float32Array(sample.length);
  const predOriginalSample = new Float32Array(sample.length);
  for (let i = 0; i < sample.length; i++) {
    const x = sample[i]!;
    const output = modelOutput[i]!;
    let original: number;
    let epsilon: number;
    if (predictionType === "epsilon") {
      original = f32(f32(x - f32(sqrtBetaFrom * output)) / sqrtAlphaFrom);
      epsilon = output;
    } else if (predictionType === "sample") {
      original = output;
      epsilon = f32(f32(x - f32(sqrtAlphaFrom * output)) / sqrtBetaFrom);
    } else {
      original = f32(f32(sqrtAlphaFrom * x) - f32(sqrtBetaFrom * output));
      epsilon = f32(f32(sqrtAlphaFrom * output) + f32(sqrtBetaFrom * x));
    }
    if (clip !== null) original = Math.min(Math.max(original, -clip), clip);
    predOriginalSample[i] = original;
    moved[i] = f32(f32(sqrtAlphaTo * original) + f32(sqrtBetaTo * epsilon));
  }
  return { moved, predOriginalSample };
}

export interface DDIMStepOutput {
  /** x_{t - stepRatio}. */
  readonly prevSample: Float32Array;
  /** The x_0 the step went through (clamped when clip_sample is set). */
  readonly predOriginalSample: Float32Array;
}

/**
 * One denoising step with eta = 0, `DDIMScheduler.step(model_output, timestep, sample, eta=0)` of diffusers 0.21:
 * DDIM eq. 12 from x_t to x_{t - stepRatio}. clip_sample clamps the predicted x_0.
 */
export function ddimStep(
  schedule: DDIMSchedule,
  modelOutput: Float32Array,
  timestep: number,
  sample: Float32Array,
): DDIMStepOutput {
  const { alphaFrom, alphaTo } = stepAlphas(schedule, timestep, "denoise");
  const { config } = schedule;
  const clipRange = config.clip_sample ? config.clip_sample_range : null;
  const result = ddimTransition(alphaFrom, alphaTo, modelOutput, sample, config.prediction_type, clipRange, "ddimStep");
  return { prevSample: result.moved, predOriginalSample: result.predOriginalSample };
}

/**
 * The variance of the DDIM step at `timestep` (`DDIMScheduler._get_variance`, float32 as diffusers computes it):
 * sigma_t(1)² = (1 - a_prev) / (1 - a_t) · (1 - a_t / a_prev), DDIM eq. 16 with eta = 1, which for adjacent
 * training steps is the DDPM posterior variance beta-tilde_t (Ho et al. 2020, eq. 7).
 */
export function ddimVariance(schedule: DDIMSchedule, timestep: number): number {
  const { alphaFrom: alphaT, alphaTo: alphaPrev } = stepAlphas(schedule, timestep, "denoise");
  const betaT = f32(1 - alphaT);
  const betaPrev = f32(1 - alphaPrev);
  return f32(f32(betaPrev / betaT) * f32(1 - f32(alphaT / alphaPrev)));
}

export interface DDIMEtaStepOutput extends DDIMStepOutput {
  /** sigma_t(eta) = eta · sqrt(variance) (diffusers' std_dev_t). */
  readonly stdDev: number;
  /** The step's mean: sqrt(a_prev) · x_0 + sqrt(1 - a_prev - sigma²) · eps, before sigma · noise is added. */
  readonly mean: Float32Array;
}

/**
 * One denoising step with eta ≥ 0, `DDIMScheduler.step(model_output, timestep, sample, eta, variance_noise=noise)`
 * of diffusers 0.21 (use_clipped_model_output false): DDIM eq. 12 with sigma_t(eta) of eq. 16,
 *
 *   x_prev = sqrt(a_prev) · x_0 + sqrt(1 - a_prev - sigma_t²) · eps + sigma_t · noise,
 *   sigma_t = eta · sqrt((1 - a_prev) / (1 - a_t) · (1 - a_t / a_prev)),
 *
 * in diffusers' float32 operation order (eta = 0 gives `ddimStep` bit for bit; eta = 1 is the DDPM-like sampler
 * that edit-friendly DDPM inversion inverts). The noise is the caller's (seeded, or a stored noise map): unlike
 * diffusers, which draws it when none is given, a step with sigma_t > 0 and no noise returns the mean as
 * prevSample, and `mean` is returned either way.
 */
export function ddimStepEta(
  schedule: DDIMSchedule,
  modelOutput: Float32Array,
  timestep: number,
  sample: Float32Array,
  eta: number,
  noise?: Float32Array,
): DDIMEtaStepOutput {
  if (!(Number.isFinite(eta) && eta >= 0)) throw new Error(`ddimStepEta: eta ${eta} is not a number ≥ 0`);
  if (noise && noise.length !== sample.length)
    throw new Error(`ddimStepEta: noise has ${noise.length} values but sample has ${sample.length}`);
  const { alphaFrom, alphaTo } = stepAlphas(schedule, timestep, "denoise");
  const { config } = schedule;
  const stdDev = f32(f32(eta) * f32(Math.sqrt(ddimVariance(schedule, timestep))));
  const direction = f32(Math.sqrt(f32(f32(1 - alphaTo) - f32(stdDev * stdDev))));
  const clipRange = config.clip_sample ? config.clip_sample_range : null;
  const { moved: mean, predOriginalSample } = ddimTransition(
    alphaFrom,
    alphaTo,
    modelOutput,
    sample,
    config.prediction_type,
    clipRange,
    "ddimStepEta",
    direction,
  );
  let prevSample = mean;
  if (noise && eta > 0) {
    prevSample = new Float32Array(mean.length);
    for (let i = 0; i < mean.length; i++) prevSample[i] = f32(mean[i]! + f32(stdDev * noise[i]!));
  }
  return { prevSample, predOriginalSample, stdDev, mean };
}

export interface DDIMInvertOutput {
  /** The latent at `timestep`. */
  readonly nextSample: Float32Array;
  readonly predOriginalSample: Float32Array;
}

/**
 * One DDIM inversion step: eq. 12 run from timestep - stepRatio (finalAlphaCumprod when that is < 0) up to
 * `timestep`, with the model output evaluated at `timestep` on the less noisy `sample` — the official null-text
 * code's `NullInversion.next_step` (Mokady et al. 2023, google/prompt-to-prompt null_text_w_ptp.ipynb).
 * Like that code it never clamps x_0. The notebook handles epsilon only; v_prediction and sample are read at the
 * `from` level, as `ddimStep` reads them at its own starting level.
 */
export function ddimInvertStep(
  schedule: DDIMSchedule,
  modelOutput: Float32Array,
  timestep: number,
  sample: Float32Array,
): DDIMInvertOutput {
  const { alphaFrom, alphaTo } = stepAlphas(schedule, timestep, "invert");
  const result = ddimTransition(
    alphaFrom,
    alphaTo,
    modelOutput,
    sample,
    schedule.config.prediction_type,
    null,
    "ddimInvertStep",
  );
  return { nextSample: result.moved, predOriginalSample: result.predOriginalSample };
}

/** The eta = 0 step as out = sample · x + modelOutput · m. */
export interface DDIMStepCoefficients {
  readonly sample: number;
  readonly modelOutput: number;
}

/**
 * Coefficients (float64) of the step at `timestep`: `ddimStep`'s prevSample ("denoise") or `ddimInvertStep`'s
 * nextSample ("invert") equals coefficients.sample · sample + coefficients.modelOutput · modelOutput, up to
 * float32 rounding. With a = alpha-bar at the `from` level and a' at the `to` level:
 * - epsilon:      sample sqrt(a'/a),                        model sqrt(1-a') - sqrt(a'(1-a)/a)
 * - v_prediction: sample sqrt(a a') + sqrt((1-a)(1-a')),    model sqrt(a(1-a')) - sqrt(a'(1-a))
 * - sample:       sample sqrt((1-a')/(1-a)),                model sqrt(a') - sqrt(a(1-a')/(1-a))
 * A denoising step with clip_sample is not linear, so that case throws.
 */
export function ddimStepCoefficients(
  schedule: DDIMSchedule,
  timestep: number,
  direction: DDIMDirection = "denoise",
): DDIMStepCoefficients {
  if (direction === "denoise" && schedule.config.clip_sample) {
    throw new Error(
      "ddimStepCoefficients: clip_sample is true, so the denoising step clamps x_0 and is not linear in " +
        "(sample, modelOutput); use a config with clip_sample false (as Stable Diffusion's)",
    );
  }
  const { alphaFrom: a, alphaTo: aTo } = stepAlphas(schedule, timestep, direction);
  const sqrtA = Math.sqrt(a);
  const sqrtB = Math.sqrt(1 - a);
  const sqrtATo = Math.sqrt(aTo);
  const sqrtBTo = Math.sqrt(1 - aTo);
  switch (schedule.config.prediction_type) {
    case "epsilon":
      return { sample: sqrtATo / sqrtA, modelOutput: sqrtBTo - (sqrtATo * sqrtB) / sqrtA };
    case "v_prediction":
      return { sample: sqrtATo * sqrtA + sqrtBTo * sqrtB, modelOutput: sqrtBTo * sqrtA - sqrtATo * sqrtB };
    case "sample":
      return { sample: sqrtBTo / sqrtB, modelOutput: sqrtATo - (sqrtBTo * sqrtA) / sqrtB };
  }
}
