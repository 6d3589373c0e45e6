/**
 * The null-text pipeline: invert a real image once (DDIM pivot + null-text optimisation, or a
 * baseline), then reconstruct it or edit it with Prompt-to-Prompt as often as one likes. Sessions
 * are compiled on first use per shape and reused.
 */
import { Denoiser } from "./editing/denoiser.js";
import { buildAttentionEdit, type EditPrompt, type PromptToPromptOptions } from "./editing/prompt_to_prompt/index.js";
import { sample } from "./editing/sample.js";
import * as G from "./graph/index.js";
import { fromTensor, type RgbImage, toTensor } from "./image/index.js";
import { ddimInversion } from "./inversion/ddim_inversion.js";
import type { Inversion } from "./inversion/file.js";
import { GuidedStep } from "./inversion/guided_step.js";
import type { InversionSettings, MethodState, SamplerConditioning, StepTrace } from "./inversion/method.js";
import { throwIfAborted } from "./inversion/method.js";
import { getMethod, resolveSettings } from "./inversion/registry.js";
import { type LoadOptions, loadStableDiffusion, type ModelSource, type StableDiffusion } from "./models/loader.js";
import { getPlatform } from "./platform/platform.js";
import { float32Output, Session, type SessionOptions } from "./runtime/session.js";
import { type DDIMSchedule, ddimSchedule } from "./schedulers/ddim.js";
import { gaussianArray } from "./util/rng.js";

export interface PipelineOptions extends LoadOptions, SessionOptions {
  /** Image side in pixels (default: the model's, 512 for SD 1.x); a multiple of the latent grid. */
  resolution?: number;
}

/** Progress of an inversion: encoding, the DDIM pivot, then the method's own work (e.g. null-text optimisation). */
export interface InvertProgress {
  phase: "encode" | "ddim" | "method";
  step: number;
  total: number;
  loss?: number;
  iterations?: number;
}

export interface InvertOptions {
  /** The inversion method's id (default "nti", null-text inversion; see inversion/registry.ts). */
  method?: string;
  /** DDIM steps (default 50) and the guidance scale (default 7.5). */
  steps?: number;
  guidance?: number;
  /** The method's own settings by name (null-text inversion: innerSteps, lr, earlyStop, earlyStopSlope). */
  [setting: string]: unknown;
  /** The DDIM trajectory z*_0..z*_T of this image and prompt, if already computed (see `ddimPivots`). */
  pivots?: Float32Array[];
  onProgress?: (p: InvertProgress) => void;
  /** State to save after each finished unit of work, and to resume from. */
  checkpoint?: {
    load?: () => InversionResume | null | Promise<InversionResume | null>;
    save?: (s: InversionResume) => void | Promise<void>;
  };
  /** Hears that saved state of an interrupted run is used. */
  onResume?: (saved: InversionResume) => void;
  /** Stops the inversion (after saving the state reached) with the signal's reason. */
  signal?: AbortSignal;
}

/** What an interrupted inversion needs to resume: its identity, the pivot and the method's state. */
export interface InversionResume {
  settings: InversionSettings;
  prompt: string;
  imageHash: string;
  model: string;
  pivots?: Float32Array[];
  state?: MethodState;
}

export interface PhaseStats {
  seconds: Record<string, number>;
  unetEvals: number;
  vjps: number;
  /** Whether saved state of an interrupted run was used. */
  resumed: boolean;
  /** Per step of an optimising method: inner iterations, first and last loss, early stop (empty for the others). */
  trace: StepTrace[];
}

/**
 * Fraction of the steps, from the first, in which the edited prompts sample with the inversion's ∅_t;
 * after it they use the empty prompt's ∅. The source prompt always uses ∅_t, so it still reconstructs
 * the image exactly. The paper edits with ∅_t throughout (1): on the built-in model the later ∅_t
 * held the source's shape under every injection schedule tried (BENCHMARKS.md, "Null embeddings of
 * the edited prompts"). The first 20% of the steps, before local blending starts, keep ∅_t.
 */
export const EDIT_NULL_STEPS = 0.2;

