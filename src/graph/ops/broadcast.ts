/**
 * Broadcasting and its adjoint, the ops every other module's gradients are built on: Reshape,
 * Expand and ReduceSum (the gradient of each is made of the others), with the shape helpers
 * (broadcastShapes, normAxes). The other op modules import this one and never each other in a circle.
 */
import { numel } from "../dtype.js";
import { attr } from "../emit.js";
import { apply, type OpDef, type Tensor } from "../tensor.js";

const x0 = (t: Tensor) => t.inputs[0] as Tensor;

/** NumPy broadcasting of two shapes, or an error naming both. */
export function broadcastShapes(a: readonly number[], b: readonly number[], op: string): number[] {
  const rank = Math.max(a.length, b.length);
  const out: number[] = [];
  for (let i = 0; i < rank; i++) {
    const da = a[a.length - rank + i] ?? 1;
    const db = b[b.length - rank + i] ?? 1;
    if (da !== db && da !== 1 && db !== 1) {
      throw new Error(`${op}: shapes [${a.join(", ")}] and [${b.join(", ")}] do not broadcast`);
    }
    out.push(da === 1 ? db : da);
  }
  return out;
}

/** Sums a broadcast cotangent back down to `shape` (the rule every broadcasting op's gradient needs). */
export function unbroadcast(g: Tensor, shape: readonly number[]): Tensor {
  if (g.shape.length === shape.length && g.shape.every((d, i) => d === shape[i])) return g;
  const lead = g.rank - shape.length;
  const axes: number[] = [];
  for (let i = 0; i < g.rank; i++) {
    if (i < lead || (shape[i - lead] === 1 && g.shape[i] !== 1)) axes.push(i);
  }
  const summed = axes.length ? reduceSum(g, axes, true) : g;
  return reshape(summed, shape);
}

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

export function reducedShape(shape: readonly number[], axes: readonly number[], keepdims: boolean): number[] {
  const out: number[] = [];
  shape.forEach((d, i) => {
    if (axes.includes(i)) {
      if (keepdims) out.push(1);
    } else out.push(d);
  });
  return out;
}

/** A reduction's attributes: normalised, sorted axes. */
export type ReduceAttrs = { axes: readonly number[]; keepdims: boolean };

export function reduceOp(name: string, grad: OpDef<ReduceAttrs>["grad"]): OpDef<ReduceAttrs> {
  return {
    name,
    shape: ([x], attrs) => {
      const t = x as Tensor;
      return { shape: reducedShape(t.shape, attrs.axes, attrs.keepdims), dtype: t.dtype };
    },
    emit: (e, t) =>
      e.node(
        name,
        [e.inputs[0] as string, e.ints(t.attrs.axes)],
        { keepdims: attr.int(t.attrs.keepdims ? 1 : 0) },
        e.output,
      ),
    grad,
    flops: (t) => (t.inputs[0] as Tensor).size,
  };
}

/** The cotangent of a reduction, reshaped with kept dims and broadcast back to the input shape. */
export function spread(t: Tensor<ReduceAttrs>, g: Tensor): Tensor {
  const x = t.inputs[0] as Tensor;
  const kept = reducedShape(x.shape, t.attrs.axes, true);
  return expand(reshape(g, kept), x.shape);
}

export const ReduceSum: OpDef<ReduceAttrs> = reduceOp("ReduceSum", (t, g, needs) => [needs[0] ? spread(t, g) : null]);

/** The target shape of Reshape and Expand. */
export type ShapeAttrs = { shape: readonly number[] };

export const Reshape: OpDef<ShapeAttrs> = {
  name: "Reshape",
  shape: ([x], attrs) => ({ shape: [...attrs.shape], dtype: (x as Tensor).dtype }),
  emit: (e, t) => e.node("Reshape", [e.inputs[0] as string, e.ints(t.shape)], {}, e.output),
  grad: (t, g, needs) => [needs[0] ? reshape(g, x0(t).shape) : null],
};

export const Expand: OpDef<ShapeAttrs> = {
  name: "Expand",
  shape: ([x], attrs) => {
    const t = x as Tensor;
    const target = attrs.shape;
    const shape = broadcastShapes(t.shape, target, "Expand");
    if (shape.length !== target.length || shape.some((d, i) => d !== target[i])) {
      throw new Error(`Expand: cannot expand ${t} to [${target.join(", ")}]`);
    }
    return { shape, dtype: t.dtype };
  },
  emit: (e, t) => e.node("Expand", [e.inputs[0] as string, e.ints(t.shape)], {}, e.output),
  grad: (t, g, needs) => [needs[0] ? unbroadcast(g, x0(t).shape) : null],
};

export function reduce(
  op: OpDef<ReduceAttrs>,
  x: Tensor,
  axes: readonly number[] | undefined,
  keepdims: boolean,
): Tensor {
  const all = axes ?? x.shape.map((_, i) => i);
  return apply(op, [x], { axes: normAxes(all, x.rank, op.name), keepdims });
}

export const reduceSum = (x: Tensor, axes?: readonly number[], keepdims = false): Tensor =>
  reduce(ReduceSum, x, axes, keepdims);

/** Reshape to a static shape; one entry may be -1 (inferred). */
export function reshape(x: Tensor, shape: readonly number[]): Tensor {
  const target = [...shape];
  const unknown = target.indexOf(-1);
  if (unknown >= 0) {
    const known = target.reduce((n, d, i) => (i === unknown ? n : n * d), 1);
    target[unknown] = known === 0 ? 0 : x.size / known;
  }
  if (numel(target) !== x.size || target.some((d) => !Number.isInteger(d) || d < 0)) {
    throw new Error(`reshape: cannot reshape ${x} to [${shape.join(", ")}]`);
  }
  if (target.length === x.rank && target.every((d, i) => d === x.shape[i])) return x;
  return apply(Reshape, [x], { shape: target });
}

export function expand(x: Tensor, shape: readonly number[]): Tensor {
  if (x.rank === shape.length && x.shape.every((d, i) => d === shape[i])) return x;
  return apply(Expand, [x], { shape: [...shape] });
}
