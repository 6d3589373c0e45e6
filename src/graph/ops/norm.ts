/**
 * Normalisation cores as single ops with their own gradient rules, so that ONNX Runtime runs its
 * fused kernels (InstanceNormalization for group norm, LayerNormalization for layer norm) instead of a
 * dozen elementwise nodes, and the backward is the closed form
 *   dx = r · (g − mean(g) − x̂ · mean(g · x̂)),  r = 1/√(var + ε)
 * (means over the normalised elements; x̂ the op's output) rather than the autodiff of the composite.
 * The affine scale and shift stay outside (plain Mul/Add in nn.ts).
 */
import { attr } from "../emit.js";
import { apply, type OpDef, type Tensor } from "../tensor.js";
import { add, div, mul, sqrt, sub } from "./elementwise.js";
import { reduceMean } from "./reduce.js";
import { reshape } from "./shape.js";

/** dx of x̂ = (x − μ)·r with means over `axes` of the (reshaped) input. */
function normGrad(x: Tensor, xhat: Tensor, g: Tensor, axes: number[], eps: number): Tensor {
  const centered = sub(x, reduceMean(x, axes, true));
  const r = div(1, sqrt(add(reduceMean(mul(centered, centered), axes, true), eps)));
  const inner = sub(sub(g, reduceMean(g, axes, true)), mul(xhat, reduceMean(mul(g, xhat), axes, true)));
  return mul(r, inner);
}

/**
 * The number of blocks (a divisor of n, as close to √n as there is) over which a group's n values
 * are summed in two levels.
 */
export function statisticsBlocks(n: number): number {
  let k = Math.floor(Math.sqrt(n));
  while (n % k) k--;
  return k;
}

/**
 * x [B, C, ...] → x̂ normalised per sample and group of C/groups channels (no affine).
 *
 * Not ORT's InstanceNormalization: its float32 sums over a whole group (16384 values in the parity
 * VAE's first block, 32768 in SD's at 512×512) lost up to 3 float32 ulps of the output where a
 * pairwise sum loses one (test/fidelity: a GroupNorm of the parity encoder 1.6e-6 from float64, a
 * plain float32 evaluation 6.8e-7). The statistics are taken over blocks of about √n values and
 * combined (Chan et al. 1979), then one BatchNormalization pass normalises with them: 9.0e-7 there,
 * and the parity VAE encoder about 10% slower than with InstanceNormalization (one thread).
 * A group whose size is prime is one block.
 */
export const GroupNormCore: OpDef<{ groups: number; eps: number }> = {
  name: "GroupNormCore",
  shape: ([x], attrs) => {
    const t = x as Tensor;
    const groups = attrs.groups;
    if (t.rank < 2 || (t.shape[1] as number) % groups)
      throw new Error(`GroupNormCore: ${t} does not split into ${groups} groups`);
    return { shape: [...t.shape], dtype: t.dtype };
  },
  emit: (e, t) => {
    const x = t.inputs[0] as Tensor;
    const rows = (x.shape[0] as number) * t.attrs.groups;
    const n = x.size / rows;
    const k = statisticsBlocks(n);
    const m = n / k;
    const keep = { keepdims: attr.int(1) };
    const blocks = e.node("Reshape", [e.inputs[0] as string, e.ints([rows, k, m])]);
    // Per block of m values: the mean and the biased variance E[x²] − E[x]² (m is small).
    const blockMean = e.node("ReduceMean", [blocks, e.ints([2])], keep);
    const blockSquares = e.node("Div", [e.node("ReduceSumSquare", [blocks, e.ints([2])], keep), e.scalar(m, t.dtype)]);
    const blockVar = e.node("Sub", [blockSquares, e.node("Mul", [blockMean, blockMean])]);
    // Over the blocks (Chan et al.): the mean of the means, the variance within plus between blocks.
    const mean = e.node("ReduceMean", [blockMean, e.ints([1])], keep);
    const deviation = e.node("Sub", [blockMean, mean]);
    const variance = e.node(
      "ReduceMean",
      [e.node("Add", [blockVar, e.node("Mul", [deviation, deviation])]), e.ints([1])],
      keep,
    );
    // One pass over the values: BatchNormalization with the group statistics as its running ones.
    const ones = e.node("Expand", [e.scalar(1, t.dtype), e.ints([rows])]);
    const zeros = e.node("Expand", [e.scalar(0, t.dtype), e.ints([rows])]);
    const normed = e.node(
      "BatchNormalization",
      [
        e.node("Reshape", [e.inputs[0] as string, e.ints([1, rows, n])]),
        ones,
        zeros,
        e.node("Reshape", [mean, e.ints([rows])]),
        e.node("Reshape", [variance, e.ints([rows])]),
      ],
      { epsilon: attr.float(t.attrs.eps) },
    );
    e.node("Reshape", [normed, e.ints(x.shape)], {}, e.output);
  },
  grad: (t, g, needs) => {
    if (!needs[0]) return [null];
    const x = t.inputs[0] as Tensor;
    const groups = t.attrs.groups;
    const grouped = [x.shape[0] as number, groups, -1];
    const dx = normGrad(reshape(x, grouped), reshape(t, grouped), reshape(g, grouped), [2], t.attrs.eps);
    return [reshape(dx, x.shape)];
  },
  flops: (t) => 8 * t.size,
};

/** x̂ normalised over the last axis (no affine). */
export const LayerNormCore: OpDef<{ eps: number }> = {
  name: "LayerNormCore",
  shape: ([x]) => ({ shape: [...(x as Tensor).shape], dtype: (x as Tensor).dtype }),
  emit: (e, t) => {
    const d = t.shape[t.rank - 1] as number;
    const ones = e.node("Expand", [e.scalar(1, t.dtype), e.ints([d])]);
    e.node(
      "LayerNormalization",
      [e.inputs[0] as string, ones],
      { axis: attr.int(-1), epsilon: attr.float(t.attrs.eps) },
      e.output,
    );
  },
  grad: (t, g, needs) => {
    if (!needs[0]) return [null];
    return [normGrad(t.inputs[0] as Tensor, t, g, [t.rank - 1], t.attrs.eps)];
  },
  flops: (t) => 8 * t.size,
};

export const groupNormCore = (x: Tensor, groups: number, eps: number): Tensor =>
  apply(GroupNormCore, [x], { groups, eps });
export const layerNormCore = (x: Tensor, eps: number): Tensor => apply(LayerNormCore, [x], { eps });