export type EditOptions = PromptToPromptOptions & {
  guidance?: number;
  /** See EDIT_NULL_STEPS (the default); 1 edits as the paper does. */
  nullSteps?: number;
  onStep?: (s: number, t: number) => void;
  /** Stops the sampling with the signal's reason (checked before every step). */
  signal?: AbortSignal;
  /** Receives each edit's local-blend mask (latent resolution) after every blended step. */
  onBlendMasks?: (masks: Uint8Array[]) => void;
  /** Receives the cross-attention maps [1 + E, r·r, 77] of every step (see SampleOptions.onAttentionMaps). */
  onAttentionMaps?: (step: number, maps: Float32Array) => void;
  /** Counts the UNet evaluations (latents) of the sampling (see SampleOptions.counters). */
  counters?: { unetEvals: number };
};

export class NullTextPipeline {
  private readonly sessions = new Map<string, Promise<unknown>>();
  private readonly embeddingCache = new Map<string, Float32Array>();

  private constructor(
    readonly model: StableDiffusion,
    private readonly options: PipelineOptions,
  ) {}

  /** Loads a model: a diffusers folder or single-file checkpoint by path, or from bytes or byte-range readers (ModelSource). */
  static async load(source: ModelSource, options: PipelineOptions = {}): Promise<NullTextPipeline> {
    // More threads than 4× the CPUs only cost memory (each has its buffers): refused before loading.
    const cpus = getPlatform().defaultThreads();
    const t = options.threads;
    if (t !== undefined && !(Number.isInteger(t) && t >= 1 && t <= 4 * cpus))
      throw new Error(`threads ${t}: expected an integer in 1..${4 * cpus} (4× the ${cpus} CPUs)`);
    const pipe = new NullTextPipeline(await loadStableDiffusion(source, options), options);
    const grid = pipe.model.vae.downscale * pipe.model.unet.sizeMultiple;
    const r = pipe.resolution;
    if (!Number.isInteger(r) || r <= 0 || r % grid) {
      throw new Error(`resolution ${r} must be a positive multiple of ${grid} for this model`);
    }
    return pipe;
  }

  /** Image side in pixels the model works at (UNet sample size × VAE downscale; 512 for SD 1.x). */
  get resolution(): number {
    if (this.options.resolution) return this.options.resolution;
    const sampleSize = this.model.unet.config.sample_size ?? 64;
    return sampleSize * this.model.vae.downscale;
  }

  get latentShape(): [number, number, number] {
    const s = this.resolution / this.model.vae.downscale;
    return [this.model.unet.config.in_channels, s, s];
  }

  private get embeddingShape(): [number, number] {
    return [this.model.textEncoder.config.max_position_embeddings, this.model.unet.crossAttentionDim];
  }

  /** The session (or compiled step) of `key`, made once; a failed creation is forgotten, so a later call tries again. */
  private cached<T>(key: string, make: () => Promise<T>): Promise<T> {
    let s = this.sessions.get(key) as Promise<T> | undefined;
    if (!s) {
      s = make();
      this.sessions.set(key, s);
      s.catch(() => this.sessions.delete(key));
    }
    return s;
  }

  /** Token ids of a prompt; an error when it does not fit the text encoder (it is never silently cut). */
  tokenize(prompt: string): number[] {
    const enc = this.model.tokenizer.encode(prompt, {
      maxLength: this.model.textEncoder.config.max_position_embeddings,
    });
    if (enc.truncated) {
      throw new Error(
        `prompt has ${enc.untruncatedLength - 2} tokens; the text encoder takes at most ${this.model.textEncoder.config.max_position_embeddings - 2}: "${prompt.slice(0, 60)}${prompt.length > 60 ? "…" : ""}"`,
      );
    }
    return enc.ids;
  }

  /** Text embeddings [L·D] of each prompt (cached). */
  async encodePrompts(prompts: readonly string[]): Promise<Float32Array[]> {
    const missing = prompts.filter((p) => !this.embeddingCache.has(p));
    const ids = missing.map((p) => this.tokenize(p));
    for (const [k, p] of missing.entries()) {
      const session = await this.cached("text_encoder", async () => {
        const input = G.input("input_ids", [1, this.embeddingShape[0]], "int64");
        return Session.create(
          G.compile({ h: this.model.textEncoder.forward(input) }, { name: "text_encoder" }),
          this.options,
        );
      });
      const out = await session.run({ input_ids: BigInt64Array.from((ids[k] as number[]).map(BigInt)) });
      this.embeddingCache.set(p, Float32Array.from(float32Output(out, "h")));
    }
    return prompts.map((p) => this.embeddingCache.get(p) as Float32Array);
  }

