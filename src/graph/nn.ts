/**
 * Composite layers built from primitive ops: their gradients follow from the primitives' rules.
 * Formulas follow PyTorch's definitions (torch.nn.functional), which diffusers and transformers call.
 */

import { attentionCore } from "./ops/attention.js";
import { add, div, erf, mul, sigmoid, sqrt, sub, tanh } from "./ops/elementwise.js";
import { matmul } from "./ops/linalg.js";
import { multiHeadAttention } from "./ops/mha.js";
import { groupNormCore, layerNormCore } from "./ops/norm.js";
import { reduceMean, softmax } from "./ops/reduce.js";
import { reshape, transpose } from "./ops/shape.js";
import type { Tensor } from "./tensor.js";

/** SiLU (swish): x·σ(x). */
export function silu(x: Tensor): Tensor {
  return mul(x, sigmoid(x));
}

/** GELU, exact: x·Φ(x) = ½x(1 + erf(x/√2)). */
export function gelu(x: Tensor): Tensor {
  return mul(mul(x, 0.5), add(erf(mul(x, Math.SQRT1_2)), 1));
}

/** GELU, tanh approximation (PyTorch approximate="tanh"). */
export function geluTanh(x: Tensor): Tensor {
  const inner = mul(add(x, mul(mul(mul(x, x), x), 0.044715)), Math.sqrt(2 / Math.PI));
  return mul(mul(x, 0.5), add(tanh(inner), 1));
}

/** OpenAI CLIP's quick GELU: x·σ(1.702x). */
export function quickGelu(x: Tensor): Tensor {
  return mul(x, sigmoid(mul(x, 1.702)));
}

/** Mean and biased variance over `axes` (as the normalisation layers use), keeping dims. */
function moments(x: Tensor, axes: readonly number[]): { centered: Tensor; variance: Tensor } {
  const centered = sub(x, reduceMean(x, axes, true));
  return { centered, variance: reduceMean(mul(centered, centered), axes, true) };
}

/**
 * LayerNorm over the last axis (torch.nn.LayerNorm): ORT's LayerNormalization kernel with a
 * closed-form gradient (LayerNormCore), then the affine weight and bias.
 */
export function layerNorm(x: Tensor, weight: Tensor, bias: Tensor, eps = 1e-5): Tensor {
  return add(mul(layerNormCore(x, eps), weight), bias);
}

/**
 * GroupNorm over [B, C, ...] (torch.nn.GroupNorm): statistics per sample and group of channels,
 * through ORT's InstanceNormalization kernel on [B, groups, C/groups·...] (GroupNormCore).
 */
export function groupNorm(x: Tensor, groups: number, weight: Tensor, bias: Tensor, eps = 1e-5): Tensor {
  const c = x.shape[1] as number;
  if (c % groups) throw new Error(`groupNorm: ${c} channels do not split into ${groups} groups`);
  const perChannel = [c, ...x.shape.slice(2).map(() => 1)];
  return add(mul(groupNormCore(x, groups, eps), reshape(weight, perChannel)), reshape(bias, perChannel));
}

/** LayerNorm from primitive ops (the reference the fused core is tested against). */
export function layerNormComposite(x: Tensor, weight: Tensor, bias: Tensor, eps = 1e-5): Tensor {
  const { centered, variance } = moments(x, [x.rank - 1]);
  return add(mul(div(centered, sqrt(add(variance, eps))), weight), bias);
}

/** GroupNorm from primitive ops (the reference the fused core is tested against). */
export function groupNormComposite(x: Tensor, groups: number, weight: Tensor, bias: Tensor, eps = 1e-5): Tensor {
  const [b, c] = x.shape as [number, number];
  const grouped = reshape(x, [b, groups, -1]);
  const { centered, variance } = moments(grouped, [2]);
  const normalized = reshape(div(centered, sqrt(add(variance, eps))), x.shape);
  const perChannel = [c, ...x.shape.slice(2).map(() => 1)];
  return add(mul(normalized, reshape(weight, perChannel)), reshape(bias, perChannel));
}

