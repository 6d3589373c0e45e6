/**
 * The attention core softmax(scale·q·kᵀ + mask)·v as one op with its own gradient rule, built for
 * the one activation that grows as Nq·Nk (the probabilities: 512 MB per self-attention layer of SD
 * at 64×64 latents):
 *
 * - the backward recomputes the probabilities instead of keeping them from the forward (gradient
 *   checkpointing);
 * - forward and backward run over blocks of `rows` query rows inside an ONNX Loop, so only one
 *   block of scores is alive at a time (Rabe & Staats 2021, "Self-attention does not need O(n²)
 *   memory"). A Loop, not unrolled blocks: ONNX Runtime orders independent nodes itself and would
 *   keep several blocks alive;
 * - the backward uses rowsum(dP ⊙ P) = rowsum(dO ⊙ O) (Dao et al. 2022, FlashAttention, appendix
 *   B.2), so P and dP are its only Nq·Nk temporaries, and transposes only Nq·d-sized values.
 *
 * The recomputation scales q by a division where the forward multiplies: the same values up to
 * rounding, but different nodes, so common subexpression elimination cannot merge the two.
 */
import { DTYPES, type DType, numel } from "../dtype.js";
import { attr, type Emit } from "../emit.js";
import type { AttributeValue, NodeProtoSpec, ValueInfoSpec } from "../onnx_proto.js";
import { apply, type OpDef, type Tensor } from "../tensor.js";
import { broadcastShapes, unbroadcast } from "./broadcast.js";
import { reshape, split } from "./shape.js";

interface Dims {
  batch: number[];
  nq: number;
  nk: number;
  d: number;
  dv: number;
  rows: number;
}

function dims(q: Tensor, kt: Tensor, v: Tensor, rowsAttr: number | undefined, op: string): Dims {
  const nq = q.shape[q.rank - 2] as number;
  const d = q.shape[q.rank - 1] as number;
  const nk = kt.shape[kt.rank - 1] as number;
  if (kt.shape[kt.rank - 2] !== d || v.shape[v.rank - 2] !== nk) {
    throw new Error(`${op}: q ${q}, kᵀ ${kt} and v ${v} do not fit`);
  }
  const batch = broadcastShapes(
    broadcastShapes(q.shape.slice(0, -2), kt.shape.slice(0, -2), op),
    v.shape.slice(0, -2),
    op,
  );
  if (batch.join() !== q.shape.slice(0, -2).join()) {
    throw new Error(`${op}: q ${q} must carry the full batch shape [${batch.join(", ")}] (kᵀ and v may broadcast)`);
  }
  const rows = rowsAttr ?? nq;
  if (!Number.isInteger(rows) || rows < 1 || nq % rows !== 0) {
    throw new Error(`${op}: blocks of ${rows} query rows do not divide Nq = ${nq}`);
  }
  return { batch, nq, nk, d, dv: v.shape[v.rank - 1] as number, rows };
}

/** The scores' scale, and the query rows per block (default all of them). */
type AttentionAttrs = { scale: number; rows?: number };

