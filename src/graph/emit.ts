/** The interface through which an op writes its ONNX node(s) during compilation. */
import { type AnyTypedArray, DTYPES, type DType } from "./dtype.js";
import type { AttributeValue } from "./onnx_proto.js";

export interface Emit {
  /** ONNX value names of the op's inputs, in order. */
  readonly inputs: readonly string[];
  /** The ONNX value name the op's result must have. */
  readonly output: string;
  /** Adds one node. `output` defaults to a fresh temporary name; returns the output name. */
  node(
    opType: string,
    inputs: readonly string[],
    attrs?: Record<string, AttributeValue>,
    output?: string,
    domain?: string,
  ): string;
  /**
   * Adds one node with several outputs (e.g. Loop): `outputs` fresh temporary names, or the given names;
   * returns them.
   */
  multi(
    opType: string,
    inputs: readonly string[],
    outputs: number | readonly string[],
    attrs?: Record<string, AttributeValue>,
  ): string[];
  /**
   * Gives the op's result the name of a value another op's node already computes (a second output of
   * that node, named with `savedName`) instead of adding a node.
   */
  alias(name: string): void;
  /**
   * Whether the op's input `i` is known when the session is created (a constant or a frozen weight
   * stored in the model), so ORT folds any node computed from it alone into a new initializer.
   */
  isConstant(i: number): boolean;
  /**
   * When input `i` is a frozen weight fed at run time, the name of another fed input that holds
   * `derive(weight)` (of `shape`, same dtype): computed on the host once per process for each weight
   * array and `tag`, and shared by every graph that asks. Undefined for anything else: a constant or
   * a weight stored in the model (ORT folds nodes computed from those once per session), an
   * activation, or a trainable weight (its values change between runs).
   */
  derivedWeight(
    i: number,
    tag: string,
    shape: readonly number[],
    derive: (data: AnyTypedArray) => AnyTypedArray,
  ): string | undefined;
  /** A name no other value of the model has, for values inside subgraphs. */
  fresh(hint: string): string;
  /** A 1-D int64 constant (shapes, axes, pads), deduplicated across the graph. */
  ints(values: readonly number[]): string;
  /** A scalar constant of the given dtype, deduplicated across the graph. */
  scalar(value: number, dtype: DType): string;
}

/**
 * The name of an op's additional node output `what` (e.g. LayerNormalization's InvStdDev), derived from
 * the op's own output name, so that an op reading it (through `alias`) finds it from its input's name.
 */
export const savedName = (output: string, what: string): string => `${output}::${what}`;

export const attr = {
  int: (value: number): AttributeValue => ({ type: "int", value }),
  float: (value: number): AttributeValue => ({ type: "float", value }),
  ints: (value: readonly number[]): AttributeValue => ({ type: "ints", value: [...value] }),
  floats: (value: readonly number[]): AttributeValue => ({ type: "floats", value: [...value] }),
  string: (value: string): AttributeValue => ({ type: "string", value }),
  /** A one-element zero tensor: ConstantOfShape's `value` for zeros of `dtype`. */
  zero: (dtype: DType): AttributeValue => ({
    type: "tensor",
    value: { name: "", dims: [1], dataType: DTYPES[dtype].onnx, rawData: new Uint8Array(DTYPES[dtype].bytes) },
  }),
};
