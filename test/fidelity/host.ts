/**
 * A host evaluator of graph-layer tensors, written apart from the ONNX emission, for precision
 * studies and float64 references: it walks the same graph the models build (forward and VJP graphs)
 * and computes every op in float64, or as a plain float32 NumPy program would, op by op (every op's
 * result rounded to float32):
 * - sums (means, variances, softmax denominators) are NumPy's pairwise sum, bit for bit
 *   (numpy/_core/src/umath/loops_utils.h.src: under 8 terms in order, up to 128 terms in 8
 *   interleaved float32 accumulators, above that split in two at a multiple of 8);
 * - dot products (MatMul, Gemm, Conv as im2col + sgemm) are accumulated as OpenBLAS's sgemm does:
 *   fused multiply-adds in order along K within K-panels of at most 448 terms (a remainder between
 *   448 and 896 split into two panels rounded up to 16), each panel's sum added to the output in
 *   float32. With NumPy 2.4's OpenBLAS 0.3.31 (SkylakeX kernels) on a 64×K·K×256 float32 product
 *   this reproduced `a @ b` bit for bit for K = 288, 400, 576, 800 and 1152; a plain sequential
 *   sum over K would be a worse reference than any BLAS (on K = 576 its rms error is 1.4× NumPy's).
 *   OpenBLAS's small-matrix path (tiny M·N·K) accumulates over all of K in order instead; the
 *   panels are used here for every size. On the parity encoder this plain float32 evaluation's
 *   latent is 1.67e-6 from float64, NumPy's own (im2col + `@`) 1.58e-6 to 1.71e-6 (as SiLU is
 *   written), with the same rms error (4.1e-7 and 4.0e-7).
 * The option `dots: "pairwise"` reads a dot product as NumPy's `(a * b).sum()` instead (products
 * rounded, then summed pairwise): more exact than any BLAS, for a stricter comparison.
 */
import { closeSync, openSync, readSync } from "node:fs";
import { halfArrayToFloat32 } from "../../src/graph/dtype.js";
import type { Tensor } from "../../src/graph/index.js";
import { erf } from "../graph/reference.js";

export type Precision = "float64" | "float32";

export interface HostValue {
  shape: number[];
  data: Float64Array;
}

const f32 = Math.fround;

