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
import { guidedNoiseGraph } from "../schedulers/guidance.js";
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

export class Denoiser {
  private constructor(
    private readonly session: Session,
    readonly prompts: number,
    /** Unconditional rows of the batch: N, or N − 1 with the source unguided; the batch is this + N. */
    readonly unconditional: number,
    readonly latentShape: [number, number, number],
    readonly contextShape: [number, number],
    readonly flops: number,
    /** The attention controller compiled into the graph, if any. */
    readonly controller: PromptToPromptController | undefined,
    private readonly outputNames: readonly string[],
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
    return new Denoiser(session, N, U, [C, h, w], [L, D], compiled.flops, controller, extra);
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
    const scalar = (v: number): HostTensor => ({ data: Float32Array.of(v), shape: [], dtype: "float32" });
    const out = await this.session.run({
      latents,
      timestep: new Float32Array(this.batch).fill(timestep),
      context,
      guidance: scalar(guidance),
      ...controlFeeds,
    });
    const outputs: Record<string, Float32Array> = {};
    for (const name of this.outputNames) outputs[name] = float32Output(out, name);
    return { eps: float32Output(out, "eps"), outputs };
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}
