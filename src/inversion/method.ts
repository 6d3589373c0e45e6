/**
 * What an inversion method is: one module that declares its id, its settings (defaults and
 * validation), how it inverts (resumably, with progress), what it stores in the inversion file, and
 * the conditioning it gives the sampler when reconstructing or editing. The pipeline, the jobs, the
 * CLI and the file format ask the method through this interface and never switch on its id; the
 * registry (registry.ts) lists the methods.
 *
 * A method is a plain object, as a k-diffusion sampler is a plain function and a diffusers scheduler
 * one file behind SchedulerMixin.
 */
import type { MethodSampler } from "../editing/sample.js";
import type { DDIMSchedule } from "../schedulers/ddim.js";
import type { GuidedStep } from "./guided_step.js";

/** Settings every method has: the DDIM steps and the guidance scale the inversion is sampled with. */
export interface InversionSettings {
  method: string;
  steps: number;
  guidance: number;
  /** Method-specific settings (numbers, strings or booleans), as declared in the method's defaults. */
  [setting: string]: number | string | boolean;
}

/** A tensor a method stores in the inversion file or in its resume state. */
export interface StoredTensor {
  shape: number[];
  data: Float32Array;
}

/** A method's resumable state: JSON-able values and tensors, saved after each finished unit of work. */
export interface MethodState {
  /** Units of work done (e.g. timesteps optimised), for messages. */
  completed: number;
  meta: Record<string, unknown>;
  tensors: Record<string, Float32Array>;
}

export interface MethodProgress {
  step: number;
  total: number;
  loss?: number;
  /** Inner iterations spent on this step (optimising methods). */
  iterations?: number;
}

/** One step (or pass) of an optimising method, as the inversion report lists it. */
export interface StepTrace {
  step: number;
  /** Inner iterations run. */
  iterations: number;
  first_loss: number;
  last_loss: number;
  /** Whether the early stop ended the step before its iteration budget. */
  early_stop: boolean;
}

/** What a method gets to invert an image with. */
export interface InversionRun<S extends InversionSettings = InversionSettings> {
  settings: S;
  /** The compiled UNet graph, with the guided step's loss and gradient when the method optimises (see guided_step.ts). */
  step: GuidedStep;
  schedule: DDIMSchedule;
  /** Embedding [L·D] of the source prompt, and of the empty prompt. */
  cond: Float32Array;
  uncond: Float32Array;
  /** [L, D] of the text embeddings. */
  embeddingShape: [number, number];
  /** [C, h, w] of the latents (z_0, the pivots, z_T). */
  latentShape: [number, number, number];
  /** The DDIM trajectory [z*_0 … z*_T] at guidance 1 (computed once, kept in the resume state). */
  pivots(): Promise<Float32Array[]>;
  /**
   * The image's latent z_0 (VAE posterior mean × scaling factor), encoded once; for methods that need
   * no DDIM trajectory (e.g. SDEdit). The inversion's z_T is then z_0, and the method's conditioning
   * says where sampling starts (SamplerConditioning.start).
   */
  latent(): Promise<Float32Array>;
  /** State saved by an interrupted run of the same inversion, if any. */
  resume?: MethodState;
  /** Saves the state reached so far (an interrupted run resumes from it). */
  checkpoint(state: MethodState): Promise<void>;
  progress(p: MethodProgress): void;
  /** Counts of UNet evaluations and vector–Jacobian products, for the report. */
  counters: { unetEvals: number; vjps: number };
  /** What an optimising method did at each step (or pass), for the report; others leave it empty. */
  trace: StepTrace[];
  signal?: AbortSignal;
}

/**
 * What an inversion gives the sampler: the null embedding of the source prompt at each step (or
 * one for every step), optionally a per-step embedding replacing the source prompt's, and the empty
 * prompt's embedding for the edited prompts' later steps.
 */
export interface SamplerConditioning {
  nulls: Float32Array[] | Float32Array;
  source?: Float32Array[];
  /**
   * A per-step latent correction or added noise, applied after each DDIM step to the latents
   * [N, C, h, w] (the source first): e.g. a method that pulls the source branch back onto its stored
   * trajectory, or one that adds stored noise maps. Returns the latents to go on with.
   */
  afterStep?: (step: number, latents: Float32Array) => Float32Array;
  /**
   * afterStep sets the source latent (the first) to a stored trajectory whatever the step gave it, so
   * the source's guided ε is never used: the sampler leaves out the source's ∅ row (2N − 1 latents per
   * UNet run instead of 2N), and a reconstruction needs no UNet evaluation at all.
   */
  sourcePinned?: boolean;
  /**
   * The source's ∅ is its own prompt embedding at every step (negative-prompt inversion), so its
   * guided ε is its conditional ε at any guidance: the sampler leaves out the source's ∅ row, an
   * edit evaluating 2N − 1 latents per step and a reconstruction one.
   */
  sourceNullIsPrompt?: boolean;
  /**
   * Sampling starts at this step index (default 0) from `start` (default the inversion's z_T), the
   * latent at timesteps[startStep]: e.g. SDEdit's noised image latent at its strength.
   */
  startStep?: number;
  start?: Float32Array;
  /**
   * The method's own sampler step in place of DDIM η = 0 (editing/sample.ts, MethodSampler), begun
   * afresh for every sampling: e.g. the η = 1 step with the stored noise maps (ddpm) or EDICT's
   * coupled latent pair (edict). Conditioning, guidance, Prompt-to-Prompt control and local blending
   * stay the loop's.
   */
  sampler?: MethodSampler;
}

