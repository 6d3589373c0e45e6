/** Ops that move data without arithmetic: Reshape, Transpose, Concat, Slice, Gather, Expand, Pad, nearest upsampling. */
import { attr } from "../emit.js";
import { apply, type OpDef, type Tensor } from "../tensor.js";
import { normAxes, reduceSum, reshape } from "./broadcast.js";

export { Expand, expand, Reshape, reshape } from "./broadcast.js";

const x0 = (t: Tensor) => t.inputs[0] as Tensor;
const same = (t: Tensor) => ({ shape: [...t.shape], dtype: t.dtype });

export const Transpose: OpDef<{ perm: readonly number[] }> = {
  name: "Transpose",
  shape: ([x], attrs) => {
    const t = x as Tensor;
    return { shape: attrs.perm.map((p) => t.shape[p] as number), dtype: t.dtype };
  },
  emit: (e, t) => e.node("Transpose", e.inputs, { perm: attr.ints(t.attrs.perm) }, e.output),
  grad: (t, g, needs) => {
    const perm = t.attrs.perm;
    const inverse = perm.map((_, i) => perm.indexOf(i));
    return [needs[0] ? transpose(g, inverse) : null];
  },
};

export const Concat: OpDef<{ axis: number }> = {
  name: "Concat",
  shape: (inputs, attrs) => {
    const axis = attrs.axis;
    const first = inputs[0] as Tensor;
    const shape = [...first.shape];
    shape[axis] = 0;
    for (const t of inputs) {
      if (
        t.dtype !== first.dtype ||
        t.rank !== first.rank ||
        t.shape.some((d, i) => i !== axis && d !== first.shape[i])
      ) {
        throw new Error(`Concat on axis ${axis}: incompatible inputs ${inputs.map(String).join(", ")}`);
      }
      shape[axis] = (shape[axis] as number) + (t.shape[axis] as number);
    }
    return { shape, dtype: first.dtype };
  },
  emit: (e, t) => e.node("Concat", e.inputs, { axis: attr.int(t.attrs.axis) }, e.output),
  grad: (t, g, needs) => {
    const axis = t.attrs.axis;
    let start = 0;
    return t.inputs.map((x, i) => {
      const begin = start;
      start += x.shape[axis] as number;
      return needs[i] ? slice(g, [begin], [start], [axis]) : null;
    });
  },
};

type SliceAttrs = {
  starts: readonly number[];
  ends: readonly number[];
  axes: readonly number[];
  steps: readonly number[];
};

/** Slice with static, normalised starts/ends/steps (steps > 0). */
export const Slice: OpDef<SliceAttrs> = {
  name: "Slice",
  shape: ([x], attrs) => {
    const t = x as Tensor;
    const shape = [...t.shape];
    const { starts, ends, axes, steps } = attrs;
    axes.forEach((a, i) => {
      shape[a] = Math.max(0, Math.ceil(((ends[i] as number) - (starts[i] as number)) / (steps[i] as number)));
    });
    return { shape, dtype: t.dtype };
  },
  emit: (e, t) => {
    const { starts, ends, axes, steps } = t.attrs;
    e.node("Slice", [e.inputs[0] as string, e.ints(starts), e.ints(ends), e.ints(axes), e.ints(steps)], {}, e.output);
  },
  grad: (t, g, needs) => {
    if (!needs[0]) return [null];
    const x = x0(t);
    const { starts, ends, axes, steps } = t.attrs;
    if (steps.some((s) => s !== 1))
      throw new Error("Slice: the gradient of a strided slice (step ≠ 1) is not implemented");
    const pads = new Array<number>(2 * x.rank).fill(0);
    axes.forEach((a, i) => {
      pads[a] = starts[i] as number;
      pads[x.rank + a] = (x.shape[a] as number) - (ends[i] as number);
    });
    return [pad(g, pads)];
  },
};

/** Gather along an axis with integer indices (embeddings). The indices get no gradient. */
export const Gather: OpDef<{ axis: number }> = {
  name: "Gather",
  shape: ([data, indices], attrs) => {
    const d = data as Tensor;
    const idx = indices as Tensor;
    if (idx.dtype !== "int64" && idx.dtype !== "int32")
      throw new Error(`Gather: indices must be int64 or int32, got ${idx}`);
    const axis = attrs.axis;
    return { shape: [...d.shape.slice(0, axis), ...idx.shape, ...d.shape.slice(axis + 1)], dtype: d.dtype };
  },
  emit: (e, t) => e.node("Gather", e.inputs, { axis: attr.int(t.attrs.axis) }, e.output),
  grad: (t, g, needs) => {
    if (!needs[0]) return [null, null];
    if (t.attrs.axis !== 0) throw new Error("Gather: the gradient is implemented for axis 0 (embedding lookups)");
    return [apply(ScatterAddRows, [g, t.inputs[1] as Tensor], { rows: x0(t).shape[0] as number }), null];
  },
};

