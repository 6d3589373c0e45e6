/**
 * Plain float64 reference implementations, written independently of the graph layer,
 * to check its forward results.
 */

export interface Ref {
  shape: number[];
  data: Float64Array;
}

export const ref = (shape: number[], data: ArrayLike<number>): Ref => ({ shape, data: Float64Array.from(data) });

export function size(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

function strides(shape: readonly number[]): number[] {
  const s = new Array<number>(shape.length).fill(1);
  for (let i = shape.length - 2; i >= 0; i--) s[i] = (s[i + 1] as number) * (shape[i + 1] as number);
  return s;
}

function unravel(index: number, shape: readonly number[]): number[] {
  const out = new Array<number>(shape.length);
  for (let i = shape.length - 1; i >= 0; i--) {
    out[i] = index % (shape[i] as number);
    index = Math.floor(index / (shape[i] as number));
  }
  return out;
}

/** Value of `a` at the index of a broadcast output position. */
function at(a: Ref, outIdx: readonly number[]): number {
  const lead = outIdx.length - a.shape.length;
  const st = strides(a.shape);
  let off = 0;
  a.shape.forEach((d, i) => {
    off += (d === 1 ? 0 : (outIdx[lead + i] as number)) * (st[i] as number);
  });
  return a.data[off] as number;
}

export function broadcast(a: readonly number[], b: readonly number[]): number[] {
  const rank = Math.max(a.length, b.length);
  return Array.from({ length: rank }, (_, i) => {
    const da = a[a.length - rank + i] ?? 1;
    const db = b[b.length - rank + i] ?? 1;
    return da === 1 ? db : da;
  });
}

export function map2(a: Ref, b: Ref, f: (x: number, y: number) => number): Ref {
  const shape = broadcast(a.shape, b.shape);
  const data = new Float64Array(size(shape));
  for (let i = 0; i < data.length; i++) {
    const idx = unravel(i, shape);
    data[i] = f(at(a, idx), at(b, idx));
  }
  return { shape, data };
}

export function map1(a: Ref, f: (x: number) => number): Ref {
  return { shape: [...a.shape], data: a.data.map(f) };
}

export function reduce(a: Ref, axes: number[], keep: boolean, kind: "sum" | "mean" | "max"): Ref {
  const ax = axes.map((x) => (x < 0 ? x + a.shape.length : x));
  const keptShape = a.shape.map((d, i) => (ax.includes(i) ? 1 : d));
  const out = new Float64Array(size(keptShape)).fill(kind === "max" ? -Infinity : 0);
  const count = ax.reduce((n, i) => n * (a.shape[i] as number), 1);
  const st = strides(keptShape);
  for (let i = 0; i < a.data.length; i++) {
    const idx = unravel(i, a.shape);
    let off = 0;
    idx.forEach((v, k) => {
      off += (ax.includes(k) ? 0 : v) * (st[k] as number);
    });
    const v = a.data[i] as number;
    out[off] = kind === "max" ? Math.max(out[off] as number, v) : (out[off] as number) + v;
  }
  if (kind === "mean") for (let i = 0; i < out.length; i++) out[i] = (out[i] as number) / count;
  return { shape: keep ? keptShape : a.shape.filter((_, i) => !ax.includes(i)), data: out };
}

export function softmax(a: Ref, axis: number): Ref {
  const ax = axis < 0 ? axis + a.shape.length : axis;
  const m = reduce(a, [ax], true, "max");
  const e = map2(a, m, (x, y) => Math.exp(x - y));
  const s = reduce(e, [ax], true, "sum");
  return map2(e, s, (x, y) => x / y);
}

export function matmul(a: Ref, b: Ref): Ref {
  const [m, k] = a.shape.slice(-2) as [number, number];
  const n = b.shape[b.shape.length - 1] as number;
  const batch = broadcast(a.shape.slice(0, -2), b.shape.slice(0, -2));
  const nb = size(batch);
  const out = new Float64Array(nb * m * n);
  const aBatch = size(a.shape.slice(0, -2));
  const bBatch = size(b.shape.slice(0, -2));
  for (let bi = 0; bi < nb; bi++) {
    const idx = unravel(bi, batch);
    const offOf = (r: Ref, count: number) => {
      if (count === 1) return 0;
      const bs = r.shape.slice(0, -2);
      const lead = batch.length - bs.length;
      const st = strides(bs);
      return bs.reduce((o, d, i) => o + (d === 1 ? 0 : (idx[lead + i] as number)) * (st[i] as number), 0);
    };
    const ao = offOf(a, aBatch) * m * k;
    const bo = offOf(b, bBatch) * k * n;
    for (let i = 0; i < m; i++)
      for (let j = 0; j < n; j++) {
        let s = 0;
        for (let p = 0; p < k; p++) s += (a.data[ao + i * k + p] as number) * (b.data[bo + p * n + j] as number);
        out[bi * m * n + i * n + j] = s;
      }
  }
  return { shape: [...batch, m, n], data: out };
}

export function transpose(a: Ref, perm: number[]): Ref {
  const shape = perm.map((p) => a.shape[p] as number);
  const data = new Float64Array(a.data.length);
  const st = strides(a.shape);
  for (let i = 0; i < data.length; i++) {
    const idx = unravel(i, shape);
    let off = 0;
    perm.forEach((p, k) => {
      off += (idx[k] as number) * (st[p] as number);
    });
    data[i] = a.data[off] as number;
  }
  return { shape, data };
}

/** Direct 2-D convolution (cross-correlation, as PyTorch/ONNX), NCHW. */
export function conv2d(
  x: Ref,
  w: Ref,
  b: Ref | null,
  o: { strides: [number, number]; pads: [number, number, number, number]; dilations: [number, number]; group: number },
): Ref {
  const [n, c, h, wd] = x.shape as [number, number, number, number];
  const [oc, cg, kh, kw] = w.shape as [number, number, number, number];
  const ho = Math.floor((h + o.pads[0] + o.pads[2] - o.dilations[0] * (kh - 1) - 1) / o.strides[0]) + 1;
  const wo = Math.floor((wd + o.pads[1] + o.pads[3] - o.dilations[1] * (kw - 1) - 1) / o.strides[1]) + 1;
  const out = new Float64Array(n * oc * ho * wo);
  const og = oc / o.group;
  for (let bi = 0; bi < n; bi++)
    for (let f = 0; f < oc; f++) {
      const g = Math.floor(f / og);
      for (let y = 0; y < ho; y++)
        for (let xx = 0; xx < wo; xx++) {
          let s = b ? (b.data[f] as number) : 0;
          for (let ci = 0; ci < cg; ci++)
            for (let i = 0; i < kh; i++)
              for (let j = 0; j < kw; j++) {
                const iy = y * o.strides[0] - o.pads[0] + i * o.dilations[0];
                const ix = xx * o.strides[1] - o.pads[1] + j * o.dilations[1];
                if (iy < 0 || iy >= h || ix < 0 || ix >= wd) continue;
                const xv = x.data[((bi * c + g * cg + ci) * h + iy) * wd + ix] as number;
                s += xv * (w.data[((f * cg + ci) * kh + i) * kw + j] as number);
              }
          out[((bi * oc + f) * ho + y) * wo + xx] = s;
        }
    }
  return { shape: [n, oc, ho, wo], data: out };
}

/** Deterministic pseudo-random numbers (mulberry32) in [lo, hi). */
export function random(count: number, seed: number, lo = -1, hi = 1): Float64Array {
  let a = seed >>> 0;
  const out = new Float64Array(count);
  for (let i = 0; i < count; i++) {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    out[i] = lo + (hi - lo) * (((t ^ (t >>> 14)) >>> 0) / 4294967296);
  }
  return out;
}

/** erf to ~1e-15 (series for |x| < 3, continued fraction beyond), independent of Math. */
export function erf(x: number): number {
  const ax = Math.abs(x);
  if (ax < 3) {
    let term = ax;
    let sum = ax;
    for (let n = 1; n < 200; n++) {
      term *= (-ax * ax) / n;
      const add = term / (2 * n + 1);
      sum += add;
      if (Math.abs(add) < 1e-17) break;
    }
    return Math.sign(x) * ((2 / Math.sqrt(Math.PI)) * sum);
  }
  // erfc continued fraction (Lentz)
  let f = ax;
  for (let k = 60; k >= 1; k--) f = ax + k / 2 / f;
  const erfc = Math.exp(-ax * ax) / Math.sqrt(Math.PI) / f;
  return Math.sign(x) * (1 - erfc);
}
