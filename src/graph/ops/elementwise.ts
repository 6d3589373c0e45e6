/** Elementwise ops with NumPy broadcasting: arithmetic, math functions, comparisons, Where, Cast, Clip. */
import { type DType, isFloating } from "../dtype.js";
import { attr } from "../emit.js";
import { apply, type OpDef, scalar, type Tensor } from "../tensor.js";
import { broadcastShapes, expand, unbroadcast } from "./broadcast.js";

export { broadcastShapes, unbroadcast } from "./broadcast.js";

export type Operand = Tensor | number;

function sameDtype(inputs: readonly Tensor[], op: string): DType {
  const dtype = (inputs[0] as Tensor).dtype;
  for (const t of inputs) {
    if (t.dtype !== dtype) throw new Error(`${op}: mixed dtypes ${inputs.map(String).join(", ")}; cast first`);
  }
  return dtype;
}

function binaryOp(
  name: string,
  grad?: (t: Tensor, g: Tensor, needs: readonly boolean[]) => (Tensor | null)[],
  resultDtype?: DType,
): OpDef {
  return {
    name,
    shape: ([a, b]) => {
      const dtype = sameDtype([a as Tensor, b as Tensor], name);
      return { shape: broadcastShapes((a as Tensor).shape, (b as Tensor).shape, name), dtype: resultDtype ?? dtype };
    },
    emit: (e) => e.node(name, e.inputs, {}, e.output),
    grad,
    flops: (t) => t.size,
  };
}

const lhs = (t: Tensor) => t.inputs[0] as Tensor;
const rhs = (t: Tensor) => t.inputs[1] as Tensor;

export const Add: OpDef = binaryOp("Add", (t, g, needs) => [
  needs[0] ? unbroadcast(g, lhs(t).shape) : null,
  needs[1] ? unbroadcast(g, rhs(t).shape) : null,
]);

export const Sub: OpDef = binaryOp("Sub", (t, g, needs) => [
  needs[0] ? unbroadcast(g, lhs(t).shape) : null,
  needs[1] ? unbroadcast(neg(g), rhs(t).shape) : null,
]);

export const Mul: OpDef = binaryOp("Mul", (t, g, needs) => [
  needs[0] ? unbroadcast(mul(g, rhs(t)), lhs(t).shape) : null,
  needs[1] ? unbroadcast(mul(g, lhs(t)), rhs(t).shape) : null,
]);

export const Div: OpDef = binaryOp("Div", (t, g, needs) => [
  needs[0] ? unbroadcast(div(g, rhs(t)), lhs(t).shape) : null,
  // d(a/b)/db = -a/b² = -(a/b)/b
  needs[1] ? unbroadcast(neg(div(mul(g, t), rhs(t))), rhs(t).shape) : null,
]);

export const Pow: OpDef = binaryOp("Pow", (t, g, needs) => {
  const a = lhs(t);
  const b = rhs(t);
  return [
    needs[0] ? unbroadcast(mul(g, mul(b, pow(a, sub(b, 1)))), a.shape) : null,
    needs[1] ? unbroadcast(mul(g, mul(t, log(a))), b.shape) : null,
  ];
});

/** Max/Min send the cotangent to the selected input and split it evenly on ties (as PyTorch does). */
function selectGrad(t: Tensor, g: Tensor, needs: readonly boolean[]): (Tensor | null)[] {
  const a = lhs(t);
  const b = rhs(t);
  const dtype = t.dtype;
  const half = scalar(0.5, dtype);
  const fromA = where(equal(a, t), where(equal(b, t), half, scalar(1, dtype)), scalar(0, dtype));
  return [
    needs[0] ? unbroadcast(mul(g, fromA), a.shape) : null,
    needs[1] ? unbroadcast(mul(g, sub(1, fromA)), b.shape) : null,
  ];
}

export const Max: OpDef = binaryOp("Max", selectGrad);
export const Min: OpDef = binaryOp("Min", selectGrad);

export const Equal: OpDef = binaryOp("Equal", undefined, "bool");
export const Less: OpDef = binaryOp("Less", undefined, "bool");
export const Greater: OpDef = binaryOp("Greater", undefined, "bool");
export const And: OpDef = binaryOp("And", undefined, "bool");

