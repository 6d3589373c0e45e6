/**
 * Normalisation cores as single ops with their own gradient rules, so that ONNX Runtime runs its fused
 * LayerNormalization kernel instead of a dozen elementwise nodes, and the backward is the closed form
 *   dx = r · (g − mean(g) − x̂ · mean(g · x̂)),  r = 1/√(var + ε)
 * (means over the normalised elements; x̂ the op's output) rather than the autodiff of the composite.
 * r is not recomputed: it is LayerNormalization's InvStdDev output, which the backward reads through a
 * `SavedOutput` of the forward node (recomputing it took seven kernels per norm; with group norm's x and x̂
 * no longer reshaped, the null-text step's graph on the parity model runs 4,472 kernels instead of 5,212:
 * issue 22). The affine scale and shift stay outside (plain Mul/Add in nn.ts).
 */
import { attr, type Emit, savedName } from "../emit.js";
import { apply, type OpDef, type Tensor } from "../tensor.js";
import { add, div, mul, sqrt, sub } from "./elementwise.js";
import { reduceMean } from "./reduce.js";
import { reshape } from "./shape.js";

/**
 * A further output `name` of the node that computed `of` (the statistics a normalisation saves for its
 * backward), as a tensor of `shape`. No node of its own: compile gives it the name the forward node wrote.
 */
export const SavedOutput: OpDef<{ name: string; shape: readonly number[] }> = {
  name: "SavedOutput",
  shape: ([of], attrs) => ({ shape: [...attrs.shape], dtype: (of as Tensor).dtype }),
  emit: (e, t) => e.alias(savedName(e.inputs[0] as string, t.attrs.name)),
  grad: (t) => {
    throw new Error(
      `SavedOutput: '${t.attrs.name}' of ${t.inputs[0]} has no gradient rule (a second derivative through a normalisation's backward is not implemented)`,
    );
  },
};

const saved = (of: Tensor, name: string, shape: readonly number[]): Tensor =>
  apply(SavedOutput, [of], { name, shape: [...shape] });

/** One LayerNormalization node over the last axis of input `x` (of `shape`), writing `y` and saving InvStdDev. */
function emitLayerNorm(
  e: Emit,
  x: string,
  shape: readonly number[],
  eps: number,
  y: string,
  dtype: Tensor["dtype"],
): void {
  const ones = e.node("Expand", [e.scalar(1, dtype), e.ints([shape[shape.length - 1] as number])]);
  e.multi("LayerNormalization", [x, ones], [y, "", savedName(e.output, "inv_std")], {
    axis: attr.int(-1),
    epsilon: attr.float(eps),
  });
}

/**
 * r = 1/√(var + ε) over the last axis of x: the forward node's InvStdDev, which ORT stores in float32
 * (its LayerNormalization has no double statistics), so for other dtypes computed again from x.
 */
function invStd(t: Tensor, x: Tensor, eps: number): Tensor {
  const shape = [...x.shape.slice(0, -1), 1];
  if (t.dtype === "float32") return apply(SavedOutput, [t], { name: "inv_std", shape });
  const axes = [x.rank - 1];
  const centered = sub(x, reduceMean(x, axes, true));
  return div(1, sqrt(add(reduceMean(mul(centered, centered), axes, true), eps)));
}

/** dx of x̂ = (x − μ)·r with means over the last axis, from x̂, the cotangent g and r. */
function normGrad(xhat: Tensor, g: Tensor, r: Tensor): Tensor {
  const axes = [xhat.rank - 1];
  const inner = sub(sub(g, reduceMean(g, axes, true)), mul(xhat, reduceMean(mul(g, xhat), axes, true)));
  return mul(r, inner);
}

/**
 * x [B, C, ...] → x̂ normalised per sample and group of C/groups channels (no affine): LayerNormalization
 * over the last axis of [B, groups, C/groups·...]. Against ORT's InstanceNormalization on the same view
 * (what this op emitted before), at SD 1.5's sizes with 32 groups: 0.82–0.90 ms instead of 1.18–1.32 ms at
 * [1, 320, 64, 64], equal from [1, 1280, 16, 16] down; and nearer float64 (max |Δ| 4.5e-6 instead of 8.2e-5
 * at [1, 320, 64, 64] with mean 100, equal at mean 0).
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
    const grouped = groupedShape(t);
    const x = e.node("Reshape", [e.inputs[0] as string, e.ints(grouped)]);
    const y = savedName(e.output, "grouped");
    emitLayerNorm(e, x, grouped, t.attrs.eps, y, t.dtype);
    e.node("Reshape", [y, e.ints(t.shape)], {}, e.output);
  },
  grad: (t, g, needs) => {
    if (!needs[0]) return [null];
    const grouped = groupedShape(t);
    const xhat = t.dtype === "float32" ? saved(t, "grouped", grouped) : reshape(t, grouped);
    const r = invStd(t, reshape(t.inputs[0] as Tensor, grouped), t.attrs.eps);
    const dx = normGrad(xhat, reshape(g, grouped), r);
    return [reshape(dx, t.shape)];
  },
  flops: (t) => 8 * t.size,
};

function groupedShape(t: Tensor<{ groups: number; eps: number }>): number[] {
  const b = t.shape[0] as number;
  return [b, t.attrs.groups, t.size / b / t.attrs.groups];
}

/** x̂ normalised over the last axis (no affine). */
export const LayerNormCore: OpDef<{ eps: number }> = {
  name: "LayerNormCore",
  shape: ([x]) => ({ shape: [...(x as Tensor).shape], dtype: (x as Tensor).dtype }),
  emit: (e, t) => emitLayerNorm(e, e.inputs[0] as string, t.shape, t.attrs.eps, e.output, t.dtype),
  grad: (t, g, needs) => {
    if (!needs[0]) return [null];
    return [normGrad(t, g, invStd(t, t.inputs[0] as Tensor, t.attrs.eps))];
  },
  flops: (t) => 8 * t.size,
};

export const groupNormCore = (x: Tensor, groups: number, eps: number): Tensor =>
  apply(GroupNormCore, [x], { groups, eps });
export const layerNormCore = (x: Tensor, eps: number): Tensor => apply(LayerNormCore, [x], { eps });