/** Inputs: q [.., Nq, d], kᵀ [.., d, Nk], v [.., Nk, dv], optional additive mask [.., Nq or 1, Nk]; attrs scale, rows. */
export const AttentionCore: OpDef<AttentionAttrs> = {
  name: "AttentionCore",
  shape: (inputs, attrs) => {
    const [q, kt, v, mask] = inputs as [Tensor, Tensor, Tensor, Tensor | undefined];
    const { batch, nq, dv } = dims(q, kt, v, attrs.rows, "AttentionCore");
    if (mask && mask.rank < 2) throw new Error(`AttentionCore: the mask ${mask} must be at least [Nq, Nk]`);
    if (mask) broadcastShapes(mask.shape, [...batch, nq, kt.shape[kt.rank - 1] as number], "AttentionCore mask");
    return { shape: [...batch, nq, dv], dtype: q.dtype };
  },
  emit: (e, t) => {
    const [q, kt, v, mask] = e.inputs as [string, string, string, string | undefined];
    const [qT, ktT, vT, maskT] = t.inputs as [Tensor, Tensor, Tensor, Tensor | undefined];
    const dm = dims(qT, ktT, vT, t.attrs.rows, "AttentionCore");
    const scale = t.attrs.scale;
    const [blocks] = rowLoop(e, t.dtype, dm, [], [[...dm.batch, dm.rows, dm.dv]], (b) => {
      const qs = b.node("Mul", [b.rowsOf(q, qT.rank), e.scalar(scale, t.dtype)]);
      let s = b.node("MatMul", [qs, kt]);
      if (mask) s = b.node("Add", [s, maskRows(b, mask, maskT as Tensor, dm.nq)]);
      const p = b.node("Softmax", [s], { axis: attr.int(-1) });
      return { carried: [], scanned: [b.node("MatMul", [p, v])] };
    });
    unblock(e, blocks as string, dm, dm.dv, e.output);
  },
  grad: (t, g, needs) => {
    const [q, kt, v, mask] = t.inputs as [Tensor, Tensor, Tensor, Tensor | undefined];
    const [dq, dkt, dv] = attentionCoreGrad(q, kt, v, g, t, t.attrs, mask);
    return [needs[0] ? dq : null, needs[1] ? dkt : null, needs[2] ? dv : null, ...(mask ? [null] : [])];
  },
  flops: (t) => {
    const [q, kt, v] = t.inputs as [Tensor, Tensor, Tensor];
    const { batch, nq, nk, d, dv } = dims(q, kt, v, t.attrs.rows, "AttentionCore");
    return numel(batch) * (nq * d + 2 * nq * nk * d + 5 * nq * nk + 2 * nq * nk * dv);
  },
};

/**
 * The three input gradients of AttentionCore in one op, flattened and concatenated: dq, then dkᵀ
 * and dv over the full batch shape (AttentionCore's rule reduces broadcast axes). Inputs: q, kᵀ, v,
 * the output's cotangent dO, the output O, optional mask.
 */