function unaryOp(name: string, grad?: (t: Tensor, g: Tensor) => Tensor, flopsPerElement = 1): OpDef {
  return {
    name,
    shape: ([x]) => {
      const t = x as Tensor;
      if (!isFloating(t.dtype) && name !== "Neg" && name !== "Abs" && name !== "Not") {
        throw new Error(`${name}: needs a floating-point input, got ${t}`);
      }
      return { shape: [...t.shape], dtype: t.dtype };
    },
    emit: (e) => e.node(name, e.inputs, {}, e.output),
    grad: grad && ((t, g, needs) => [needs[0] ? grad(t, g) : null]),
    flops: (t) => t.size * flopsPerElement,
  };
}

const x0 = (t: Tensor) => t.inputs[0] as Tensor;

export const Neg: OpDef = unaryOp("Neg", (_t, g) => neg(g));
export const Sqrt: OpDef = unaryOp("Sqrt", (t, g) => div(g, mul(t, 2)));
export const Exp: OpDef = unaryOp("Exp", (t, g) => mul(g, t));
export const Log: OpDef = unaryOp("Log", (t, g) => div(g, x0(t)));
export const Abs: OpDef = unaryOp("Abs", (t, g) => mul(g, sign(x0(t))));
export const Sign: OpDef = unaryOp("Sign", (t) => zerosLike(t));
export const Reciprocal: OpDef = unaryOp("Reciprocal", (t, g) => neg(mul(g, mul(t, t))));
/** d erf(x)/dx = 2/√π · exp(−x²) */
export const Erf: OpDef = unaryOp("Erf", (t, g) => mul(g, mul(exp(neg(mul(x0(t), x0(t)))), 2 / Math.sqrt(Math.PI))));
export const Tanh: OpDef = unaryOp("Tanh", (t, g) => mul(g, sub(1, mul(t, t))));
export const Sigmoid: OpDef = unaryOp("Sigmoid", (t, g) => mul(g, mul(t, sub(1, t))));
export const Sin: OpDef = unaryOp("Sin", (t, g) => mul(g, cos(x0(t))));
export const Cos: OpDef = unaryOp("Cos", (t, g) => neg(mul(g, sin(x0(t)))));
export const Relu: OpDef = unaryOp("Relu", (t, g) => where(greater(x0(t), 0), g, 0));
export const Not: OpDef = {
  name: "Not",
  shape: ([x]) => {
    if ((x as Tensor).dtype !== "bool") throw new Error(`Not: needs a bool input, got ${x}`);
    return { shape: [...(x as Tensor).shape], dtype: "bool" };
  },
  emit: (e) => e.node("Not", e.inputs, {}, e.output),
};

/** Clip to [min, max] (either bound may be omitted); the cotangent passes where the input was inside. */
export const Clip: OpDef<{ min?: number; max?: number }> = {
  name: "Clip",
  shape: ([x]) => ({ shape: [...(x as Tensor).shape], dtype: (x as Tensor).dtype }),
  emit: (e, t) => {
    const { min, max } = t.attrs;
    const ins = [e.inputs[0] as string, min === undefined ? "" : e.scalar(min, t.dtype)];
    if (max !== undefined) ins.push(e.scalar(max, t.dtype));
    e.node("Clip", ins, {}, e.output);
  },
  grad: (t, g, needs) => {
    if (!needs[0]) return [null];
    const x = x0(t);
    const { min, max } = t.attrs;
    let inside: Tensor | null = null;
    if (min !== undefined) inside = not(less(x, min));
    if (max !== undefined) {
      const belowMax = not(greater(x, max));
      inside = inside ? and(inside, belowMax) : belowMax;
    }
    return [inside ? where(inside, g, 0) : g];
  },
  flops: (t) => t.size,
};

export const Where: OpDef = {
  name: "Where",
  shape: ([c, a, b]) => {
    if ((c as Tensor).dtype !== "bool") throw new Error(`Where: the condition must be bool, got ${c}`);
    const dtype = sameDtype([a as Tensor, b as Tensor], "Where");
    const ab = broadcastShapes((a as Tensor).shape, (b as Tensor).shape, "Where");
    return { shape: broadcastShapes((c as Tensor).shape, ab, "Where"), dtype };
  },
  emit: (e) => e.node("Where", e.inputs, {}, e.output),
  grad: (t, g, needs) => {
    const c = t.inputs[0] as Tensor;
    return [
      null,
      needs[1] ? unbroadcast(where(c, g, 0), (t.inputs[1] as Tensor).shape) : null,
      needs[2] ? unbroadcast(where(c, 0, g), (t.inputs[2] as Tensor).shape) : null,
    ];
  },
  flops: (t) => t.size,
};

