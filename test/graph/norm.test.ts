/**
 * The normalisation cores' backward from the forward node's saved InvStdDev (float32) and recomputed
 * statistics (float64): gradients against central differences of float64 references, and what they emit.
 */
import { describe, expect, it } from "vitest";
import * as G from "../../src/graph/index.js";
import { checkOp, type OpCase } from "./harness.js";
import * as R from "./reference.js";

/** x normalised over blocks of `n` consecutive values (groups of a [B, C, ...] tensor, or rows of the last axis). */
function normRef(x: R.Ref, n: number, eps: number): R.Ref {
  const out = new Float64Array(x.data.length);
  for (let start = 0; start < x.data.length; start += n) {
    const block = x.data.subarray(start, start + n);
    const mean = block.reduce((s, v) => s + v, 0) / n;
    const variance = block.reduce((s, v) => s + (v - mean) ** 2, 0) / n;
    block.forEach((v, i) => {
      out[start + i] = (v - mean) / Math.sqrt(variance + eps);
    });
  }
  return { shape: x.shape, data: out };
}

const affine = (y: R.Ref, w: R.Ref, b: R.Ref, channelAxis: number): R.Ref => {
  const perChannel = y.shape.map((d, i) => (i === channelAxis ? d : 1)).slice(channelAxis);
  const wc = { shape: perChannel, data: w.data };
  const bc = { shape: perChannel, data: b.data };
  return R.map2(
    R.map2(y, wc, (p, q) => p * q),
    bc,
    (p, q) => p + q,
  );
};

const cases: OpCase[] = [
  {
    name: "groupNorm, 3 groups, inputs centred near 5",
    dtype: "float32",
    inputs: [{ shape: [2, 6, 3, 2], lo: 4, hi: 6 }, { shape: [6] }, { shape: [6] }],
    build: ([x, w, b]) => G.groupNorm(x!, 3, w!, b!, 1e-5),
    reference: ([x, w, b]) => affine(normRef(x!, 12, 1e-5), w!, b!, 1),
  },
  {
    name: "groupNorm, 2 groups",
    dtype: "float64",
    inputs: [{ shape: [2, 4, 3, 3] }, { shape: [4] }, { shape: [4] }],
    build: ([x, w, b]) => G.groupNorm(x!, 2, w!, b!, 1e-5),
    reference: ([x, w, b]) => affine(normRef(x!, 18, 1e-5), w!, b!, 1),
  },
  {
    name: "layerNorm over 8",
    dtype: "float32",
    inputs: [{ shape: [2, 3, 8] }, { shape: [8] }, { shape: [8] }],
    build: ([x, w, b]) => G.layerNorm(x!, w!, b!, 1e-5),
    reference: ([x, w, b]) => affine(normRef(x!, 8, 1e-5), w!, b!, 2),
  },
];

describe("normalisation cores: forward against float64, gradients against central differences", () => {
  for (const c of cases) {
    it(`${c.name} (${c.dtype})`, async () => {
      const r = await checkOp(c);
      const [fwdTol, gradTol] = c.dtype === "float64" ? [c.forwardTolerance ?? 1e-12, 1e-7] : [1e-5, 1e-4];
      expect(r.forwardErr).toBeLessThanOrEqual(fwdTol * Math.max(1, r.forwardScale));
      expect(r.gradErr).toBeLessThanOrEqual(gradTol * Math.max(1, r.gradScale));
      expect(r.gradScale).toBeGreaterThan(0);
    });
  }
});

describe("normalisation cores: what they emit", () => {
  it("read r from the forward node instead of computing it again (float32)", () => {
    const x = G.input("x", [1, 8, 4, 4]);
    const g = G.input("g", [1, 8, 4, 4]);
    const [gn] = G.vjp([G.groupNorm(x, 4, G.input("w", [8]), G.input("b", [8]))], [g], [x]);
    // what dx needs of the forward: Reshape, Expand of the ones, LayerNormalization, Reshape (its saved outputs
    // add none), Reshape of w; the backward: Mul by w, Reshape of g, the closed form's 7 nodes, Reshape back
    expect(G.compile({ gn: gn! }).nodeCount).toBe(15);
    const t = G.input("t", [2, 5, 16]);
    const lg = G.input("lg", [2, 5, 16]);
    const [ln] = G.vjp([G.layerNorm(t, G.input("lw", [16]), G.input("lb", [16]))], [lg], [t]);
    // of the forward: Expand of the ones, LayerNormalization; the backward: Mul by w, the closed form's 7 nodes
    expect(G.compile({ ln: ln! }).nodeCount).toBe(10);
  });

  it("refuse a second derivative through the saved statistics", () => {
    const x = G.input("x", [2, 5, 16]);
    const g = G.input("g", [2, 5, 16]);
    const [dx] = G.vjp([G.layerNorm(x, G.input("w", [16]), G.input("b", [16]))], [g], [x]);
    expect(() => G.grad(G.reduceSum(dx!), [x])).toThrow(/SavedOutput: 'inv_std'.*second derivative/);
  });
});
