/**
 * Compilation of a symbolic graph into an ONNX model (opset 18, IR 10). Frozen weights become
 * initializers, inline or, for big models, ONNX external data (a protobuf cannot exceed 2 GB), or,
 * on request, graph inputs fed from host memory; trainable weights become graph inputs that the
 * runtime feeds from their arrays.
 */
import { getPlatform } from "../platform/platform.js";
import { concatBytes, equalBytes, fnv1a } from "../util/bytes.js";
import { extName, joinPath } from "../util/paths.js";
import { type AnyTypedArray, DTYPES, type DType, halfArrayToFloat32, scalarArray } from "./dtype.js";
import { attr, type Emit } from "./emit.js";
import { topoSort } from "./grad.js";
import {
  type AttributeValue,
  encodeModel,
  type NodeProtoSpec,
  type TensorProtoSpec,
  type ValueInfoSpec,
} from "./onnx_proto.js";
import { dtypeOfArray, type Tensor, type WeightSource } from "./tensor.js";

export const OPSET = 18;
const IR_VERSION = 10;

export interface ValueSpec {
  name: string;
  shape: number[];
  dtype: DType;
}

export interface CompileOptions {
  name?: string;
  /** Graph inputs in feed order (default: every input leaf reached, in order of first use). */
  inputs?: readonly Tensor[];
  /**
   * Folder for the model file and its external weight data, used when the frozen weights exceed
   * `inlineLimitBytes` (default: a folder under the OS temp dir). Weights read from a file in the
   * right dtype are referenced there through a link, not copied.
   */
  externalDir?: string;
  /** Frozen weights up to this many bytes in total stay inside the protobuf (default 1 GiB). */
  inlineLimitBytes?: number;
  /**
   * Outputs computed only when the bool input `when` is true (an ONNX If node): one session can
   * then serve both the forward alone and the forward with its gradient, sharing one copy of the
   * weights. When false they are zeros. Their nodes run after everything the other outputs need.
   */
  gated?: { when: string; outputs: Record<string, Tensor> };
  /**
   * Where frozen weights go. "initializers" (default): inside the model, where ORT may reorder and
   * prepack them per kernel (fastest; a weight read by both a forward and a backward kernel is held
   * in two layouts). "inputs": graph inputs fed from one host array per weight on every run, which
   * ORT reads in place (one copy of the weights, a few percent slower convolutions, fast setup, but
   * a few µs per weight and run, which small models feel). "auto": inputs when the frozen weights
   * exceed `inlineLimitBytes` (the models that need external data), initializers otherwise. A function
   * chooses from the frozen weights' total bytes (e.g. initializers where memory allows, else "auto").
   */
  frozenWeights?: FrozenWeights | ((frozenBytes: number) => FrozenWeights);
}

export type FrozenWeights = "initializers" | "inputs" | "auto";

export interface CompiledGraph {
  name: string;
  model: { kind: "bytes"; bytes: Uint8Array } | { kind: "file"; path: string };
  inputs: ValueSpec[];
  /**
   * Weights fed as graph inputs by the runtime: trainable ones from their own arrays (updated in
   * place by optimisers), frozen ones (with `frozenWeights: "inputs"`) from host copies.
   */
  weightInputs: WeightInput[];
  outputs: ValueSpec[];
  /** Floating-point operations of one run (multiply-add = 2; elementwise ops 1 per element). */
  flops: number;
  /** Additional operations when the gated outputs are computed. */
  gatedFlops: number;
  nodeCount: number;
  /** ONNX node name → what it computes, for error messages. */
  nodeInfo: Map<string, string>;
}

/** A weight fed as a graph input, from the host array the runtime wraps once per session. */
export interface WeightInput extends ValueSpec {
  data: AnyTypedArray;
}

const spec = (name: string, t: Tensor): ValueSpec => ({ name, shape: [...t.shape], dtype: t.dtype });

