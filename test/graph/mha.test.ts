/**
 * The fused attention (ORT's com.microsoft MultiHeadAttention, ops/mha.ts) against a float64 host
 * reference and against the graph path (kernel "graph"): forward and the VJP with respect to q, k
 * and v, for self- and cross-attention, with the backward's probabilities recomputed in one piece
 * and in row blocks inside an ONNX Loop. float32 (the kernel has no other), so held to 1e-5
 * relative (forward) and 1e-4 relative (gradient) as ops.test.ts holds its float32 cases.
 */
import { describe, expect, it } from "vitest";
import * as G from "../../src/graph/index.js";
import type { HostTensor } from "../../src/runtime/session.js";
import { checkOp, evaluate, maxAbs, maxAbsDiff, type OpCase } from "./harness.js";
import { type Ref, random } from "./reference.js";

interface Shapes {
  b: number;
  nq: number;
  nk: number;
  c: number;
  heads: number;
  scale: number;
}

function shapesOf(q: Ref, k: Ref, heads: number, scale?: number): Shapes {
  const [b, nq, c] = q.shape as [number, number, number];
  return { b, nq, nk: k.shape[1] as number, c, heads, scale: scale ?? 1 / Math.sqrt(c / heads) };
}

/**
 * Attention per batch and head in float64, written out loop by loop: O = P·V with
 * P = softmax(scale·Q·Kᵀ); with a cotangent G also dV = Pᵀ·G, dS = P ⊙ (G·Vᵀ − rowsum(P ⊙ G·Vᵀ)),
 * dQ = scale·dS·K, dK = scale·dSᵀ·Q.
 */
function reference(q: Float64Array, k: Float64Array, v: Float64Array, s: Shapes, g?: Float64Array) {
  const { b, nq, nk, c, heads, scale } = s;
  const d = c / heads;
  const out = new Float64Array(b * nq * c);
  const dq = new Float64Array(q.length);
  const dk = new Float64Array(k.length);
  const dv = new Float64Array(v.length);
  const p = new Float64Array(nk);
  const dp = new Float64Array(nk);
  for (let bi = 0; bi < b; bi++)
    for (let h = 0; h < heads; h++)
      for (let i = 0; i < nq; i++) {
        const qo = (bi * nq + i) * c + h * d; // row i of head h in q, the output and g
        let m = -Infinity;
        for (let j = 0; j < nk; j++) {
          const ko = (bi * nk + j) * c + h * d;
          let acc = 0;
          for (let e = 0; e < d; e++) acc += (q[qo + e] as number) * (k[ko + e] as number);
          p[j] = scale * acc;
          m = Math.max(m, scale * acc);
        }
        let z = 0;
        for (let j = 0; j < nk; j++) {
          p[j] = Math.exp((p[j] as number) - m);
          z += p[j] as number;
        }
        for (let j = 0; j < nk; j++) {
          const pj = (p[j] as number) / z;
          p[j] = pj;
          const vo = (bi * nk + j) * c + h * d;
          for (let e = 0; e < d; e++) out[qo + e] = (out[qo + e] as number) + pj * (v[vo + e] as number);
        }
        if (!g) continue;
        let rowDot = 0;
        for (let j = 0; j < nk; j++) {
          const vo = (bi * nk + j) * c + h * d;
          let acc = 0;
          for (let e = 0; e < d; e++) {
            acc += (g[qo + e] as number) * (v[vo + e] as number);
            dv[vo + e] = (dv[vo + e] as number) + (p[j] as number) * (g[qo + e] as number);
          }
          dp[j] = acc;
          rowDot += acc * (p[j] as number);
        }
        for (let j = 0; j < nk; j++) {
          const ds = (p[j] as number) * ((dp[j] as number) - rowDot) * scale;
          const ko = (bi * nk + j) * c + h * d;
          for (let e = 0; e < d; e++) {
            dq[qo + e] = (dq[qo + e] as number) + ds * (k[ko + e] as number);
            dk[ko + e] = (dk[ko + e] as number) + ds * (q[qo + e] as number);
          }
        }
      }
  return { out, dq, dk, dv };
}

const sh = (...dims: number[]) => ({ shape: dims });

function fusedCase(
  name: string,
  shapes: [number[], number[]],
  options: Omit<G.AttentionOptions, "heads"> & { heads: number },
  wrt?: number[],
): OpCase {
  const [qShape, kShape] = shapes;
  return {
    name,
    dtype: "float32",
    inputs: [sh(...qShape), sh(...kShape), sh(...kShape)],
    wrt,
    build: ([q, k, v]) => G.attention(q!, k!, v!, { ...options, kernel: "fused" }),
    reference: ([q, k, v]) => ({
      shape: q!.shape,
      data: reference(q!.data, k!.data, v!.data, shapesOf(q!, k!, options.heads, options.scale)).out,
    }),
  };
}

const cases: OpCase[] = [
  fusedCase(
    "self-attention, 2 heads",
    [
      [2, 5, 8],
      [2, 5, 8],
    ],
    { heads: 2 },
  ),
  fusedCase(
    "cross-attention (Nq 3, Nk 7), 2 heads",
    [
      [2, 3, 8],
      [2, 7, 8],
    ],
    { heads: 2 },
  ),
  fusedCase(
    "cross-attention, an explicit scale",
    [
      [1, 4, 6],
      [1, 5, 6],
    ],
    { heads: 3, scale: 0.3 },
  ),
  fusedCase(
    "cross-attention, gradient for k and v only",
    [
      [1, 4, 8],
      [1, 6, 8],
    ],
    { heads: 2 },
    [1, 2],
  ),
  fusedCase(
    "self-attention, gradient for q only",
    [
      [1, 4, 8],
      [1, 4, 8],
    ],
    { heads: 2 },
    [0],
  ),
  fusedCase(
    "the backward in blocks of 2 query rows (an ONNX Loop)",
    [
      [2, 6, 8],
      [2, 5, 8],
    ],
    {
      heads: 2,
      recompute: true,
      blockRows: 2,
    },
  ),
];

