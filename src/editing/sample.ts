/**
 * The sampling loop of reconstruction, generation and Prompt-to-Prompt editing: DDIM (eta = 0)
 * from z_T with classifier-free guidance, a null embedding per step (null-text inversion's ∅_t, or
 * the empty prompt's), and optional attention control with local blending — as the official
 * null-text notebook's `text2image_ldm_stable` with `uncond_embeddings` runs it, except that the
 * edited prompts may be given null embeddings of their own (the pipeline's EDIT_NULL_STEPS). An
 * inversion method may replace the DDIM step with its own (MethodSampler: ddpm's η = 1 step with
 * stored noise, EDICT's coupled pair), and may start later or correct the latents after each step.
 */
import { type DDIMSchedule, ddimStep } from "../schedulers/ddim.js";
import type { Denoiser } from "./denoiser.js";
import type { AttentionEdit } from "./prompt_to_prompt/tensors.js";

export interface SampleOptions {
  denoiser: Denoiser;
  schedule: DDIMSchedule;
  /** z_T: one latent (shared by all prompts) or one per prompt. */
  zT: Float32Array;
  /** ∅_t per step, or one embedding for every step. */
  nullEmbeddings: readonly Float32Array[] | Float32Array;
  /** The edited prompts' ∅ per step where it differs from the source's (default nullEmbeddings). */
  editNullEmbeddings?: readonly Float32Array[] | Float32Array;
  /** One embedding per prompt (the source first when editing). */
  promptEmbeddings: readonly Float32Array[];
  /** Per-step embedding of the first prompt, replacing promptEmbeddings[0] (textual-inversion ablation). */
  sourceEmbeddings?: readonly Float32Array[];
  guidance: number;
  edit?: AttentionEdit;
  /**
   * The inversion method's correction after each DDIM step (see SamplerConditioning.afterStep):
   * receives the step index and the latents [N, C, h, w], returns the latents to go on with.
   */
  afterStep?: (step: number, latents: Float32Array) => Float32Array;
  /** Step index sampling starts at, z_T then being the latent at timesteps[startStep] (SDEdit; default 0). */
  startStep?: number;
  /** The inversion method's own step in place of DDIM η = 0 (see MethodSampler). */
  sampler?: MethodSampler;
  /**
   * With a pinned source (a denoiser leaving out the source's ∅ row, afterStep setting the source's
   * latent): the denoiser of the N − 1 edited prompts alone, without attention control, created on
   * first use. Steps where nothing reads the source's row (outside the controls' windows, without
   * local blending or onAttentionMaps, see PromptToPromptRun.readsSource) evaluate only the edits,
   * 2(N − 1) latents instead of 2N − 1, the source's latent being left to afterStep.
   */
  editsAlone?: () => Promise<Denoiser>;
  /** Adds the latents each denoiser call evaluates (its batch: 2N, 2N − 1, or 2(N − 1) alone) to unetEvals. */
  counters?: { unetEvals: number };
  onStep?: (step: number, total: number) => void;
  /** Receives each edit's local-blend mask (latent resolution) after every blended step. */
  onBlendMasks?: (masks: Uint8Array[]) => void;
  /**
   * Receives the controller's cross-attention maps [N, r·r, 77] of every step (conditional rows,
   * averaged over heads and the layers at the blend resolution r), e.g. to show them per token.
   */
  onAttentionMaps?: (step: number, maps: Float32Array) => void;
}

/**
 * A sampler step other than DDIM η = 0, given by an inversion method (SamplerConditioning.sampler):
 * e.g. the η = 1 step with stored noise maps (edit-friendly DDPM inversion) or EDICT's coupled
 * latents. The loop keeps the conditioning (nulls, prompts, guidance), the attention control, local
 * blending, afterStep and the callbacks; the method says how the latents move from step to step.
 */
export interface MethodSampler {
  /** Begins one sampling of N prompts (the source first) from z_T [N, C, h, w] on `schedule`. */
  begin(zT: Float32Array, prompts: number, schedule: DDIMSchedule): MethodSamplerRun;
}

export interface MethodSamplerRun {
  /**
   * Step i at timestep t: returns the latents [N, C, h, w] at the next level. eps(x) is the guided ε
   * of latents x [N, C, h, w] at t with this step's conditioning and attention control, one batched
   * UNet evaluation per call; the attention maps of the last call drive local blending.
   */
  step(
    i: number,
    t: number,
    latents: Float32Array,
    eps: (x: Float32Array) => Promise<Float32Array>,
  ): Promise<Float32Array>;
  /**
   * Local blending has just reset the edited prompts' latents outside these masks (one per edit, at
   * latent resolution) to the source's; a sampler with latents of its own (EDICT's second sequence)
   * does the same to them.
   */
  blended?(masks: readonly Uint8Array[]): void;
}

