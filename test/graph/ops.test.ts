/**
 * Every op's forward against a float64 reference, and its gradient rule (as a VJP computed by
 * ORT) against central finite differences of that reference.
 *
 * dtype: float64 wherever ORT's CPU provider has double kernels for every node involved. Conv,
 * ConvTranspose, Erf and Resize have float32 kernels only; those cases run in float32 and are
 * held to 1e-5 relative (forward) and 1e-4 relative (gradient): float32 rounding is ~6e-8 per
 * operation and the sums here have at most a few hundred terms, so errors above 1e-5 would mean
 * a wrong rule, not rounding.
 */
import { describe, expect, it } from "vitest";
import type { Tensor } from "../../src/graph/index.js";
import * as G from "../../src/graph/index.js";
import { checkOp, type OpCase } from "./harness.js";
import * as R from "./reference.js";

const sh = (...dims: number[]) => ({ shape: dims });
const pos = (...dims: number[]) => ({ shape: dims, lo: 0.5, hi: 2 });
const away = (...dims: number[]) => {
  // values in ±[0.2, 1]: away from kinks at 0
  const n = R.size(dims);
  const v = R.random(n, 7 * n + 3, 0.2, 1);
  return { shape: dims, values: Array.from(v, (x, i) => (i % 3 === 1 ? -x : x)) };
};

const sigmoid = (x: number) => 1 / (1 + Math.exp(-x));

function layerNormRef(x: R.Ref, w: R.Ref, b: R.Ref, eps: number): R.Ref {
  const d = x.shape[x.shape.length - 1] as number;
  const out = new Float64Array(x.data.length);
  for (let r = 0; r < x.data.length / d; r++) {
    const row = x.data.subarray(r * d, r * d + d);
    const mean = row.reduce((a, v) => a + v, 0) / d;
    const variance = row.reduce((a, v) => a + (v - mean) ** 2, 0) / d;
    for (let i = 0; i < d; i++) {
      out[r * d + i] =
        (((row[i] as number) - mean) / Math.sqrt(variance + eps)) * (w.data[i] as number) + (b.data[i] as number);
    }
  }
  return { shape: x.shape, data: out };
}

function groupNormRef(x: R.Ref, groups: number, w: R.Ref, b: R.Ref, eps: number): R.Ref {
  const [n, c] = x.shape as [number, number];
  const spatial = x.data.length / (n * c);
  const per = (c / groups) * spatial;
  const out = new Float64Array(x.data.length);
  for (let s = 0; s < n * groups; s++) {
    const seg = x.data.subarray(s * per, (s + 1) * per);
    const mean = seg.reduce((a, v) => a + v, 0) / per;
    const variance = seg.reduce((a, v) => a + (v - mean) ** 2, 0) / per;
    for (let i = 0; i < per; i++) {
      const ch = ((s % groups) * (c / groups) + Math.floor(i / spatial)) as number;
      out[s * per + i] =
        (((seg[i] as number) - mean) / Math.sqrt(variance + eps)) * (w.data[ch] as number) + (b.data[ch] as number);
    }
  }
  return { shape: x.shape, data: out };
}

/** Reference multi-head attention: q [B,Nq,C], k/v [B,Nk,C]; mask [Nq,Nk] added to scores. */
function attentionRef(q: R.Ref, k: R.Ref, v: R.Ref, heads: number, mask?: R.Ref): R.Ref {
  const [b, nq, c] = q.shape as [number, number, number];
  const nk = k.shape[1] as number;
  const d = c / heads;
  const out = new Float64Array(b * nq * c);
  for (let bi = 0; bi < b; bi++)
    for (let h = 0; h < heads; h++)
      for (let i = 0; i < nq; i++) {
        const scores = new Float64Array(nk);
        for (let j = 0; j < nk; j++) {
          let s = 0;
          for (let e = 0; e < d; e++)
            s += (q.data[(bi * nq + i) * c + h * d + e] as number) * (k.data[(bi * nk + j) * c + h * d + e] as number);
          scores[j] = s / Math.sqrt(d) + (mask ? (mask.data[i * nk + j] as number) : 0);
        }
        const m = Math.max(...scores);
        const ex = scores.map((s) => Math.exp(s - m));
        const z = ex.reduce((a, x) => a + x, 0);
        for (let e = 0; e < d; e++) {
          let acc = 0;
          for (let j = 0; j < nk; j++)
            acc += ((ex[j] as number) / z) * (v.data[(bi * nk + j) * c + h * d + e] as number);
          out[(bi * nq + i) * c + h * d + e] = acc;
        }
      }
  return { shape: [b, nq, c], data: out };
}

