/**
 * SD 2.x configuration paths that the SD 1.x parity goldens do not cover, checked against paths
 * that they do: a UNet with use_linear_projection, per-block head counts and two transformer layers
 * per block computes the same function as the conv-projection UNet given the same weights (a linear
 * layer is a 1×1 convolution); and its context gradient matches central differences.
 */
import { describe, expect, it } from "vitest";
import * as G from "../../src/graph/index.js";
import { parseUNetConfig, UNet2DConditionModel } from "../../src/models/unet.js";
import { WeightStore } from "../../src/models/weights.js";
import { float32Output, Session } from "../../src/runtime/session.js";
import { random } from "../graph/reference.js";

const base = {
  sample_size: 8,
  block_out_channels: [32, 64],
  down_block_types: ["CrossAttnDownBlock2D", "DownBlock2D"],
  up_block_types: ["UpBlock2D", "CrossAttnUpBlock2D"],
  layers_per_block: 1,
  attention_head_dim: [2, 4],
  cross_attention_dim: 24,
  transformer_layers_per_block: 2,
  norm_num_groups: 8,
  upcast_attention: true,
};

async function run(linear: boolean, arrays?: Map<string, Float32Array>) {
  const store = WeightStore.forTraining("unet", 7, arrays ?? new Map());
  const unet = new UNet2DConditionModel(
    store,
    parseUNetConfig({ ...base, use_linear_projection: linear }, "test config"),
  );
  const sample = G.input("sample", [2, 4, 8, 8]);
  const t = G.input("t", [2]);
  const ctx = G.input("ctx", [2, 5, 24]);
  const out = unet.forward(sample, t, ctx);
  const session = await Session.create(G.compile({ out }), { threads: 1 });
  const feeds = {
    sample: Float32Array.from(random(512, 1)),
    t: Float32Array.of(10, 700),
    ctx: Float32Array.from(random(240, 2)),
  };
  const r = (await session.run(feeds)).out?.data as Float32Array;
  await session.release();
  return { r, arrays: store.trainableArrays() };
}

describe("SD 2.x UNet options", () => {
  it("use_linear_projection equals the 1×1-convolution projection with the same weights", async () => {
    const linear = await run(true);
    // the same weights, proj_in/proj_out reshaped to [C, C, 1, 1]
    const conv = await run(false, new Map(linear.arrays));
    let worst = 0;
    let scale = 0;
    for (let i = 0; i < linear.r.length; i++) {
      worst = Math.max(worst, Math.abs((linear.r[i] as number) - (conv.r[i] as number)));
      scale = Math.max(scale, Math.abs(linear.r[i] as number));
    }
    expect(scale).toBeGreaterThan(0.01);
    expect(worst).toBeLessThan(1e-5 * scale);
  });

  it("has a context gradient that matches central differences", async () => {
    const store = WeightStore.forTraining("unet", 3);
    const unet = new UNet2DConditionModel(
      store,
      parseUNetConfig({ ...base, use_linear_projection: true }, "test config"),
    );
    const sample = G.input("sample", [1, 4, 8, 8]);
    const ctx = G.input("ctx", [1, 5, 24], "float32");
    const out = unet.forward(sample, G.constant(Float32Array.of(500), [1]), ctx);
    const loss = G.reduceSum(G.mul(out, G.constant(Float32Array.from(random(256, 9)), [1, 4, 8, 8])));
    const [g] = G.grad(loss, [ctx]);
    const session = await Session.create(G.compile({ loss, g: g as G.Tensor }), { threads: 1 });
    const x = Float32Array.from(random(256, 4));
    const c = Float32Array.from(random(120, 5));
    const base0 = await session.run({ sample: x, ctx: c });
    const grad = base0.g?.data as Float32Array;
    const h = 1e-2;
    for (const k of [0, 17, 63, 119]) {
      const plus = Float32Array.from(c);
      const minus = Float32Array.from(c);
      plus[k] = (plus[k] as number) + h;
      minus[k] = (minus[k] as number) - h;
      const lp = float32Output(await session.run({ sample: x, ctx: plus }), "loss")[0] as number;
      const lm = float32Output(await session.run({ sample: x, ctx: minus }), "loss")[0] as number;
      // float32 forward: differences of sums ~1 computed to ~1e-6, so 1e-3 relative is the honest bound
      expect(Math.abs((lp - lm) / (2 * h) - (grad[k] as number))).toBeLessThan(
        1e-3 * Math.max(1, Math.abs(grad[k] as number)) + 2e-3,
      );
    }
    await session.release();
  });
});
