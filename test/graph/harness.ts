/** Test helpers: run graphs on ORT, and compare gradients with central finite differences. */
import { compile, type DType, input, type Tensor, vjp } from "../../src/graph/index.js";
import { type HostTensor, Session } from "../../src/runtime/session.js";
import { type Ref, random, size } from "./reference.js";

export function toArray(values: ArrayLike<number>, dtype: DType): Float32Array | Float64Array {
  return dtype === "float64" ? Float64Array.from(values) : Float32Array.from(values);
}

export async function evaluate(
  outputs: Record<string, Tensor>,
  feeds: Record<string, HostTensor | Float32Array | Float64Array> = {},
): Promise<Record<string, HostTensor>> {
  const session = await Session.create(compile(outputs), { threads: 1 });
  try {
    return await session.run(feeds);
  } finally {
    await session.release();
  }
}

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} vs ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs((a[i] as number) - (b[i] as number));
    if (Number.isNaN(d)) return Number.NaN;
    m = Math.max(m, d);
  }
  return m;
}

export function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] as number));
  return m;
}

export interface OpCase {
  name: string;
  /** Input shapes (and optional fixed values). */
  inputs: { shape: number[]; values?: number[]; lo?: number; hi?: number }[];
  build: (xs: Tensor[]) => Tensor;
  /** Independent float64 reference of the forward. */
  reference: (xs: Ref[]) => Ref;
  /** float64 where ORT has double kernels for every op involved; float32 otherwise. */
  dtype: DType;
  /** Which inputs to differentiate (default: all). */
  wrt?: number[];
  /** A looser forward tolerance, with the reason in the case's name. */
  forwardTolerance?: number;
}

export interface OpCaseResult {
  forwardErr: number;
  forwardScale: number;
  gradErr: number;
  gradScale: number;
}

/**
 * Forward against the reference; gradient (a VJP with a random cotangent, computed by the graph
 * on ORT) against central differences of the float64 reference: ⟨c, f(x + h·e_j) − f(x − h·e_j)⟩ / 2h.
 */
export async function checkOp(c: OpCase, seed = 1): Promise<OpCaseResult> {
  const xs = c.inputs.map((spec, i) => input(`x${i}`, spec.shape, c.dtype));
  const y = c.build(xs);
  const values = c.inputs.map((spec, i) =>
    Float64Array.from(spec.values ?? random(size(spec.shape), seed + 17 * i, spec.lo ?? -1, spec.hi ?? 1)),
  );
  const refs = (vals: Float64Array[]) => vals.map((v, i) => ({ shape: c.inputs[i]!.shape, data: v }));
  const expected = c.reference(refs(values));
  const cot = random(size(y.shape), seed + 999);
  const wrt = c.wrt ?? c.inputs.map((_, i) => i);
  const cotangent = input("cotangent", y.shape, c.dtype);
  const grads = vjp(
    [y],
    [cotangent],
    wrt.map((i) => xs[i] as Tensor),
  );
  const outputs: Record<string, Tensor> = { y };
  grads.forEach((g, k) => {
    outputs[`g${k}`] = g;
  });
  const feeds: Record<string, Float32Array | Float64Array> = { cotangent: toArray(cot, c.dtype) };
  values.forEach((v, i) => {
    feeds[`x${i}`] = toArray(v, c.dtype);
  });
  const out = await evaluate(outputs, feeds);
  const got = out.y as HostTensor;
  if (got.shape.join() !== expected.shape.join()) {
    throw new Error(`${c.name}: shape [${got.shape}] vs reference [${expected.shape}]`);
  }
  const forwardErr = maxAbsDiff(got.data as Float64Array, expected.data);
  const forwardScale = maxAbs(expected.data);

  let gradErr = 0;
  let gradScale = 0;
  const h = 1e-5;
  const dot = (r: Ref) => r.data.reduce((s, v, i) => s + v * (cot[i] as number), 0);
  wrt.forEach((inputIndex, k) => {
    const analytic = out[`g${k}`]?.data as Float64Array;
    const base = values[inputIndex] as Float64Array;
    for (let j = 0; j < base.length; j++) {
      const plus = values.map((v) => v.slice());
      const minus = values.map((v) => v.slice());
      (plus[inputIndex] as Float64Array)[j] = (base[j] as number) + h;
      (minus[inputIndex] as Float64Array)[j] = (base[j] as number) - h;
      const numeric = (dot(c.reference(refs(plus))) - dot(c.reference(refs(minus)))) / (2 * h);
      gradErr = Math.max(gradErr, Math.abs(numeric - (analytic[j] as number)));
      gradScale = Math.max(gradScale, Math.abs(numeric));
    }
  });
  return { forwardErr, forwardScale, gradErr, gradScale };
}