const convOpts = (
  o: Partial<{
    strides: [number, number];
    pads: [number, number, number, number];
    dilations: [number, number];
    group: number;
  }>,
) => ({
  strides: o.strides ?? ([1, 1] as [number, number]),
  pads: o.pads ?? ([0, 0, 0, 0] as [number, number, number, number]),
  dilations: o.dilations ?? ([1, 1] as [number, number]),
  group: o.group ?? 1,
});

/** A convolution whose weight is a constant of the graph (as frozen model weights are): only x varies. */
/** An additive causal mask [n, n]: −∞ above the diagonal. */
const causalMask = (n: number) =>
  Float64Array.from({ length: n * n }, (_, i) => (i % n > Math.floor(i / n) ? Number.NEGATIVE_INFINITY : 0));

const size = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);

function constantWeightConvCase(name: string, x: number[], w: number[], o: Parameters<typeof convOpts>[0]): OpCase {
  const opts = convOpts(o);
  // float32, as ORT's Conv; the reference sees the same float32-rounded weights.
  const values = Float32Array.from(R.random(size(w), 77, -1, 1));
  return {
    name,
    dtype: "float32",
    inputs: [sh(...x)],
    build: ([a]) => G.conv2d(a!, G.constant(values, w, "float32"), undefined, opts),
    reference: ([a]) => R.conv2d(a!, { shape: w, data: Float64Array.from(values) }, null, opts),
  };
}

function convCase(name: string, x: number[], w: number[], bias: boolean, o: Parameters<typeof convOpts>[0]): OpCase {
  const opts = convOpts(o);
  return {
    name,
    dtype: "float32",
    inputs: bias ? [sh(...x), sh(...w), sh(w[0] as number)] : [sh(...x), sh(...w)],
    build: ([a, b, c]) => G.conv2d(a!, b!, c, opts),
    reference: ([a, b, c]) => R.conv2d(a!, b!, c ?? null, opts),
  };
}