export const Cast: OpDef<{ to: DType }> = {
  name: "Cast",
  shape: ([x], attrs) => ({ shape: [...(x as Tensor).shape], dtype: attrs.to }),
  emit: (e, t) => {
    const codes: Record<DType, number> = { float32: 1, float64: 11, float16: 10, int64: 7, int32: 6, bool: 9 };
    e.node("Cast", e.inputs, { to: attr.int(codes[t.dtype]) }, e.output);
  },
  grad: (t, g, needs) => {
    const from = x0(t).dtype;
    return [needs[0] && isFloating(from) && isFloating(t.dtype) ? cast(g, from) : null];
  },
};

// ---- the functions model code calls ----

function lift(x: Operand, like: Tensor): Tensor {
  return typeof x === "number" ? scalar(x, like.dtype) : x;
}

function binary(op: OpDef, a: Operand, b: Operand): Tensor {
  if (typeof a === "number" && typeof b === "number") throw new Error(`${op.name}: needs at least one tensor`);
  const like = (typeof a === "number" ? b : a) as Tensor;
  return apply(op, [lift(a, like), lift(b, like)]);
}

export const add = (a: Operand, b: Operand): Tensor => binary(Add, a, b);
export const sub = (a: Operand, b: Operand): Tensor => binary(Sub, a, b);
export const mul = (a: Operand, b: Operand): Tensor => binary(Mul, a, b);
export const div = (a: Operand, b: Operand): Tensor => binary(Div, a, b);
export const pow = (a: Operand, b: Operand): Tensor => binary(Pow, a, b);
export const maximum = (a: Operand, b: Operand): Tensor => binary(Max, a, b);
export const minimum = (a: Operand, b: Operand): Tensor => binary(Min, a, b);
export const equal = (a: Operand, b: Operand): Tensor => binary(Equal, a, b);
export const less = (a: Operand, b: Operand): Tensor => binary(Less, a, b);
export const greater = (a: Operand, b: Operand): Tensor => binary(Greater, a, b);
export const and = (a: Tensor, b: Tensor): Tensor => apply(And, [a, b]);
export const not = (a: Tensor): Tensor => apply(Not, [a]);

export const neg = (x: Tensor): Tensor => apply(Neg, [x]);
export const sqrt = (x: Tensor): Tensor => apply(Sqrt, [x]);
export const exp = (x: Tensor): Tensor => apply(Exp, [x]);
export const log = (x: Tensor): Tensor => apply(Log, [x]);
export const abs = (x: Tensor): Tensor => apply(Abs, [x]);
export const sign = (x: Tensor): Tensor => apply(Sign, [x]);
export const reciprocal = (x: Tensor): Tensor => apply(Reciprocal, [x]);
export const erf = (x: Tensor): Tensor => apply(Erf, [x]);
export const tanh = (x: Tensor): Tensor => apply(Tanh, [x]);
export const sigmoid = (x: Tensor): Tensor => apply(Sigmoid, [x]);
export const sin = (x: Tensor): Tensor => apply(Sin, [x]);
export const cos = (x: Tensor): Tensor => apply(Cos, [x]);
export const relu = (x: Tensor): Tensor => apply(Relu, [x]);
export const clip = (x: Tensor, min?: number, max?: number): Tensor => apply(Clip, [x], { min, max });
export const where = (cond: Tensor, a: Operand, b: Operand): Tensor => {
  const like = (typeof a === "number" ? b : a) as Tensor;
  if (typeof like === "number") throw new Error("where: needs at least one tensor branch");
  return apply(Where, [cond, lift(a, like), lift(b, like)]);
};
export const cast = (x: Tensor, dtype: DType): Tensor => (x.dtype === dtype ? x : apply(Cast, [x], { to: dtype }));

/** Zeros of t's shape and dtype (a broadcast scalar). */
export function zerosLike(t: Tensor): Tensor {
  return expand(scalar(0, t.dtype), t.shape);
}