describe("fused attention (MultiHeadAttention): float64 reference and central differences", () => {
  for (const c of cases) {
    it(c.name, async () => {
      const r = await checkOp(c);
      expect(r.forwardErr).toBeLessThanOrEqual(1e-5 * Math.max(1, r.forwardScale));
      expect(r.gradErr).toBeLessThanOrEqual(1e-4 * Math.max(1, r.gradScale));
      expect(r.gradScale).toBeGreaterThan(0);
    });
  }
});

/** Forward and VJP of attention() with the given kernel, on fixed random inputs. */
async function runAttention(shapes: Shapes, kernel: "fused" | "graph", options: Partial<G.AttentionOptions> = {}) {
  const { b, nq, nk, c, heads } = shapes;
  const q = G.input("q", [b, nq, c]);
  const k = G.input("k", [b, nk, c]);
  const v = G.input("v", [b, nk, c]);
  const y = G.attention(q, k, v, { heads, ...options, kernel });
  const g = G.input("g", y.shape);
  const [dq, dk, dv] = G.vjp([y], [g], [q, k, v]) as [G.Tensor, G.Tensor, G.Tensor];
  const compiled = G.compile({ y, dq, dk, dv }, { inputs: [q, k, v, g] });
  const data = {
    q: random(b * nq * c, 1),
    k: random(b * nk * c, 2),
    v: random(b * nk * c, 3),
    g: random(b * nq * c, 4),
  };
  const out = await evaluate(
    { y, dq, dk, dv },
    Object.fromEntries(Object.entries(data).map(([n, x]) => [n, Float32Array.from(x)])),
  );
  const get = (n: string) => (out[n] as HostTensor).data as Float32Array;
  return { compiled, data, y: get("y"), dq: get("dq"), dk: get("dk"), dv: get("dv") };
}

/** Whether the serialised model names `op` anywhere (node types and names). */
function mentions(model: G.CompiledGraph, op: string): boolean {
  if (model.model.kind !== "bytes") throw new Error("expected an in-memory model");
  return Buffer.from(model.model.bytes).toString("latin1").includes(op);
}

describe("fused attention against the graph path and the float64 reference at larger shapes", () => {
  const sizes: [string, Shapes][] = [
    // SD's cross-attention: 77 context tokens; probabilities recomputed in one piece.
    ["cross-attention 256 × 77 tokens, 8 heads", { b: 2, nq: 256, nk: 77, c: 64, heads: 8, scale: 1 / Math.sqrt(8) }],
    // 1·8·2048² float32 scores = 128 MB ≥ 64 MB: the backward recomputes them in blocks (a Loop).
    [
      "self-attention 2048 tokens, 8 heads (blocked backward)",
      { b: 1, nq: 2048, nk: 2048, c: 32, heads: 8, scale: 0.5 },
    ],
  ];
  for (const [name, shapes] of sizes) {
    it(name, async () => {
      const fused = await runAttention(shapes, "fused");
      const graph = await runAttention(shapes, "graph");
      expect(mentions(fused.compiled, "MultiHeadAttention")).toBe(true);
      expect(mentions(graph.compiled, "MultiHeadAttention")).toBe(false);
      expect(mentions(fused.compiled, "Loop")).toBe(shapes.nq === 2048);
      const d = fused.data;
      const ref = reference(d.q, d.k, d.v, shapes, d.g);
      for (const [key, expected] of [
        ["y", ref.out],
        ["dq", ref.dq],
        ["dk", ref.dk],
        ["dv", ref.dv],
      ] as const) {
        const scale = Math.max(1, maxAbs(expected));
        const tol = (key === "y" ? 1e-5 : 1e-4) * scale;
        expect(maxAbsDiff(fused[key], expected), `${key} against the reference`).toBeLessThanOrEqual(tol);
        expect(maxAbsDiff(fused[key], graph[key]), `${key} against the graph path`).toBeLessThanOrEqual(tol);
      }
    }, 60_000);
  }
});

describe("attention() picks its kernel", () => {
  const q = G.input("q", [1, 4, 8]);
  const k = G.input("k", [1, 6, 8]);
  it("fuses recomputed float32 attention only, and refuses to fuse a mask, a probsHook or float64", () => {
    const mask = G.constant(new Float32Array(24), [4, 6]);
    const hook = (p: G.Tensor) => p;
    for (const opts of [{ mask }, { probsHook: hook }] as Partial<G.AttentionOptions>[]) {
      expect(G.attention(q, k, k, { heads: 2, ...opts }).op?.name).not.toBe("MultiHeadAttention");
      expect(() => G.attention(q, k, k, { heads: 2, ...opts, kernel: "fused" })).toThrow(/kernel "fused" needs/);
    }
    const q64 = G.input("q64", [1, 4, 8], "float64");
    expect(G.attention(q64, q64, q64, { heads: 2 }).op?.name).not.toBe("MultiHeadAttention");
    // Small attention keeps its probabilities for the backward; recomputed ones go through the fused kernel.
    expect(G.attention(q, k, k, { heads: 2 }).op?.name).not.toBe("MultiHeadAttention");
    expect(G.attention(q, k, k, { heads: 2, recompute: true }).op?.name).toBe("MultiHeadAttention");
  });
});
