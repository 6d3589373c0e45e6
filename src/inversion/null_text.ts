/**
 * Null-text optimisation (Mokady et al. 2023, "NULL-text Inversion for Editing Real Images using
 * Guided Diffusion Models", Algorithm 1), as the official `null_text_w_ptp.ipynb` runs it: starting
 * from z̄_T = z*_T, for each timestep t a fresh Adam (lr 1e-2·(1 − i/100)) optimises the null
 * embedding ∅_t for up to N iterations so that one guided DDIM step from z̄_t lands on the pivot
 * z*_{t−1} (MSE), stopping early when the loss falls below ε + 2e-5·i; ∅_t is carried over as the
 * next timestep's initial value, and z̄_{t−1} is the guided step with the final ∅_t.
 *
 * Also the paper's ablations (§4, Fig. 4): one global ∅ for all timesteps, and optimising the
 * prompt embedding instead (textual inversion with the pivot).
 */
import { Adam } from "../optim/adam.js";
import { type DDIMSchedule, ddimStep, ddimStepCoefficients } from "../schedulers/ddim.js";
import { guidedNoise } from "../schedulers/guidance.js";
import type { GuidedStep } from "./guided_step.js";
import { throwIfAborted } from "./method.js";

export type NullTextMode = "per-step" | "global" | "conditional";

export interface NullTextOptions {
  guidance?: number;
  /** N: Adam iterations per timestep (default 10). */
  innerSteps?: number;
  /** Base learning rate (default 1e-2), decayed as lr·(1 − i/100). */
  lr?: number;
  /** ε of the early stop (default 1e-5); the threshold at step i is ε + slope·i. */
  earlyStop?: number;
  earlyStopSlope?: number;
  /** "per-step" (the method), "global" (one ∅ for all steps) or "conditional" (optimise the prompt embedding). */
  mode?: NullTextMode;
}

export interface NullTextProgress {
  step: number;
  total: number;
  iterations: number;
  loss: number;
}

/** What has been computed after `completed` timesteps: enough to resume. */
export interface NullTextState {
  completed: number;
  /** The optimised embedding of each finished timestep (one entry in "global" mode). */
  embeddings: Float32Array[];
  /** z̄ after the finished timesteps. */
  latent: Float32Array;
  /** The embedding being optimised, carried to the next timestep. */
  current: Float32Array;
  unetEvals: number;
  vjps: number;
  /** Per finished timestep (per pass for the global ablation): what the optimisation did. */
  trace: OptimisationTrace[];
}

/** One timestep of the optimisation (one pass over the trajectory for the global ablation). */
export interface OptimisationTrace {
  /** Adam iterations run. */
  iterations: number;
  /** The loss of the first and of the last iteration, before its update (global: of the pass's first and last timestep). */
  firstLoss: number;
  lastLoss: number;
  /** Whether the loss fell below the early-stop threshold before the N iterations were spent. */
  earlyStop: boolean;
}

export interface NullTextHooks {
  onProgress?: (p: NullTextProgress) => void;
  /** Called after each timestep with the state to save (for resuming an interrupted run). */
  onTimestep?: (s: NullTextState) => void | Promise<void>;
  resume?: NullTextState;
  /** Checked before every UNet pass: an aborted run stops with the signal's reason. */
  signal?: AbortSignal;
}

/**
 * Runs the optimisation along the pivot trajectory `pivots` = [z*_0, ..., z*_T].
 * Returns the per-step embeddings (∅_t, or C_t in "conditional" mode; one for all in "global").
 */
