/** MatMul, Gemm, Conv and ConvTranspose, with FLOP counts. */
import type { AnyTypedArray } from "../dtype.js";
import { attr } from "../emit.js";
import { apply, type OpDef, type Tensor } from "../tensor.js";
import { broadcastShapes, mul, unbroadcast } from "./elementwise.js";
import { reduceSum } from "./reduce.js";
import { concat, pad, reshape, slice, swapLastAxes, transpose } from "./shape.js";

/** Batched matrix product of rank ≥ 2 tensors; batch axes broadcast. */
export const MatMul: OpDef = {
  name: "MatMul",
  shape: ([a, b]) => {
    const A = a as Tensor;
    const B = b as Tensor;
    if (A.rank < 2 || B.rank < 2 || A.dtype !== B.dtype || A.shape[A.rank - 1] !== B.shape[B.rank - 2]) {
      throw new Error(`MatMul: cannot multiply ${A} by ${B}`);
    }
    const batch = broadcastShapes(A.shape.slice(0, -2), B.shape.slice(0, -2), "MatMul");
    return { shape: [...batch, A.shape[A.rank - 2] as number, B.shape[B.rank - 1] as number], dtype: A.dtype };
  },
  emit: (e) => e.node("MatMul", e.inputs, {}, e.output),
  grad: (t, g, needs) => {
    const [a, b] = t.inputs as [Tensor, Tensor];
    const k = a.shape[a.rank - 1] as number;
    const n = b.shape[b.rank - 1] as number;
    if (b.rank === 2) {
      // A linear layer: fold the batch axes into rows, so both gradients are single GEMMs
      // with transposes done inside the kernel.
      const g2 = reshape(g, [-1, n]);
      return [
        needs[0] ? reshape(gemm(g2, b, { transB: true }), a.shape) : null,
        needs[1] ? gemm(reshape(a, [-1, k]), g2, { transA: true }) : null,
      ];
    }
    return [
      needs[0] ? unbroadcast(matmul(g, swapLastAxes(b)), a.shape) : null,
      needs[1] ? unbroadcast(matmul(swapLastAxes(a), g), b.shape) : null,
    ];
  },
  flops: (t) => {
    const a = t.inputs[0] as Tensor;
    return 2 * t.size * (a.shape[a.rank - 1] as number);
  },
};

/** Y = alpha·op(A)·op(B) + beta·C for 2-D A and B (C broadcast). */
type GemmAttrs = { transA: boolean; transB: boolean; alpha: number; beta: number };

export const Gemm: OpDef<GemmAttrs> = {
  name: "Gemm",
  shape: (inputs, attrs) => {
    const [a, b, c] = inputs as [Tensor, Tensor, Tensor | undefined];
    if (a.rank !== 2 || b.rank !== 2) throw new Error(`Gemm: needs 2-D operands, got ${a} and ${b}`);
    const [m, ka] = attrs.transA ? [a.shape[1], a.shape[0]] : [a.shape[0], a.shape[1]];
    const [kb, n] = attrs.transB ? [b.shape[1], b.shape[0]] : [b.shape[0], b.shape[1]];
    if (ka !== kb || a.dtype !== b.dtype)
      throw new Error(`Gemm: cannot multiply ${a} by ${b} (transA=${attrs.transA}, transB=${attrs.transB})`);
    const shape = [m as number, n as number];
    if (c) broadcastShapes(c.shape, shape, "Gemm");
    return { shape, dtype: a.dtype };
  },
  emit: (e, t) =>
    e.node(
      "Gemm",
      e.inputs,
      {
        transA: attr.int(t.attrs.transA ? 1 : 0),
        transB: attr.int(t.attrs.transB ? 1 : 0),
        alpha: attr.float(t.attrs.alpha),
        beta: attr.float(t.attrs.beta),
      },
      e.output,
    ),
  grad: (t, g, needs) => {
    const [a, b, c] = t.inputs as [Tensor, Tensor, Tensor | undefined];
    const { transA: tA, transB: tB, alpha, beta } = t.attrs;
    // With Y = op(A)·op(B): d op(A) = G·op(B)ᵀ and d op(B) = op(A)ᵀ·G, transposed back where op transposes.
    const dA = tA ? gemm(b, g, { transA: tB, transB: true, alpha }) : gemm(g, b, { transB: !tB, alpha });
    const dB = tB ? gemm(g, a, { transA: true, transB: tA, alpha }) : gemm(a, g, { transA: !tA, alpha });
    const grads: (Tensor | null)[] = [needs[0] ? dA : null, needs[1] ? dB : null];
    if (c) grads.push(needs[2] ? unbroadcast(beta === 1 ? g : mul(g, beta), c.shape) : null);
    return grads;
  },
  flops: (t) => {
    const a = t.inputs[0] as Tensor;
    return 2 * t.size * (a.shape[t.attrs.transA ? 0 : 1] as number);
  },
};

