/**
 * The UNet's attention hook says which layers it touches: only those pass their probabilities
 * through it, every other layer keeps the UNet's own (at SD sizes blocked, memory-bounded)
 * attention. Checked on a small random UNet: the sites a cross-attention-only hook sees, pass-through
 * hooks against the hook-less UNet, and which layers take the blocked AttentionCore at 64×64 latents
 * with the Prompt-to-Prompt controller.
 */
import { describe, expect, it } from "vitest";
import { PromptToPromptController } from "../../src/editing/prompt_to_prompt/index.js";
import * as G from "../../src/graph/index.js";
import {
  type AttentionHook,
  type AttentionSite,
  parseUNetConfig,
  UNet2DConditionModel,
} from "../../src/models/unet.js";
import { WeightStore } from "../../src/models/weights.js";
import { Session } from "../../src/runtime/session.js";
import { random } from "../graph/reference.js";

const config = parseUNetConfig(
  {
    sample_size: 8,
    block_out_channels: [16, 32, 32],
    down_block_types: ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    up_block_types: ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    layers_per_block: 1,
    attention_head_dim: 4,
    cross_attention_dim: 24,
    norm_num_groups: 8,
  },
  "test config",
);

function unet(): UNet2DConditionModel {
  return new UNet2DConditionModel(WeightStore.forTraining("unet", 5), config);
}

/** ε of the UNet at 8×8 latents, batch 2, with `hook`. */
async function eps(hook?: AttentionHook): Promise<Float32Array> {
  const sample = G.input("sample", [2, 4, 8, 8]);
  const t = G.input("t", [2]);
  const ctx = G.input("ctx", [2, 5, 24]);
  const out = unet().forward(sample, t, ctx, { attentionHook: hook });
  const session = await Session.create(G.compile({ out }), { threads: 1 });
  const r = await session.run({
    sample: Float32Array.from(random(512, 1)),
    t: Float32Array.of(10, 700),
    ctx: Float32Array.from(random(240, 2)),
  });
  await session.release();
  return r.out?.data as Float32Array;
}

const passThrough = (touches: (site: AttentionSite) => boolean): AttentionHook => ({ touches, apply: (p) => p });

describe("attention hook", () => {
  it("shows its probabilities only the layers it touches", () => {
    const asked: AttentionSite[] = [];
    const applied: { site: AttentionSite; shape: readonly number[] }[] = [];
    const hook: AttentionHook = {
      touches: (site) => {
        asked.push(site);
        return site.kind === "cross";
      },
      apply: (probs, site) => {
        applied.push({ site, shape: probs.shape });
        return probs;
      },
    };
    unet().forward(G.input("sample", [1, 4, 8, 8]), G.input("t", [1]), G.input("ctx", [1, 5, 24]), {
      attentionHook: hook,
    });
    // two levels with attention down, the mid block, two up (layers_per_block + 1 each): 7 transformers
    expect(asked.filter((s) => s.kind === "self")).toHaveLength(7);
    expect(asked.filter((s) => s.kind === "cross")).toHaveLength(7);
    expect(applied.map((a) => a.site)).toEqual(asked.filter((s) => s.kind === "cross"));
    for (const { site, shape } of applied) {
      const [h, w] = site.resolution;
      expect(shape).toEqual([1, 4, h * w, 5]);
    }
  });

  it("leaves the output unchanged when it passes the probabilities through", async () => {
    const plain = await eps();
    expect(await eps(passThrough(() => true))).toEqual(plain);
    expect(await eps(passThrough((s) => s.kind === "cross"))).toEqual(plain);
    expect(plain.some((v) => v !== 0)).toBe(true);
  });

  it("keeps blocked attention at 64×64 latents in the layers Prompt-to-Prompt does not touch", () => {
    // Self-attention scores of batch 4 (two prompts, guided) and 4 heads: 1 GiB at 64², 64 MiB at
    // 32², both over the blocked path's 64 MiB threshold.
    const blocked = (hook: (c: PromptToPromptController) => AttentionHook | undefined) => {
      const latents = G.input("latents", [4, 4, 64, 64]);
      const controller = new PromptToPromptController(config, 2, [64, 64], 77);
      const ctx = G.input("context", [4, 77, 24]);
      const out = unet().forward(latents, G.input("timestep", [4]), ctx, { attentionHook: hook(controller) });
      return (
        G.topoSort([out])
          // the memory-bounded kernels: ORT's fused attention forward (its backward recomputes in blocks) or the blocked core
          .filter((t) => t.op?.name === "MultiHeadAttention" || t.op?.name === "AttentionCore")
          .map((t) => t.shape[t.rank - 2])
      );
    };
    // no hook: every self-attention layer at 64² and at 32² (one down, two up each)
    expect(blocked(() => undefined).sort()).toEqual([1024, 1024, 1024, 4096, 4096, 4096]);
    // Prompt-to-Prompt touches self-attention up to 32² (half the latent) and all cross-attention
    expect(blocked((c) => c.hook)).toEqual([4096, 4096, 4096]);
    // a hook on every layer (the old behaviour) would keep every score matrix whole
    expect(blocked(() => passThrough(() => true))).toEqual([]);
  });
});
