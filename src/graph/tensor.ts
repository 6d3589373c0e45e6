/**
 * Symbolic tensors. A Tensor is a node of a static-shape dataflow graph: a leaf (graph input,
 * weight or constant) or the output of one op applied to other tensors. Nothing is computed
 * here; `compile` turns a set of output tensors into an ONNX model and `grad` adds the nodes of
 * their reverse-mode derivatives.
 */
import { type AnyTypedArray, DTYPES, type DType, numel, scalarArray } from "./dtype.js";
import type { Emit } from "./emit.js";

export type AttrValue = number | string | boolean | readonly number[] | undefined;
/** An op's attributes; each op declares its own as a type (`type SliceAttrs = { starts: ... }`). */
export type Attrs = Readonly<Record<string, AttrValue>>;

/**
 * One op: its shape rule, its ONNX emission and its gradient rule, side by side
 * (as tfjs-core registers `{kernelName, gradFunc}` and micrograd keeps `_backward` beside the forward).
 * `A` is the op's attribute type: `apply` checks it, and each rule reads `t.attrs` as an `A`.
 */
export interface OpDef<A extends Attrs = Attrs> {
  readonly name: string;
  /** Output shape and dtype; throws a message naming the op and the offending shapes. */
  shape(inputs: readonly Tensor[], attrs: A): { shape: number[]; dtype: DType };
  /** Emits the ONNX node(s) that compute this op's output. */
  emit(e: Emit, t: Tensor<A>): void;
  /**
   * Cotangents of the inputs given the output's cotangent `g`, built from the same ops.
   * `needs[i]` says whether input i's gradient is wanted; return null where it is not, or where
   * the input is not differentiable (indices, masks).
   */
  grad?(t: Tensor<A>, g: Tensor, needs: readonly boolean[]): (Tensor | null)[];
  /** Floating-point operations of one evaluation (multiply-add = 2). */
  flops?(t: Tensor<A>): number;
}

/** Where a weight's values live: in memory, or in a byte range of a file (e.g. a safetensors checkpoint). */
export type WeightSource =
  | { kind: "array"; data: AnyTypedArray }
  | { kind: "file"; path: string; offset: number; byteLength: number; dtype: DType };

export type Leaf =
  | { kind: "input"; name: string }
  | { kind: "weight"; name: string; source: WeightSource; trainable: boolean }
  | { kind: "constant"; data: AnyTypedArray };

let nextId = 0;
const scopeStack: string[] = [];

/** Runs `fn` with `name` appended to the scope that names the ONNX nodes it creates. */
export function withScope<T>(name: string, fn: () => T): T {
  scopeStack.push(name);
  try {
    return fn();
  } finally {
    scopeStack.pop();
  }
}

export function currentScope(): string {
  return scopeStack.join(".");
}

/** `A` is the attribute type of the op that made it (the rules of that op see it typed). */
export class Tensor<A extends Attrs = Attrs> {
  readonly id = nextId++;
  readonly scope = currentScope();

  constructor(
    readonly op: OpDef<A> | null,
    readonly inputs: readonly Tensor[],
    readonly attrs: A,
    readonly shape: readonly number[],
    readonly dtype: DType,
    readonly leaf?: Leaf,
  ) {}

  get rank(): number {
    return this.shape.length;
  }

  get size(): number {
    return numel(this.shape);
  }

  toString(): string {
    const what = this.leaf
      ? this.leaf.kind === "constant"
        ? "constant"
        : `${this.leaf.kind} '${this.leaf.name}'`
      : (this.op?.name ?? "?");
    return `${what} ${this.dtype}[${this.shape.join(", ")}]`;
  }
}

/**
 * Applies an op: checks shapes, records the node. The attributes may be left out only where every
 * one of them is optional.
 */
export function apply<A extends Attrs>(
  op: OpDef<A>,
  inputs: readonly Tensor[],
  ...attributes: Record<string, never> extends A ? [attrs?: A] : [attrs: A]
): Tensor {
  // Left out only when `{}` is a valid A (the conditional type above).
  const attrs = (attributes[0] ?? {}) as A;
  const { shape, dtype } = op.shape(inputs, attrs);
  for (const d of shape) {
    if (!Number.isInteger(d) || d < 0) {
      throw new Error(`${op.name}: computed an invalid shape [${shape}] from ${inputs.map(String).join(", ")}`);
    }
  }
  return new Tensor(op, inputs, attrs, shape, dtype);
}

function checkShape(shape: readonly number[], what: string): void {
  for (const d of shape) {
    if (!Number.isInteger(d) || d < 0) throw new Error(`${what}: invalid shape [${shape.join(", ")}]`);
  }
}

/** A graph input, fed at run time. */
export function input(name: string, shape: readonly number[], dtype: DType = "float32"): Tensor {
  checkShape(shape, `input '${name}'`);
  return new Tensor(null, [], {}, [...shape], dtype, { kind: "input", name });
}

/**
 * A named weight. Frozen weights become ONNX initializers (ORT can pre-pack them); trainable
 * ones become graph inputs fed from the caller's buffers at each run.
 */
export function weight(
  name: string,
  shape: readonly number[],
  source: WeightSource | AnyTypedArray,
  options: { dtype?: DType; trainable?: boolean } = {},
): Tensor {
  checkShape(shape, `weight '${name}'`);
  const src: WeightSource = "kind" in source ? source : { kind: "array", data: source };
  const dtype = options.dtype ?? (src.kind === "file" ? src.dtype : dtypeOfArray(src.data));
  const count = numel(shape);
  const stored = src.kind === "file" ? src.byteLength / DTYPES[src.dtype].bytes : src.data.length;
  if (stored !== count) {
    throw new Error(`weight '${name}': shape [${shape.join(", ")}] needs ${count} values, the source holds ${stored}`);
  }
  return new Tensor(null, [], {}, [...shape], dtype, {
    kind: "weight",
    name,
    source: src,
    trainable: options.trainable ?? false,
  });
}

export function dtypeOfArray(data: AnyTypedArray): DType {
  if (data instanceof Float32Array) return "float32";
  if (data instanceof Float64Array) return "float64";
  if (data instanceof Uint16Array) return "float16";
  if (data instanceof BigInt64Array) return "int64";
  if (data instanceof Int32Array) return "int32";
  return "bool";
}

/** A constant baked into the graph. */
export function constant(data: AnyTypedArray, shape: readonly number[], dtype: DType = dtypeOfArray(data)): Tensor {
  checkShape(shape, "constant");
  if (data.length !== numel(shape)) {
    throw new Error(`constant: ${data.length} values do not fill shape [${shape.join(", ")}]`);
  }
  return new Tensor(null, [], {}, [...shape], dtype, { kind: "constant", data });
}

/** A scalar (shape []) constant of the given dtype. */
export function scalar(value: number, dtype: DType = "float32"): Tensor {
  return constant(scalarArray(value, dtype), [], dtype);
}
