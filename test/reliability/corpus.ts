/**
 * The hostile-input corpus, generated at test time (nothing binary is committed): damaged images,
 * inversion files, model folders and paths a run must not write over. Each maker writes into a
 * folder and returns the path it made.
 */
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { deflateSync } from "node:zlib";
import { encodeInversion, type Inversion } from "../../src/inversion/file.js";
import { SafetensorsFile } from "../../src/models/safetensors.js";

/** A PNG whose header claims `width`×`height` pixels with almost no data: a decompression bomb's shape. */
export function pngBomb(file: string, width: number, height: number): string {
  const chunk = (type: string, data: Uint8Array) => {
    const body = Buffer.concat([Buffer.from(type, "ascii"), data]);
    const out = Buffer.alloc(12 + data.length);
    out.writeUInt32BE(data.length, 0);
    body.copy(out, 4);
    out.writeUInt32BE(crc32(body), 8 + data.length);
    return out;
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr.set([8, 2, 0, 0, 0], 8); // 8-bit RGB
  const signature = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  const idat = deflateSync(Buffer.alloc(1 + width * 3));
  fs.writeFileSync(
    file,
    Buffer.concat([signature, chunk("IHDR", ihdr), chunk("IDAT", idat), chunk("IEND", new Uint8Array(0))]),
  );
  return file;
}

function crc32(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of bytes) {
    c ^= b;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  }
  return (c ^ 0xffffffff) >>> 0;
}

/** A named pipe (FIFO) at `file`. */
export function fifo(file: string): string {
  const r = spawnSync("mkfifo", [file]);
  if (r.status !== 0) throw new Error(`mkfifo ${file} failed: ${String(r.stderr)}`);
  return file;
}

/** A writable copy of a model folder (the shared parity model is read-only). */
export function copyModel(from: string, to: string): string {
  fs.cpSync(from, to, { recursive: true });
  const writable = (p: string) => {
    fs.chmodSync(p, fs.statSync(p).isDirectory() ? 0o755 : 0o644);
    if (fs.statSync(p).isDirectory()) for (const e of fs.readdirSync(p)) writable(path.join(p, e));
  };
  writable(to);
  return to;
}

/** Overwrites element `index` of a float tensor in a safetensors file in place with `value`. */
export function poisonTensor(file: string, tensor: string | undefined, value: number, index = 0): string {
  const st = SafetensorsFile.open(file);
  const name = tensor ?? ([...st.entries.values()].find((e) => e.dtype === "F32" || e.dtype === "F16")?.name as string);
  const entry = st.entry(name);
  st.close();
  const fd = fs.openSync(file, "r+");
  try {
    const bytes = Buffer.alloc(entry.dtype === "F32" ? 4 : 2);
    if (entry.dtype === "F32") bytes.writeFloatLE(value, 0);
    else bytes.writeUInt16LE(Number.isNaN(value) ? 0x7e00 : value > 0 ? 0x7c00 : 0xfc00, 0);
    fs.writeSync(fd, bytes, 0, bytes.length, entry.offset + index * bytes.length);
  } finally {
    fs.closeSync(fd);
  }
  return name;
}

/** Changes every element of the tensors whose names match `pattern` by one unit in the last place (a checkpoint "fine-tuned" in place). */
export function perturbTensors(file: string, pattern: RegExp): number {
  const st = SafetensorsFile.open(file);
  const entries = [...st.entries.values()].filter(
    (e) => pattern.test(e.name) && (e.dtype === "F32" || e.dtype === "F16"),
  );
  st.close();
  const fd = fs.openSync(file, "r+");
  try {
    for (const e of entries) {
      const bytes = Buffer.alloc(e.byteLength);
      fs.readSync(fd, bytes, 0, e.byteLength, e.offset);
      const size = e.dtype === "F32" ? 4 : 2;
      for (let i = 0; i < e.byteLength; i += size) bytes[i] = (bytes[i] as number) ^ 1;
      fs.writeSync(fd, bytes, 0, e.byteLength, e.offset);
    }
  } finally {
    fs.closeSync(fd);
  }
  return entries.length;
}

/** An inversion file's bytes with its JSON header replaced by `header` (and no checksum, as a hand-made file). */
export function withHeader(inv: Inversion, header: string): Uint8Array {
  const bytes = encodeInversion(inv);
  const st = SafetensorsFile.fromBytes(bytes);
  const tensors = Object.fromEntries(
    [...st.entries.values()].map((e) => [e.name, { dtype: e.dtype, shape: e.shape, data: st.readRaw(e.name) }]),
  );
  return encode(tensors, { nulltext: header });
}

function encode(
  tensors: Record<string, { dtype: string; shape: readonly number[]; data: Uint8Array }>,
  metadata: Record<string, string>,
): Uint8Array {
  const head: Record<string, unknown> = { __metadata__: metadata };
  let at = 0;
  for (const [name, t] of Object.entries(tensors)) {
    head[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [at, at + t.data.byteLength] };
    at += t.data.byteLength;
  }
  let json = JSON.stringify(head);
  json += " ".repeat((8 - (json.length % 8)) % 8);
  const out = Buffer.alloc(8 + json.length + at);
  out.writeBigUInt64LE(BigInt(json.length), 0);
  out.write(json, 8, "utf8");
  let p = 8 + json.length;
  for (const t of Object.values(tensors)) {
    out.set(t.data, p);
    p += t.data.byteLength;
  }
  return out;
}

/** Flips one bit of the first occurrence of `text` in `bytes` (a copy). */
export function flipBitIn(bytes: Uint8Array, text: string): Uint8Array {
  const at = Buffer.from(bytes).indexOf(text);
  if (at < 0) throw new Error(`'${text}' is not in the file`);
  const out = bytes.slice();
  out[at] = (out[at] as number) ^ 0x01;
  return out;
}

/** A safetensors file whose header length field claims `length` bytes. */
export function headerLength(bytes: Uint8Array, length: bigint): Uint8Array {
  const out = Buffer.from(bytes);
  out.writeBigUInt64LE(length, 0);
  return out;
}

/** Two tensors whose data ranges overlap. */
export function overlapping(): Uint8Array {
  const data = new Uint8Array(16);
  const head = {
    a: { dtype: "F32", shape: [2], data_offsets: [0, 8] },
    b: { dtype: "F32", shape: [2], data_offsets: [4, 12] },
  };
  let json = JSON.stringify(head);
  json += " ".repeat((8 - (json.length % 8)) % 8);
  const out = Buffer.alloc(8 + json.length + 12);
  out.writeBigUInt64LE(BigInt(json.length), 0);
  out.write(json, 8, "utf8");
  out.set(data.subarray(0, 12), 8 + json.length);
  return out;
}

/** Every regular file under `dir` (its sha256; what each symlink points to), by relative path: for byte-identity checks. */
export function snapshot(dir: string): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (d: string) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      const rel = path.relative(dir, p);
      if (e.isSymbolicLink()) out.set(rel, `-> ${fs.readlinkSync(p)}`);
      else if (e.isDirectory()) {
        out.set(rel, "dir");
        walk(p);
      } else if (e.isFile()) out.set(rel, createHash("sha256").update(fs.readFileSync(p)).digest("hex"));
      else out.set(rel, "special");
    }
  };
  walk(dir);
  return out;
}
