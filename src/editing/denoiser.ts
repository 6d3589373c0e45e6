/**
 * The compiled UNet for sampling a batch of N prompts with classifier-free guidance (Ho & Salimans
 * 2022): one run evaluates the 2N conditions [∅ ×N, prompts] and returns ε_∅ + w·(ε_c − ε_∅) for
 * each prompt. With attention control, Prompt-to-Prompt's tensors (see prompt_to_prompt.ts) are
 * inputs of the same graph, applied through the UNet's attention hook on the conditional branch,
 * and the cross-attention maps needed for local blending are an output.
 */

import type { Tensor } from "../graph/index.js";
import * as G from "../graph/index.js";
import type { StableDiffusion } from "../models/loader.js";
import type { AttentionHook } from "../models/unet.js";
import {
  float32Output,
  type HostTensor,
  Session,
  type SessionOptions,
  unetCompileOptions,
} from "../runtime/session.js";
import type { AttentionEdit } from "./prompt_to_prompt.js";
import { MAX_TOKENS } from "./seq_aligner.js";

export interface DenoiserOptions extends SessionOptions {
  /** Compile the Prompt-to-Prompt inputs (N ≥ 2: the first prompt is the source). */
  attentionControl?: boolean;
}

export class Denoiser {
  private constructor(
    private readonly session: Session,
    readonly prompts: number,
    readonly latentShape: [number, number, number],
    readonly contextShape: [number, number],
    /** Resolution of the cross-attention maps returned for local blending (0: none). */
    readonly blendResolution: number,
    readonly flops: number,
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
    if (L !== MAX_TOKENS && o.attentionControl)
      throw new Error(`Prompt-to-Prompt needs ${MAX_TOKENS}-token prompts, the text encoder has ${L}`);
    const latents = G.input("latents", [N, C, h, w]);
    const timestep = G.input("timestep", [2 * N]);
    const context = G.input("context", [2 * N, L, D]);
    const guidance = G.input("guidance", []);
    const inputs = [latents, timestep, context, guidance];
    let hook: AttentionHook | undefined;
    const maps: Tensor[] = [];
    const blendResolution = o.attentionControl ? chooseBlendResolution(model, h) : 0;
    if (o.attentionControl) {
      if (N < 2) throw new Error("attention control needs the source prompt and at least one edit");
      const E = N - 1;
      const mapper = G.input("p2p_mapper", [E, 1, L, L]);
      const refine = G.input("p2p_refine_alphas", [E, 1, 1, L]);
      const equalizer = G.input("p2p_equalizer", [E, 1, 1, L]);
      const crossAlpha = G.input("p2p_cross_alpha", [E, 1, 1, L]);
      const selfReplace = G.input("p2p_self_replace", []);
      inputs.push(mapper, refine, equalizer, crossAlpha, selfReplace);
      hook = (probs, site) => {
        // probs [2N, heads, Nq, Nk]: rows N.. are the conditional branch, row N the source prompt.
        const uncond = G.slice(probs, [0], [N], [0]);
        const base = G.slice(probs, [N], [N + 1], [0]);
        const edited = G.slice(probs, [N + 1], [2 * N], [0]);
        const [rh] = site.resolution;
        if (site.kind === "cross") {
          if (site.place !== "mid" && rh === blendResolution)
            maps.push(G.reduceMean(G.slice(probs, [N], [2 * N], [0]), [1]));
          const mapped = G.matmul(base, mapper); // [E, heads, Nq, L]
          const refined = G.add(G.mul(mapped, refine), G.mul(edited, G.sub(1, refine)));
          const replaced = G.mul(refined, equalizer);
          const mixed = G.add(G.mul(replaced, crossAlpha), G.mul(edited, G.sub(1, crossAlpha)));
          return G.concat([uncond, base, mixed], 0);
        }
        // Self-attention is injected at resolutions up to half the latent's (32² of SD's 64² latents).
        if (rh > h / 2) return probs;
        const mixed = G.add(G.mul(G.expand(base, edited.shape), selfReplace), G.mul(edited, G.sub(1, selfReplace)));
        return G.concat([uncond, base, mixed], 0);
      };
    }
    const eps = unet.forward(G.concat([latents, latents], 0), timestep, context, { attentionHook: hook });
    const [epsUncond, epsCond] = G.split(eps, [N, N], 0) as [Tensor, Tensor];
    const guided = G.add(epsUncond, G.mul(guidance, G.sub(epsCond, epsUncond)));
    const outputs: Record<string, Tensor> = { eps: guided };
    if (maps.length)
      outputs.maps = G.div(
        maps.reduce((a, b) => G.add(a, b)),
        maps.length,
      ); // [N, r·r, L]
    const compiled = G.compile(outputs, { name: `denoiser_${N}`, inputs, ...unetCompileOptions(o) });
    const session = await Session.create(compiled, o);
    return new Denoiser(session, N, [C, h, w], [L, D], maps.length ? blendResolution : 0, compiled.flops);
  }

  /**
   * Guided ε for N latents at `timestep`. `context` is [2N, L, D]: the N null embeddings, then the
   * N prompt embeddings. `control` gives the attention edit at step `step`.
   */
  async eps(
    latents: Float32Array,
    timestep: number,
    context: Float32Array,
    guidance: number,
    control?: { edit: AttentionEdit; step: number },
  ): Promise<{ eps: Float32Array; maps?: Float32Array }> {
    const scalar = (v: number): HostTensor => ({ data: Float32Array.of(v), shape: [], dtype: "float32" });
    const feeds: Record<string, HostTensor | Float32Array> = {
      latents,
      timestep: new Float32Array(2 * this.prompts).fill(timestep),
      context,
      guidance: scalar(guidance),
    };
    if (control) {
      const { edit, step } = control;
      const E = edit.edits;
      const L = this.contextShape[0];
      feeds.p2p_mapper = edit.mapper;
      feeds.p2p_refine_alphas = edit.refineAlphas;
      feeds.p2p_equalizer = edit.equalizer;
      feeds.p2p_cross_alpha = edit.crossAlpha.subarray(step * E * L, (step + 1) * E * L);
      feeds.p2p_self_replace = scalar(step >= edit.selfReplace[0] && step < edit.selfReplace[1] ? 1 : 0);
    }
    const out = await this.session.run(feeds);
    return { eps: float32Output(out, "eps"), maps: out.maps ? float32Output(out, "maps") : undefined };
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}

/**
 * The resolution whose cross-attention maps drive local blending: a quarter of the latent (16² for
 * SD's 64² latents, as the official code's down_cross[2:4] + up_cross[:3]) when the UNet has
 * cross-attention there, else the next finer one that has.
 */
function chooseBlendResolution(model: StableDiffusion, latentH: number): number {
  const c = model.unet.config;
  const levels = c.down_block_types.map((t, i) => ({ res: latentH / 2 ** i, cross: t === "CrossAttnDownBlock2D" }));
  const candidates = levels.filter((l) => l.cross).map((l) => l.res);
  if (candidates.length === 0) throw new Error("local blend needs cross-attention layers in the UNet");
  const quarter = latentH / 4;
  const fine = candidates.filter((r) => r >= quarter).sort((a, b) => a - b);
  return fine[0] ?? Math.max(...candidates);
}
