/**
 * The compiled UNet for sampling a batch of N prompts with classifier-free guidance: one run
 * evaluates the 2N conditions [∅ ×N, prompts] and returns ε_∅ + w·(ε_c − ε_∅) for each prompt
 * (schedulers/guidance.ts). With attention control, a Prompt-to-Prompt controller
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
}

export class Denoiser {
  private constructor(
    private readonly session: Session,
    readonly prompts: number,
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
    const latents = G.input("latents", [N, C, h, w]);
    const timestep = G.input("timestep", [2 * N]);
    const context = G.input("context", [2 * N, L, D]);
    const guidance = G.input("guidance", []);
    const controller = o.attentionControl ? new PromptToPromptController(unet.config, N, [h, w], L) : undefined;
    const inputs = [latents, timestep, context, guidance, ...(controller?.inputs ?? [])];
    const eps = unet.forward(G.concat([latents, latents], 0), timestep, context, { attentionHook: controller?.hook });
    const [epsUncond, epsCond] = G.split(eps, [N, N], 0) as [Tensor, Tensor];
    const outputs: Record<string, Tensor> = {
      eps: guidedNoiseGraph(epsUncond, epsCond, guidance),
      ...controller?.outputs(),
    };
    const compiled = G.compile(outputs, { name: `denoiser_${N}`, inputs, ...unetCompileOptions(o) });
    // Without ORT's memory pattern (one planned block for every intermediate) unless asked for: at
    // batch 4 and 64×64 latents the planned block held 1.45 GB more at the peak (bench:edit).
    const session = await Session.create(compiled, { ...o, memoryPattern: o.memoryPattern ?? false });
    const extra = Object.keys(outputs).filter((k) => k !== "eps");
    return new Denoiser(session, N, [C, h, w], [L, D], compiled.flops, controller, extra);
  }

  /**
   * Guided ε for N latents at `timestep`. `context` is [2N, L, D]: the N null embeddings, then the
   * N prompt embeddings. `controlFeeds` are the controller's inputs for this step; `outputs` holds
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
      timestep: new Float32Array(2 * this.prompts).fill(timestep),
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
