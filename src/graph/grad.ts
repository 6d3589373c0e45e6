/**
 * Reverse-mode differentiation of the symbolic graph. The gradient is more graph: each op's rule
 * (`OpDef.grad`) builds its input cotangents from the same ops, so values and gradients compile
 * into one ONNX model and run in one ORT session.
 */
import { isFloating } from "./dtype.js";

import { reduceSum } from "./ops/reduce.js";
import { expand } from "./ops/shape.js";
import { apply, type OpDef, scalar, type Tensor } from "./tensor.js";

export interface GradOptions {
  /** Return zeros for a `wrt` tensor the outputs do not depend on, instead of failing. */
  allowUnused?: boolean;
}

/** Tensors in dependency order (inputs before users), reachable from `outputs`. Iterative: graphs are deep. */
export function topoSort(outputs: readonly Tensor[]): Tensor[] {
  const order: Tensor[] = [];
  const state = new Map<number, 1 | 2>(); // 1: on stack, 2: done
  for (const root of outputs) {
    if (state.get(root.id) === 2) continue;
    const stack: [Tensor, number][] = [[root, 0]];
    state.set(root.id, 1);
    while (stack.length) {
      const top = stack[stack.length - 1] as [Tensor, number];
      const [t, i] = top;
      if (i < t.inputs.length) {
        top[1]++;
        const child = t.inputs[i] as Tensor;
        if (!state.has(child.id)) {
          state.set(child.id, 1);
          stack.push([child, 0]);
        }
      } else {
        stack.pop();
        state.set(t.id, 2);
        order.push(t);
      }
    }
  }
  return order;
}

/** Elementwise sum of same-shape tensors, one ONNX Sum node. */
export const Sum: OpDef = {
  name: "Sum",
  shape: (inputs) => {
    const first = inputs[0] as Tensor;
    for (const t of inputs) {
      if (t.dtype !== first.dtype || t.rank !== first.rank || t.shape.some((d, i) => d !== first.shape[i])) {
        throw new Error(`Sum: operands differ: ${inputs.map(String).join(", ")}`);
      }
    }
    return { shape: [...first.shape], dtype: first.dtype };
  },
  emit: (e) => e.node("Sum", e.inputs, {}, e.output),
  grad: (_t, g, needs) => needs.map((n) => (n ? g : null)),
  flops: (t) => t.size * (t.inputs.length - 1),
};

function sumAll(terms: Tensor[]): Tensor {
  return terms.length === 1 ? (terms[0] as Tensor) : apply(Sum, terms);
}

function describe(t: Tensor): string {
  return t.leaf && t.leaf.kind !== "constant" ? `'${t.leaf.name}'` : `${t}${t.scope ? ` (in ${t.scope})` : ""}`;
}

/**
 * Vector-Jacobian product: the gradients with respect to `wrt` of Σ_k ⟨outputs[k], cotangents[k]⟩.
 * Only nodes on a path from some `wrt` to some output get gradient nodes, so asking for an
 * input's gradient emits no weight gradients. Uses of a value in several places accumulate.
 */
export function vjp(
  outputs: readonly Tensor[],
  cotangents: readonly Tensor[],
  wrt: readonly Tensor[],
  options: GradOptions = {},
): Tensor[] {
  if (outputs.length !== cotangents.length) throw new Error("vjp: one cotangent per output is needed");
  outputs.forEach((o, k) => {
    const c = cotangents[k] as Tensor;
    if (c.dtype !== o.dtype || c.rank !== o.rank || c.shape.some((d, i) => d !== o.shape[i])) {
      throw new Error(`vjp: cotangent ${c} does not match output ${o}`);
    }
  });
  for (const w of wrt) {
    if (!isFloating(w.dtype)) {
      throw new Error(
        `grad: cannot differentiate with respect to ${describe(w)}: ${w.dtype} is not a floating-point type`,
      );
    }
  }
  const order = topoSort(outputs);
  const wrtIds = new Set(wrt.map((w) => w.id));
  // Nodes that depend on some wrt tensor: only they carry gradients.
  const live = new Set<number>();
  for (const t of order) {
    if (wrtIds.has(t.id) || t.inputs.some((i) => live.has(i.id))) live.add(t.id);
  }
  const pending = new Map<number, Tensor[]>();
  const push = (t: Tensor, g: Tensor) => {
    const list = pending.get(t.id);
    if (list) list.push(g);
    else pending.set(t.id, [g]);
  };
  outputs.forEach((o, k) => {
    if (live.has(o.id)) push(o, cotangents[k] as Tensor);
  });

  const result = new Map<number, Tensor>();
  for (let n = order.length - 1; n >= 0; n--) {
    const t = order[n] as Tensor;
    const terms = pending.get(t.id);
    if (!terms) continue;
    pending.delete(t.id);
    const g = sumAll(terms);
    if (wrtIds.has(t.id)) result.set(t.id, g);
    if (!t.op) continue;
    const needs = t.inputs.map((i) => live.has(i.id));
    if (!needs.some(Boolean)) continue;
    if (!t.op.grad) throw new Error(`grad: op ${t.op.name} has no gradient rule (${describe(t)})`);
    const grads = t.op.grad(t, g, needs);
    t.inputs.forEach((x, i) => {
      const gi = grads[i];
      if (!needs[i] || !gi) return;
      if (gi.rank !== x.rank || gi.shape.some((d, j) => d !== x.shape[j]) || gi.dtype !== x.dtype) {
        throw new Error(`grad: the rule of ${t.op?.name} returned ${gi} for input ${x}`);
      }
      push(x, gi);
    });
  }

  return wrt.map((w) => {
    const g = result.get(w.id);
    if (g) return g;
    if (options.allowUnused) return expand(scalar(0, w.dtype), w.shape);
    throw new Error(`grad: the outputs do not depend on ${describe(w)} through differentiable ops`);
  });
}

/** Gradients of a scalar (or summed) loss with respect to `wrt`. */
export function grad(loss: Tensor, wrt: readonly Tensor[], options: GradOptions = {}): Tensor[] {
  const l = loss.size === 1 ? loss : reduceSum(loss);
  const one = expand(scalar(1, l.dtype), l.shape);
  return vjp([l], [one], wrt, options);
}
