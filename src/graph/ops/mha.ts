/**
 * Multi-head attention as one ONNX Runtime kernel: com.microsoft MultiHeadAttention, softmax(scale·
 * q·kᵀ)·v per head on q [B, Nq, C], k [B, Nk, C], v [B, Nk, Cv] → [B, Nq, Cv], heads split from the
 * channel axis inside the kernel. ORT's CPU kernel (float32 only) runs a flash-attention loop
 * (Dao et al. 2022) that never holds a whole score matrix: SD 1.5's 4096-token self-attention in
 * 172 ms against 236 ms for AttentionCore's blocked graph, and no head split/merge nodes. The
 * WebAssembly build of ORT has the same CPU kernel, and both WebGPU providers (JSEP and native)
 * have their own.
 *
 * The kernel keeps nothing for a backward, so the gradient recomputes the probabilities from q and
 * k: for score matrices of 64 MB or more in row blocks inside an ONNX Loop (AttentionCore's
 * backward, `rows` set), otherwise in one piece with the textbook rule (`rows` unset).
 */
import { numel } from "../dtype.js";
import { attr } from "../emit.js";
import { apply, type OpDef, type Tensor } from "../tensor.js";
import { attentionCoreGrad } from "./attention.js";
import { mul, sub } from "./elementwise.js";
import { matmul } from "./linalg.js";
import { reduceSum, softmax } from "./reduce.js";
import { reshape, swapLastAxes, transpose } from "./shape.js";

/** Heads, the scores' scale, and for the backward the query rows per recomputed block (unset: no blocks). */
type MhaAttrs = { heads: number; scale: number; rows?: number };

interface MhaDims {
  b: number;
  nq: number;
  nk: number;
  d: number;
  dv: number;
}

function mhaDims(inputs: readonly Tensor[], heads: number): MhaDims {
  const [q, k, v] = inputs as [Tensor, Tensor, Tensor];
  const fits =
    q.rank === 3 &&
    k.rank === 3 &&
    v.rank === 3 &&
    k.shape[0] === q.shape[0] &&
    v.shape[0] === q.shape[0] &&
    k.shape[2] === q.shape[2] &&
    v.shape[1] === k.shape[1];
  if (!fits)
    throw new Error(`MultiHeadAttention: q ${q}, k ${k} and v ${v} must be [B, Nq, C], [B, Nk, C], [B, Nk, Cv]`);
  if (q.dtype !== "float32" || k.dtype !== "float32" || v.dtype !== "float32") {
    throw new Error(`MultiHeadAttention: ORT's kernel is float32 only, got q ${q}, k ${k}, v ${v}`);
  }
  const [b, nq, c] = q.shape as [number, number, number];
  const cv = v.shape[2] as number;
  if (!Number.isInteger(heads) || heads < 1 || c % heads || cv % heads) {
    throw new Error(`MultiHeadAttention: ${c} and ${cv} channels do not split into ${heads} heads`);
  }
  return { b, nq, nk: k.shape[1] as number, d: c / heads, dv: cv / heads };
}

/** Inputs: q [B, Nq, C], k [B, Nk, C], v [B, Nk, Cv]; attrs heads, scale, rows (backward only). */
export const MultiHeadAttention: OpDef<MhaAttrs> = {
  name: "MultiHeadAttention",
  shape: (inputs, attrs) => {
    const { b, nq, dv } = mhaDims(inputs, attrs.heads);
    if (attrs.rows !== undefined && (!Number.isInteger(attrs.rows) || attrs.rows < 1 || nq % attrs.rows)) {
      throw new Error(`MultiHeadAttention: blocks of ${attrs.rows} query rows do not divide Nq = ${nq}`);
    }
    return { shape: [b, nq, dv * attrs.heads], dtype: "float32" };
  },
  emit: (e, t) =>
    e.node(
      "MultiHeadAttention",
      e.inputs,
      { num_heads: attr.int(t.attrs.heads), scale: attr.float(t.attrs.scale) },
      e.output,
      "com.microsoft",
    ),
  grad: (t, g, needs) => {
    const [q, k, v] = t.inputs as [Tensor, Tensor, Tensor];
    const { heads, scale, rows } = t.attrs;
    const { b, nq, nk, d, dv } = mhaDims(t.inputs, heads);
    const split = (x: Tensor, n: number, w: number) => transpose(reshape(x, [b, n, heads, w]), [0, 2, 1, 3]);
    const merge = (x: Tensor, n: number) => reshape(transpose(x, [0, 2, 1, 3]), [b, n, -1]);
    const qh = split(q, nq, d); // [B, H, Nq, d]
    const kt = transpose(reshape(k, [b, nk, heads, d]), [0, 2, 3, 1]); // [B, H, d, Nk]
    const vh = split(v, nk, dv); // [B, H, Nk, dv]
    const gh = split(g, nq, dv); // [B, H, Nq, dv]
    let dq: Tensor | null = null;
    let dkt: Tensor | null = null;
    let dvh: Tensor | null = null;
    if (rows !== undefined) {
      [dq, dkt, dvh] = attentionCoreGrad(qh, kt, vh, gh, split(t, nq, dv), { scale, rows });
    } else {
      // P recomputed; dS = P ⊙ (dP − rowsum(dP ⊙ P)), as Softmax's rule.
      const qs = mul(qh, scale);
      const p = softmax(matmul(qs, kt), -1); // [B, H, Nq, Nk]
      if (needs[2]) dvh = matmul(swapLastAxes(p), gh);
      if (needs[0] || needs[1]) {
        const dp = matmul(gh, swapLastAxes(vh));
        const ds = mul(p, sub(dp, reduceSum(mul(dp, p), [-1], true)));
        if (needs[0]) dq = mul(matmul(ds, swapLastAxes(kt)), scale);
        if (needs[1]) dkt = matmul(swapLastAxes(qs), ds);
      }
    }
    return [
      needs[0] && dq ? merge(dq, nq) : null,
      needs[1] && dkt ? reshape(transpose(dkt, [0, 3, 1, 2]), [b, nk, -1]) : null,
      needs[2] && dvh ? merge(dvh, nk) : null,
    ];
  },
  flops: (t) => {
    const { b, nq, nk, d, dv } = mhaDims(t.inputs, t.attrs.heads);
    return numel([b, t.attrs.heads]) * (nq * d + 2 * nq * nk * d + 5 * nq * nk + 2 * nq * nk * dv);
  },
};

/**
 * softmax(scale·q·kᵀ)·v with `heads` heads split from the channel axes of q [B, Nq, C], k [B, Nk, C]
 * and v [B, Nk, Cv] (float32), in ORT's fused kernel; `rows`: recompute the probabilities in the
 * backward in blocks of that many query rows (a divisor of Nq) instead of all at once.
 */
export function multiHeadAttention(
  q: Tensor,
  k: Tensor,
  v: Tensor,
  heads: number,
  scale: number,
  rows?: number,
): Tensor {
  return apply(MultiHeadAttention, [q, k, v], rows === undefined ? { heads, scale } : { heads, scale, rows });
}