function bytesOf(data: AnyTypedArray): Uint8Array {
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

export function compile(outputs: Record<string, Tensor>, options: CompileOptions = {}): CompiledGraph {
  const outputNames = Object.keys(outputs);
  if (outputNames.length === 0) throw new Error("compile: no outputs requested");
  const roots = Object.values(outputs);
  const gatedRoots = Object.values(options.gated?.outputs ?? {});
  const order = topoSort([...roots, ...(options.inputs ?? []), ...gatedRoots]);
  const ungated = new Set(topoSort([...roots, ...(options.inputs ?? [])]).map((t) => t.id));

  const names = new Map<number, string>();
  const nodes: NodeProtoSpec[] = [];
  const gatedNodes: NodeProtoSpec[] = [];
  const initializers: TensorProtoSpec[] = [];
  const nodeInfo = new Map<string, string>();
  const usedNames = new Set<string>();
  const claim = (name: string, what: string) => {
    if (usedNames.has(name)) throw new Error(`compile: two different values are both named '${name}' (${what})`);
    usedNames.add(name);
    return name;
  };

  // Constants are deduplicated by content (the same scalar is created many times): a cheap hash
  // picks the bucket, the bytes decide.
  const constCache = new Map<string, { bytes: Uint8Array; name: string }[]>();
  let constCount = 0;
  let tmp = 0;
  const constant = (data: AnyTypedArray, dims: number[], dtype: DType): string => {
    const bytes = bytesOf(data);
    const key = `${dtype}:${dims}:${fnv1a(bytes)}`;
    const bucket = constCache.get(key) ?? [];
    const hit = bucket.find((c) => equalBytes(c.bytes, bytes));
    if (hit) return hit.name;
    const name = claim(`const_${constCount++}`, "constant");
    bucket.push({ bytes, name });
    constCache.set(key, bucket);
    initializers.push({ name, dims, dataType: DTYPES[dtype].onnx, rawData: bytes });
    return name;
  };
  const scalarConst = (value: number, dtype: DType): string => constant(scalarArray(value, dtype), [], dtype);

  // Graph inputs.
  const inputs: ValueSpec[] = [];
  if (options.gated) inputs.push({ name: claim(options.gated.when, "gate input"), shape: [], dtype: "bool" });
  const declaredInputs = options.inputs ?? order.filter((t) => t.leaf?.kind === "input");
  for (const t of declaredInputs) {
    if (t.leaf?.kind !== "input") throw new Error(`compile: ${t} is listed as an input but is not one`);
    names.set(t.id, claim(t.leaf.name, `input ${t}`));
    inputs.push(spec(t.leaf.name, t));
  }

  // Weights.
  const weightInputs: WeightInput[] = [];
  const fed = new Set<number>();
  const frozenFed = new Set<number>();
  const frozen: Tensor[] = [];
  for (const t of order) {
    if (t.leaf?.kind !== "weight") continue;
    names.set(t.id, claim(t.leaf.name, `weight ${t}`));
    if (t.leaf.trainable) {
      const src = t.leaf.source;
      if (src.kind !== "array" || dtypeOfArray(src.data) !== t.dtype) {
        throw new Error(`compile: trainable weight '${t.leaf.name}' needs an in-memory ${t.dtype} array`);
      }
      weightInputs.push({ ...spec(t.leaf.name, t), data: src.data });
      fed.add(t.id);
    } else frozen.push(t);
  }
  let frozenBytes = 0;
  for (const t of frozen) {
    const src = (t.leaf as { source: { kind: string; byteLength?: number; data?: AnyTypedArray } }).source;
    frozenBytes += src.kind === "file" ? (src.byteLength as number) : (src.data as AnyTypedArray).byteLength;
  }
  const big = frozenBytes > (options.inlineLimitBytes ?? 2 ** 30);
  const choice = options.frozenWeights ?? "initializers";
  const mode = typeof choice === "function" ? choice(frozenBytes) : choice;
  if (mode === "inputs" || (mode === "auto" && big)) {
    for (const t of frozen.splice(0)) {
      const leaf = t.leaf as Extract<NonNullable<Tensor["leaf"]>, { kind: "weight" }>;
      weightInputs.push({ ...spec(leaf.name, t), data: hostWeight(leaf.name, leaf.source, t.dtype) });
      fed.add(t.id);
      frozenFed.add(t.id);
    }
  }
  const external = frozen.length > 0 && big;
  const derivedNames = new Set<string>();
  // Weights in float32 files are referenced in place; the folder holds the model and any converted weights.
  const externalWriter = external
    ? new ExternalData(options.externalDir ?? getPlatform().tempDir(), options.name ?? "graph")
    : undefined;
  for (const t of frozen) {
    const leaf = t.leaf as Extract<NonNullable<Tensor["leaf"]>, { kind: "weight" }>;
    const src = leaf.source;
    const storedDtype = src.kind === "file" ? src.dtype : dtypeOfArray(src.data);
    const storedName = storedDtype === t.dtype ? leaf.name : claim(`${leaf.name}::${storedDtype}`, "stored weight");
    const proto: TensorProtoSpec = { name: storedName, dims: [...t.shape], dataType: DTYPES[storedDtype].onnx };
    if (externalWriter) proto.external = externalWriter.place(src);
    else proto.rawData = src.kind === "array" ? bytesOf(src.data) : readRange(src.path, src.offset, src.byteLength);
    initializers.push(proto);
    if (storedName !== leaf.name) {
      nodes.push({
        name: `cast_${leaf.name}`,
        opType: "Cast",
        inputs: [storedName],
        outputs: [leaf.name],
        attributes: { to: { type: "int", value: DTYPES[t.dtype].onnx } },
      });
    }
  }

  // Output names are given to the producing node directly, where that is unambiguous.
  const outputAlias = new Map<number, string>();
  for (const [name, t] of Object.entries(outputs)) {
    if (t.op && !outputAlias.has(t.id)) outputAlias.set(t.id, claim(name, `output ${t}`));
  }

  let flops = 0;
  let gatedFlops = 0;
  for (const t of order) {
    if (names.has(t.id)) continue;
    if (t.leaf?.kind === "input") {
      throw new Error(`compile: the graph needs input '${t.leaf.name}', which is not among the declared inputs`);
    }
    if (t.leaf?.kind === "constant") {
      names.set(t.id, constant(t.leaf.data, [...t.shape], t.dtype));
      continue;
    }
    const op = t.op;
    if (!op) throw new Error(`compile: ${t} has neither an op nor a value`);
    const output = outputAlias.get(t.id) ?? claim(`${t.scope ? `${t.scope}/` : ""}${op.name}_${t.id}`, String(t));
    names.set(t.id, output);
    const inputNames = t.inputs.map((i) => names.get(i.id) as string);
    const base = `${t.scope ? `${t.scope}/` : ""}${op.name}_${t.id}`;
    let part = 0;
    const isGated = !ungated.has(t.id);
    const target = isGated ? gatedNodes : nodes;
    const e: Emit = {
      inputs: inputNames,
      output,
      node: (opType, ins, attrs?: Record<string, AttributeValue>, out?: string, domain?: string) => {
        const nodeName = part === 0 ? base : `${base}.${part}`;
        part++;
        const o = out ?? `${base}.tmp${tmp++}`;
        target.push({ name: nodeName, opType, inputs: [...ins], outputs: [o], attributes: attrs, domain });
        nodeInfo.set(
          nodeName,
          `${op.name} in '${t.scope || "(top)"}': inputs ${t.inputs.map(String).join(", ")} → ${t.dtype}[${t.shape.join(", ")}]`,
        );
        return o;
      },
      multi: (opType, ins, count, attrs) => {
        const nodeName = part === 0 ? base : `${base}.${part}`;
        part++;
        const outs =
          typeof count === "number" ? Array.from({ length: count }, () => `${base}.tmp${tmp++}`) : [...count];
        target.push({ name: nodeName, opType, inputs: [...ins], outputs: outs, attributes: attrs });
        nodeInfo.set(nodeName, `${op.name} in '${t.scope || "(top)"}' → ${t.dtype}[${t.shape.join(", ")}]`);
        return outs;
      },
      derivedWeight: (i, tag, shape, derive) => {
        const x = t.inputs[i];
        if (!x || !frozenFed.has(x.id)) return undefined;
        const source = weightInputs.find((w) => w.name === names.get(x.id)) as WeightInput;
        const name = `${source.name}::${tag}`;
        if (!derivedNames.has(name)) {
          derivedNames.add(name);
          weightInputs.push({
            name: claim(name, "derived weight"),
            shape: [...shape],
            dtype: x.dtype,
            data: derived(source.data, tag, derive),
          });
        }
        return name;
      },
      alias: (name) => {
        // A requested output keeps its name through an Identity.
        if (outputAlias.has(t.id)) target.push({ name: base, opType: "Identity", inputs: [name], outputs: [output] });
        else names.set(t.id, name);
      },
      fresh: (hint) => `${base}/${hint}.${tmp++}`,
      isConstant: (i) => {
        const x = t.inputs[i];
        if (!x) return false;
        return x.leaf?.kind === "constant" || (x.leaf?.kind === "weight" && !fed.has(x.id));
      },
      ints: (values) => constant(BigInt64Array.from(values.map((v) => BigInt(v))), [values.length], "int64"),
      scalar: scalarConst,
    };
    op.emit(e, t);
    if (isGated) gatedFlops += op.flops?.(t) ?? 0;
    else flops += op.flops?.(t) ?? 0;
  }

  const outputSpecs: ValueSpec[] = [];
  for (const [name, t] of Object.entries(outputs)) {
    const produced = names.get(t.id) as string;
    if (produced !== name) {
      claim(name, `output ${t}`);
      nodes.push({ name: `output_${name}`, opType: "Identity", inputs: [produced], outputs: [name] });
    }
    outputSpecs.push(spec(name, t));
  }

  const valueInfo = (v: ValueSpec): ValueInfoSpec => ({ name: v.name, elemType: DTYPES[v.dtype].onnx, dims: v.shape });
  if (options.gated) {
    const thenOutputs: ValueSpec[] = [];
    const elseNodes: NodeProtoSpec[] = [];
    const elseOutputs: ValueSpec[] = [];
    for (const [name, t] of Object.entries(options.gated.outputs)) {
      claim(name, `gated output ${t}`);
      const inner = claim(`${name}::then`, "gated output");
      gatedNodes.push({
        name: `gated_${name}`,
        opType: "Identity",
        inputs: [names.get(t.id) as string],
        outputs: [inner],
      });
      thenOutputs.push(spec(inner, t));
      const zero = claim(`${name}::else`, "gated output");
      const shape = constant(BigInt64Array.from(t.shape.map((d) => BigInt(d))), [t.rank], "int64");
      elseNodes.push({
        name: `zeros_${name}`,
        opType: "ConstantOfShape",
        inputs: [shape],
        outputs: [zero],
        attributes: { value: attr.zero(t.dtype) },
      });
      elseOutputs.push(spec(zero, t));
      outputSpecs.push(spec(name, t));
    }
    const branch = (name: string, branchNodes: NodeProtoSpec[], outs: ValueSpec[]) => ({
      type: "graph" as const,
      value: { name, nodes: branchNodes, initializers: [], inputs: [], outputs: outs.map(valueInfo) },
    });
    nodes.push({
      name: "gate",
      opType: "If",
      inputs: [options.gated.when],
      outputs: Object.keys(options.gated.outputs),
      attributes: {
        then_branch: branch("gated", gatedNodes, thenOutputs),
        else_branch: branch("zeros", elseNodes, elseOutputs),
      },
    });
  }
  const chunks = encodeModel({
    irVersion: IR_VERSION,
    opsets: [
      { domain: "", version: OPSET },
      { domain: "com.microsoft", version: 1 },
    ],
    producer: "nulltext",
    graph: {
      name: options.name ?? "graph",
      nodes,
      initializers,
      inputs: [...inputs, ...weightInputs].map(valueInfo),
      outputs: outputSpecs.map(valueInfo),
    },
  });
  const compiled: Omit<CompiledGraph, "model"> = {
    name: options.name ?? "graph",
    inputs,
    weightInputs,
    outputs: outputSpecs,
    flops,
    gatedFlops,
    nodeCount: nodes.length + gatedNodes.length,
    nodeInfo,
  };
  if (externalWriter) {
    return { ...compiled, model: { kind: "file", path: externalWriter.finish(chunks) } };
  }
  return { ...compiled, model: { kind: "bytes", bytes: concatBytes(chunks) } };
}

/**
 * A frozen weight's values in host memory as `dtype`, read (and converted from float16)
 * once per source and shared by every graph compiled from it.
 */
const hostCopies = new WeakMap<WeightSource, AnyTypedArray>();
/** Host arrays derived from weight arrays (e.g. a flipped kernel), by source array and tag. */
const derivedCopies = new WeakMap<AnyTypedArray, Map<string, AnyTypedArray>>();

function derived(data: AnyTypedArray, tag: string, derive: (data: AnyTypedArray) => AnyTypedArray): AnyTypedArray {
  const byTag = derivedCopies.get(data) ?? new Map<string, AnyTypedArray>();
  derivedCopies.set(data, byTag);
  let out = byTag.get(tag);
  if (!out) {
    out = derive(data);
    byTag.set(tag, out);
  }
  return out;
}

function hostWeight(name: string, src: WeightSource, dtype: DType): AnyTypedArray {
  const stored = src.kind === "file" ? src.dtype : dtypeOfArray(src.data);
  if (src.kind === "array" && stored === dtype) return src.data;
  let data = hostCopies.get(src);
  if (data && dtypeOfArray(data) === dtype) return data;
  // readRange returns a fresh buffer at offset 0, so typed views on it are aligned.
  const bytes = src.kind === "file" ? readRange(src.path, src.offset, src.byteLength) : bytesOf(src.data);
  if (stored === dtype && dtype === "float32")
    data = new Float32Array(bytes.buffer, bytes.byteOffset, bytes.length / 4);
  else if (stored === dtype && dtype === "float16")
    data = new Uint16Array(bytes.buffer, bytes.byteOffset, bytes.length / 2);
  else if (stored === "float16" && dtype === "float32") {
    data = halfArrayToFloat32(new Uint16Array(bytes.buffer, bytes.byteOffset, bytes.length / 2));
  } else throw new Error(`compile: weight '${name}' is stored as ${stored}; feeding it as ${dtype} is not supported`);
  hostCopies.set(src, data);
  return data;
}

function readRange(file: string, offset: number, length: number): Uint8Array {
  const f = getPlatform().openFile(file);
  try {
    return f.read(offset, length);
  } finally {
    f.close();
  }
}

type PlacedSource =
  | { kind: "array"; data: AnyTypedArray }
  | { kind: "file"; path: string; offset: number; byteLength: number };

/**
 * Weights outside the protobuf. Those already in a file with the right bytes (a float32 or float16
 * safetensors checkpoint) are referenced in place through a hard link in the model folder (ONNX
 * Runtime refuses external data outside the model's folder, symlinks included); across
 * filesystems, where a link is impossible, their bytes are copied once. The rest are written to
 * `<name>.weights`, page-aligned so ORT can map them.
 */
class ExternalData {
  private readonly dataFile: string;
  /** What goes into the data file, in order, each at a page-aligned offset; read when written. */
  private readonly pieces: { at: number; source: PlacedSource }[] = [];
  private offset = 0;
  private readonly links = new Map<string, string | null>();

  constructor(
    private readonly dir: string,
    private readonly name: string,
  ) {
    getPlatform().makeDir(dir);
    this.dataFile = `${name}.weights`;
  }

  place(src: PlacedSource) {
    if (src.kind === "file") {
      const platform = getPlatform();
      const real = platform.realPath(src.path);
      let link = this.links.get(real);
      if (link === undefined) {
        link = `${this.name}.source${this.links.size}${extName(real)}`;
        const at = joinPath(this.dir, link);
        platform.remove(at);
        if (!platform.linkFile(real, at)) {
          platform.warn(
            `nulltext: ${real} is on another filesystem than ${this.dir}; copying its weights (set NULLTEXT_CACHE to a folder on the same filesystem to avoid this)`,
          );
          link = null;
        }
        this.links.set(real, link);
      }
      if (link !== null) return { location: link, offset: src.offset, length: src.byteLength };
      return this.append({ ...src, path: real }, src.byteLength);
    }
    return this.append(src, src.data.byteLength);
  }

  private append(source: PlacedSource, length: number) {
    const at = this.offset;
    this.pieces.push({ at, source });
    this.offset = Math.ceil((at + length) / 4096) * 4096;
    return { location: this.dataFile, offset: at, length };
  }

  /** The data file's bytes, one piece at a time (a copied file range is read only now), zero-padded to each offset. */
  private *dataChunks(): Generator<Uint8Array> {
    let written = 0;
    for (const { at, source } of this.pieces) {
      if (at > written) yield new Uint8Array(at - written);
      const bytes =
        source.kind === "array" ? bytesOf(source.data) : readRange(source.path, source.offset, source.byteLength);
      yield bytes;
      written = at + bytes.byteLength;
    }
  }

  /** Writes the weights, then the model next to them, each atomically; returns the model path. */
  finish(chunks: Uint8Array[]): string {
    const platform = getPlatform();
    // Temporary files: atomic (a reader never sees half a model) but not flushed to disk.
    const temporary = { durable: false };
    if (this.pieces.length > 0) {
      platform.writeFileAtomic(joinPath(this.dir, this.dataFile), this.dataChunks(), temporary);
    }
    const modelPath = joinPath(this.dir, `${this.name}.onnx`);
    platform.writeFileAtomic(modelPath, chunks, temporary);
    return modelPath;
  }
}
