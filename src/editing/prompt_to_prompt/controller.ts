/**
 * Prompt-to-Prompt's attention controller (Hertz et al. 2022, "Prompt-to-Prompt Image Editing with
 * Cross Attention Control", arXiv 2208.01626, §3.2; the official notebooks' AttentionControlEdit):
 * the UNet attention hook of the denoiser graph, the graph inputs it reads (the tensors of
 * tensors.ts), how they are fed at each step, and local blending after each step.
 *
 * The batch is the U + N conditions [∅ ×U, source, edits ×E], U = N, or U = N − 1 when the source's
 * ∅ row is left out (its ε wanted unguided, see denoiser.ts); the hook rewrites only the
 * edited prompts' conditional rows. With M_t the source's probabilities and M*_t an edit's:
 *
 *   cross-attention, every layer:
 *     R_e     = ((M_t · M_e) ⊙ a_e + M*_t ⊙ (1 − a_e)) ⊙ q_e       (tensors.ts: swap, refine, re-weight)
 *     M*_t ← α_t,e ⊙ R_e + (1 − α_t,e) ⊙ M*_t                      (Edit(M_t, M*_t, t), α_t,e = [t < τ] per token)
 *   self-attention, layers of at most (latent/2)² queries:
 *     M*_t ← M_t  while the step is in the self-replace window      (the official self_replace_steps)
 *   (the conditional rows only; the unconditional rows ∅ ×U pass unchanged)
 *
 * Every other layer is left to the UNet's blocked attention: the hook does not touch it, so its
 * Nq×Nk probabilities are never materialised whole (4·8·4096² floats per 64² self-attention layer
 * of a two-prompt SD edit).
 */
import type { Tensor } from "../../graph/index.js";
import * as G from "../../graph/index.js";
import type { AttentionHook, AttentionSite, UNet2DConditionConfig } from "../../models/unet.js";
import type { HostTensor } from "../../runtime/session.js";
import { chooseBlendResolution, LocalBlender } from "./local_blend.js";
import { MAX_TOKENS } from "./seq_aligner.js";
import type { AttentionEdit } from "./tensors.js";

export type Feeds = Record<string, HostTensor | Float32Array>;

export class PromptToPromptController {
  /** Graph inputs the hook reads, in the order the denoiser compiles them. */
  readonly inputs: Tensor[];
  readonly hook: AttentionHook;
  /** Resolution r of the cross-attention maps returned for local blending. */
  readonly blendResolution: number;
  private readonly maps: Tensor[] = [];

  /**
   * Creates the graph inputs and the hook for N prompts (the source first) at latentHW, the batch
   * having `unconditional` rows (N, or N − 1 without the source's) before the N conditional ones;
   * call while the denoiser's graph is being built, before the UNet's forward.
   */
  constructor(
    unetConfig: UNet2DConditionConfig,
    readonly prompts: number,
    latentHW: readonly [number, number],
    tokens: number,
    readonly unconditional: number = prompts,
  ) {
    if (tokens !== MAX_TOKENS)
      throw new Error(`Prompt-to-Prompt needs ${MAX_TOKENS}-token prompts, the text encoder has ${tokens}`);
    const N = prompts;
    if (N < 2) throw new Error("attention control needs the source prompt and at least one edit");
    const E = N - 1;
    const U = unconditional;
    if (U !== N && U !== N - 1) throw new Error(`attention control: ${U} unconditional rows for ${N} prompts`);
    const L = tokens;
    const [h] = latentHW;
    this.blendResolution = chooseBlendResolution(unetConfig, h);
    const mapper = G.input("p2p_mapper", [E, 1, L, L]); // M_e
    const refine = G.input("p2p_refine_alphas", [E, 1, 1, L]); // a_e
    const equalizer = G.input("p2p_equalizer", [E, 1, 1, L]); // q_e
    const crossAlpha = G.input("p2p_cross_alpha", [E, 1, 1, L]); // α_t,e
    // The batch rows self-attention takes its probabilities from: the source's row U for every edit
    // inside the self-replace window, each row its own outside.
    const selfRows = G.input("p2p_self_rows", [U + N], "int32");
    this.inputs = [mapper, refine, equalizer, crossAlpha, selfRows];
    const maps = this.maps;
    const blendResolution = this.blendResolution;
    this.hook = {
      // Self-attention is injected at resolutions up to half the latent's (32² of SD's 64² latents).
      touches: (site: AttentionSite) => site.kind === "cross" || site.resolution[0] <= h / 2,
      apply: (probs: Tensor, site: AttentionSite) => {
        // probs [U + N, heads, Nq, Nk]: rows U.. are the conditional branch, row U the source prompt.
        // M*_t ← M_t inside the self-replace window: a selection of rows, exact and one copy.
        if (site.kind === "self") return G.gather(probs, selfRows, 0);
        const uncond = U > 0 ? [G.slice(probs, [0], [U], [0])] : [];
        const base = G.slice(probs, [U], [U + 1], [0]); // M_t
        const edited = G.slice(probs, [U + 1], [U + N], [0]); // M*_t
        if (site.place !== "mid" && site.resolution[0] === blendResolution)
          maps.push(G.reduceMean(G.slice(probs, [U], [U + N], [0]), [1]));
        // R_e = ((M_t · M_e) ⊙ a_e + M*_t ⊙ (1 − a_e)) ⊙ q_e
        const mapped = G.matmul(base, mapper); // [E, heads, Nq, L]
        const refined = G.add(G.mul(mapped, refine), G.mul(edited, G.sub(1, refine)));
        const replaced = G.mul(refined, equalizer);
        // M*_t ← α_t,e ⊙ R_e + (1 − α_t,e) ⊙ M*_t
        const mixed = G.add(G.mul(replaced, crossAlpha), G.mul(edited, G.sub(1, crossAlpha)));
        return G.concat([...uncond, base, mixed], 0);
      },
    };
  }

