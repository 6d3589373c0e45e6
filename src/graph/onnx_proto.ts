/**
 * A minimal protobuf writer for the parts of onnx.proto that a compiled graph needs
 * (ModelProto, GraphProto, NodeProto, AttributeProto, TensorProto, ValueInfoProto).
 * Field numbers follow onnx/onnx.proto (IR version 10).
 */
import { concatBytes } from "../util/bytes.js";

class Writer {
  private chunks: Uint8Array[] = [];
  private buf = new Uint8Array(256);
  private pos = 0;

  private ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    this.flush();
    if (n > this.buf.length) this.buf = new Uint8Array(Math.max(n, 2 * this.buf.length));
  }

  private flush(): void {
    if (this.pos > 0) this.chunks.push(this.buf.slice(0, this.pos));
    this.pos = 0;
  }

  varint(value: number | bigint): void {
    let v = BigInt.asUintN(64, BigInt(value));
    this.ensure(10);
    while (v >= 0x80n) {
      this.buf[this.pos++] = Number(v & 0x7fn) | 0x80;
      v >>= 7n;
    }
    this.buf[this.pos++] = Number(v);
  }

  tag(field: number, wire: number): void {
    this.varint((field << 3) | wire);
  }

  bytes(data: Uint8Array): void {
    this.varint(data.length);
    this.append(data);
  }

  /** Appends bytes without a length prefix; large payloads (weights) are kept by reference. */
  append(data: Uint8Array): void {
    if (data.length > 4096) {
      this.flush();
      this.chunks.push(data);
    } else {
      this.ensure(data.length);
      this.buf.set(data, this.pos);
      this.pos += data.length;
    }
  }

  fixed32Float(value: number): void {
    this.ensure(4);
    new DataView(this.buf.buffer, this.buf.byteOffset + this.pos, 4).setFloat32(0, value, true);
    this.pos += 4;
  }

  parts(): Uint8Array[] {
    this.flush();
    return this.chunks;
  }
}

type Field = (w: Writer) => void;

const enc = new TextEncoder();

function msg(fields: Field[]): Uint8Array[] {
  const w = new Writer();
  for (const f of fields) f(w);
  return w.parts();
}

const str =
  (field: number, s: string): Field =>
  (w) => {
    w.tag(field, 2);
    w.bytes(enc.encode(s));
  };
const int =
  (field: number, v: number | bigint): Field =>
  (w) => {
    w.tag(field, 0);
    w.varint(v);
  };
const sub =
  (field: number, parts: Uint8Array[]): Field =>
  (w) => {
    w.tag(field, 2);
    w.bytes(parts.length === 1 ? (parts[0] as Uint8Array) : concatBytes(parts));
  };
const raw =
  (field: number, data: Uint8Array): Field =>
  (w) => {
    w.tag(field, 2);
    w.bytes(data);
  };

export type AttributeValue =
  | { type: "float"; value: number }
  | { type: "int"; value: number }
  | { type: "string"; value: string }
  | { type: "floats"; value: number[] }
  | { type: "ints"; value: number[] }
  | { type: "tensor"; value: TensorProtoSpec }
  | { type: "graph"; value: GraphProtoSpec };

export interface NodeProtoSpec {
  name: string;
  opType: string;
  domain?: string;
  inputs: string[];
  outputs: string[];
  attributes?: Record<string, AttributeValue>;
}

export interface TensorProtoSpec {
  name: string;
  dims: number[];
  dataType: number;
  /** Little-endian bytes of the values, or an external location. */
  rawData?: Uint8Array;
  external?: { location: string; offset: number; length: number };
}

export interface ValueInfoSpec {
  name: string;
  elemType: number;
  dims: number[];
}

export interface GraphProtoSpec {
  name: string;
  nodes: NodeProtoSpec[];
  initializers: TensorProtoSpec[];
  inputs: ValueInfoSpec[];
  outputs: ValueInfoSpec[];
}

