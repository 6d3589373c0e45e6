/**
 * The attention core softmax(scale·q·kᵀ + mask)·v as one op with its own gradient rule, which
 * recomputes the probabilities in the backward pass instead of keeping them from the forward
 * (gradient checkpointing of the one activation that grows as Nq·Nk: 512 MB per self-attention
 * layer of SD at 64×64 latents). The recomputation scales q by a division instead of the forward's
 * multiplication: the same values up to rounding, but different nodes, so ONNX Runtime's common
 * subexpression elimination cannot merge it back into the forward and keep the probabilities alive.
 */
import { attr } from "../emit.js";
import { apply, type OpDef, type Tensor } from "../tensor.js";
import { add, broadcastShapes, div, mul, sub, unbroadcast } from "./elementwise.js";
import { matmul } from "./linalg.js";
import { reduceSum, softmax } from "./reduce.js";
import { swapLastAxes } from "./shape.js";

/** Inputs: q [.., Nq, d], kᵀ [.., d, Nk], v [.., Nk, d], optional additive mask [.., Nq, Nk]; attr scale. */
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
  emit: (e, t) => {
    const [q, kt, v, mask] = e.inputs as [string, string, string, string | undefined];
    const qs = e.node("Mul", [q, e.scalar(t.attrs.scale as number, t.dtype)]);
    let scores = e.node("MatMul", [qs, kt]);
    if (mask) scores = e.node("Add", [scores, mask]);
    const probs = e.node("Softmax", [scores], { axis: attr.int(-1) });
    e.node("MatMul", [probs, v], {}, e.output);
  },
  grad: (t, g, needs) => {
    const [q, kt, v, mask] = t.inputs as [Tensor, Tensor, Tensor, Tensor | undefined];
    const scale = t.attrs.scale as number;
    // Recompute P = softmax(q/(1/scale)·kᵀ + mask)
    const qs = div(q, 1 / scale);
    let s = matmul(qs, kt);
    if (mask) s = add(s, mask);
    const p = softmax(s, -1);
    // dO: g [.., Nq, d]
    const dv = matmul(swapLastAxes(p), g); // Pᵀ·dO
    const dp = matmul(g, swapLastAxes(v)); // dO·vᵀ
    const ds = mul(p, sub(dp, reduceSum(mul(dp, p), [p.rank - 1], true)));
    const dq = mul(matmul(ds, swapLastAxes(kt)), scale); // dS·k·scale
    const dkt = matmul(swapLastAxes(qs), ds); // (dSᵀ·qs)ᵀ = qsᵀ·dS: [.., d, Nk]
    return [
      needs[0] ? unbroadcast(dq, q.shape) : null,
      needs[1] ? unbroadcast(dkt, kt.shape) : null,
      needs[2] ? unbroadcast(dv, v.shape) : null,
      ...(mask ? [null] : []),
    ];
  },
  flops: (t) => {
    const [q, kt] = t.inputs as [Tensor, Tensor];
    const nk = kt.shape[kt.rank - 1] as number;
    const nq = q.shape[q.rank - 2] as number;
    const d = q.shape[q.rank - 1] as number;
    const dv = t.shape[t.rank - 1] as number;
    const batch = t.size / (nq * dv);
    return batch * (nq * d + 2 * nq * nk * d + 5 * nq * nk + 2 * nq * nk * dv);
  },
};

export function attentionCore(q: Tensor, kt: Tensor, v: Tensor, scale: number, mask?: Tensor): Tensor {
  return apply(AttentionCore, mask ? [q, kt, v, mask] : [q, kt, v], { scale });
}