  private checkImage(img: RgbImage): void {
    const r = this.resolution;
    if (img.width !== r || img.height !== r) {
      throw new Error(
        `image is ${img.width}×${img.height}; this model works at ${r}×${r} (fit it first, e.g. fitToSquare(img, ${r}))`,
      );
    }
  }

  /** The image latent: VAE posterior mean × scaling factor (the null-text notebook's image2latent). */
  async encodeImage(img: RgbImage): Promise<Float32Array> {
    this.checkImage(img);
    const r = this.resolution;
    const session = await this.cached(`vae_encode_${r}`, async () => {
      const image = G.input("image", [1, 3, r, r]);
      const mean = G.mul(this.model.vae.encode(image).mean, this.model.vae.config.scaling_factor);
      return Session.create(G.compile({ latent: mean }, { name: "vae_encoder" }), this.options);
    });
    return float32Output(await session.run({ image: toTensor(img) }), "latent");
  }

  /** Latents [N, C, h, w] (scaled) → images. */
  async decodeLatents(latents: Float32Array): Promise<RgbImage[]> {
    const [c, h, w] = this.latentShape;
    const size = c * h * w;
    const session = await this.cached(`vae_decode_${h}`, async () => {
      const latent = G.input("latent", [1, c, h, w]);
      const image = this.model.vae.decode(G.div(latent, this.model.vae.config.scaling_factor));
      return Session.create(G.compile({ image }, { name: "vae_decoder" }), this.options);
    });
    const images: RgbImage[] = [];
    for (let n = 0; n < latents.length / size; n++) {
      const out = await session.run({ latent: latents.subarray(n * size, (n + 1) * size) });
      images.push(fromTensor(float32Output(out, "image"), this.resolution, this.resolution));
    }
    return images;
  }

  /** FLOPs of one UNet forward and of the added gradient, in the inversion graph. */
  async inversionCost(): Promise<{ forward: number; gradient: number }> {
    return (await this.guidedStep(true)).flops;
  }

  /** The inversion's UNet step; with `gradient` the loss and gradient too (the optimising methods'). */
  private guidedStep(gradient: boolean): Promise<GuidedStep> {
    const [, h, w] = this.latentShape;
    return this.cached(this.guidedStepKey(gradient), () =>
      GuidedStep.create(this.model, [h, w], this.options, { gradient }),
    );
  }

  private guidedStepKey(gradient: boolean): string {
    return `guided_step_${this.latentShape[1]}_${gradient ? "grad" : "fwd"}`;
  }

  private denoiser(prompts: number, control: boolean, sourceUnguided = false): Promise<Denoiser> {
    const [, h, w] = this.latentShape;
    return this.cached(`denoiser_${prompts}_${control}_${sourceUnguided ? "unguided_" : ""}${h}`, () =>
      Denoiser.create(this.model, prompts, [h, w], { ...this.options, attentionControl: control, sourceUnguided }),
    );
  }

  /**
   * The edited prompts' denoiser for the steps of a pinned-source edit that need no source row
   * (sample's editsAlone), a fifth of the steps at the default cross-replace window. When this
   * pipeline has compiled the inversion's batch-1 forward (an invert before the edit), it runs that
   * one per condition: nothing more to compile, and its prepacked weights. Otherwise a batched graph
   * of its own, which shares the host copy of big weights rather than prepacking its own.
   */
  private async editsAloneDenoiser(prompts: number): Promise<Denoiser> {
    const [c, h, w] = this.latentShape;
    const forward = this.sessions.get(this.guidedStepKey(false)) as Promise<GuidedStep> | undefined;
    const step = await forward?.catch(() => undefined);
    if (step) return Denoiser.perCondition(step, prompts, [c, h, w], this.embeddingShape, step.flops.forward);
    return this.cached(`denoiser_${prompts}_alone_${h}`, () =>
      Denoiser.create(this.model, prompts, [h, w], { ...this.options, occasional: true }),
    );
  }