/**
 * The gradient of a row gather: a zero table of `rows` rows into which each cotangent row is added
 * at its index (ScatterND with reduction "add", so repeated indices accumulate).
 */
export const ScatterAddRows: OpDef<{ rows: number }> = {
  name: "ScatterAddRows",
  shape: ([g, indices], attrs) => {
    const gt = g as Tensor;
    const idx = indices as Tensor;
    return { shape: [attrs.rows, ...gt.shape.slice(idx.rank)], dtype: gt.dtype };
  },
  emit: (e, t) => {
    const [g, indices] = e.inputs as [string, string];
    const idx = t.inputs[1] as Tensor;
    const zeros = e.node("Expand", [e.scalar(0, t.dtype), e.ints(t.shape)]);
    const idx64 = idx.dtype === "int64" ? indices : e.node("Cast", [indices], { to: attr.int(7) });
    const idxCol = e.node("Reshape", [idx64, e.ints([...idx.shape, 1])]);
    e.node("ScatterND", [zeros, idxCol, g], { reduction: attr.string("add") }, e.output);
  },
  grad: (t, g, needs) => [needs[0] ? gather(g, t.inputs[1] as Tensor, 0) : null, null],
};

/** Constant padding; `pads` is [begin_0, ..., begin_n, end_0, ..., end_n] as in ONNX, all ≥ 0. */
export const Pad: OpDef<{ pads: readonly number[]; value: number }> = {
  name: "Pad",
  shape: ([x], attrs) => {
    const t = x as Tensor;
    const pads = attrs.pads;
    return { shape: t.shape.map((d, i) => d + (pads[i] as number) + (pads[t.rank + i] as number)), dtype: t.dtype };
  },
  emit: (e, t) => {
    e.node(
      "Pad",
      [e.inputs[0] as string, e.ints(t.attrs.pads), e.scalar(t.attrs.value, t.dtype)],
      {
        mode: attr.string("constant"),
      },
      e.output,
    );
  },
  grad: (t, g, needs) => {
    if (!needs[0]) return [null];
    const x = x0(t);
    const pads = t.attrs.pads;
    const axes = x.shape.map((_, i) => i);
    return [
      slice(
        g,
        axes.map((i) => pads[i] as number),
        axes.map((i) => (pads[i] as number) + (x.shape[i] as number)),
        axes,
      ),
    ];
  },
};

/** Nearest-neighbour upsampling of the last two axes by an integer factor (PyTorch's interpolate(mode="nearest")). */
export const UpsampleNearest: OpDef<{ factor: number }> = {
  name: "UpsampleNearest",
  shape: ([x], attrs) => {
    const t = x as Tensor;
    const f = attrs.factor;
    if (t.rank !== 4) throw new Error(`UpsampleNearest: needs [B, C, H, W], got ${t}`);
    return {
      shape: [t.shape[0], t.shape[1], (t.shape[2] as number) * f, (t.shape[3] as number) * f] as number[],
      dtype: t.dtype,
    };
  },
  emit: (e, t) => {
    const f = t.attrs.factor;
    const scales = e.node("Constant", [], { value_floats: attr.floats([1, 1, f, f]) });
    e.node(
      "Resize",
      [e.inputs[0] as string, "", scales],
      {
        mode: attr.string("nearest"),
        coordinate_transformation_mode: attr.string("asymmetric"),
        nearest_mode: attr.string("floor"),
      },
      e.output,
    );
  },
  grad: (t, g, needs) => {
    if (!needs[0]) return [null];
    const [b, c, h, w] = x0(t).shape as [number, number, number, number];
    const f = t.attrs.factor;
    return [reduceSum(reshape(g, [b, c, h, f, w, f]), [3, 5])];
  },
};

export const Identity: OpDef = {
  name: "Identity",
  shape: ([x]) => same(x as Tensor),
  emit: (e) => e.node("Identity", e.inputs, {}, e.output),
  grad: (_t, g, needs) => [needs[0] ? g : null],
};

// ---- the functions model code calls ----

export function transpose(x: Tensor, perm: readonly number[]): Tensor {
  const normalized = perm.map((a) => (a < 0 ? a + x.rank : a));
  const isPermutation = perm.length === x.rank && normalized.every((a, i) => normalized.indexOf(i) >= 0 && a < x.rank);
  if (!isPermutation) throw new Error(`transpose: [${perm.join(", ")}] is not a permutation of the axes of ${x}`);
  if (normalized.every((a, i) => a === i)) return x;
  return apply(Transpose, [x], { perm: normalized });
}