const AttentionCoreGrad: OpDef<AttentionAttrs> = {
  name: "AttentionCoreGrad",
  shape: (inputs, attrs) => {
    const [q, kt, v] = inputs as [Tensor, Tensor, Tensor];
    const { batch, nk, d, dv } = dims(q, kt, v, attrs.rows, "AttentionCoreGrad");
    return { shape: [q.size + numel(batch) * nk * (d + dv)], dtype: q.dtype };
  },
  emit: (e, t) => {
    const [q, kt, v, dO, o, mask] = e.inputs as [string, string, string, string, string, string | undefined];
    const [qT, ktT, vT, , , maskT] = t.inputs as [Tensor, Tensor, Tensor, Tensor, Tensor, Tensor | undefined];
    const dm = dims(qT, ktT, vT, t.attrs.rows, "AttentionCoreGrad");
    const scale = t.attrs.scale;
    const rank = qT.rank;
    const swap = (x: string, r: number) => e.node("Transpose", [x], { perm: attr.ints(swapPerm(r)) });
    const k = swap(kt, ktT.rank); // [.., Nk, d]
    const vt = swap(v, vT.rank); // [.., dv, Nk]
    const zeros = (shape: number[]) => e.node("ConstantOfShape", [e.ints(shape)], { value: attr.zero(t.dtype) });
    const dktShape = [...dm.batch, dm.d, dm.nk];
    const dvtShape = [...dm.batch, dm.dv, dm.nk];
    const [dkt, dvt, blocks] = rowLoop(
      e,
      t.dtype,
      dm,
      [
        { init: zeros(dktShape), shape: dktShape },
        { init: zeros(dvtShape), shape: dvtShape },
      ],
      [[...dm.batch, dm.rows, dm.d]],
      (b, [dktAcc, dvtAcc]) => {
        const g = b.rowsOf(dO, rank);
        const qs = b.node("Div", [b.rowsOf(q, rank), e.scalar(1 / scale, t.dtype)]);
        let s = b.node("MatMul", [qs, kt]);
        if (mask) s = b.node("Add", [s, maskRows(b, mask, maskT as Tensor, dm.nq)]);
        const p = b.node("Softmax", [s], { axis: attr.int(-1) }); // [.., rows, Nk]
        const dvtNext = b.node("Add", [dvtAcc as string, b.node("MatMul", [b.swap(g, rank), p])]); // dvᵀ += dOᵀ·P
        const dp = b.node("MatMul", [g, vt]); // dO·vᵀ
        const rowDot = b.node("ReduceSum", [b.node("Mul", [g, b.rowsOf(o, rank)]), e.ints([-1])], {
          keepdims: attr.int(1),
        });
        const ds = b.node("Mul", [p, b.node("Sub", [dp, rowDot])]);
        const dq = b.node("Mul", [b.node("MatMul", [ds, k]), e.scalar(scale, t.dtype)]); // dS·k·scale
        const dktNext = b.node("Add", [dktAcc as string, b.node("MatMul", [b.swap(qs, rank), ds])]); // dkᵀ += qsᵀ·dS
        return { carried: [dktNext, dvtNext], scanned: [dq] };
      },
    );
    const dq = unblock(e, blocks as string, dm, dm.d);
    const dv = swap(dvt as string, rank);
    const flat = (x: string) => e.node("Reshape", [x, e.ints([-1])]);
    e.node("Concat", [flat(dq), flat(dkt as string), flat(dv)], { axis: attr.int(0) }, e.output);
  },
  flops: (t) => {
    const [q, kt, v] = t.inputs as [Tensor, Tensor, Tensor];
    const { batch, nq, nk, d, dv } = dims(q, kt, v, t.attrs.rows, "AttentionCoreGrad");
    // Recomputed scores and softmax, dvᵀ, dP, dS, dq, dkᵀ.
    return numel(batch) * (nq * d + 2 * nq * nk * d + 5 * nq * nk + 4 * nq * nk * dv + 2 * nq * nk + 4 * nq * nk * d);
  },
};

/**
 * The gradients [dq, dkᵀ, dv] of attention O = softmax(scale·q·kᵀ + mask)·v given dO and O itself,
 * by AttentionCoreGrad: the probabilities recomputed in blocks of `rows` query rows inside an ONNX
 * Loop. Also the backward of the fused MultiHeadAttention op (mha.ts), whose forward keeps nothing.
 */
export function attentionCoreGrad(
  q: Tensor,
  kt: Tensor,
  v: Tensor,
  dO: Tensor,
  o: Tensor,
  attrs: AttentionAttrs,
  mask?: Tensor,
): [Tensor, Tensor, Tensor] {
  const dm = dims(q, kt, v, attrs.rows, "AttentionCoreGrad");
  const packed = apply(AttentionCoreGrad, [q, kt, v, dO, o, ...(mask ? [mask] : [])], attrs);
  const n = numel(dm.batch);
  const [dq, dkt, dv] = split(packed, [q.size, n * dm.d * dm.nk, n * dm.nk * dm.dv], 0) as [Tensor, Tensor, Tensor];
  return [
    reshape(dq, q.shape),
    unbroadcast(reshape(dkt, [...dm.batch, dm.d, dm.nk]), kt.shape),
    unbroadcast(reshape(dv, [...dm.batch, dm.nk, dm.dv]), v.shape),
  ];
}

/**
 * Attention over q [.., Nq, d], kᵀ [.., d, Nk], v [.., Nk, dv] with its probabilities never kept;
 * `rows` query rows per block (a divisor of Nq; default all of them).
 */
export function attentionCore(q: Tensor, kt: Tensor, v: Tensor, scale: number, mask?: Tensor, rows?: number): Tensor {
  return apply(AttentionCore, mask ? [q, kt, v, mask] : [q, kt, v], rows === undefined ? { scale } : { scale, rows });
}

