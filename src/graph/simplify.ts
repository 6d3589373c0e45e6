/**
 * A peephole pass over the symbolic graph before emission: each ONNX node costs ORT ~10 µs to dispatch
 * whatever its size, and gradient rules compose shape ops that a small model then pays for by the hundred
 * (issue 22: the null-text step's graph on the parity model). Rewrites, each exact:
 *   Reshape(Reshape(x)) → Reshape(x), and a Reshape back to x's own shape → x;
 *   Transpose(Transpose(x)) → one Transpose, or x when the two cancel;
 *   x · 1 and 1 · x → x, where the 1 is a constant that does not broadcast x.
 * Tensors are rebuilt only where an input changed, so the rest keep their ids and node names.
 */
import type { CompileOptions } from "./compile.js";
import { topoSort } from "./grad.js";
import { Reshape } from "./ops/broadcast.js";
import { Mul } from "./ops/elementwise.js";
import { Transpose } from "./ops/shape.js";
import { type Attrs, Tensor, withScope } from "./tensor.js";

const sameShape = (a: readonly number[], b: readonly number[]) =>
  a.length === b.length && a.every((d, i) => d === b[i]);

function isConstantOne(t: Tensor): boolean {
  const leaf = t.leaf;
  return leaf?.kind === "constant" && Array.prototype.every.call(leaf.data, (v: number | bigint) => Number(v) === 1);
}

/** The simplified tensor of `t`, whose inputs are already simplified (`inputs`), or null to rebuild it as is. */
function rewrite(t: Tensor, inputs: readonly Tensor[], uses: Map<number, number>): Tensor | null {
  const x = inputs[0] as Tensor;
  if (t.op === Reshape) {
    const source = x.op === Reshape ? (x.inputs[0] as Tensor) : x;
    if (sameShape(source.shape, t.shape)) return source;
    if (source !== x) return build(t, [source], t.attrs);
  }
  // Only a Transpose read by this one alone: another reader keeps it, and ORT fuses a transpose of the
  // last two axes into the MatMul it feeds, which a composed permutation would no longer be.
  if (t.op === Transpose && x.op === Transpose && uses.get((t.inputs[0] as Tensor).id) === 1) {
    const inner = x.attrs.perm as readonly number[];
    const perm = (t.attrs.perm as readonly number[]).map((p) => inner[p] as number);
    const source = x.inputs[0] as Tensor;
    return perm.every((p, i) => p === i) ? source : build(t, [source], { perm });
  }
  if (t.op === Mul) {
    for (const [one, other] of [
      [inputs[0], inputs[1]],
      [inputs[1], inputs[0]],
    ] as [Tensor, Tensor][]) {
      if (isConstantOne(one) && sameShape(other.shape, t.shape) && other.dtype === t.dtype) return other;
    }
  }
  return null;
}

function build(t: Tensor, inputs: readonly Tensor[], attrs: Attrs): Tensor {
  return withScope(t.scope, () => new Tensor(t.op, inputs, attrs, t.shape, t.dtype));
}

/**
 * The simplified graph of `roots`: a map from each tensor reached to its replacement (itself where
 * nothing changed). Leaves are never replaced.
 */
export function simplify(roots: readonly Tensor[]): Map<number, Tensor> {
  const order = topoSort(roots);
  const uses = new Map<number, number>();
  for (const t of [...roots, ...order.flatMap((t) => t.inputs)]) uses.set(t.id, (uses.get(t.id) ?? 0) + 1);
  const out = new Map<number, Tensor>();
  for (const t of order) {
    if (!t.op) {
      out.set(t.id, t);
      continue;
    }
    const inputs = t.inputs.map((i) => out.get(i.id) as Tensor);
    const changed = inputs.some((i, k) => i !== t.inputs[k]);
    out.set(t.id, rewrite(t, inputs, uses) ?? (changed ? build(t, inputs, t.attrs) : t));
  }
  return out;
}

/** `compile`'s outputs and gated outputs, simplified together (they share tensors). */
export function simplifyOutputs(
  outputs: Record<string, Tensor>,
  options: CompileOptions,
): [Record<string, Tensor>, CompileOptions] {
  const gated = options.gated;
  const map = simplify([...Object.values(outputs), ...Object.values(gated?.outputs ?? {})]);
  const mapped = (o: Record<string, Tensor>) =>
    Object.fromEntries(Object.entries(o).map(([name, t]) => [name, map.get(t.id) as Tensor]));
  return [mapped(outputs), gated ? { ...options, gated: { ...gated, outputs: mapped(gated.outputs) } } : options];
}