  schedule(steps: number): DDIMSchedule {
    return ddimSchedule(this.model.scheduler, steps);
  }

  /**
   * Inverts an image (at model resolution) for a prompt that describes it, with one of the registered
   * methods (inversion/registry.ts; default "nti", null-text inversion, Mokady et al. 2023).
   */
  async invert(
    image: RgbImage,
    prompt: string,
    o: InvertOptions = {},
  ): Promise<{ inversion: Inversion; stats: PhaseStats }> {
    const { pivots: givenPivots, onProgress, checkpoint, onResume, signal, ...partial } = o;
    const settings = resolveSettings(partial);
    const method = getMethod(settings.method);
    this.checkImage(image);
    this.tokenize(prompt);
    const imageHash = await getPlatform().sha256(image.data);
    const stats: PhaseStats = { seconds: {}, unetEvals: 0, vjps: 0, resumed: false, trace: [] };
    const timed = async <T>(phase: string, f: () => Promise<T>): Promise<T> => {
      const t0 = performance.now();
      try {
        return await f();
      } finally {
        stats.seconds[phase] = (stats.seconds[phase] ?? 0) + (performance.now() - t0) / 1000;
      }
    };
    const [cond, uncond] = (await timed("encode", async () => this.encodePrompts([prompt, ""]))) as [
      Float32Array,
      Float32Array,
    ];
    const schedule = this.schedule(settings.steps);
    const step = await timed("compile", () => this.guidedStep(method.optimises === true));

    const identity = { settings, prompt, imageHash, model: this.model.fingerprint };
    const saved = (await checkpoint?.load?.()) ?? null;
    const resume =
      saved &&
      saved.imageHash === imageHash &&
      saved.prompt === prompt &&
      saved.model === this.model.fingerprint &&
      JSON.stringify(saved.settings) === JSON.stringify(settings)
        ? saved
        : null;
    stats.resumed = resume !== null;
    if (resume) onResume?.(resume);
    if (givenPivots && givenPivots.length !== settings.steps + 1)
      throw new Error(`invert: ${givenPivots.length} pivots given for ${settings.steps} steps`);
    let pivots = resume?.pivots ?? givenPivots;
    let pivotSeconds = 0;
    let z0: Promise<Float32Array> | undefined;
    const latent = (): Promise<Float32Array> => {
      z0 ??= this.encodeImage(image).then((z) => {
        onProgress?.({ phase: "encode", step: 1, total: 1 });
        return z;
      });
      return z0;
    };
    const counters = { unetEvals: 0, vjps: 0 };
    const t0 = performance.now();
    const tensors = await method.invert({
      settings,
      step,
      schedule,
      cond,
      uncond,
      embeddingShape: this.embeddingShape,
      latentShape: this.latentShape,
      pivots: async () => {
        if (pivots) return pivots;
        const t1 = performance.now();
        pivots = await ddimInversion(step, schedule, await latent(), cond, {
          signal,
          onStep: (s, total) => onProgress?.({ phase: "ddim", step: s, total }),
        });
        counters.unetEvals += settings.steps;
        await checkpoint?.save?.({ ...identity, pivots });
        pivotSeconds = (performance.now() - t1) / 1000;
        return pivots;
      },
      latent,
      resume: resume?.state,
      checkpoint: async (state) => {
        await checkpoint?.save?.({ ...identity, pivots, state });
      },
      progress: (p) => onProgress?.({ phase: "method", ...p }),
      counters,
      trace: stats.trace,
      signal,
    });
    // a method without the DDIM trajectory (SDEdit) starts from z_0; its conditioning says where sampling starts
    const zT = pivots?.[settings.steps] ?? (z0 && (await z0));
    if (!zT) throw new Error(`method ${method.id} computed neither the pivot nor the image latent`);
    stats.seconds.ddim_inversion = pivotSeconds;
    stats.seconds[method.id] = (performance.now() - t0) / 1000 - pivotSeconds;
    stats.unetEvals = counters.unetEvals;
    stats.vjps = counters.vjps;
    const [c, h, w] = this.latentShape;
    return {
      inversion: {
        prompt,
        settings,
        model: this.model.fingerprint,
        modelSource: this.model.source,
        imageHash,
        width: image.width,
        height: image.height,
        latentShape: [c, h, w],
        zT,
        tensors,
        embeddingShape: this.embeddingShape,
      },
      stats,
    };
  }

