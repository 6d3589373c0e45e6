/**
 * A host evaluator of graph-layer tensors, written apart from the ONNX emission, for precision
 * studies: it walks the same graph the models build and computes every op in float64, or as a
 * plain float32 program would (NumPy-style: every op's result rounded to float32, dot products
 * accumulated in float32 in order with fused multiply-adds as BLAS does, reductions summed pairwise
 * in float32).
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

/** Pairwise sum of `n` values read by `at`, each partial sum rounded by `round` (NumPy's float32 sum). */
function pairwiseSum(at: (i: number) => number, lo: number, n: number, round: (x: number) => number): number {
  if (n <= 8) {
    let s = 0;
    for (let i = 0; i < n; i++) s = round(s + at(lo + i));
    return s;
  }
  const half = Math.floor(n / 2);
  return round(pairwiseSum(at, lo, half, round) + pairwiseSum(at, lo + half, n - half, round));
}

export class HostEvaluator {
  private readonly values = new Map<number, HostValue>();
  private readonly round: (x: number) => number;
  private readonly files = new Map<string, number>();

  constructor(
    readonly precision: Precision,
    private readonly feeds: Record<string, { shape: readonly number[]; data: ArrayLike<number> }>,
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
      const v = await this.leaf(t);
      if (this.precision === "float32") for (let i = 0; i < v.data.length; i++) v.data[i] = f32(v.data[i] as number);
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
        return this.binary(ins, shape, (x, y) => r(x + y));
      case "Sub":
        return this.binary(ins, shape, (x, y) => r(x - y));
      case "Mul":
        return this.binary(ins, shape, (x, y) => r(x * y));
      case "Div":
        return this.binary(ins, shape, (x, y) => r(x / y));
      case "Pow":
        return this.binary(ins, shape, (x, y) => r(x ** y));
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
        return this.binary([ins[0] as HostValue, { shape, data: new Float64Array(numel(shape)) }], shape, (x) => x);
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
      case "Softmax":
        return this.softmax(ins[0] as HostValue, a.axis as number);
      case "AttentionCore":
        return this.attention(ins, a.scale as number, shape);
      default:
        throw new Error(`host evaluator: op ${t.op.name} is not implemented`);
    }
  }

  private binary(ins: HostValue[], shape: number[], f: (x: number, y: number) => number): HostValue {
    const [x, y] = ins as [HostValue, HostValue];
    const n = numel(shape);
    const out = new Float64Array(n);
    if (x.data.length === n && y.data.length === n) {
      for (let i = 0; i < n; i++) out[i] = f(x.data[i] as number, y.data[i] as number);
      return { shape, data: out };
    }
    const rank = shape.length;
    const bstr = (s: number[]): number[] => {
      const full = [...new Array<number>(rank - s.length).fill(1), ...s];
      const st = stridesOf(full);
      return full.map((d, i) => (d === 1 ? 0 : (st[i] as number)));
    };
    const sx = bstr(x.shape);
    const sy = bstr(y.shape);
    const idx = new Array<number>(rank).fill(0);
    let ox = 0;
    let oy = 0;
    for (let i = 0; i < n; i++) {
      out[i] = f(x.data[ox] as number, y.data[oy] as number);
      for (let d = rank - 1; d >= 0; d--) {
        idx[d] = (idx[d] as number) + 1;
        ox += sx[d] as number;
        oy += sy[d] as number;
        if ((idx[d] as number) < (shape[d] as number)) break;
        ox -= (sx[d] as number) * (shape[d] as number);
        oy -= (sy[d] as number) * (shape[d] as number);
        idx[d] = 0;
      }
    }
    return { shape, data: out };
  }

  /** Rows of length data.length/rows normalised to zero mean and unit variance (biased), two-pass. */
  private normalize(data: Float64Array, rows: number, eps: number): Float64Array {
    const r = this.round;
    const n = data.length / rows;
    const out = new Float64Array(data.length);
    for (let row = 0; row < rows; row++) {
      const base = row * n;
      const mean = r(pairwiseSum((i) => data[i] as number, base, n, r) / n);
      const variance = r(
        pairwiseSum(
          (i) => {
            const d = r((data[i] as number) - mean);
            return r(d * d);
          },
          base,
          n,
          r,
        ) / n,
      );
      const inv = r(1 / r(Math.sqrt(r(variance + eps))));
      for (let i = 0; i < n; i++) out[base + i] = r(r((data[base + i] as number) - mean) * inv);
    }
    return out;
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
      const s = pairwiseSum((i) => out[i] as number, base, n, r);
      for (let i = 0; i < n; i++) out[base + i] = r((out[base + i] as number) / s);
    }
    return { shape: [...x.shape], data: out };
  }

  /** Batched a [.., M, K] · b [.., K, N], b may broadcast over the batch. */
  private matmul(x: HostValue, y: HostValue, shape: number[]): HostValue {
    const r = this.round;
    const m = x.shape[x.shape.length - 2] as number;
    const k = x.shape[x.shape.length - 1] as number;
    const nn = y.shape[y.shape.length - 1] as number;
    const batch = numel(shape.slice(0, -2));
    const xb = x.data.length / (m * k);
    const yb = y.data.length / (k * nn);
    const out = new Float64Array(batch * m * nn);
    for (let b = 0; b < batch; b++) {
      const xo = (xb === 1 ? 0 : b) * m * k;
      const yo = (yb === 1 ? 0 : b) * k * nn;
      for (let i = 0; i < m; i++)
        for (let j = 0; j < nn; j++) {
          let s = 0;
          for (let p = 0; p < k; p++)
            s = r(s + (x.data[xo + i * k + p] as number) * (y.data[yo + p * nn + j] as number));
          out[b * m * nn + i * nn + j] = s;
        }
    }
    return { shape, data: out };
  }

  private gemm(ins: HostValue[], a: { transA: boolean; transB: boolean; alpha: number; beta: number }): HostValue {
    const r = this.round;
    const [x, y, c] = ins as [HostValue, HostValue, HostValue | undefined];
    const [m, k] = (a.transA ? [x.shape[1], x.shape[0]] : x.shape) as [number, number];
    const nn = (a.transB ? y.shape[0] : y.shape[1]) as number;
    const xa = (i: number, p: number) => x.data[a.transA ? p * m + i : i * k + p] as number;
    const ya = (p: number, j: number) => y.data[a.transB ? j * k + p : p * nn + j] as number;
    const out = new Float64Array(m * nn);
    const cst = c ? stridesOf([...new Array<number>(2 - c.shape.length).fill(1), ...c.shape]) : [0, 0];
    const cdims = c ? [...new Array<number>(2 - c.shape.length).fill(1), ...c.shape] : [1, 1];
    for (let i = 0; i < m; i++)
      for (let j = 0; j < nn; j++) {
        let s = 0;
        for (let p = 0; p < k; p++) s = r(s + xa(i, p) * ya(p, j));
        if (a.alpha !== 1) s = r(s * a.alpha);
        if (c) {
          const ci = (cdims[0] === 1 ? 0 : i * (cst[0] as number)) + (cdims[1] === 1 ? 0 : j * (cst[1] as number));
          s = r(s + r(a.beta * (c.data[ci] as number)));
        }
        out[i * nn + j] = s;
      }
    return { shape: [m, nn], data: out };
  }

  /** Accumulates over input channels and kernel taps in order, per output pixel (then the bias). */
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
    const acc = new Float64Array(plane);
    const fl = this.precision === "float32";
    for (let b = 0; b < n; b++)
      for (let oc = 0; oc < o; oc++) {
        acc.fill(0);
        for (let ic = 0; ic < c; ic++)
          for (let ky = 0; ky < kh; ky++)
            for (let kx = 0; kx < kw; kx++) {
              const wv = w.data[((oc * c + ic) * kh + ky) * kw + kx] as number;
              const xbase = (b * c + ic) * h * wd;
              for (let oy = 0; oy < ho; oy++) {
                const iy = oy * sh - pt + ky;
                if (iy < 0 || iy >= h) continue;
                const row = xbase + iy * wd;
                const orow = oy * wo;
                for (let ox = 0; ox < wo; ox++) {
                  const ix = ox * sw - pl + kx;
                  if (ix < 0 || ix >= wd) continue;
                  if (fl) acc[orow + ox] = f32((acc[orow + ox] as number) + wv * (x.data[row + ix] as number));
                  else acc[orow + ox] = (acc[orow + ox] as number) + wv * (x.data[row + ix] as number);
                }
              }
            }
        const bv = bias ? (bias.data[oc] as number) : 0;
        const obase = (b * o + oc) * plane;
        for (let p = 0; p < plane; p++) out[obase + p] = this.round((acc[p] as number) + bv);
      }
    return { shape, data: out };
  }

  /** softmax(scale·q·kᵀ + mask)·v over the batch axes (kᵀ, v and the mask may broadcast). */
  private attention(ins: HostValue[], scale: number, shape: number[]): HostValue {
    const [q, kt, v, mask] = ins as [HostValue, HostValue, HostValue, HostValue | undefined];
    if (mask) throw new Error("host attention: masks are not implemented");
    const r = this.round;
    const qs = this.binary([q, { shape: [], data: Float64Array.of(scale) }], [...q.shape], (x, y) => r(x * y));
    const scoreShape = [...q.shape.slice(0, -1), kt.shape[kt.shape.length - 1] as number];
    const p = this.softmax(this.matmul(qs, kt, scoreShape), -1);
    return this.matmul(p, v, shape);
  }
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
