/**
 * The compiled UNet for sampling a batch of N prompts with classifier-free guidance: one run
 * evaluates the 2N conditions [∅ ×N, prompts] and returns ε_∅ + w·(ε_c − ε_∅) for each prompt
 * (schedulers/guidance.ts). Where the source's (the first prompt's) guided ε is not needed, its ∅
 * row is left out (`sourceUnguided`): 2N − 1 conditions [∅ ×(N − 1) for the edits, prompts], the
 * source's ε returned unguided, its conditional row kept for the attention the edits take. That holds
 * when the sampler pins the source to a stored trajectory after every step whatever its ε (Direct
 * Inversion, inversion/methods/direct.ts), and when the source's ∅ is its own prompt (negative-prompt
 * inversion): ε_C + w·(ε_C − ε_C) = ε_C at any w, the ∅ row a copy of the conditional one.
 * With attention control, a Prompt-to-Prompt controller
 * (prompt_to_prompt/controller.ts) gives the UNet its attention hook, adds its inputs to the graph
 * and its outputs (the maps local blending reads) to the results; the denoiser only passes them on.
 * Without control, a denoiser may instead run a batch-1 UNet forward compiled for something else
 * once per condition (`Denoiser.perCondition`): no graph of its own to compile.
 */

import type { Tensor } from "../graph/index.js";
import * as G from "../graph/index.js";
import type { StableDiffusion } from "../models/loader.js";
import {
  float32Output,
  type HostTensor,
  Session,
  type SessionOptions,
  unetCompileOptions,
} from "../runtime/session.js";
import { guidedNoise, guidedNoiseGraph } from "../schedulers/guidance.js";
import { type Feeds, PromptToPromptController } from "./prompt_to_prompt/controller.js";

export interface DenoiserOptions extends SessionOptions {
  /** Compile the Prompt-to-Prompt controller (N ≥ 2: the first prompt is the source). */
  attentionControl?: boolean;
  /**
   * The source's ε is wanted unguided: its latent is pinned after each step (nothing reads its ε), or
   * its ∅ is its prompt (the guided ε is the conditional one). Leaves out the source's ∅ row.
   */
  sourceUnguided?: boolean;
  /**
   * Runs only some steps of a sampling (sample's editsAlone): its weights then follow the forward
   * graphs' rule (a shared host copy for big models) rather than the per-step graphs' (their own when
   * the machine has room). Default false.
   */
  occasional?: boolean;
}

/** A batch-1 UNet forward ε = unet(z_t, t, c), e.g. the inversion's (inversion/guided_step.ts). */
export interface SingleForward {
  eps(latent: Float32Array, timestep: number, context: Float32Array): Promise<Float32Array>;
}

type Evaluate = (
  latents: Float32Array,
  timestep: number,
  context: Float32Array,
  guidance: number,
  controlFeeds?: Feeds,
) => Promise<{ eps: Float32Array; outputs: Record<string, Float32Array> }>;

export class Denoiser {
  private constructor(
    private readonly evaluate: Evaluate,
    /** Releases what the denoiser owns (its session; nothing when it runs another's forward). */
    private readonly dispose: () => Promise<void>,
    readonly prompts: number,
    /** Unconditional rows of the batch: N, or N − 1 with the source unguided; the batch is this + N. */
    readonly unconditional: number,
    readonly latentShape: [number, number, number],
    readonly contextShape: [number, number],
    readonly flops: number,
    /** The attention controller compiled into the graph, if any. */
    readonly controller: PromptToPromptController | undefined,
  ) {}