function numel(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

function stridesOf(shape: readonly number[]): number[] {
  const s = new Array<number>(shape.length).fill(1);
  for (let i = shape.length - 2; i >= 0; i--) s[i] = (s[i + 1] as number) * (shape[i + 1] as number);
  return s;
}

/**
 * NumPy's pairwise sum of a[lo], ..., a[lo + n − 1], each partial sum rounded to float32 when `fl`
 * (pairwise_sum in numpy/_core/src/umath/loops_utils.h.src, with PW_BLOCKSIZE 128).
 */
function pairwiseSum(a: Float64Array, lo: number, n: number, fl: boolean): number {
  const r = fl ? f32 : same;
  if (n < 8) {
    let s = -0;
    for (let i = 0; i < n; i++) s = r(s + (a[lo + i] as number));
    return s;
  }
  if (n <= 128) {
    let a0 = a[lo] as number;
    let a1 = a[lo + 1] as number;
    let a2 = a[lo + 2] as number;
    let a3 = a[lo + 3] as number;
    let a4 = a[lo + 4] as number;
    let a5 = a[lo + 5] as number;
    let a6 = a[lo + 6] as number;
    let a7 = a[lo + 7] as number;
    let i = lo + 8;
    const end = lo + n - (n % 8);
    for (; i < end; i += 8) {
      a0 = r(a0 + (a[i] as number));
      a1 = r(a1 + (a[i + 1] as number));
      a2 = r(a2 + (a[i + 2] as number));
      a3 = r(a3 + (a[i + 3] as number));
      a4 = r(a4 + (a[i + 4] as number));
      a5 = r(a5 + (a[i + 5] as number));
      a6 = r(a6 + (a[i + 6] as number));
      a7 = r(a7 + (a[i + 7] as number));
    }
    let s = r(r(r(a0 + a1) + r(a2 + a3)) + r(r(a4 + a5) + r(a6 + a7)));
    for (; i < lo + n; i++) s = r(s + (a[i] as number));
    return s;
  }
  let half = Math.floor(n / 2);
  half -= half % 8;
  return r(pairwiseSum(a, lo, half, fl) + pairwiseSum(a, lo + half, n - half, fl));
}

const same = (x: number) => x;

/** OpenBLAS sgemm's K-panels (driver/level3/level3.c with SkylakeX's GEMM_Q 448, GEMM_UNROLL_M 16): their lengths. */
export function gemmPanels(k: number, q = 448, unroll = 16): number[] {
  const panels: number[] = [];
  for (let done = 0; done < k; ) {
    let len = k - done;
    if (len >= 2 * q) len = q;
    else if (len > q) len = Math.ceil(len / 2 / unroll) * unroll;
    panels.push(len);
    done += len;
  }
  return panels;
}

const LEAVES: Record<Precision, WeakMap<Tensor, HostValue>> = { float64: new WeakMap(), float32: new WeakMap() };

export class HostEvaluator {
  private readonly values = new Map<number, HostValue>();
  private readonly round: (x: number) => number;
  private readonly files = new Map<string, number>();

  /**
   * `dots`: how float32 dot products accumulate: "blas" (default) as OpenBLAS's sgemm, or "pairwise"
   * as NumPy's `(a * b).sum()` (the products rounded, then summed pairwise).
   */
  constructor(
    readonly precision: Precision,
    private readonly feeds: Record<string, { shape: readonly number[]; data: ArrayLike<number> }>,
    readonly dots: "blas" | "pairwise" = "blas",
  ) {
    this.round = precision === "float32" ? f32 : (x) => x;
  }

  /** Closes the weight files it opened. */
  close(): void {
    for (const fd of this.files.values()) closeSync(fd);
    this.files.clear();
  }

  /** The value of `t`, computing whatever it depends on (iteratively, so deep graphs do not overflow the stack). */
  async evaluate(t: Tensor): Promise<HostValue> {
    const order: Tensor[] = [];
    const seen = new Set<number>();
    const stack: [Tensor, boolean][] = [[t, false]];
    while (stack.length) {
      const [u, expanded] = stack.pop() as [Tensor, boolean];
      if (expanded) {
        order.push(u);
        continue;
      }
      if (seen.has(u.id) || this.values.has(u.id)) continue;
      seen.add(u.id);
      stack.push([u, true]);
      for (const i of u.inputs) stack.push([i, false]);
    }
    for (const u of order) if (!this.values.has(u.id)) this.values.set(u.id, await this.compute(u));
    return this.values.get(t.id) as HostValue;
  }

  private async leaf(t: Tensor): Promise<HostValue> {
    const leaf = t.leaf;
    const shape = [...t.shape];
    if (!leaf) throw new Error("not a leaf");
    if (leaf.kind === "input") {
      const f = this.feeds[leaf.name];
      if (!f) throw new Error(`no feed for input '${leaf.name}'`);
      return { shape, data: Float64Array.from(f.data) };
    }
    if (leaf.kind === "constant") {
      const d = leaf.data;
      const data =
        d instanceof BigInt64Array
          ? Float64Array.from(d, Number)
          : d instanceof Uint16Array
            ? Float64Array.from(halfArrayToFloat32(d))
            : Float64Array.from(d as ArrayLike<number>);
      return { shape, data };
    }
    const src = leaf.source;
    if (src.kind === "array") {
      const d = src.data;
      if (d instanceof Uint16Array) return { shape, data: Float64Array.from(halfArrayToFloat32(d)) };
      return { shape, data: Float64Array.from(d as ArrayLike<number>) };
    }
    let fd = this.files.get(src.path);
    if (fd === undefined) {
      fd = openSync(src.path, "r");
      this.files.set(src.path, fd);
    }
    const bytes = new Uint8Array(src.byteLength);
    readSync(fd, bytes, 0, src.byteLength, src.offset);
    const buf = bytes.buffer;
    if (src.dtype === "float16") return { shape, data: Float64Array.from(halfArrayToFloat32(new Uint16Array(buf))) };
    if (src.dtype === "float32") return { shape, data: Float64Array.from(new Float32Array(buf)) };
    if (src.dtype === "float64") return { shape, data: new Float64Array(buf) };
    throw new Error(`weight '${leaf.name}': ${src.dtype} is not supported here`);
  }

  private async compute(t: Tensor): Promise<HostValue> {
    if (!t.op) {
      // weights and constants are read once per process and precision; inputs come from this evaluator's feeds
      const cache = t.leaf?.kind === "input" ? undefined : LEAVES[this.precision];
      const cached = cache?.get(t);
      if (cached) return cached;
      const v = await this.leaf(t);
      if (this.precision === "float32") for (let i = 0; i < v.data.length; i++) v.data[i] = f32(v.data[i] as number);
      cache?.set(t, v);
      return v;
    }
    const ins = t.inputs.map((i) => this.values.get(i.id) as HostValue);
    const r = this.round;
    const a = t.attrs as Record<string, unknown>;
    const shape = [...t.shape];
    const unary = (f: (x: number) => number): HostValue => ({
      shape,
      data: (ins[0] as HostValue).data.map((x) => r(f(x))),
    });
    switch (t.op.name) {
      case "Add":
        return this.binary(ins, shape, "Add");
      case "Sub":
        return this.binary(ins, shape, "Sub");
      case "Mul":
        return this.binary(ins, shape, "Mul");
      case "Div":
        return this.binary(ins, shape, "Div");
      case "Pow":
        return this.binary(ins, shape, "Pow");
      case "Sigmoid":
        return unary((x) => 1 / (1 + Math.exp(-x)));
      case "Tanh":
        return unary(Math.tanh);
      case "Exp":
        return unary(Math.exp);
      case "Sqrt":
        return unary(Math.sqrt);
      case "Neg":
        return unary((x) => -x);
      case "Sin":
        return unary(Math.sin);
      case "Cos":
        return unary(Math.cos);
      case "Erf":
        return unary(erf);
      case "Relu":
        return unary((x) => Math.max(0, x));
      case "Cast":
      case "Identity":
        return unary((x) => x);
      case "Clip": {
        const lo = (a.min as number | undefined) ?? Number.NEGATIVE_INFINITY;
        const hi = (a.max as number | undefined) ?? Number.POSITIVE_INFINITY;
        return unary((x) => Math.min(hi, Math.max(lo, x)));
      }
      case "Reshape":
        return { shape, data: (ins[0] as HostValue).data };
      case "Expand":
        return this.binary([ins[0] as HostValue, { shape, data: new Float64Array(numel(shape)) }], shape, "First");
      case "Transpose":
        return transpose(ins[0] as HostValue, a.perm as number[]);
      case "Slice":
        return slice(ins[0] as HostValue, a as unknown as SliceArgs, shape);
      case "Concat":
        return concat(ins, a.axis as number, shape);
      case "Gather":
        return gather(ins[0] as HostValue, ins[1] as HostValue, a.axis as number, shape);
      case "UpsampleNearest":
        return upsample(ins[0] as HostValue, a.factor as number);
      case "MatMul":
        return this.matmul(ins[0] as HostValue, ins[1] as HostValue, shape);
      case "Gemm":
        return this.gemm(ins, a as { transA: boolean; transB: boolean; alpha: number; beta: number });
      case "Conv":
        return this.conv(ins, a as unknown as ConvArgs, shape);
      case "GroupNormCore": {
        const x = ins[0] as HostValue;
        const rows = (x.shape[0] as number) * (a.groups as number);
        return { shape, data: this.normalize(x.data, rows, a.eps as number) };
      }
      case "LayerNormCore": {
        const x = ins[0] as HostValue;
        const d = x.shape[x.shape.length - 1] as number;
        return { shape, data: this.normalize(x.data, x.data.length / d, a.eps as number) };
      }
      case "SavedOutput": {
        // a statistic the normalisation's ONNX node saves for its backward: its grouped x̂, or r = 1/√(var + ε)
        const norm = t.inputs[0] as Tensor;
        if (a.name === "grouped") return { shape, data: (ins[0] as HostValue).data };
        const x = this.values.get((norm.inputs[0] as Tensor).id) as HostValue;
        return { shape, data: this.invStd(x.data, numel(shape), norm.attrs.eps as number) };
      }
      case "Softmax":
        return this.softmax(ins[0] as HostValue, a.axis as number);
      case "ReduceSum":
      case "ReduceMean":
        return this.reduce(ins[0] as HostValue, a.axes as number[], shape, t.op.name === "ReduceMean");
      case "Sum":
        // ONNX Sum of same-shape operands: added in operand order
        return {
          shape,
          data: (ins[0] as HostValue).data.map((_, i) =>
            ins.reduce((acc, v, k) => (k ? r(acc + (v.data[i] as number)) : acc), ins[0]?.data[i] as number),
          ),
        };
      case "Pad":
        return pad(ins[0] as HostValue, a.pads as number[], a.value as number, shape);
      case "ConvTranspose":
        return this.convTranspose(ins, a as unknown as ConvArgs, shape);
      case "AttentionCore":
        return this.attention(ins, a.scale as number, shape);
      default:
        throw new Error(`host evaluator: op ${t.op.name} is not implemented`);
    }
  }

  /** An elementwise binary op with NumPy broadcasting, its result rounded as the precision says. */
  private binary(ins: HostValue[], shape: number[], op: BinaryOp): HostValue {
    const [x, y] = ins as [HostValue, HostValue];
    const n = numel(shape);
    const out = new Float64Array(n);
    const xd = x.data;
    const yd = y.data;
    const same = xd.length === n && yd.length === n;
    const [ix, iy] = same ? [null, null] : broadcastOffsets(shape, x.shape, y.shape);
    const at = (idx: Int32Array | null, i: number) => (idx ? (idx[i] as number) : i);
    switch (op) {
      case "Add":
        for (let i = 0; i < n; i++) out[i] = (xd[at(ix, i)] as number) + (yd[at(iy, i)] as number);
        break;
      case "Sub":
        for (let i = 0; i < n; i++) out[i] = (xd[at(ix, i)] as number) - (yd[at(iy, i)] as number);
        break;
      case "Mul":
        for (let i = 0; i < n; i++) out[i] = (xd[at(ix, i)] as number) * (yd[at(iy, i)] as number);
        break;
      case "Div":
        for (let i = 0; i < n; i++) out[i] = (xd[at(ix, i)] as number) / (yd[at(iy, i)] as number);
        break;
      case "Pow":
        for (let i = 0; i < n; i++) out[i] = (xd[at(ix, i)] as number) ** (yd[at(iy, i)] as number);
        break;
      case "First":
        for (let i = 0; i < n; i++) out[i] = xd[at(ix, i)] as number;
        break;
    }
    if (this.precision === "float32") for (let i = 0; i < n; i++) out[i] = f32(out[i] as number);
    return { shape, data: out };
  }

  /** Rows of length data.length/rows normalised to zero mean and unit variance (biased), two-pass, as NumPy's mean and var. */
  /** r = 1/√(var + ε) per row, as `normalize` computes it. */
  private invStd(data: Float64Array, rows: number, eps: number): Float64Array {
    const r = this.round;
    const fl = this.precision === "float32";
    const n = data.length / rows;
    const out = new Float64Array(rows);
    const sq = new Float64Array(n);
    for (let row = 0; row < rows; row++) {
      const base = row * n;
      const mean = r(pairwiseSum(data, base, n, fl) / n);
      for (let i = 0; i < n; i++) sq[i] = r(r((data[base + i] as number) - mean) ** 2);
      out[row] = r(1 / r(Math.sqrt(r(r(pairwiseSum(sq, 0, n, fl) / n) + eps))));
    }
    return out;
  }

  private normalize(data: Float64Array, rows: number, eps: number): Float64Array {
    const r = this.round;
    const fl = this.precision === "float32";
    const n = data.length / rows;
    const out = new Float64Array(data.length);
    const sq = new Float64Array(n);
    for (let row = 0; row < rows; row++) {
      const base = row * n;
      const mean = r(pairwiseSum(data, base, n, fl) / n);
      for (let i = 0; i < n; i++) {
        const d = r((data[base + i] as number) - mean);
        out[base + i] = d;
        sq[i] = r(d * d);
      }
      const std = r(Math.sqrt(r(r(pairwiseSum(sq, 0, n, fl) / n) + eps)));
      for (let i = 0; i < n; i++) out[base + i] = r((out[base + i] as number) / std);
    }
    return out;
  }

  /**
   * Sum (or mean) over `axes`, each output pairwise over its reduced elements in index order (NumPy
   * sums pairwise along a contiguous reduced axis; over outer axes it adds row by row, which is not
   * modelled here).
   */
  private reduce(x: HostValue, axes: number[], shape: number[], mean: boolean): HostValue {
    const r = this.round;
    const rank = x.shape.length;
    const st = stridesOf(x.shape);
    const reduced = axes.map((ax) => x.shape[ax] as number);
    const count = numel(reduced);
    const kept = x.shape.map((d, i) => (axes.includes(i) ? 1 : d));
    const offsets = new Int32Array(count);
    forEachIndex(reduced, (idx, i) => {
      let off = 0;
      idx.forEach((v, k) => {
        off += v * (st[axes[k] as number] as number);
      });
      offsets[i] = off;
    });
    const out = new Float64Array(numel(kept));
    const terms = new Float64Array(count);
    const fl = this.precision === "float32";
    forEachIndex(kept, (idx, o) => {
      let base = 0;
      for (let d = 0; d < rank; d++) base += (idx[d] as number) * (st[d] as number);
      for (let i = 0; i < count; i++) terms[i] = x.data[base + (offsets[i] as number)] as number;
      const sum = pairwiseSum(terms, 0, count, fl);
      out[o] = mean ? r(sum / count) : sum;
    });
    return { shape, data: out };
  }

  /**
   * The adjoint of `conv`, as a NumPy program would write it: cols = Wᵀ·g (a product over the output
   * channels, as gemmKernel), then col2im adding each kernel tap's contribution in order.
   */
  private convTranspose(ins: HostValue[], a: ConvArgs, shape: number[]): HostValue {
    const [g, w] = ins as [HostValue, HostValue];
    if (a.group !== 1 || a.dilations[0] !== 1 || a.dilations[1] !== 1)
      throw new Error("host convTranspose: groups/dilations");
    const r = this.round;
    const [n, o, gh, gw] = g.shape as [number, number, number, number];
    const [, c, kh, kw] = w.shape as [number, number, number, number];
    const [, , h, wd] = shape as [number, number, number, number];
    const [sh, sw] = a.strides;
    const [pt, pl] = a.pads;
    const gplane = gh * gw;
    const wt = transpose(w, [1, 2, 3, 0]).data; // [C·kh·kw, O]
    const cols = new Float64Array(c * kh * kw * gplane);
    const out = new Float64Array(numel(shape));
    for (let b = 0; b < n; b++) {
      cols.fill(0);
      this.gemm2d(wt, 0, g.data, b * o * gplane, cols, 0, c * kh * kw, o, gplane);
      for (let ic = 0; ic < c; ic++)
        for (let ky = 0; ky < kh; ky++)
          for (let kx = 0; kx < kw; kx++) {
            const colBase = ((ic * kh + ky) * kw + kx) * gplane;
            for (let y = 0; y < gh; y++) {
              const iy = y * sh - pt + ky;
              if (iy < 0 || iy >= h) continue;
              for (let x = 0; x < gw; x++) {
                const ix = x * sw - pl + kx;
                if (ix < 0 || ix >= wd) continue;
                const at = ((b * c + ic) * h + iy) * wd + ix;
                out[at] = r((out[at] as number) + (cols[colBase + y * gw + x] as number));
              }
            }
          }
    }
    return { shape, data: out };
  }

  private softmax(x: HostValue, axis: number): HostValue {
    if (axis !== x.shape.length - 1 && axis !== -1) throw new Error("host softmax: last axis only");
    const r = this.round;
    const n = x.shape[x.shape.length - 1] as number;
    const out = new Float64Array(x.data.length);
    for (let base = 0; base < x.data.length; base += n) {
      let m = Number.NEGATIVE_INFINITY;
      for (let i = 0; i < n; i++) m = Math.max(m, x.data[base + i] as number);
      for (let i = 0; i < n; i++) out[base + i] = r(Math.exp(r((x.data[base + i] as number) - m)));
      const s = pairwiseSum(out, base, n, this.precision === "float32");
      for (let i = 0; i < n; i++) out[base + i] = r((out[base + i] as number) / s);
    }
    return { shape: [...x.shape], data: out };
  }

  /** Batched a [.., M, K] · b [.., K, N], b may broadcast over the batch. */
  private matmul(x: HostValue, y: HostValue, shape: number[]): HostValue {
    const m = x.shape[x.shape.length - 2] as number;
    const k = x.shape[x.shape.length - 1] as number;
    const nn = y.shape[y.shape.length - 1] as number;
    const batch = numel(shape.slice(0, -2));
    const xb = x.data.length / (m * k);
    const yb = y.data.length / (k * nn);
    const out = new Float64Array(batch * m * nn);
    for (let b = 0; b < batch; b++)
      this.gemm2d(x.data, (xb === 1 ? 0 : b) * m * k, y.data, (yb === 1 ? 0 : b) * k * nn, out, b * m * nn, m, k, nn);
    return { shape, data: out };
  }

  /** out[oo..] (M×N, zeroed) = x[xo..] (M×K) · y[yo..] (K×N), with this evaluator's precision and dot products. */
  private gemm2d(
    x: Float64Array,
    xo: number,
    y: Float64Array,
    yo: number,
    out: Float64Array,
    oo: number,
    m: number,
    k: number,
    n: number,
  ): void {
    if (this.precision === "float32" && this.dots === "pairwise") pairwiseDots(x, xo, y, yo, out, oo, m, k, n);
    else gemmKernel(x, xo, y, yo, out, oo, m, k, n, this.precision === "float32");
  }

  private gemm(ins: HostValue[], a: { transA: boolean; transB: boolean; alpha: number; beta: number }): HostValue {
    const r = this.round;
    const [x, y, c] = ins as [HostValue, HostValue, HostValue | undefined];
    const [m, k] = (a.transA ? [x.shape[1], x.shape[0]] : x.shape) as [number, number];
    const nn = (a.transB ? y.shape[0] : y.shape[1]) as number;
    const out = new Float64Array(m * nn);
    const cst = c ? stridesOf([...new Array<number>(2 - c.shape.length).fill(1), ...c.shape]) : [0, 0];
    const cdims = c ? [...new Array<number>(2 - c.shape.length).fill(1), ...c.shape] : [1, 1];
    const xm = a.transA ? transpose(x, [1, 0]).data : x.data; // [M, K]
    const yk = a.transB ? transpose(y, [1, 0]).data : y.data; // [K, N]
    this.gemm2d(xm, 0, yk, 0, out, 0, m, k, nn);
    for (let i = 0; i < m; i++) {
      for (let j = 0; j < nn; j++) {
        let s = out[i * nn + j] as number;
        if (a.alpha !== 1) s = r(s * a.alpha);
        if (c) {
          const ci = (cdims[0] === 1 ? 0 : i * (cst[0] as number)) + (cdims[1] === 1 ? 0 : j * (cst[1] as number));
          s = r(s + r(a.beta * (c.data[ci] as number)));
        }
        out[i * nn + j] = s;
      }
    }
    return { shape: [m, nn], data: out };
  }

  /**
   * As im2col + sgemm: per output pixel, a dot product over (input channel, kernel row, kernel
   * column) in that order (the product of W [O, K] and the im2col matrix [K, H·W], as gemm2d), then the bias.
   */
  private conv(ins: HostValue[], a: ConvArgs, shape: number[]): HostValue {
    const [x, w, bias] = ins as [HostValue, HostValue, HostValue | undefined];
    if (a.group !== 1 || a.dilations[0] !== 1 || a.dilations[1] !== 1) throw new Error("host conv: groups/dilations");
    const [n, c, h, wd] = x.shape as [number, number, number, number];
    const [o, , kh, kw] = w.shape as [number, number, number, number];
    const [, , ho, wo] = shape as [number, number, number, number];
    const [sh, sw] = a.strides;
    const [pt, pl] = a.pads;
    const out = new Float64Array(numel(shape));
    const plane = ho * wo;
    const k = c * kh * kw;
    const cols = new Float64Array(k * plane);
    const xd = x.data;
    const wdata = w.data;
    for (let b = 0; b < n; b++) {
      // im2col: cols[(ic·kh + ky)·kw + kx][oy·wo + ox] = x[b, ic, oy·sh − pt + ky, ox·sw − pl + kx] (0 outside)
      cols.fill(0);
      for (let ic = 0; ic < c; ic++)
        for (let ky = 0; ky < kh; ky++)
          for (let kx = 0; kx < kw; kx++) {
            const colBase = ((ic * kh + ky) * kw + kx) * plane;
            const ox0 = Math.max(0, Math.ceil((pl - kx) / sw));
            const ox1 = Math.min(wo, Math.floor((wd - 1 + pl - kx) / sw) + 1);
            for (let oy = 0; oy < ho; oy++) {
              const iy = oy * sh - pt + ky;
              if (iy < 0 || iy >= h) continue;
              const row = ((b * c + ic) * h + iy) * wd - pl + kx;
              for (let ox = ox0; ox < ox1; ox++) cols[colBase + oy * wo + ox] = xd[row + ox * sw] as number;
            }
          }
      this.gemm2d(wdata, 0, cols, 0, out, b * o * plane, o, k, plane);
      if (bias)
        for (let oc = 0; oc < o; oc++) {
          const obase = (b * o + oc) * plane;
          const bv = bias.data[oc] as number;
          for (let p = 0; p < plane; p++) out[obase + p] = this.round((out[obase + p] as number) + bv);
        }
    }
    return { shape, data: out };
  }

  /** softmax(scale·q·kᵀ + mask)·v over the batch axes (kᵀ, v and the mask may broadcast). */
  private attention(ins: HostValue[], scale: number, shape: number[]): HostValue {
    const [q, kt, v, mask] = ins as [HostValue, HostValue, HostValue, HostValue | undefined];
    if (mask) throw new Error("host attention: masks are not implemented");
    const qs = this.binary([q, { shape: [], data: Float64Array.of(scale) }], [...q.shape], "Mul");
    const scoreShape = [...q.shape.slice(0, -1), kt.shape[kt.shape.length - 1] as number];
    const p = this.softmax(this.matmul(qs, kt, scoreShape), -1);
    return this.matmul(p, v, shape);
  }
}

/**
 * out[oo + i·n + j] = Σ_p x[xo + i·k + p]·y[yo + p·n + j]: in float64 in order, or in float32 as
 * OpenBLAS's sgemm (fused multiply-adds in order within each K-panel, the exact float32×float32
 * product rounded once with the sum; the panel sums added in float32). The loop order is chosen for
 * speed; each output's sum is the same either way.
 */
function gemmKernel(
  x: Float64Array,
  xo: number,
  y: Float64Array,
  yo: number,
  out: Float64Array,
  oo: number,
  m: number,
  k: number,
  n: number,
  fl: boolean,
): void {
  const panels = fl ? gemmPanels(k) : [k];
  if (n >= 32) {
    const acc = new Float64Array(n);
    for (let i = 0; i < m; i++) {
      const orow = oo + i * n;
      const xrow = xo + i * k;
      let p = 0;
      for (const len of panels) {
        acc.fill(0);
        for (const end = p + len; p < end; p++) {
          const av = x[xrow + p] as number;
          const yrow = yo + p * n;
          if (fl) for (let j = 0; j < n; j++) acc[j] = f32((acc[j] as number) + av * (y[yrow + j] as number));
          else for (let j = 0; j < n; j++) acc[j] = (acc[j] as number) + av * (y[yrow + j] as number);
        }
        if (fl) for (let j = 0; j < n; j++) out[orow + j] = f32((out[orow + j] as number) + (acc[j] as number));
        else for (let j = 0; j < n; j++) out[orow + j] = (out[orow + j] as number) + (acc[j] as number);
      }
    }
    return;
  }
  for (let i = 0; i < m; i++) {
    const xrow = xo + i * k;
    for (let j = 0; j < n; j++) {
      let total = 0;
      let p = 0;
      for (const len of panels) {
        let s = 0;
        if (fl)
          for (const end = p + len; p < end; p++) s = f32(s + (x[xrow + p] as number) * (y[yo + p * n + j] as number));
        else for (const end = p + len; p < end; p++) s += (x[xrow + p] as number) * (y[yo + p * n + j] as number);
        total = fl ? f32(total + s) : total + s;
      }
      out[oo + i * n + j] = total;
    }
  }
}

/**
 * The "elementwise product, then sum" reading of a dot product, as NumPy's `(a * b).sum()` computes
 * it: every product rounded to float32, then NumPy's pairwise sum. More exact than any BLAS; used
 * to report how far a stricter plain float32 reference would be (HostEvaluator's `dots: "pairwise"`).
 */
function pairwiseDots(
  x: Float64Array,
  xo: number,
  y: Float64Array,
  yo: number,
  out: Float64Array,
  oo: number,
  m: number,
  k: number,
  n: number,
): void {
  const terms = new Float64Array(k);
  for (let i = 0; i < m; i++)
    for (let j = 0; j < n; j++) {
      for (let p = 0; p < k; p++) terms[p] = f32((x[xo + i * k + p] as number) * (y[yo + p * n + j] as number));
      out[oo + i * n + j] = pairwiseSum(terms, 0, k, true);
    }
}

type BinaryOp = "Add" | "Sub" | "Mul" | "Div" | "Pow" | "First";

/** For each element of `shape`, its offset in operands of shapes `a` and `b` broadcast to it. */
function broadcastOffsets(
  shape: readonly number[],
  a: readonly number[],
  b: readonly number[],
): [Int32Array, Int32Array] {
  const rank = shape.length;
  const bstr = (s: readonly number[]): number[] => {
    const full = [...new Array<number>(rank - s.length).fill(1), ...s];
    const st = stridesOf(full);
    return full.map((d, i) => (d === 1 ? 0 : (st[i] as number)));
  };
  const sa = bstr(a);
  const sb = bstr(b);
  const n = numel(shape);
  const oa = new Int32Array(n);
  const ob = new Int32Array(n);
  const idx = new Array<number>(rank).fill(0);
  let pa = 0;
  let pb = 0;
  for (let i = 0; i < n; i++) {
    oa[i] = pa;
    ob[i] = pb;
    for (let d = rank - 1; d >= 0; d--) {
      idx[d] = (idx[d] as number) + 1;
      pa += sa[d] as number;
      pb += sb[d] as number;
      if ((idx[d] as number) < (shape[d] as number)) break;
      pa -= (sa[d] as number) * (shape[d] as number);
      pb -= (sb[d] as number) * (shape[d] as number);
      idx[d] = 0;
    }
  }
  return [oa, ob];
}

type ConvArgs = {
  strides: [number, number];
  pads: [number, number, number, number];
  dilations: [number, number];
  group: number;
};
type SliceArgs = { starts: number[]; ends: number[]; axes: number[]; steps: number[] };

function transpose(x: HostValue, perm: number[]): HostValue {
  const shape = perm.map((p) => x.shape[p] as number);
  const st = stridesOf(x.shape);
  const pst = perm.map((p) => st[p] as number);
  const n = x.data.length;
  const out = new Float64Array(n);
  const rank = shape.length;
  const idx = new Array<number>(rank).fill(0);
  let off = 0;
  for (let i = 0; i < n; i++) {
    out[i] = x.data[off] as number;
    for (let d = rank - 1; d >= 0; d--) {
      idx[d] = (idx[d] as number) + 1;
      off += pst[d] as number;
      if ((idx[d] as number) < (shape[d] as number)) break;
      off -= (pst[d] as number) * (shape[d] as number);
      idx[d] = 0;
    }
  }
  return { shape, data: out };
}

function forEachIndex(shape: readonly number[], f: (idx: number[], i: number) => void): void {
  const rank = shape.length;
  const idx = new Array<number>(rank).fill(0);
  const n = numel(shape);
  for (let i = 0; i < n; i++) {
    f(idx, i);
    for (let d = rank - 1; d >= 0; d--) {
      idx[d] = (idx[d] as number) + 1;
      if ((idx[d] as number) < (shape[d] as number)) break;
      idx[d] = 0;
    }
  }
}

function slice(x: HostValue, a: SliceArgs, shape: number[]): HostValue {
  const st = stridesOf(x.shape);
  const start = new Array<number>(x.shape.length).fill(0);
  const step = new Array<number>(x.shape.length).fill(1);
  a.axes.forEach((ax, i) => {
    start[ax] = a.starts[i] as number;
    step[ax] = a.steps[i] as number;
  });
  const out = new Float64Array(numel(shape));
  forEachIndex(shape, (idx, i) => {
    let off = 0;
    for (let d = 0; d < idx.length; d++)
      off += ((start[d] as number) + (idx[d] as number) * (step[d] as number)) * (st[d] as number);
    out[i] = x.data[off] as number;
  });
  return { shape, data: out };
}

function concat(ins: HostValue[], axis: number, shape: number[]): HostValue {
  const out = new Float64Array(numel(shape));
  const outer = numel(shape.slice(0, axis));
  const inner = numel(shape.slice(axis + 1));
  let offset = 0;
  for (const x of ins) {
    const len = (x.shape[axis] as number) * inner;
    for (let o = 0; o < outer; o++)
      out.set(x.data.subarray(o * len, (o + 1) * len), o * (shape[axis] as number) * inner + offset);
    offset += len;
  }
  return { shape, data: out };
}

function gather(x: HostValue, ids: HostValue, axis: number, shape: number[]): HostValue {
  if (axis !== 0) throw new Error("host gather: axis 0 only");
  const row = x.data.length / (x.shape[0] as number);
  const out = new Float64Array(numel(shape));
  ids.data.forEach((id, i) => {
    out.set(x.data.subarray(id * row, (id + 1) * row), i * row);
  });
  return { shape, data: out };
}

function pad(x: HostValue, pads: number[], value: number, shape: number[]): HostValue {
  const rank = x.shape.length;
  const st = stridesOf(x.shape);
  const out = new Float64Array(numel(shape));
  forEachIndex(shape, (idx, i) => {
    let off = 0;
    for (let d = 0; d < rank; d++) {
      const v = (idx[d] as number) - (pads[d] as number);
      if (v < 0 || v >= (x.shape[d] as number)) {
        out[i] = value;
        return;
      }
      off += v * (st[d] as number);
    }
    out[i] = x.data[off] as number;
  });
  return { shape, data: out };
}

function upsample(x: HostValue, f: number): HostValue {
  const [b, c, h, w] = x.shape as [number, number, number, number];
  const shape = [b, c, h * f, w * f];
  const out = new Float64Array(numel(shape));
  for (let p = 0; p < b * c; p++)
    for (let y = 0; y < h * f; y++)
      for (let xx = 0; xx < w * f; xx++)
        out[(p * h * f + y) * w * f + xx] = x.data[(p * h + Math.floor(y / f)) * w + Math.floor(xx / f)] as number;
  return { shape, data: out };
}