  /** The DDIM inversion trajectory [z*_0, ..., z*_T] (guidance 1), reusable across inversion methods. */
  async ddimPivots(image: RgbImage, prompt: string, steps: number): Promise<Float32Array[]> {
    const [cond] = await this.encodePrompts([prompt]);
    const z0 = await this.encodeImage(image);
    return ddimInversion(await this.guidedStep(false), this.schedule(steps), z0, cond as Float32Array);
  }

  /**
   * What the inversion's method gives the sampler, the empty prompt's embedding, and whether the
   * sampler may leave out the source's ∅ row: its latent pinned to the trajectory, or its ∅ its own
   * prompt (and no per-step source embeddings), so its guided ε is never needed.
   */
  private async conditioning(
    inv: Inversion,
  ): Promise<SamplerConditioning & { empty: Float32Array; sourceUnguided: boolean }> {
    const [cond, empty] = (await this.encodePrompts([inv.prompt, ""])) as [Float32Array, Float32Array];
    const c = getMethod(inv.settings.method).conditioning(inv.tensors, inv.settings, { cond, empty });
    const sourceUnguided = c.sourcePinned === true || (c.sourceNullIsPrompt === true && !c.source);
    return { ...c, empty, sourceUnguided };
  }

  private checkInversion(inv: Inversion): void {
    if (inv.model !== this.model.fingerprint) {
      throw new Error(
        `this inversion was made with another model (${inv.model}${inv.modelSource ? `, loaded from '${inv.modelSource}'` : ""}); the loaded model is ${this.model.fingerprint}`,
      );
    }
    const [c, h, w] = this.latentShape;
    if (inv.latentShape.join() !== [c, h, w].join())
      throw new Error(`inversion latent [${inv.latentShape}] ≠ model latent [${c}, ${h}, ${w}]`);
  }

  /** Reconstructs the inverted image (guidance as inverted unless given). */
  async reconstruct(inv: Inversion, o: SampleCallOptions = {}): Promise<RgbImage> {
    return (await this.decodeLatents(await this.reconstructLatent(inv, o)))[0] as RgbImage;
  }

  /** The reconstructed latent z_0 (scaled), before decoding. */
  async reconstructLatent(inv: Inversion, o: SampleCallOptions = {}): Promise<Float32Array> {
    this.checkInversion(inv);
    const { nulls, source, afterStep, sourcePinned, sourceUnguided, startStep, start, sampler } =
      await this.conditioning(inv);
    if (sourcePinned && afterStep && !sampler) {
      // the latent is set to the stored trajectory after every step, whatever the UNet would say
      const onStep = abortable(o);
      let z = start ?? inv.zT;
      const steps = inv.settings.steps;
      for (let i = startStep ?? 0; i < steps; i++) {
        z = afterStep(i, z);
        onStep(i + 1, steps);
      }
      return z;
    }
    const [cond] = await this.encodePrompts([inv.prompt]);
    const latents = await sample({
      denoiser: await this.denoiser(1, false, sourceUnguided),
      schedule: this.schedule(inv.settings.steps),
      zT: start ?? inv.zT,
      startStep,
      sampler,
      nullEmbeddings: nulls,
      promptEmbeddings: [cond as Float32Array],
      sourceEmbeddings: source,
      afterStep,
      guidance: o.guidance ?? inv.settings.guidance,
      onStep: abortable(o),
    });
    return latents;
  }

  /**
   * Prompt-to-Prompt edits of an inversion: returns the source reconstruction and one image per
   * edited prompt, sampled together so that the edits share the source's attention.
   */
  async edit(inv: Inversion, edits: readonly EditPrompt[], o: EditOptions = {}): Promise<RgbImage[]> {
    return this.decodeLatents(await this.editLatents(inv, edits, o));
  }