const cases: OpCase[] = [
  // elementwise, with broadcasting and size-1 axes
  {
    name: "Add [2,3,4]+[3,1]",
    dtype: "float64",
    inputs: [sh(2, 3, 4), sh(3, 1)],
    build: ([a, b]) => G.add(a!, b!),
    reference: ([a, b]) => R.map2(a!, b!, (x, y) => x + y),
  },
  {
    name: "Add [1,3]+[2,1]",
    dtype: "float64",
    inputs: [sh(1, 3), sh(2, 1)],
    build: ([a, b]) => G.add(a!, b!),
    reference: ([a, b]) => R.map2(a!, b!, (x, y) => x + y),
  },
  {
    name: "Sub [2,1,4]-[3,4]",
    dtype: "float64",
    inputs: [sh(2, 1, 4), sh(3, 4)],
    build: ([a, b]) => G.sub(a!, b!),
    reference: ([a, b]) => R.map2(a!, b!, (x, y) => x - y),
  },
  {
    name: "Mul [4]*[2,3,4]",
    dtype: "float64",
    inputs: [sh(4), sh(2, 3, 4)],
    build: ([a, b]) => G.mul(a!, b!),
    reference: ([a, b]) => R.map2(a!, b!, (x, y) => x * y),
  },
  {
    name: "Mul by scalar",
    dtype: "float64",
    inputs: [sh(3, 2)],
    build: ([a]) => G.mul(a!, 2.5),
    reference: ([a]) => R.map1(a!, (x) => 2.5 * x),
  },
  {
    name: "Div [2,3]/[2,1]",
    dtype: "float64",
    inputs: [sh(2, 3), pos(2, 1)],
    build: ([a, b]) => G.div(a!, b!),
    reference: ([a, b]) => R.map2(a!, b!, (x, y) => x / y),
  },
  {
    name: "Pow [2,3]^[3]",
    dtype: "float64",
    inputs: [pos(2, 3), sh(3)],
    build: ([a, b]) => G.pow(a!, b!),
    reference: ([a, b]) => R.map2(a!, b!, (x, y) => x ** y),
  },
  {
    name: "Max [2,3] vs [3]",
    dtype: "float64",
    inputs: [sh(2, 3), sh(3)],
    build: ([a, b]) => G.maximum(a!, b!),
    reference: ([a, b]) => R.map2(a!, b!, Math.max),
  },
  {
    name: "Min [3,1] vs [1,4]",
    dtype: "float64",
    inputs: [sh(3, 1), sh(1, 4)],
    build: ([a, b]) => G.minimum(a!, b!),
    reference: ([a, b]) => R.map2(a!, b!, Math.min),
  },
  {
    name: "Neg",
    dtype: "float64",
    inputs: [sh(2, 3)],
    build: ([a]) => G.neg(a!),
    reference: ([a]) => R.map1(a!, (x) => -x),
  },
  {
    name: "Sqrt",
    dtype: "float64",
    inputs: [pos(2, 3)],
    build: ([a]) => G.sqrt(a!),
    reference: ([a]) => R.map1(a!, Math.sqrt),
  },
  {
    name: "Exp",
    dtype: "float64",
    inputs: [sh(2, 3)],
    build: ([a]) => G.exp(a!),
    reference: ([a]) => R.map1(a!, Math.exp),
  },
  {
    name: "Log",
    dtype: "float64",
    inputs: [pos(2, 3)],
    build: ([a]) => G.log(a!),
    reference: ([a]) => R.map1(a!, Math.log),
  },
  {
    name: "Abs",
    dtype: "float64",
    inputs: [away(2, 3)],
    build: ([a]) => G.abs(a!),
    reference: ([a]) => R.map1(a!, Math.abs),
  },
  {
    name: "Reciprocal",
    dtype: "float64",
    inputs: [pos(5)],
    build: ([a]) => G.reciprocal(a!),
    reference: ([a]) => R.map1(a!, (x) => 1 / x),
  },
  {
    name: "Erf",
    dtype: "float32",
    inputs: [{ shape: [2, 4], lo: -2.5, hi: 2.5 }],
    build: ([a]) => G.erf(a!),
    reference: ([a]) => R.map1(a!, R.erf),
  },
  {
    name: "Tanh",
    dtype: "float64",
    inputs: [sh(2, 3)],
    build: ([a]) => G.tanh(a!),
    reference: ([a]) => R.map1(a!, Math.tanh),
  },
  {
    name: "Sigmoid",
    dtype: "float64",
    inputs: [{ shape: [2, 3], lo: -4, hi: 4 }],
    build: ([a]) => G.sigmoid(a!),
    reference: ([a]) => R.map1(a!, sigmoid),
  },
  {
    name: "Sin",
    dtype: "float64",
    inputs: [{ shape: [5], lo: -3, hi: 3 }],
    build: ([a]) => G.sin(a!),
    reference: ([a]) => R.map1(a!, Math.sin),
  },
  {
    name: "Cos",
    dtype: "float64",
    inputs: [{ shape: [5], lo: -3, hi: 3 }],
    build: ([a]) => G.cos(a!),
    reference: ([a]) => R.map1(a!, Math.cos),
  },
  {
    name: "Relu",
    dtype: "float64",
    inputs: [away(2, 3)],
    build: ([a]) => G.relu(a!),
    reference: ([a]) => R.map1(a!, (x) => Math.max(0, x)),
  },
  {
    name: "Clip [-0.5, 0.5]",
    dtype: "float64",
    inputs: [away(3, 3)],
    build: ([a]) => G.clip(a!, -0.5, 0.5),
    reference: ([a]) => R.map1(a!, (x) => Math.min(0.5, Math.max(-0.5, x))),
  },
  {
    name: "Clip min only",
    dtype: "float64",
    inputs: [away(3, 3)],
    build: ([a]) => G.clip(a!, 0.3),
    reference: ([a]) => R.map1(a!, (x) => Math.max(0.3, x)),
  },
  {
    name: "Where broadcast",
    dtype: "float64",
    inputs: [sh(2, 3), sh(3)],
    build: ([a, b]) => G.where(G.constant(Uint8Array.from([1, 0, 1, 0, 0, 1]), [2, 3], "bool"), a!, b!),
    reference: ([a, b]) => {
      const c = [1, 0, 1, 0, 0, 1];
      return { shape: [2, 3], data: Float64Array.from(c, (v, i) => (v ? a!.data[i]! : b!.data[i % 3]!)) };
    },
  },
  // a value used several times: gradients accumulate
  {
    name: "multi-use x·x + sin(x) + x",
    dtype: "float64",
    inputs: [sh(2, 3)],
    build: ([a]) => G.add(G.add(G.mul(a!, a!), G.sin(a!)), a!),
    reference: ([a]) => R.map1(a!, (x) => x * x + Math.sin(x) + x),
  },
  // reductions and softmax, with negative axes
  {
    name: "ReduceSum axis 1 keepdims",
    dtype: "float64",
    inputs: [sh(2, 3, 4)],
    build: ([a]) => G.reduceSum(a!, [1], true),
    reference: ([a]) => R.reduce(a!, [1], true, "sum"),
  },
  {
    name: "ReduceMean axis -1",
    dtype: "float64",
    inputs: [sh(2, 3, 4)],
    build: ([a]) => G.reduceMean(a!, [-1]),
    reference: ([a]) => R.reduce(a!, [-1], false, "mean"),
  },
  {
    name: "ReduceMax axes 0,2",
    dtype: "float64",
    inputs: [sh(2, 3, 4)],
    build: ([a]) => G.reduceMax(a!, [0, 2]),
    reference: ([a]) => R.reduce(a!, [0, 2], false, "max"),
  },
  {
    name: "ReduceSum all",
    dtype: "float64",
    inputs: [sh(2, 3)],
    build: ([a]) => G.reduceSum(a!),
    reference: ([a]) => R.reduce(a!, [0, 1], false, "sum"),
  },
  {
    name: "Softmax axis -1",
    dtype: "float64",
    inputs: [{ shape: [2, 3, 5], lo: -3, hi: 3 }],
    build: ([a]) => G.softmax(a!, -1),
    reference: ([a]) => R.softmax(a!, -1),
  },
  {
    name: "Softmax axis 1",
    dtype: "float64",
    inputs: [sh(2, 4, 3)],
    build: ([a]) => G.softmax(a!, 1),
    reference: ([a]) => R.softmax(a!, 1),
  },
  // data movement
  {
    name: "Reshape with -1",
    dtype: "float64",
    inputs: [sh(2, 3, 4)],
    build: ([a]) => G.mul(G.reshape(a!, [4, -1]), G.constant(Float64Array.from(R.random(24, 5)), [4, 6])),
    reference: ([a]) => R.map2({ shape: [4, 6], data: a!.data }, R.ref([4, 6], R.random(24, 5)), (x, y) => x * y),
  },
  {
    name: "Transpose [2,0,1]",
    dtype: "float64",
    inputs: [sh(2, 3, 4)],
    build: ([a]) => G.transpose(a!, [2, 0, 1]),
    reference: ([a]) => R.transpose(a!, [2, 0, 1]),
  },
  {
    name: "Concat axis -1",
    dtype: "float64",
    inputs: [sh(2, 2), sh(2, 3), sh(2, 1)],
    build: ([a, b, c]) => G.concat([a!, b!, c!], -1),
    reference: ([a, b, c]) => {
      const out: number[] = [];
      for (let r = 0; r < 2; r++)
        out.push(...a!.data.subarray(2 * r, 2 * r + 2), ...b!.data.subarray(3 * r, 3 * r + 3), c!.data[r]!);
      return R.ref([2, 6], out);
    },
  },
  {
    name: "Slice negative start, two axes",
    dtype: "float64",
    inputs: [sh(3, 5)],
    build: ([a]) => G.slice(a!, [1, -3], [3, 5], [0, -1]),
    reference: ([a]) => {
      const out: number[] = [];
      for (let r = 1; r < 3; r++) for (let c = 2; c < 5; c++) out.push(a!.data[r * 5 + c]!);
      return R.ref([2, 3], out);
    },
  },
  {
    name: "Split into 3",
    dtype: "float64",
    inputs: [sh(2, 6)],
    build: ([a]) => {
      const [p, q, r] = G.split(a!, [1, 2, 3], 1) as [Tensor, Tensor, Tensor];
      return G.concat([G.mul(p, 2), G.mul(q, 3), G.mul(r, 4)], 1);
    },
    reference: ([a]) =>
      R.ref(
        [2, 6],
        Array.from(a!.data, (v, i) => v * [2, 3, 3, 4, 4, 4][i % 6]!),
      ),
  },
  {
    name: "Gather rows (embedding), repeated index",
    dtype: "float64",
    inputs: [sh(5, 3)],
    build: ([a]) => G.gather(a!, G.constant(BigInt64Array.from([4n, 0n, 4n, 2n]), [2, 2])),
    reference: ([a]) =>
      R.ref(
        [2, 2, 3],
        [4, 0, 4, 2].flatMap((r) => Array.from(a!.data.subarray(3 * r, 3 * r + 3))),
      ),
  },
  {
    name: "Unsqueeze/Squeeze",
    dtype: "float64",
    inputs: [sh(2, 3)],
    build: ([a]) => G.squeeze(G.mul(G.unsqueeze(a!, [0, -1]), 3), [0]),
    reference: ([a]) => ({ shape: [2, 3, 1], data: a!.data.map((x) => 3 * x) }),
  },
  {
    name: "Expand [3,1]→[2,3,4]",
    dtype: "float64",
    inputs: [sh(3, 1)],
    build: ([a]) => G.expand(a!, [2, 3, 4]),
    reference: ([a]) => R.map2(a!, R.ref([2, 3, 4], new Array(24).fill(0)), (x) => x),
  },
  {
    name: "Pad",
    dtype: "float64",
    inputs: [sh(2, 3)],
    build: ([a]) => G.pad(a!, [1, 0, 0, 2], 0.5),
    reference: ([a]) => {
      const out = new Array(3 * 5).fill(0.5);
      for (let r = 0; r < 2; r++) for (let c = 0; c < 3; c++) out[(r + 1) * 5 + c] = a!.data[r * 3 + c];
      return R.ref([3, 5], out);
    },
  },
  {
    name: "UpsampleNearest ×2",
    dtype: "float32",
    inputs: [sh(1, 2, 2, 3)],
    build: ([a]) => G.upsampleNearest(a!, 2),
    reference: ([a]) => {
      const out: number[] = [];
      for (let c = 0; c < 2; c++)
        for (let y = 0; y < 4; y++) for (let x = 0; x < 6; x++) out.push(a!.data[c * 6 + (y >> 1) * 3 + (x >> 1)]!);
      return R.ref([1, 2, 4, 6], out);
    },
  },
  // linear algebra
  {
    name: "MatMul [2,3,4]@[4,5]",
    dtype: "float64",
    inputs: [sh(2, 3, 4), sh(4, 5)],
    build: ([a, b]) => G.matmul(a!, b!),
    reference: ([a, b]) => R.matmul(a!, b!),
  },
  {
    name: "MatMul batch broadcast [2,1,3,4]@[3,4,2]",
    dtype: "float64",
    inputs: [sh(2, 1, 3, 4), sh(3, 4, 2)],
    build: ([a, b]) => G.matmul(a!, b!),
    reference: ([a, b]) => R.matmul(a!, b!),
  },
  {
    name: "MatMul [3,4]@[2,4,5]",
    dtype: "float64",
    inputs: [sh(3, 4), sh(2, 4, 5)],
    build: ([a, b]) => G.matmul(a!, b!),
    reference: ([a, b]) => R.matmul(a!, b!),
  },
  {
    name: "linear (x·Wᵀ + b)",
    dtype: "float64",
    inputs: [sh(2, 3, 4), sh(5, 4), sh(5)],
    build: ([x, w, b]) => G.linear(x!, w!, b!),
    reference: ([x, w, b]) => R.map2(R.matmul(x!, R.transpose(w!, [1, 0])), b!, (p, q) => p + q),
  },
  ...[false, true].flatMap((tA) =>
    [false, true].map(
      (tB): OpCase => ({
        name: `Gemm transA=${tA} transB=${tB} alpha 1.5 beta 0.5`,
        dtype: "float64",
        inputs: [sh(...(tA ? [4, 3] : [3, 4])), sh(...(tB ? [5, 4] : [4, 5])), sh(5)],
        build: ([a, b, c]) => G.gemm(a!, b!, { c: c!, transA: tA, transB: tB, alpha: 1.5, beta: 0.5 }),
        reference: ([a, b, c]) => {
          const p = R.matmul(tA ? R.transpose(a!, [1, 0]) : a!, tB ? R.transpose(b!, [1, 0]) : b!);
          return R.map2(p, c!, (x, y) => 1.5 * x + 0.5 * y);
        },
      }),
    ),
  ),
  convCase("Conv 3×3 pad 1 with bias", [2, 3, 5, 5], [4, 3, 3, 3], true, { pads: [1, 1, 1, 1] }),
  convCase("Conv 3×3 stride 2 pad 1 (odd size)", [1, 2, 7, 7], [3, 2, 3, 3], false, {
    strides: [2, 2],
    pads: [1, 1, 1, 1],
  }),
  convCase("Conv 3×3 stride 2 pad 1 (even size)", [1, 2, 6, 8], [3, 2, 3, 3], true, {
    strides: [2, 2],
    pads: [1, 1, 1, 1],
  }),
  convCase("Conv 3×3 dilation 2, asymmetric pads", [1, 2, 7, 6], [2, 2, 3, 3], false, {
    dilations: [2, 2],
    pads: [2, 1, 0, 2],
  }),
  convCase("Conv groups 2", [2, 4, 5, 4], [6, 2, 3, 3], true, { group: 2, pads: [1, 1, 1, 1] }),
  convCase("Conv 1×1", [2, 3, 4, 4], [5, 3, 1, 1], true, {}),
  constantWeightConvCase(
    "Conv of a constant weight (input gradient as a Conv with the flipped kernel)",
    [2, 3, 5, 6],
    [4, 3, 3, 3],
    {
      pads: [1, 1, 1, 1],
    },
  ),
  constantWeightConvCase("Conv of a constant weight, asymmetric pads, 2×3 kernel", [1, 2, 5, 7], [3, 2, 2, 3], {
    pads: [0, 2, 1, 1],
  }),
  constantWeightConvCase(
    "Conv of a constant weight, stride 2 (input gradient stays a ConvTranspose)",
    [1, 2, 7, 7],
    [3, 2, 3, 3],
    {
      strides: [2, 2],
      pads: [1, 1, 1, 1],
    },
  ),
  convCase("Conv 2×3 kernel stride (1,2)", [1, 2, 5, 7], [3, 2, 2, 3], false, { strides: [1, 2] }),
  // composites
  {
    name: "silu",
    dtype: "float64",
    inputs: [{ shape: [2, 4], lo: -3, hi: 3 }],
    build: ([a]) => G.silu(a!),
    reference: ([a]) => R.map1(a!, (x) => x * sigmoid(x)),
  },
  {
    name: "gelu (erf)",
    dtype: "float32",
    inputs: [{ shape: [2, 4], lo: -3, hi: 3 }],
    build: ([a]) => G.gelu(a!),
    reference: ([a]) => R.map1(a!, (x) => 0.5 * x * (1 + R.erf(x / Math.SQRT2))),
  },
  {
    name: "gelu (tanh)",
    dtype: "float64",
    inputs: [{ shape: [2, 4], lo: -3, hi: 3 }],
    build: ([a]) => G.geluTanh(a!),
    reference: ([a]) => R.map1(a!, (x) => 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3)))),
  },
  {
    name: "quick gelu",
    dtype: "float64",
    inputs: [{ shape: [2, 4], lo: -3, hi: 3 }],
    build: ([a]) => G.quickGelu(a!),
    reference: ([a]) => R.map1(a!, (x) => x * sigmoid(1.702 * x)),
  },
  {
    name: "layerNorm (LayerNormCore: ORT's LayerNormalization kernel, closed-form gradient)",
    dtype: "float64",
    inputs: [sh(2, 3, 6), sh(6), sh(6)],
    build: ([x, w, b]) => G.layerNorm(x!, w!, b!, 1e-5),
    reference: ([x, w, b]) => layerNormRef(x!, w!, b!, 1e-5),
  },
  {
    name: "layerNorm composite",
    dtype: "float64",
    inputs: [sh(2, 3, 6), sh(6), sh(6)],
    build: ([x, w, b]) => G.layerNormComposite(x!, w!, b!, 1e-5),
    reference: ([x, w, b]) => layerNormRef(x!, w!, b!, 1e-5),
  },
  {
    // ORT's InstanceNormalization kernel is float32 only.
    name: "groupNorm (GroupNormCore: ORT's InstanceNormalization kernel, closed-form gradient)",
    dtype: "float32",
    inputs: [sh(2, 4, 3, 3), sh(4), sh(4)],
    build: ([x, w, b]) => G.groupNorm(x!, 2, w!, b!, 1e-5),
    reference: ([x, w, b]) => groupNormRef(x!, 2, w!, b!, 1e-5),
  },
  {
    name: "groupNorm composite",
    dtype: "float64",
    inputs: [sh(2, 4, 3, 3), sh(4), sh(4)],
    build: ([x, w, b]) => G.groupNormComposite(x!, 2, w!, b!, 1e-5),
    reference: ([x, w, b]) => groupNormRef(x!, 2, w!, b!, 1e-5),
  },
  {
    name: "attention, 2 heads",
    dtype: "float64",
    inputs: [sh(2, 3, 4), sh(2, 5, 4), sh(2, 5, 4)],
    build: ([q, k, v]) => G.attention(q!, k!, v!, { heads: 2 }),
    reference: ([q, k, v]) => attentionRef(q!, k!, v!, 2),
  },
  {
    // ORT fuses the q scaling into FusedMatMul, whose alpha attribute is a float32: ~1e-9 in float64.
    name: "attention with the probabilities recomputed in the backward (AttentionCore; fused float32 scale)",
    dtype: "float64",
    forwardTolerance: 1e-8,
    inputs: [sh(2, 3, 4), sh(2, 5, 4), sh(2, 5, 4)],
    build: ([q, k, v]) => G.attention(q!, k!, v!, { heads: 2, recompute: true }),
    reference: ([q, k, v]) => attentionRef(q!, k!, v!, 2),
  },
  {
    name: "AttentionCore with a causal mask (fused float32 scale)",
    dtype: "float64",
    forwardTolerance: 1e-8,
    inputs: [sh(1, 4, 4), sh(1, 4, 4), sh(1, 4, 4)],
    build: ([q, k, v]) => {
      const mask = causalMask(4);
      return G.attention(q!, k!, v!, { heads: 2, mask: G.constant(mask, [4, 4]), recompute: true });
    },
    reference: ([q, k, v]) => {
      const mask = causalMask(4);
      return attentionRef(q!, k!, v!, 2, { shape: [4, 4], data: mask });
    },
  },
  {
    name: "AttentionCore in blocks of 2 query rows (an ONNX Loop; fused float32 scale)",
    dtype: "float64",
    forwardTolerance: 1e-8,
    inputs: [sh(2, 6, 4), sh(2, 5, 4), sh(2, 5, 4)],
    build: ([q, k, v]) => G.attention(q!, k!, v!, { heads: 2, recompute: true, blockRows: 2 }),
    reference: ([q, k, v]) => attentionRef(q!, k!, v!, 2),
  },
  {
    name: "AttentionCore in blocks of 3 query rows with a causal mask sliced per block",
    dtype: "float64",
    forwardTolerance: 1e-8,
    inputs: [sh(1, 6, 4), sh(1, 6, 4), sh(1, 6, 4)],
    build: ([q, k, v]) => {
      const mask = causalMask(6);
      return G.attention(q!, k!, v!, { heads: 2, mask: G.constant(mask, [6, 6]), recompute: true, blockRows: 3 });
    },
    reference: ([q, k, v]) => {
      const mask = causalMask(6);
      return attentionRef(q!, k!, v!, 2, { shape: [6, 6], data: mask });
    },
  },
  {
    name: "attention, causal mask with −∞",
    dtype: "float64",
    inputs: [sh(1, 4, 4), sh(1, 4, 4), sh(1, 4, 4)],
    build: ([q, k, v]) => {
      const mask = causalMask(4);
      return G.attention(q!, k!, v!, { heads: 1, mask: G.constant(mask, [4, 4]) });
    },
    reference: ([q, k, v]) => {
      const mask = causalMask(4);
      return attentionRef(q!, k!, v!, 1, { shape: [4, 4], data: mask });
    },
  },
];

describe("ops: forward against float64 references, gradients against central differences", () => {
  for (const c of cases) {
    it(`${c.name} (${c.dtype})`, async () => {
      const r = await checkOp(c);
      const [defaultFwdTol, gradTol] = c.dtype === "float64" ? [1e-12, 1e-7] : [1e-5, 1e-4];
      const fwdTol = c.forwardTolerance ?? defaultFwdTol;
      expect(r.forwardErr).toBeLessThanOrEqual(fwdTol * Math.max(1, r.forwardScale));
      expect(r.gradErr).toBeLessThanOrEqual(gradTol * Math.max(1, r.gradScale));
      expect(r.gradScale).toBeGreaterThan(0);
    });
  }
});
