/**
 * End to end: weight gradients drive Adam. A small MLP and a small conv net with GroupNorm and
 * attention are trained for a few hundred steps; the loss must fall by a stated factor.
 */
import { describe, expect, it } from "vitest";
import type { Tensor } from "../../src/graph/index.js";
import * as G from "../../src/graph/index.js";
import { Adam } from "../../src/optim/adam.js";
import { Session } from "../../src/runtime/session.js";
import { random } from "./reference.js";

function param(name: string, shape: number[], scale: number, seed: number): Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  return G.weight(name, shape, Float32Array.from(random(n, seed, -scale, scale)), { trainable: true });
}

async function train(loss: Tensor, params: Tensor[], feeds: Record<string, Float32Array>, steps: number, lr: number) {
  const grads = G.grad(loss, params);
  const outputs: Record<string, Tensor> = { loss };
  grads.forEach((g, i) => {
    outputs[`grad${i}`] = g;
  });
  const session = await Session.create(G.compile(outputs, { name: "train" }), { threads: 2 });
  const arrays = params.map((p) => (p.leaf as { source: { data: Float32Array } }).source.data);
  const adam = new Adam(arrays, { lr });
  const curve: number[] = [];
  for (let step = 0; step < steps; step++) {
    const out = await session.run(feeds);
    curve.push((out.loss!.data as Float32Array)[0]!);
    adam.update(grads.map((_, i) => out[`grad${i}`]!.data as Float32Array));
  }
  await session.release();
  return curve;
}

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

describe("training with weight gradients", () => {
  it("an MLP fits y = sin(3·x0) + x1² (loss falls ≥ 100×)", async () => {
    const n = 128;
    const xs = random(2 * n, 11, -1, 1);
    const ys = Float32Array.from({ length: n }, (_, i) => Math.sin(3 * xs[2 * i]!) + xs[2 * i + 1]! ** 2);
    const x = G.input("x", [n, 2]);
    const y = G.input("y", [n, 1]);
    const w1 = param("w1", [32, 2], 0.7, 1);
    const b1 = param("b1", [32], 0.1, 2);
    const w2 = param("w2", [32, 32], 0.17, 3);
    const b2 = param("b2", [32], 0.1, 4);
    const w3 = param("w3", [1, 32], 0.17, 5);
    const b3 = param("b3", [1], 0.1, 6);
    const h1 = G.tanh(G.linear(x, w1, b1));
    const h2 = G.silu(G.linear(h1, w2, b2));
    const err = G.sub(G.linear(h2, w3, b3), y);
    const loss = G.reduceMean(G.mul(err, err));
    const curve = await train(loss, [w1, b1, w2, b2, w3, b3], { x: Float32Array.from(xs), y: ys }, 400, 1e-2);
    const first = mean(curve.slice(0, 5));
    const last = mean(curve.slice(-5));
    expect(last).toBeLessThan(first / 100);
  });

  it("a conv net with GroupNorm and self-attention learns a fixed image-to-image map (loss falls ≥ 1000×)", async () => {
    // Task: from a random 2-channel 6×6 image, predict the difference of each channel with its
    // spatially flipped copy: needs mixing across positions, which the attention provides.
    const b = 4;
    const c = 2;
    const s = 6;
    const input = Float32Array.from(random(b * c * s * s, 21, -1, 1));
    const target = new Float32Array(input.length);
    for (let i = 0; i < b * c; i++)
      for (let p = 0; p < s * s; p++)
        target[i * s * s + p] = input[i * s * s + p]! - input[i * s * s + (s * s - 1 - p)]!;
    const x = G.input("x", [b, c, s, s]);
    const y = G.input("y", [b, c, s, s]);
    const ch = 16;
    const convIn = param("conv_in.weight", [ch, c, 3, 3], 0.3, 31);
    const convInB = param("conv_in.bias", [ch], 0.05, 32);
    const gnW = G.weight("norm.weight", [ch], new Float32Array(ch).fill(1), { trainable: true });
    const gnB = G.weight("norm.bias", [ch], new Float32Array(ch), { trainable: true });
    const wq = param("to_q.weight", [ch, ch], 0.25, 33);
    const wk = param("to_k.weight", [ch, ch], 0.25, 34);
    const wv = param("to_v.weight", [ch, ch], 0.25, 35);
    const wo = param("to_out.weight", [ch, ch], 0.25, 36);
    const pos = param("pos", [1, s * s, ch], 0.5, 37);
    const convOut = param("conv_out.weight", [c, ch, 3, 3], 0.1, 38);
    const convOutB = param("conv_out.bias", [c], 0.05, 39);

    let h = G.conv2d(x, convIn, convInB, { pads: [1, 1, 1, 1] });
    h = G.silu(G.groupNorm(h, 4, gnW, gnB));
    const tokens = G.add(G.transpose(G.reshape(h, [b, ch, s * s]), [0, 2, 1]), pos); // [B, HW, C]
    const attn = G.linear(
      G.attention(G.linear(tokens, wq), G.linear(tokens, wk), G.linear(tokens, wv), { heads: 2 }),
      wo,
    );
    const back = G.reshape(G.transpose(G.add(tokens, attn), [0, 2, 1]), [b, ch, s, s]);
    const out = G.conv2d(back, convOut, convOutB, { pads: [1, 1, 1, 1] });
    const err = G.sub(out, y);
    const loss = G.reduceMean(G.mul(err, err));
    const params = [convIn, convInB, gnW, gnB, wq, wk, wv, wo, pos, convOut, convOutB];
    const curve = await train(loss, params, { x: input, y: target }, 300, 1e-2);
    const first = mean(curve.slice(0, 5));
    const last = mean(curve.slice(-5));
    expect(last).toBeLessThan(first / 1000);
  });
});