export interface ModelProtoSpec {
  irVersion: number;
  opsets: { domain: string; version: number }[];
  producer: string;
  graph: GraphProtoSpec;
}

const ATTR_TYPE = { float: 1, int: 2, string: 3, tensor: 4, graph: 5, floats: 6, ints: 7 } as const;

function attribute(name: string, a: AttributeValue): Uint8Array[] {
  const fields: Field[] = [str(1, name), int(20, ATTR_TYPE[a.type])];
  switch (a.type) {
    case "float":
      fields.push((w) => {
        w.tag(2, 5);
        w.fixed32Float(a.value);
      });
      break;
    case "int":
      fields.push(int(3, a.value));
      break;
    case "string":
      fields.push(str(4, a.value));
      break;
    case "tensor":
      fields.push(sub(5, tensor(a.value)));
      break;
    case "graph":
      fields.push(sub(6, graph(a.value)));
      break;
    case "floats":
      for (const v of a.value)
        fields.push((w) => {
          w.tag(7, 5);
          w.fixed32Float(v);
        });
      break;
    case "ints":
      for (const v of a.value) fields.push(int(8, v));
      break;
  }
  return msg(fields);
}

function tensor(t: TensorProtoSpec): Uint8Array[] {
  const fields: Field[] = [];
  for (const d of t.dims) fields.push(int(1, d));
  fields.push(int(2, t.dataType), str(8, t.name));
  if (t.rawData) fields.push(raw(9, t.rawData));
  if (t.external) {
    const entry = (k: string, v: string) => sub(13, msg([str(1, k), str(2, v)]));
    fields.push(
      entry("location", t.external.location),
      entry("offset", String(t.external.offset)),
      entry("length", String(t.external.length)),
      int(14, 1),
    );
  }
  return msg(fields);
}

function node(n: NodeProtoSpec): Uint8Array[] {
  const fields: Field[] = [];
  for (const i of n.inputs) fields.push(str(1, i));
  for (const o of n.outputs) fields.push(str(2, o));
  fields.push(str(3, n.name), str(4, n.opType));
  for (const [k, v] of Object.entries(n.attributes ?? {})) fields.push(sub(5, attribute(k, v)));
  if (n.domain) fields.push(str(7, n.domain));
  return msg(fields);
}

function valueInfo(v: ValueInfoSpec): Uint8Array[] {
  const dims = v.dims.map((d) => sub(1, msg([int(1, d)])));
  const shape = msg(dims);
  const tensorType = msg([int(1, v.elemType), sub(2, shape)]);
  const type = msg([sub(1, tensorType)]);
  return msg([str(1, v.name), sub(2, type)]);
}

function graph(g: GraphProtoSpec): Uint8Array[] {
  const graphFields: Field[] = [];
  for (const n of g.nodes) graphFields.push(sub(1, node(n)));
  graphFields.push(str(2, g.name));
  for (const t of g.initializers) {
    const parts = tensor(t);
    // Weight payloads are appended by reference, never concatenated into a bigger buffer.
    graphFields.push((w) => {
      w.tag(5, 2);
      let n = 0;
      for (const p of parts) n += p.length;
      w.varint(n);
      for (const p of parts) w.append(p);
    });
  }
  for (const v of g.inputs) graphFields.push(sub(11, valueInfo(v)));
  for (const v of g.outputs) graphFields.push(sub(12, valueInfo(v)));
  return msg(graphFields);
}

/** Encodes a ModelProto. Large initializer payloads are referenced, so the result is a list of chunks. */
export function encodeModel(m: ModelProtoSpec): Uint8Array[] {
  const graphParts = graph(m.graph);
  let graphLength = 0;
  for (const p of graphParts) graphLength += p.length;
  const head = new Writer();
  int(1, m.irVersion)(head);
  str(2, m.producer)(head);
  for (const o of m.opsets) sub(8, msg([str(1, o.domain), int(2, o.version)]))(head);
  head.tag(7, 2);
  head.varint(graphLength);
  return [...head.parts(), ...graphParts];
}
