/** Reductions over axes, and Softmax. */
import { attr } from "../emit.js";
import { apply, type OpDef, type Tensor } from "../tensor.js";
import { normAxes, type ReduceAttrs, reduce, reducedShape, reduceOp, reduceSum, reshape, spread } from "./broadcast.js";
import { cast, div, equal, mul, sub } from "./elementwise.js";

export { normAxes, ReduceSum, reduceSum } from "./broadcast.js";

function reducedCount(t: Tensor<ReduceAttrs>): number {
  const x = t.inputs[0] as Tensor;
  return t.attrs.axes.reduce((n, a) => n * (x.shape[a] as number), 1);
}

export const ReduceMean: OpDef<ReduceAttrs> = reduceOp("ReduceMean", (t, g, needs) => [
  needs[0] ? div(spread(t, g), reducedCount(t)) : null,
]);

/** The cotangent goes to the maximal elements, split evenly among ties. */
export const ReduceMax: OpDef<ReduceAttrs> = reduceOp("ReduceMax", (t, g, needs) => {
  if (!needs[0]) return [null];
  const x = t.inputs[0] as Tensor;
  const kept = reducedShape(x.shape, t.attrs.axes, true);
  const isMax = cast(equal(x, reshape(t, kept)), x.dtype);
  const ties = reduceSum(isMax, t.attrs.axes, true);
  return [mul(isMax, div(reshape(g, kept), ties))];
});

/** Softmax over one axis; dx = y · (g − Σ g·y). */
export const Softmax: OpDef<{ axis: number }> = {
  name: "Softmax",
  shape: ([x]) => ({ shape: [...(x as Tensor).shape], dtype: (x as Tensor).dtype }),
  emit: (e, t) => e.node("Softmax", e.inputs, { axis: attr.int(t.attrs.axis) }, e.output),
  grad: (t, g, needs) => {
    if (!needs[0]) return [null];
    const axis = t.attrs.axis;
    return [mul(t, sub(g, reduceSum(mul(g, t), [axis], true)))];
  },
  flops: (t) => 5 * t.size,
};

export const reduceMean = (x: Tensor, axes?: readonly number[], keepdims = false): Tensor =>
  reduce(ReduceMean, x, axes, keepdims);
export const reduceMax = (x: Tensor, axes?: readonly number[], keepdims = false): Tensor =>
  reduce(ReduceMax, x, axes, keepdims);
export const softmax = (x: Tensor, axis = -1): Tensor => {
  const [a] = normAxes([axis], x.rank, "Softmax");
  return apply(Softmax, [x], { axis: a as number });
};
