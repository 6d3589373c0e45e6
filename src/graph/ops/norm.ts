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

/** x [B, C, ...] → x̂ normalised per sample and group of C/groups channels (no affine). */
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
    const groups = t.attrs.groups;
    const b = x.shape[0] as number;
    const grouped = e.node("Reshape", [e.inputs[0] as string, e.ints([b, groups, -1])]);
    const ones = e.node("Expand", [e.scalar(1, t.dtype), e.ints([groups])]);
    const zeros = e.node("Expand", [e.scalar(0, t.dtype), e.ints([groups])]);
    const normed = e.node("InstanceNormalization", [grouped, ones, zeros], {
      epsilon: attr.float(t.attrs.eps),
    });
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