/** Swaps the last two axes (matrix transpose of a batch). */
export function swapLastAxes(x: Tensor): Tensor {
  const perm = x.shape.map((_, i) => i);
  perm[x.rank - 1] = x.rank - 2;
  perm[x.rank - 2] = x.rank - 1;
  return transpose(x, perm);
}

export function concat(xs: readonly Tensor[], axis: number): Tensor {
  if (xs.length === 0) throw new Error("concat: needs at least one tensor");
  if (xs.length === 1) return xs[0] as Tensor;
  const [a] = normAxes([axis], (xs[0] as Tensor).rank, "Concat");
  return apply(Concat, xs, { axis: a as number });
}

/** Python-style slice bounds (negative counts from the end, clamped), step ≥ 1. */
export function slice(
  x: Tensor,
  starts: readonly number[],
  ends: readonly number[],
  axes?: readonly number[],
  steps?: readonly number[],
): Tensor {
  const ax = normAxes(axes ?? starts.map((_, i) => i), x.rank, "Slice");
  const order = (axes ?? starts.map((_, i) => i)).map((a) => (a < 0 ? a + x.rank : a));
  const s: number[] = [];
  const en: number[] = [];
  const st: number[] = [];
  for (const a of ax) {
    const i = order.indexOf(a);
    const dim = x.shape[a] as number;
    const step = steps?.[i] ?? 1;
    if (!Number.isInteger(step) || step < 1) throw new Error(`slice: step ${step} must be a positive integer`);
    const clampIdx = (v: number) => Math.min(dim, Math.max(0, v < 0 ? v + dim : v));
    s.push(clampIdx(starts[i] as number));
    en.push(Math.max(clampIdx(starts[i] as number), clampIdx(ends[i] as number)));
    st.push(step);
  }
  if (ax.every((a, i) => s[i] === 0 && en[i] === x.shape[a] && st[i] === 1)) return x;
  return apply(Slice, [x], { starts: s, ends: en, axes: ax, steps: st });
}

/** Splits along an axis into pieces of the given sizes. */
export function split(x: Tensor, sizes: readonly number[], axis: number): Tensor[] {
  const [a] = normAxes([axis], x.rank, "Split");
  const total = sizes.reduce((p, q) => p + q, 0);
  if (total !== x.shape[a as number])
    throw new Error(`split: sizes [${sizes.join(", ")}] do not add up to axis ${axis} of ${x}`);
  let start = 0;
  return sizes.map((n) => {
    const piece = slice(x, [start], [start + n], [a as number]);
    start += n;
    return piece;
  });
}

export function gather(data: Tensor, indices: Tensor, axis = 0): Tensor {
  const [a] = normAxes([axis], data.rank, "Gather");
  return apply(Gather, [data, indices], { axis: a as number });
}

/** Inserts size-1 axes (positions in the output, as ONNX Unsqueeze); static shapes make it a Reshape. */
export function unsqueeze(x: Tensor, axes: readonly number[]): Tensor {
  const rank = x.rank + axes.length;
  const ax = normAxes(axes, rank, "Unsqueeze");
  const shape: number[] = [];
  let j = 0;
  for (let i = 0; i < rank; i++) shape.push(ax.includes(i) ? 1 : (x.shape[j++] as number));
  return reshape(x, shape);
}

/** Removes size-1 axes; static shapes make it a Reshape. */
export function squeeze(x: Tensor, axes: readonly number[]): Tensor {
  const ax = normAxes(axes, x.rank, "Squeeze");
  for (const a of ax) if (x.shape[a] !== 1) throw new Error(`squeeze: axis ${a} of ${x} is not 1`);
  return reshape(
    x,
    x.shape.filter((_, i) => !ax.includes(i)),
  );
}

export function pad(x: Tensor, pads: readonly number[], value = 0): Tensor {
  if (pads.length !== 2 * x.rank || pads.some((p) => !Number.isInteger(p) || p < 0)) {
    throw new Error(`pad: pads [${pads.join(", ")}] must be 2×rank non-negative integers for ${x}`);
  }
  if (pads.every((p) => p === 0)) return x;
  return apply(Pad, [x], { pads: [...pads], value });
}

export function upsampleNearest(x: Tensor, factor = 2): Tensor {
  return apply(UpsampleNearest, [x], { factor });
}

export function identity(x: Tensor): Tensor {
  return apply(Identity, [x]);
}