  /** The latents [1 + E] of an edit (source first), before decoding. */
  async editLatents(inv: Inversion, edits: readonly EditPrompt[], o: EditOptions = {}): Promise<Float32Array> {
    this.checkInversion(inv);
    for (const e of edits) this.tokenize(e.prompt);
    const nullSteps = o.nullSteps ?? EDIT_NULL_STEPS;
    if (!(nullSteps >= 0 && nullSteps <= 1)) throw new Error(`nullSteps ${nullSteps}: expected a fraction in [0, 1]`);
    const { nulls, source, empty, afterStep, sourcePinned, sourceUnguided, startStep, start, sampler } =
      await this.conditioning(inv);
    const prompts = [inv.prompt, ...edits.map((e) => e.prompt)];
    const embeddings = await this.encodePrompts(prompts);
    const steps = inv.settings.steps;
    // the edited prompts' ∅: the source's for the first nullSteps of the steps, the empty prompt's after
    const keep = Math.floor(nullSteps * steps);
    const perStep: Float32Array[] = Array.isArray(nulls) ? nulls : new Array(steps).fill(nulls);
    const editNulls = perStep.map((e, i) => (i < keep ? e : empty));
    const edit = buildAttentionEdit(inv.prompt, edits, steps, this.model.tokenizer, o);
    const latents = await sample({
      denoiser: await this.denoiser(prompts.length, true, sourceUnguided),
      schedule: this.schedule(steps),
      zT: start ?? inv.zT,
      startStep,
      sampler,
      nullEmbeddings: nulls,
      editNullEmbeddings: editNulls,
      promptEmbeddings: embeddings,
      sourceEmbeddings: source,
      afterStep,
      guidance: o.guidance ?? inv.settings.guidance,
      edit,
      editsAlone: sourcePinned ? () => this.editsAloneDenoiser(edits.length) : undefined,
      counters: o.counters,
      onStep: abortable(o),
      onBlendMasks: o.onBlendMasks,
      onAttentionMaps: o.onAttentionMaps,
    });
    return latents;
  }

  /** Text-to-image from seeded noise (z_T ~ N(0, I)), for checking a model. */
  async generate(
    prompt: string,
    o: {
      seed?: number;
      steps?: number;
      guidance?: number;
      negativePrompt?: string;
    } & SampleCallOptions = {},
  ): Promise<RgbImage> {
    const [cond, negative] = await this.encodePrompts([prompt, o.negativePrompt ?? ""]);
    const [c, h, w] = this.latentShape;
    const latents = await sample({
      denoiser: await this.denoiser(1, false),
      schedule: this.schedule(o.steps ?? 50),
      zT: gaussianArray(c * h * w, o.seed ?? 0),
      nullEmbeddings: negative as Float32Array,
      promptEmbeddings: [cond as Float32Array],
      guidance: o.guidance ?? 7.5,
      onStep: abortable(o),
    });
    return (await this.decodeLatents(latents))[0] as RgbImage;
  }

  /** Releases every session; safe to call more than once and after failed calls. */
  async release(): Promise<void> {
    const sessions = [...this.sessions.values()] as Promise<{ release(): Promise<void> }>[];
    this.sessions.clear();
    // A session whose creation failed has nothing to release; its error went to the call that needed it.
    await Promise.all(
      sessions.map((s) =>
        s.then(
          (session) => session.release(),
          () => undefined,
        ),
      ),
    );
  }
}

/** Options of the sampling calls (reconstruct, generate). */
export interface SampleCallOptions {
  guidance?: number;
  onStep?: (step: number, total: number) => void;
  /** Stops the sampling with the signal's reason (checked before every step). */
  signal?: AbortSignal;
}

/** The sampler's step callback, with the abort signal checked first (and before the first step). */
function abortable(o: { onStep?: (s: number, t: number) => void; signal?: AbortSignal }) {
  throwIfAborted(o.signal);
  return (s: number, total: number) => {
    o.onStep?.(s, total);
    if (s < total) throwIfAborted(o.signal);
  };
}