export interface AttentionOptions {
  heads: number;
  /** Multiplies the scores; default 1/√(head size). */
  scale?: number;
  /** Added to the scores [.., Nq, Nk] before softmax (e.g. a causal mask of −∞ above the diagonal). */
  mask?: Tensor;
  /**
   * Sees the attention probabilities [B, heads, Nq, Nk] and returns the ones to use: the one
   * place where attention can be observed or controlled (Prompt-to-Prompt).
   */
  probsHook?: (probs: Tensor) => Tensor;
  /**
   * Recompute the probabilities in the backward pass instead of keeping them (see AttentionCore).
   * "auto" (default) does so when they take 64 MB or more; a probsHook always keeps them.
   */
  recompute?: boolean | "auto";
  /**
   * With recomputation, query rows per block of scores (a divisor of Nq). Default: the most whose
   * scores fit in 64 MB.
   */
  blockRows?: number;
  /**
   * "fused": ORT's com.microsoft MultiHeadAttention kernel (ops/mha.ts), float32 only, with neither
   * a mask nor a probsHook. "graph": heads split and merged around MatMul/Softmax, or AttentionCore
   * when recomputing. Default: fused where the probabilities are recomputed anyway (it replaces
   * AttentionCore's blocked forward), graph otherwise: a fused forward keeps no probabilities, so a
   * gradient graph would compute them twice (bench:unet grad32 2.3–2.6 s → 3.0–3.3 s, bench:nti-small
   * 50 → 57 ms per iteration when every attention was fused).
   */
  kernel?: "fused" | "graph";
}

/** Scores this large or larger are recomputed in the backward, in blocks no larger. */
const ATTENTION_BLOCK_BYTES = 64 * 2 ** 20;

/** The most query rows, dividing Nq, whose scores (batch·Nk values each) fit in one block; Nq when only tiny blocks would. */
function blockRows(batch: number, nq: number, nk: number): number {
  const limit = Math.max(1, Math.floor(ATTENTION_BLOCK_BYTES / (batch * nk * 4)));
  let rows = Math.min(nq, limit);
  while (nq % rows !== 0) rows--;
  return rows * 8 >= Math.min(nq, limit) ? rows : nq;
}

/**
 * Scaled dot-product attention with heads split from the channel axis:
 * q [B, Nq, C], k and v [B, Nk, C] → [B, Nq, C] (Vaswani et al. 2017, eq. 1).
 */
export function attention(q: Tensor, k: Tensor, v: Tensor, o: AttentionOptions): Tensor {
  const [b, nq, c] = q.shape as [number, number, number];
  const nk = k.shape[1] as number;
  const d = c / o.heads;
  if (!Number.isInteger(d)) throw new Error(`attention: ${c} channels do not split into ${o.heads} heads`);
  const scale = o.scale ?? 1 / Math.sqrt(d);
  const big = b * o.heads * nq * nk * 4 >= ATTENTION_BLOCK_BYTES;
  const recompute = !o.probsHook && (o.recompute === true || (o.recompute !== false && big));
  const rows = recompute ? (o.blockRows ?? blockRows(b * o.heads, nq, nk)) : undefined;
  const fusable = !o.probsHook && !o.mask && q.dtype === "float32";
  if (o.kernel === "fused" && !fusable) {
    throw new Error(
      `attention: kernel "fused" needs float32 and neither a mask nor a probsHook (got ${q.dtype}${o.mask ? ", a mask" : ""}${o.probsHook ? ", a probsHook" : ""})`,
    );
  }
  if (o.kernel === "fused" || (o.kernel === undefined && fusable && recompute)) {
    return multiHeadAttention(q, k, v, o.heads, scale, rows);
  }
  const heads = (x: Tensor, n: number) => transpose(reshape(x, [b, n, o.heads, d]), [0, 2, 1, 3]);
  const kt = transpose(reshape(k, [b, nk, o.heads, d]), [0, 2, 3, 1]);
  const vh = heads(v, nk);
  let out: Tensor; // [B, H, Nq, d]
  if (recompute) {
    out = attentionCore(heads(q, nq), kt, vh, scale, o.mask, rows);
  } else {
    // The scale is applied to q (Nq·d values) rather than to the scores (Nq·Nk values).
    let scores = matmul(mul(heads(q, nq), scale), kt); // [B, H, Nq, Nk]
    if (o.mask) scores = add(scores, o.mask);
    let probs = softmax(scores, -1);
    if (o.probsHook) probs = o.probsHook(probs);
    out = matmul(probs, vh);
  }
  return reshape(transpose(out, [0, 2, 1, 3]), [b, nq, c]);
}