export interface InversionMethodModule<S extends InversionSettings = InversionSettings> {
  /** The id used in files, on the command line (`--method ID`) and in the API. */
  readonly id: string;
  /** One line for help texts, citing the paper. */
  readonly summary: string;
  /** Every setting with its default (steps and guidance included); the keys are the settings' names. */
  readonly defaults: Omit<S, "method">;
  /** One line per method-specific setting, for help texts. */
  readonly help?: Readonly<Record<string, string>>;
  /**
   * Whether `invert` takes gradients through the UNet (run.step.lossAndGrad). Such a method gets a step
   * compiled for hundreds of gradient runs (with "auto" weights, prepacked in its session); the others
   * a forward-only step that shares the weights with the editing graphs and has no lossAndGrad.
   */
  readonly optimises?: boolean;
  /** Throws an error naming the offending value when a setting is invalid. */
  validate(settings: S): void;
  /** Inverts; returns the tensors the inversion file stores for this method (by name). */
  invert(run: InversionRun<S>): Promise<Record<string, StoredTensor>>;
  /**
   * Checks stored tensors read from a file (names, shapes) against the settings; throws with a
   * message naming what is wrong.
   */
  checkStored(tensors: Record<string, StoredTensor>, settings: S, embeddingShape: [number, number]): void;
  /** The sampler's conditioning for reconstructing or editing this inversion. */
  conditioning(
    tensors: Record<string, StoredTensor>,
    settings: S,
    embeddings: { cond: Float32Array; empty: Float32Array },
  ): SamplerConditioning;
}

/** Checks the settings common to every method. */
export function validateCommon(s: InversionSettings): void {
  if (!Number.isInteger(s.steps) || s.steps < 1 || s.steps > 1000)
    throw invalidSetting(s.method, "steps", s.steps, "an integer in 1..1000");
  if (!(typeof s.guidance === "number" && s.guidance >= 0 && s.guidance <= 100))
    throw invalidSetting(s.method, "guidance", s.guidance, "a number in [0, 100]");
}

export function invalidSetting(method: string, name: string, value: unknown, accepted: string): Error {
  const shown = typeof value === "number" ? String(value) : JSON.stringify(value); // NaN, not null
  return new Error(`invert (${method}): ${name} ${shown} is invalid (${accepted})`);
}

/** Splits a stored [n, L, D] tensor into n embeddings. */
export function unstack(t: StoredTensor): Float32Array[] {
  const [n, ...rest] = t.shape;
  const size = rest.reduce((a, b) => a * b, 1);
  return Array.from({ length: n ?? 0 }, (_, i) => t.data.subarray(i * size, (i + 1) * size));
}

/** Stacks n equal-sized embeddings into one [n, ...shape] tensor. */
export function stack(items: readonly Float32Array[], shape: readonly number[]): StoredTensor {
  const size = shape.reduce((a, b) => a * b, 1);
  const data = new Float32Array(items.length * size);
  items.forEach((e, i) => {
    if (e.length !== size) throw new Error(`stack: item ${i} has ${e.length} values, expected ${size}`);
    data.set(e, i * size);
  });
  return { shape: [items.length, ...shape], data };
}

/** Checks that a stored tensor exists with the expected shape. */
export function expectTensor(
  tensors: Record<string, StoredTensor>,
  name: string,
  shape: readonly number[],
  method: string,
): StoredTensor {
  const t = tensors[name];
  if (!t) throw new Error(`method ${method} stores '${name}', which is missing`);
  if (t.shape.join() !== shape.join())
    throw new Error(`method ${method}: '${name}' has shape [${t.shape}], expected [${shape}]`);
  return t;
}

/** Aborts with the signal's reason when it has fired. */
export function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw signal.reason instanceof Error ? signal.reason : new AbortError();
}

export class AbortError extends Error {
  constructor(message = "cancelled") {
    super(message);
    this.name = "AbortError";
  }
}