export interface Conv2dOptions {
  strides?: readonly [number, number];
  /** [top, left, bottom, right], as ONNX. */
  pads?: readonly [number, number, number, number];
  dilations?: readonly [number, number];
  group?: number;
}

type ConvAttrs = {
  strides: readonly [number, number];
  pads: readonly [number, number, number, number];
  dilations: readonly [number, number];
  group: number;
};

type ConvTransposeAttrs = ConvAttrs & { outputPadding: readonly [number, number] };

function convAttrs(o: Conv2dOptions): ConvAttrs {
  return {
    // Copies, so that a caller changing its arrays later cannot change the graph.
    strides: [...(o.strides ?? [1, 1])] as const,
    pads: [...(o.pads ?? [0, 0, 0, 0])] as const,
    dilations: [...(o.dilations ?? [1, 1])] as const,
    group: o.group ?? 1,
  };
}

function emitConvAttrs(a: ConvAttrs) {
  return {
    strides: attr.ints(a.strides),
    pads: attr.ints(a.pads),
    dilations: attr.ints(a.dilations),
    group: attr.int(a.group),
  };
}

/** 2-D convolution: x [B, Cin, H, W], w [Cout, Cin/group, kh, kw], optional bias [Cout]. */
export const Conv: OpDef<ConvAttrs> = {
  name: "Conv",
  shape: (inputs, attrs) => {
    const [x, w, b] = inputs as [Tensor, Tensor, Tensor | undefined];
    const a = attrs;
    const fail = (why: string) => new Error(`Conv: ${why} (input ${x}, weight ${w}${b ? `, bias ${b}` : ""})`);
    if (x.rank !== 4 || w.rank !== 4) throw fail("needs 4-D input and weight");
    if (x.dtype !== w.dtype) throw fail("mixed dtypes");
    const [n, c, h, wd] = x.shape as [number, number, number, number];
    const [o, cg, kh, kw] = w.shape as [number, number, number, number];
    if (c % a.group || o % a.group || cg !== c / a.group) throw fail(`channels do not match group ${a.group}`);
    if (b && (b.rank !== 1 || b.shape[0] !== o)) throw fail("bias must be [Cout]");
    const ho = Math.floor((h + a.pads[0] + a.pads[2] - a.dilations[0] * (kh - 1) - 1) / a.strides[0]) + 1;
    const wo = Math.floor((wd + a.pads[1] + a.pads[3] - a.dilations[1] * (kw - 1) - 1) / a.strides[1]) + 1;
    if (ho < 1 || wo < 1) throw fail("the kernel is larger than the padded input");
    return { shape: [n, o, ho, wo], dtype: x.dtype };
  },
  emit: (e, t) => e.node("Conv", e.inputs, emitConvAttrs(t.attrs), e.output),
  grad: (t, g, needs) => {
    const [x, w, b] = t.inputs as [Tensor, Tensor, Tensor | undefined];
    const a = t.attrs;
    const grads: (Tensor | null)[] = [
      needs[0] ? convInputGrad(g, w, x.shape, a) : null,
      needs[1] ? convWeightGrad(x, g, w.shape, a) : null,
    ];
    if (b) grads.push(needs[2] ? reduceSum(g, [0, 2, 3]) : null);
    return grads;
  },
  flops: (t) => {
    const w = t.inputs[1] as Tensor;
    const [, cg, kh, kw] = w.shape as [number, number, number, number];
    return 2 * t.size * cg * kh * kw + (t.inputs[2] ? t.size : 0);
  },
};

/**
 * Transposed 2-D convolution, the adjoint of Conv with the same weight: g [B, Cout, Ho, Wo],
 * w [Cout, Cin/group, kh, kw] → [B, Cin, H, W], where `outputPadding` resolves the
 * ambiguity of strided output sizes.
 */
