/**
 * The attention core softmax(q·kᵀ + mask)·v as one op with its own gradient rule, which
 * recomputes the probabilities in the backward pass instead of keeping them from the forward
 * (gradient checkpointing of the one activation that grows as Nq·Nk: 512 MB per self-attention
 * layer of SD at 64×64 latents). The recomputation runs in transposed layout (Sᵀ = k·qᵀ,
 * softmax over axis −2), which gives Pᵀ directly for dV = Pᵀ·dO and keeps ONNX Runtime's common
 * subexpression elimination from merging it back into the forward.
 */
import { attr } from "../emit.js";
import { apply, type OpDef, type Tensor } from "../tensor.js";
import { add, broadcastShapes, mul, sub, unbroadcast } from "./elementwise.js";
import { matmul } from "./linalg.js";
import { reduceSum, softmax } from "./reduce.js";
import { transpose } from "./shape.js";

const swapLast = (x: Tensor) => {
  const perm = x.shape.map((_, i) => i);
  perm[x.rank - 1] = x.rank - 2;
  perm[x.rank - 2] = x.rank - 1;
  return transpose(x, perm);
};

/** Inputs: q [.., Nq, d] (already scaled), kᵀ [.., d, Nk], v [.., Nk, d], optional additive mask [.., Nq, Nk]. */
export const AttentionCore: OpDef = {
  name: "AttentionCore",
  shape: (inputs) => {
    const [q, kt, v, mask] = inputs as [Tensor, Tensor, Tensor, Tensor | undefined];
    const nq = q.shape[q.rank - 2] as number;
    const d = q.shape[q.rank - 1] as number;
    const nk = kt.shape[kt.rank - 1] as number;
    if (kt.shape[kt.rank - 2] !== d || v.shape[v.rank - 2] !== nk) {
      throw new Error(`AttentionCore: q ${q}, kᵀ ${kt} and v ${v} do not fit`);
    }
    const batch = broadcastShapes(
      broadcastShapes(q.shape.slice(0, -2), kt.shape.slice(0, -2), "AttentionCore"),
      v.shape.slice(0, -2),
      "AttentionCore",
    );
    if (mask && mask.rank < 2) throw new Error(`AttentionCore: the mask ${mask} must be at least [Nq, Nk]`);
    if (mask) broadcastShapes(mask.shape, [...batch, nq, nk], "AttentionCore mask");
    return { shape: [...batch, nq, v.shape[v.rank - 1] as number], dtype: q.dtype };
  },
  emit: (e) => {
    const [q, kt, v, mask] = e.inputs as [string, string, string, string | undefined];
    let scores = e.node("MatMul", [q, kt]);
    if (mask) scores = e.node("Add", [scores, mask]);
    const probs = e.node("Softmax", [scores], { axis: attr.int(-1) });
    e.node("MatMul", [probs, v], {}, e.output);
  },
  grad: (t, g, needs) => {
    const [q, kt, v, mask] = t.inputs as [Tensor, Tensor, Tensor, Tensor | undefined];
    // Recompute Pᵀ = softmax over keys of Sᵀ = k·qᵀ (+ maskᵀ): [.., Nk, Nq]
    let st = matmul(swapLast(kt), swapLast(q));
    if (mask) st = add(st, swapLast(mask));
    const pt = softmax(st, -2);
    // dO: g [.., Nq, d]
    const dv = matmul(pt, g); // Pᵀ·dO
    const dpt = matmul(v, swapLast(g)); // (dO·vᵀ)ᵀ
    const dst = mul(pt, sub(dpt, reduceSum(mul(dpt, pt), [pt.rank - 2], true)));
    const dq = swapLast(matmul(kt, dst)); // (dS·k)ᵀ = kᵀ·dSᵀ, transposed back (d × Nq: small)
    const dk = matmul(dst, q); // dSᵀ·q: [.., Nk, d]
    return [
      needs[0] ? unbroadcast(dq, q.shape) : null,
      needs[1] ? unbroadcast(swapLast(dk), kt.shape) : null,
      needs[2] ? unbroadcast(dv, v.shape) : null,
      ...(mask ? [null] : []),
    ];
  },
  flops: (t) => {
    const [q, kt] = t.inputs as [Tensor, Tensor];
    const nk = kt.shape[kt.rank - 1] as number;
    const nq = q.shape[q.rank - 2] as number;
    const d = q.shape[q.rank - 1] as number;
    const batch = t.size / (nq * (t.shape[t.rank - 1] as number));
    return batch * (2 * nq * nk * d + 5 * nq * nk + 2 * nq * nk * (t.shape[t.rank - 1] as number));
  },
};

export function attentionCore(q: Tensor, kt: Tensor, v: Tensor, mask?: Tensor): Tensor {
  return apply(AttentionCore, mask ? [q, kt, v, mask] : [q, kt, v]);
}