export async function nullTextOptimization(
  step: GuidedStep,
  schedule: DDIMSchedule,
  pivots: readonly Float32Array[],
  cond: Float32Array,
  uncondInit: Float32Array,
  o: NullTextOptions = {},
  hooks: NullTextHooks = {},
): Promise<NullTextState> {
  const w = o.guidance ?? 7.5;
  const N = o.innerSteps ?? 10;
  const baseLr = o.lr ?? 1e-2;
  const eps = o.earlyStop ?? 1e-5;
  const slope = o.earlyStopSlope ?? 2e-5;
  const mode = o.mode ?? "per-step";
  const T = schedule.timesteps.length;
  if (pivots.length !== T + 1) throw new Error(`null-text: ${pivots.length} pivots for ${T} steps (expected ${T + 1})`);
  if (mode === "global") return globalNullText(step, schedule, pivots, cond, uncondInit, { w, N, baseLr }, hooks);

  const optimiseCond = mode === "conditional";
  const s: NullTextState = hooks.resume ?? {
    completed: 0,
    embeddings: [],
    latent: pivots[T] as Float32Array,
    current: Float32Array.from(optimiseCond ? cond : uncondInit),
    unetEvals: 0,
    vjps: 0,
    trace: [],
  };
  for (let i = s.completed; i < T; i++) {
    const t = schedule.timesteps[i] as number;
    const target = pivots[T - i - 1] as Float32Array;
    const coef = ddimStepCoefficients(schedule, t, "denoise");
    // ε of the embedding held fixed, computed once per timestep.
    const fixed = await step.eps(s.latent, t, optimiseCond ? uncondInit : cond);
    s.unetEvals++;
    const variable = Float32Array.from(s.current);
    const adam = new Adam([variable], { lr: baseLr * (1 - i / 100) });
    let iterations = 0;
    let loss = Number.NaN;
    let firstLoss = Number.NaN;
    let earlyStop = false;
    for (let j = 0; j < N; j++) {
      throwIfAborted(hooks.signal);
      const r = await step.lossAndGrad({
        latent: s.latent,
        timestep: t,
        context: variable,
        fixedEps: fixed,
        target,
        guidance: w,
        variableIsNull: !optimiseCond,
        sampleCoef: coef.sample,
        epsCoef: coef.modelOutput,
      });
      s.unetEvals++;
      s.vjps++;
      iterations++;
      loss = r.loss;
      if (j === 0) firstLoss = loss;
      if (!Number.isFinite(loss)) throw new Error(`null-text: the loss is ${loss} at step ${i} (t = ${t})`);
      adam.update([r.grad]);
      // As the official code: the step is taken, then the loss (before it) is compared.
      if (loss < eps + i * slope) {
        earlyStop = true;
        break;
      }
    }
    s.embeddings.push(Float32Array.from(variable));
    s.current = variable;
    s.trace.push({ iterations, firstLoss, lastLoss: loss, earlyStop });
    // z̄_{t−1}: the guided step with the final embedding.
    const epsVar = await step.eps(s.latent, t, variable);
    s.unetEvals++;
    const guided = optimiseCond ? guidedNoise(fixed, epsVar, w) : guidedNoise(epsVar, fixed, w);
    s.latent = ddimStep(schedule, guided, t, s.latent).prevSample;
    s.completed = i + 1;
    hooks.onProgress?.({ step: i + 1, total: T, iterations, loss });
    await hooks.onTimestep?.(s);
  }
  return s;
}

/**
 * The global-∅ ablation: one embedding shared by all timesteps, optimised with the same budget
 * (N passes over the trajectory, one Adam step per timestep and pass, z̄ regenerated with the
 * current ∅ in each pass).
 */
async function globalNullText(
  step: GuidedStep,
  schedule: DDIMSchedule,
  pivots: readonly Float32Array[],
  cond: Float32Array,
  uncondInit: Float32Array,
  p: { w: number; N: number; baseLr: number },
  hooks: NullTextHooks,
): Promise<NullTextState> {
  const T = schedule.timesteps.length;
  const variable = Float32Array.from(uncondInit);
  const adam = new Adam([variable], { lr: p.baseLr });
  const s: NullTextState = {
    completed: 0,
    embeddings: [],
    latent: pivots[T] as Float32Array,
    current: variable,
    unetEvals: 0,
    vjps: 0,
    trace: [],
  };
  for (let pass = 0; pass < p.N; pass++) {
    let z = pivots[T] as Float32Array;
    let total = 0;
    let first = Number.NaN;
    let last = Number.NaN;
    for (let i = 0; i < T; i++) {
      throwIfAborted(hooks.signal);
      const t = schedule.timesteps[i] as number;
      const coef = ddimStepCoefficients(schedule, t, "denoise");
      const fixed = await step.eps(z, t, cond);
      const r = await step.lossAndGrad({
        latent: z,
        timestep: t,
        context: variable,
        fixedEps: fixed,
        target: pivots[T - i - 1] as Float32Array,
        guidance: p.w,
        variableIsNull: true,
        sampleCoef: coef.sample,
        epsCoef: coef.modelOutput,
      });
      s.unetEvals += 2;
      s.vjps++;
      total += r.loss;
      if (i === 0) first = r.loss;
      last = r.loss;
      adam.lr = p.baseLr * (1 - i / 100);
      adam.update([r.grad]);
      z = r.prev; // the guided step with the ∅ before this update, so the pass follows one trajectory
    }
    s.trace.push({ iterations: T, firstLoss: first, lastLoss: last, earlyStop: false });
    hooks.onProgress?.({ step: pass + 1, total: p.N, iterations: T, loss: total / T });
  }
  s.embeddings = [Float32Array.from(variable)];
  s.completed = T;
  s.latent = new Float32Array(0);
  return s;
}