export const ConvTranspose: OpDef<ConvTransposeAttrs> = {
  name: "ConvTranspose",
  shape: ([g, w], attrs) => {
    const G = g as Tensor;
    const W = w as Tensor;
    const a = attrs;
    const [n, o, ho, wo] = G.shape as [number, number, number, number];
    const [ow, cg, kh, kw] = W.shape as [number, number, number, number];
    if (o !== ow) throw new Error(`ConvTranspose: ${G} does not match weight ${W}`);
    const h = a.strides[0] * (ho - 1) + a.outputPadding[0] + a.dilations[0] * (kh - 1) + 1 - a.pads[0] - a.pads[2];
    const wd = a.strides[1] * (wo - 1) + a.outputPadding[1] + a.dilations[1] * (kw - 1) + 1 - a.pads[1] - a.pads[3];
    return { shape: [n, cg * a.group, h, wd], dtype: G.dtype };
  },
  emit: (e, t) => {
    const a = t.attrs;
    const outputPadding = a.outputPadding;
    const [kh, kw] = (t.inputs[1] as Tensor).shape.slice(2) as [number, number];
    // pads of the equivalent convolution: kernel − 1 − p on each side (+ output padding at the end)
    const pads = [
      kh - 1 - a.pads[0],
      kw - 1 - a.pads[1],
      kh - 1 - a.pads[2] + outputPadding[0],
      kw - 1 - a.pads[3] + outputPadding[1],
    ];
    const unit = (v: readonly number[]) => v.every((x) => x === 1);
    if (unit(a.strides) && unit(a.dilations) && a.group === 1 && pads.every((p) => p >= 0)) {
      // With unit strides the transposed convolution is a convolution with the kernel flipped and its
      // channel axes swapped, and Conv has the blocked-layout kernel that ConvTranspose lacks (bench:ops'
      // conv input-gradient rows). Of a constant weight ORT folds the flip into a new initializer, paid
      // once per session (SD 1.5's gradient session took 126 s to create instead of 61 s); of a weight fed
      // at run time the host flips it once per process (in the graph, ORT's negative-step Slice and the
      // Transpose cost SD 1.5's forward + VJP at 32×32 more than its convolutions: issue 22); of a trained
      // weight it is a small Transpose and Slice per run (train:shapes over 100 VAE steps: 0.93 and 0.80
      // steps/s in two runs, against 0.74 and 0.66 with ConvTranspose; the UNet step gains less).
      const [g, w] = e.inputs as [string, string];
      const [cout, cin] = (t.inputs[1] as Tensor).shape as [number, number];
      const flipped =
        e.derivedWeight(1, "flipped", [cin, cout, kh, kw], (data) => swapAndFlip(data, cout, cin, kh * kw)) ??
        e.node("Slice", [
          e.node("Transpose", [w], { perm: attr.ints([1, 0, 2, 3]) }),
          e.ints([-1, -1]),
          e.ints([-kh - 1, -kw - 1]),
          e.ints([2, 3]),
          e.ints([-1, -1]),
        ]);
      e.node("Conv", [g, flipped], { pads: attr.ints(pads) }, e.output);
      return;
    }
    e.node("ConvTranspose", e.inputs, { ...emitConvAttrs(a), output_padding: attr.ints(outputPadding) }, e.output);
  },
  grad: (t, g, needs) => {
    const [, w] = t.inputs as [Tensor, Tensor];
    const a = t.attrs;
    // The adjoint of a transposed convolution is the convolution itself.
    return [
      needs[0] ? conv2d(g, w, undefined, a) : null,
      needs[1] ? convWeightGrad(g, t.inputs[0] as Tensor, w.shape, a) : null,
    ];
  },
  flops: (t) => {
    const g = t.inputs[0] as Tensor;
    const w = t.inputs[1] as Tensor;
    const [, cg, kh, kw] = w.shape as [number, number, number, number];
    return 2 * g.size * cg * kh * kw;
  },
};

/**
 * w [Cout, Cin, kh, kw] → [Cin, Cout, kh, kw] with both spatial axes reversed: the kernel of the
 * convolution that equals the unit-stride transposed convolution with w. Reversing both axes of a
 * row-major kh×kw block reverses its kh·kw values.
 */
export function swapAndFlip<T extends AnyTypedArray>(w: T, cout: number, cin: number, k: number): T {
  const out = new (w.constructor as new (n: number) => T)(w.length);
  for (let o = 0; o < cout; o++) {
    for (let c = 0; c < cin; c++) {
      const src = (o * cin + c) * k + k - 1;
      const dst = (c * cout + o) * k;
      for (let j = 0; j < k; j++) out[dst + j] = w[src - j] as number;
    }
  }
  return out;
}