function swapPerm(rank: number): number[] {
  const perm = Array.from({ length: rank }, (_, i) => i);
  perm[rank - 1] = rank - 2;
  perm[rank - 2] = rank - 1;
  return perm;
}

interface Body {
  node(opType: string, inputs: readonly string[], attrs?: Record<string, AttributeValue>): string;
  /** This iteration's block of query rows of x (axis rank − 2). */
  rowsOf(x: string, rank: number): string;
  swap(x: string, rank: number): string;
}

/** The mask's rows for this block, or the whole mask when it broadcasts over rows. */
function maskRows(b: Body, mask: string, m: Tensor, nq: number): string {
  return m.shape[m.rank - 2] === nq ? b.rowsOf(mask, m.rank) : mask;
}

/**
 * An ONNX Loop over the Nq/rows blocks of query rows. `carried` values are updated by each
 * iteration; `scanned` are per-block results of the given shapes, stacked on a new first axis.
 * Returns the final carried values, then the stacked scanned ones.
 */
function rowLoop(
  e: Emit,
  dtype: DType,
  dm: Dims,
  carried: { init: string; shape: number[] }[],
  scanned: number[][],
  body: (b: Body, carriedIn: string[]) => { carried: string[]; scanned: string[] },
): string[] {
  const nodes: NodeProtoSpec[] = [];
  const add = (opType: string, inputs: readonly string[], attrs?: Record<string, AttributeValue>) => {
    const out = e.fresh(opType);
    nodes.push({ name: out, opType, inputs: [...inputs], outputs: [out], attributes: attrs });
    return out;
  };
  const iter = e.fresh("iter");
  const condIn = e.fresh("cond_in");
  const start = add("Mul", [add("Unsqueeze", [iter, e.ints([0])]), e.ints([dm.rows])]);
  const end = add("Add", [start, e.ints([dm.rows])]);
  const b: Body = {
    node: add,
    rowsOf: (x, rank) => add("Slice", [x, start, end, e.ints([rank - 2])]),
    swap: (x, rank) => add("Transpose", [x], { perm: attr.ints(swapPerm(rank)) }),
  };
  const carriedIn = carried.map(() => e.fresh("carried_in"));
  const result = body(b, carriedIn);
  const condOut = add("Identity", [condIn]);
  const info = (name: string, shape: number[], type: number): ValueInfoSpec => ({ name, elemType: type, dims: shape });
  const f = DTYPES[dtype].onnx;
  const graph = {
    name: e.fresh("blocks"),
    nodes,
    initializers: [],
    inputs: [
      info(iter, [], DTYPES.int64.onnx),
      info(condIn, [], DTYPES.bool.onnx),
      ...carried.map((c, i) => info(carriedIn[i] as string, c.shape, f)),
    ],
    outputs: [
      info(condOut, [], DTYPES.bool.onnx),
      ...carried.map((c, i) => info(result.carried[i] as string, c.shape, f)),
      ...scanned.map((s, i) => info(result.scanned[i] as string, s, f)),
    ],
  };
  return e.multi(
    "Loop",
    [e.scalar(dm.nq / dm.rows, "int64"), e.scalar(1, "bool"), ...carried.map((c) => c.init)],
    carried.length + scanned.length,
    { body: { type: "graph", value: graph } },
  );
}

/** Stacked blocks [n, ...batch, rows, w] → [...batch, Nq, w]. */
function unblock(e: Emit, blocks: string, dm: Dims, w: number, output?: string): string {
  const nb = dm.batch.length;
  const perm = [...Array.from({ length: nb }, (_, i) => i + 1), 0, nb + 1, nb + 2];
  const moved = e.node("Transpose", [blocks], { perm: attr.ints(perm) });
  return e.node("Reshape", [moved, e.ints([...dm.batch, dm.nq, w])], undefined, output);
}