  /**
   * The graph outputs besides ε, once the UNet is built: `maps` [N, r·r, 77], the conditional
   * rows' cross-attention probabilities averaged over heads and over the down and up layers at
   * resolution r (what local blending sums over steps).
   */
  outputs(): Record<string, Tensor> {
    if (this.maps.length === 0) return {};
    return {
      maps: G.div(
        this.maps.reduce((a, b) => G.add(a, b)),
        this.maps.length,
      ),
    };
  }

  /** One sampling with `edit`: its feeds at each step, and local blending after each step. */
  begin(edit: AttentionEdit, latentShape: readonly [number, number, number]): PromptToPromptRun {
    if (edit.edits !== this.prompts - 1)
      throw new Error(`attention edit of ${edit.edits} edited prompts for a ${this.prompts}-prompt denoiser`);
    const blender = edit.blend && new LocalBlender(edit.blend, latentShape, this.blendResolution);
    return new PromptToPromptRun(edit, this.prompts, this.unconditional, blender);
  }
}

export class PromptToPromptRun {
  constructor(
    private readonly edit: AttentionEdit,
    private readonly prompts: number,
    private readonly unconditional: number,
    private readonly blender: LocalBlender | undefined,
  ) {}

  /** The controller's graph inputs at `step` (0-based, in sampling order). */
  feeds(step: number): Feeds {
    const { edit } = this;
    const EL = edit.edits * MAX_TOKENS; // one step of α_t,e [steps + 1, E, 77]
    return {
      p2p_mapper: edit.mapper,
      p2p_refine_alphas: edit.refineAlphas,
      p2p_equalizer: edit.equalizer,
      p2p_cross_alpha: edit.crossAlpha.subarray(step * EL, (step + 1) * EL),
      p2p_self_rows: { data: this.selfRows(step), shape: [this.unconditional + this.prompts], dtype: "int32" },
    };
  }

  /**
   * Whether the control at `step` reads the source's attention: local blending (every step), the
   * self-replace window, or a cross-attention α_t,e > 0 for some edit and token. Outside all three
   * the edits' rows are the UNet's own (M*_t ← 1·M*_t + 0·R_e), whatever the source's row holds.
   */
  readsSource(step: number): boolean {
    if (this.blender) return true;
    const [from, to] = this.edit.selfReplace;
    if (step >= from && step < to) return true;
    const EL = this.edit.edits * MAX_TOKENS;
    return this.edit.crossAlpha.subarray(step * EL, (step + 1) * EL).some((a) => a !== 0);
  }

  /** [0, 1, .. U + N − 1], with the edits' rows U + 1.. replaced by the source's row U inside the self-replace window. */
  private selfRows(step: number): Int32Array {
    const U = this.unconditional;
    const [from, to] = this.edit.selfReplace;
    const inside = step >= from && step < to;
    return Int32Array.from({ length: U + this.prompts }, (_, row) => (inside && row > U ? U : row));
  }

  /** Local blending of the latents after `step`, from the step's outputs; the latents unchanged without it. */
  afterStep(
    latents: Float32Array,
    outputs: Record<string, Float32Array>,
    step: number,
  ): { latents: Float32Array; masks?: Uint8Array[] } {
    const maps = outputs.maps;
    if (!this.blender || !maps) return { latents };
    return this.blender.afterStep(latents, maps, step);
  }
}