/** The editsAlone denoiser, checked against the sampling's: E prompts, each with its ∅ row, no control, same latents. */
async function editsAloneDenoiser(create: () => Promise<Denoiser>, E: number, full: Denoiser): Promise<Denoiser> {
  const d = await create();
  if (d.prompts !== E || d.unconditional !== E || d.controller || d.latentShape.join() !== full.latentShape.join())
    throw new Error(
      `sample: editsAlone must evaluate the ${E} edited prompts with their ∅ rows and no attention control at [${full.latentShape}], got ${d.prompts} prompts, ${d.unconditional} ∅ rows${d.controller ? ", attention control" : ""} at [${d.latentShape}]`,
    );
  return d;
}

/** Returns the N final latents z_0, stacked. */
export async function sample(o: SampleOptions): Promise<Float32Array> {
  const { denoiser, schedule } = o;
  const N = denoiser.prompts;
  const [c, h, w] = denoiser.latentShape;
  const size = c * h * w;
  if (o.promptEmbeddings.length !== N)
    throw new Error(`sample: ${o.promptEmbeddings.length} prompt embeddings for a ${N}-prompt denoiser`);
  if (o.zT.length !== size && o.zT.length !== N * size)
    throw new Error(`sample: z_T has ${o.zT.length} values, expected ${size} or ${N * size}`);
  const steps = schedule.timesteps.length;
  const first = o.startStep ?? 0;
  if (!Number.isInteger(first) || first < 0 || first >= steps)
    throw new Error(`sample: start step ${first} is not a step index in 0..${steps - 1}`);
  for (const nulls of [o.nullEmbeddings, o.editNullEmbeddings]) {
    if (Array.isArray(nulls) && nulls.length !== steps)
      throw new Error(`sample: ${nulls.length} null embeddings for ${steps} steps`);
  }
  let latents: Float32Array = new Float32Array(N * size);
  for (let n = 0; n < N; n++)
    latents.set(o.zT.length === size ? o.zT : o.zT.subarray(n * size, (n + 1) * size), n * size);
  const embedding = (o.promptEmbeddings[0] as Float32Array).length;
  // [∅ of the last U prompts (all N, or the edits' when the denoiser leaves the source unguided), the N prompts]
  const U = denoiser.unconditional;
  const context = new Float32Array((U + N) * embedding);
  o.promptEmbeddings.forEach((e, n) => {
    context.set(e, (U + n) * embedding);
  });
  if (o.edit && !denoiser.controller)
    throw new Error("sample: an attention edit needs a denoiser created with attentionControl");
  const control = o.edit && denoiser.controller?.begin(o.edit, [c, h, w]);
  const atStep = (nulls: readonly Float32Array[] | Float32Array, i: number): Float32Array =>
    Array.isArray(nulls) ? (nulls[i] as Float32Array) : (nulls as Float32Array);
  const run = o.sampler?.begin(latents, N, schedule);
  const pinned = U < N && o.afterStep !== undefined && !run && !o.onAttentionMaps;
  let alone: Denoiser | undefined;
  const contextAlone = new Float32Array(pinned && o.editsAlone ? 2 * (N - 1) * embedding : 0);
  for (let i = first; i < steps; i++) {
    const t = schedule.timesteps[i] as number;
    const sourceNull = atStep(o.nullEmbeddings, i);
    const editNull = atStep(o.editNullEmbeddings ?? o.nullEmbeddings, i);
    let outputs: Record<string, Float32Array> = {};
    if (pinned && o.editsAlone && !control?.readsSource(i)) {
      alone ??= await editsAloneDenoiser(o.editsAlone, N - 1, denoiser);
      // [∅ ×E, the edited prompts]
      for (let e = 0; e < N - 1; e++) {
        contextAlone.set(editNull, e * embedding);
        contextAlone.set(o.promptEmbeddings[e + 1] as Float32Array, (N - 1 + e) * embedding);
      }
      const edits = latents.subarray(size);
      const { eps } = await alone.eps(edits, t, contextAlone, o.guidance);
      if (o.counters) o.counters.unetEvals += alone.batch;
      const next = new Float32Array(N * size);
      next.set(latents.subarray(0, size)); // the source's, which afterStep sets
      next.set(ddimStep(schedule, eps, t, edits).prevSample, size);
      latents = next;
    } else {
      for (let n = N - U; n < N; n++) context.set(n === 0 ? sourceNull : editNull, (n - N + U) * embedding);
      if (o.sourceEmbeddings) context.set(o.sourceEmbeddings[i] as Float32Array, U * embedding);
      const guidedEps = async (x: Float32Array): Promise<Float32Array> => {
        const result = await denoiser.eps(x, t, context, o.guidance, control?.feeds(i));
        if (o.counters) o.counters.unetEvals += denoiser.batch;
        outputs = result.outputs;
        return result.eps;
      };
      latents = run
        ? await run.step(i, t, latents, guidedEps)
        : ddimStep(schedule, await guidedEps(latents), t, latents).prevSample;
    }
    if (outputs.maps) o.onAttentionMaps?.(i, outputs.maps);
    if (o.afterStep) latents = o.afterStep(i, latents);
    if (control) {
      const blended = control.afterStep(latents, outputs, i);
      latents = blended.latents;
      if (blended.masks) {
        run?.blended?.(blended.masks);
        o.onBlendMasks?.(blended.masks);
      }
    }
    o.onStep?.(i + 1, steps);
  }
  return latents;
}