  static async create(
    model: StableDiffusion,
    prompts: number,
    latentHW: [number, number],
    o: DenoiserOptions = {},
  ): Promise<Denoiser> {
    const { unet, textEncoder } = model;
    const N = prompts;
    const C = unet.config.in_channels;
    const [h, w] = latentHW;
    const L = textEncoder.config.max_position_embeddings;
    const D = unet.crossAttentionDim;
    const U = o.sourceUnguided ? N - 1 : N;
    const latents = G.input("latents", [N, C, h, w]);
    const timestep = G.input("timestep", [U + N]);
    const context = G.input("context", [U + N, L, D]);
    const guidance = G.input("guidance", []);
    const controller = o.attentionControl ? new PromptToPromptController(unet.config, N, [h, w], L, U) : undefined;
    const inputs = [latents, timestep, context, guidance, ...(controller?.inputs ?? [])];
    // [∅ rows of the last U prompts, the N prompts]
    const batch = U === N ? [latents, latents] : U > 0 ? [G.slice(latents, [1], [N], [0]), latents] : [latents];
    const eps = unet.forward(G.concat(batch, 0), timestep, context, { attentionHook: controller?.hook });
    let guided: Tensor;
    if (U === N) {
      const [epsUncond, epsCond] = G.split(eps, [N, N], 0) as [Tensor, Tensor];
      guided = guidedNoiseGraph(epsUncond, epsCond, guidance);
    } else if (U > 0) {
      const [epsUncond, epsSource, epsEdits] = G.split(eps, [U, 1, U], 0) as [Tensor, Tensor, Tensor];
      guided = G.concat([epsSource, guidedNoiseGraph(epsUncond, epsEdits, guidance)], 0);
    } else {
      guided = eps;
    }
    const outputs: Record<string, Tensor> = { eps: guided, ...controller?.outputs() };
    // sampling runs this graph at every step: with room for them, its own prepacked weights pay
    const compiled = G.compile(outputs, {
      name: `denoiser_${N}${U < N ? "_unguided" : ""}`,
      inputs,
      ...unetCompileOptions(o, o.occasional ? "forward" : "steps"),
    });
    // Without ORT's memory pattern (one planned block for every intermediate) unless asked for: at
    // batch 4 and 64×64 latents the planned block held 1.45 GB more at the peak (bench:edit).
    const session = await Session.create(compiled, { ...o, memoryPattern: o.memoryPattern ?? false });
    const extra = Object.keys(outputs).filter((k) => k !== "eps");
    const evaluate: Evaluate = async (latents, timestep, context, guidance, controlFeeds) => {
      const scalar = (v: number): HostTensor => ({ data: Float32Array.of(v), shape: [], dtype: "float32" });
      const out = await session.run({
        latents,
        timestep: new Float32Array(U + N).fill(timestep),
        context,
        guidance: scalar(guidance),
        ...controlFeeds,
      });
      const results: Record<string, Float32Array> = {};
      for (const name of extra) results[name] = float32Output(out, name);
      return { eps: float32Output(out, "eps"), outputs: results };
    };
    return new Denoiser(evaluate, () => session.release(), N, U, [C, h, w], [L, D], compiled.flops, controller);
  }

  /**
   * N prompts with their ∅ rows and no attention control, evaluated by `forward` one condition at a
   * time (2N runs, then ε_∅ + w·(ε_c − ε_∅) on the host). For the few steps of an edit that need no
   * control (sample's editsAlone) when a batch-1 forward is compiled already, the inversion's: a
   * batched graph of their own would cost its compilation, and with the host copy of the weights
   * run slower than the forward's prepacked ones. `flops` are one forward's.
   */
  static perCondition(
    forward: SingleForward,
    prompts: number,
    latentShape: [number, number, number],
    contextShape: [number, number],
    flops: number,
  ): Denoiser {
    const N = prompts;
    const size = latentShape.reduce((a, b) => a * b, 1);
    const embedding = contextShape[0] * contextShape[1];
    const evaluate: Evaluate = async (latents, timestep, context, guidance) => {
      const eps = new Float32Array(N * size);
      const row = (r: number) => context.subarray(r * embedding, (r + 1) * embedding);
      for (let n = 0; n < N; n++) {
        const x = latents.subarray(n * size, (n + 1) * size);
        const uncond = await forward.eps(x, timestep, row(n));
        const cond = await forward.eps(x, timestep, row(N + n));
        eps.set(guidedNoise(uncond, cond, guidance), n * size);
      }
      return { eps, outputs: {} };
    };
    return new Denoiser(evaluate, async () => {}, N, N, latentShape, contextShape, 2 * N * flops, undefined);
  }

  /** Latents one run evaluates: 2N, or 2N − 1 with the source unguided. */
  get batch(): number {
    return this.unconditional + this.prompts;
  }

  /**
   * Guided ε for N latents at `timestep`. `context` is [U + N, L, D]: the null embeddings of the last
   * U prompts (all N, or the edits' with the source unguided), then the N prompt embeddings. `controlFeeds` are the controller's inputs for this step; `outputs` holds
   * the controller's outputs.
   */
  async eps(
    latents: Float32Array,
    timestep: number,
    context: Float32Array,
    guidance: number,
    controlFeeds?: Feeds,
  ): Promise<{ eps: Float32Array; outputs: Record<string, Float32Array> }> {
    const [c, h, w] = this.latentShape;
    const [L, D] = this.contextShape;
    if (latents.length !== this.prompts * c * h * w)
      throw new Error(`denoiser: ${latents.length} latent values for ${this.prompts} latents of [${c}, ${h}, ${w}]`);
    if (context.length !== this.batch * L * D)
      throw new Error(`denoiser: ${context.length} context values for ${this.batch} embeddings of [${L}, ${D}]`);
    return this.evaluate(latents, timestep, context, guidance, controlFeeds);
  }

  async release(): Promise<void> {
    await this.dispose();
  }
}
