/** Reductions over axes, and Softmax. */
import { attr } from "../emit.js";
import { apply, type OpDef, type Tensor } from "../tensor.js";
import { cast, div, equal, mul, sub } from "./elementwise.js";
import { expand, reshape } from "./shape.js";

/** Normalises possibly negative axes against a rank, with an error naming the op. */
export function normAxes(axes: readonly number[], rank: number, op: string): number[] {
  const out = axes.map((a) => {
    if (!Number.isInteger(a) || a < -rank || a >= rank)
      throw new Error(`${op}: axis ${a} is out of range for rank ${rank}`);
    return a < 0 ? a + rank : a;
  });
  if (new Set(out).size !== out.length) throw new Error(`${op}: repeated axes [${axes.join(", ")}]`);
  return out.sort((a, b) => a - b);
}

function reducedShape(shape: readonly number[], axes: readonly number[], keepdims: boolean): number[] {
  const out: number[] = [];
  shape.forEach((d, i) => {
    if (axes.includes(i)) {
      if (keepdims) out.push(1);
    } else out.push(d);
  });
  return out;
}

function reduceOp(name: string, grad: OpDef["grad"]): OpDef {
  return {
    name,
    shape: ([x], attrs) => {
      const t = x as Tensor;
      const axes = attrs.axes as number[];
      return { shape: reducedShape(t.shape, axes, attrs.keepdims as boolean), dtype: t.dtype };
    },
    emit: (e, t) =>
      e.node(
        name,
        [e.inputs[0] as string, e.ints(t.attrs.axes as number[])],
        { keepdims: attr.int(t.attrs.keepdims ? 1 : 0) },
        e.output,
      ),
    grad,
    flops: (t) => (t.inputs[0] as Tensor).size,
  };
}

/** The cotangent of a reduction, reshaped with kept dims and broadcast back to the input shape. */
function spread(t: Tensor, g: Tensor): Tensor {
  const x = t.inputs[0] as Tensor;
  const kept = reducedShape(x.shape, t.attrs.axes as number[], true);
  return expand(reshape(g, kept), x.shape);
}

function reducedCount(t: Tensor): number {
  const x = t.inputs[0] as Tensor;
  return (t.attrs.axes as number[]).reduce((n, a) => n * (x.shape[a] as number), 1);
}

export const ReduceSum: OpDef = reduceOp("ReduceSum", (t, g, needs) => [needs[0] ? spread(t, g) : null]);

export const ReduceMean: OpDef = reduceOp("ReduceMean", (t, g, needs) => [
  needs[0] ? div(spread(t, g), reducedCount(t)) : null,
]);

/** The cotangent goes to the maximal elements, split evenly among ties. */
export const ReduceMax: OpDef = reduceOp("ReduceMax", (t, g, needs) => {
  if (!needs[0]) return [null];
  const x = t.inputs[0] as Tensor;
  const kept = reducedShape(x.shape, t.attrs.axes as number[], true);
  const isMax = cast(equal(x, reshape(t, kept)), x.dtype);
  const ties = reduceSum(isMax, t.attrs.axes as number[], true);
  return [mul(isMax, div(reshape(g, kept), ties))];
});

/** Softmax over one axis; dx = y · (g − Σ g·y). */
export const Softmax: OpDef = {
  name: "Softmax",
  shape: ([x]) => ({ shape: [...(x as Tensor).shape], dtype: (x as Tensor).dtype }),
  emit: (e, t) => e.node("Softmax", e.inputs, { axis: attr.int(t.attrs.axis as number) }, e.output),
  grad: (t, g, needs) => {
    if (!needs[0]) return [null];
    const axis = t.attrs.axis as number;
    return [mul(t, sub(g, reduceSum(mul(g, t), [axis], true)))];
  },
  flops: (t) => 5 * t.size,
};

function reduce(op: OpDef, x: Tensor, axes: readonly number[] | undefined, keepdims: boolean): Tensor {
  const all = axes ?? x.shape.map((_, i) => i);
  return apply(op, [x], { axes: normAxes(all, x.rank, op.name), keepdims });
}

export const reduceSum = (x: Tensor, axes?: readonly number[], keepdims = false): Tensor =>
  reduce(ReduceSum, x, axes, keepdims);
export const reduceMean = (x: Tensor, axes?: readonly number[], keepdims = false): Tensor =>
  reduce(ReduceMean, x, axes, keepdims);
export const reduceMax = (x: Tensor, axes?: readonly number[], keepdims = false): Tensor =>
  reduce(ReduceMax, x, axes, keepdims);
export const softmax = (x: Tensor, axis = -1): Tensor => {
  const [a] = normAxes([axis], x.rank, "Softmax");
  return apply(Softmax, [x], { axis: a as number });
};