/** dL/dx of a convolution: the transposed convolution of the cotangent with the same weight. */
function convInputGrad(g: Tensor, w: Tensor, xShape: readonly number[], a: ConvAttrs): Tensor {
  const [, , kh, kw] = w.shape as [number, number, number, number];
  const [, , ho, wo] = g.shape as [number, number, number, number];
  const full = (i: 0 | 1, k: number, out: number) =>
    a.strides[i] * (out - 1) + a.dilations[i] * (k - 1) + 1 - a.pads[i] - (a.pads[i + 2] as number);
  const outputPadding: [number, number] = [
    (xShape[2] as number) - full(0, kh, ho),
    (xShape[3] as number) - full(1, kw, wo),
  ];
  return apply(ConvTranspose, [g, w], { ...a, outputPadding });
}

/**
 * dL/dw of a convolution, as an im2col product: the kh·kw strided windows of the padded input
 * are stacked along channels and contracted with the cotangent in one GEMM per group
 * (measured ~2.8× faster on ORT CPU than a Conv over transposed tensors). With a batch, the input is
 * first laid out channels-first ([C, B, H, W]) so that the GEMM contracts over B·Ho·Wo at once.
 */
function convWeightGrad(x: Tensor, g: Tensor, wShape: readonly number[], a: ConvAttrs): Tensor {
  const [o, cg, kh, kw] = wShape as [number, number, number, number];
  const bsz = x.shape[0] as number;
  const [, , ho, wo] = g.shape as [number, number, number, number];
  const xp = pad(x, [0, 0, a.pads[0], a.pads[1], 0, 0, a.pads[2], a.pads[3]]);
  // [B, C, H, W] for one sample (the unit batch axis is free); [C, B, H, W] for several
  const channelAxis = bsz === 1 ? 1 : 0;
  const src = bsz === 1 ? xp : transpose(xp, [1, 0, 2, 3]);
  const windows: Tensor[] = [];
  for (let i = 0; i < kh; i++) {
    for (let j = 0; j < kw; j++) {
      const top = i * a.dilations[0];
      const left = j * a.dilations[1];
      windows.push(
        slice(
          src,
          [top, left],
          [top + a.strides[0] * (ho - 1) + 1, left + a.strides[1] * (wo - 1) + 1],
          [2, 3],
          a.strides,
        ),
      );
    }
  }
  const og = o / a.group;
  const positions = bsz * ho * wo;
  const perGroup: Tensor[] = [];
  for (let gi = 0; gi < a.group; gi++) {
    const xs = a.group === 1 ? windows : windows.map((win) => slice(win, [gi * cg], [(gi + 1) * cg], [channelAxis]));
    const gg = a.group === 1 ? g : slice(g, [gi * og], [(gi + 1) * og], [1]);
    // cols: [kh·kw·Cg, B·Ho·Wo]; cotangent: [Og, B·Ho·Wo]
    const cols = reshape(concat(xs, channelAxis), [kh * kw * cg, positions]);
    const gm = reshape(bsz === 1 ? gg : transpose(gg, [1, 0, 2, 3]), [og, positions]);
    const dw = gemm(gm, cols, { transB: true }); // [Og, kh·kw·Cg]
    perGroup.push(transpose(reshape(dw, [og, kh, kw, cg]), [0, 3, 1, 2]));
  }
  return concat(perGroup, 0);
}

// ---- the functions model code calls ----

export function matmul(a: Tensor, b: Tensor): Tensor {
  return apply(MatMul, [a, b]);
}

export function gemm(
  a: Tensor,
  b: Tensor,
  o: { c?: Tensor; transA?: boolean; transB?: boolean; alpha?: number; beta?: number } = {},
): Tensor {
  const inputs = o.c ? [a, b, o.c] : [a, b];
  return apply(Gemm, inputs, { transA: !!o.transA, transB: !!o.transB, alpha: o.alpha ?? 1, beta: o.beta ?? 1 });
}

export function conv2d(x: Tensor, w: Tensor, bias?: Tensor, options: Conv2dOptions = {}): Tensor {
  const inputs = bias ? [x, w, bias] : [x, w];
  return apply(Conv, inputs, convAttrs(options));
}

/**
 * PyTorch's nn.Linear: x [..., in] · wᵀ + b with w [out, in]. Emitted as one Gemm (transB, bias
 * fused) over the rows of x, so neither the forward nor the gradients transpose the weight.
 */
export function linear(x: Tensor, w: Tensor, bias?: Tensor): Tensor {
  const [out, inFeatures] = w.shape as [number, number];
  if (x.shape[x.rank - 1] !== inFeatures) throw new Error(`linear: input ${x} does not match weight ${w}`);
  const rows = reshape(x, [-1, inFeatures]);
  const y = gemm(rows, w, { c: bias, transB: true });
  return reshape(y, [...x.shape.slice(0, -1), out]);
}
