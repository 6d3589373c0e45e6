import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, afterEach, describe, expect, it, vi } from "vitest";
import {
  graphDType,
  SAFETENSORS_DTYPE_BYTES,
  type SafetensorsDType,
  SafetensorsFile,
  type SafetensorsTensor,
  writeSafetensors,
} from "../../src/models/safetensors.js";

const shared = (relative: string) => fileURLToPath(new URL(`../../../shared/parity/${relative}`, import.meta.url));
const GOLDEN = shared("golden.safetensors");
const GOLDEN_JSON = shared("golden.json");
const UNET = shared("model/unet/diffusion_pytorch_model.safetensors");
const UNET_CONFIG = shared("model/unet/config.json");

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "nulltext-safetensors-"));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));
let fileCounter = 0;
const tmpPath = (stem: string) => path.join(tmp, `${stem}-${fileCounter++}.safetensors`);

/** IEEE 754 binary16, decoded by hand (independent of src/graph/dtype.ts). */
function decodeHalfByHand(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exponent = (bits >> 10) & 0x1f;
  const fraction = bits & 0x3ff;
  if (exponent === 0x1f) return fraction === 0 ? sign * Number.POSITIVE_INFINITY : Number.NaN;
  if (exponent === 0) return sign * (fraction / 1024) * 2 ** -14;
  return sign * (1 + fraction / 1024) * 2 ** (exponent - 15);
}

/** A file from a header text (or raw header bytes) and data bytes, with an optional false header length. */
function fileBytes(header: string | Uint8Array, data: Uint8Array = new Uint8Array(0), declared?: bigint): Uint8Array {
  const headerBytes = typeof header === "string" ? Buffer.from(header, "utf8") : header;
  const out = new Uint8Array(8 + headerBytes.length + data.length);
  new DataView(out.buffer).setBigUint64(0, declared ?? BigInt(headerBytes.length), true);
  out.set(headerBytes, 8);
  out.set(data, 8 + headerBytes.length);
  return out;
}

function hex(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString("hex");
}

describe("reading real checkpoints", () => {
  it("reads golden.safetensors: 38 F32 tensors whose shapes and stats match golden.json", () => {
    const golden = JSON.parse(fs.readFileSync(GOLDEN_JSON, "utf8")) as {
      entries: Record<
        string,
        { shape: number[]; dtype: string; value?: number; stats?: { min: number; max: number; mean: number } }
      >;
    };
    const file = SafetensorsFile.open(GOLDEN);
    try {
      expect(file.entries.size).toBe(38);
      expect(Object.keys(golden.entries).sort()).toEqual([...file.entries.keys()].sort());
      expect(file.metadata).toEqual({ format: "pt" });
      for (const [name, expected] of Object.entries(golden.entries)) {
        const entry = file.entry(name);
        expect(entry.dtype).toBe(expected.dtype);
        expect(entry.shape).toEqual(expected.shape);
        const values = file.readFloat32(name);
        expect(values.length).toBe(expected.shape.reduce((a, b) => a * b, 1));
        // Scalars are given as a value (a float32 printed exactly), the rest as stats.
        if (expected.value !== undefined) {
          expect([...values], name).toEqual([expected.value]);
          continue;
        }
        const stats = expected.stats;
        if (!stats) throw new Error(`golden.json entry '${name}' has neither value nor stats`);
        let min = Number.POSITIVE_INFINITY;
        let max = Number.NEGATIVE_INFINITY;
        let sum = 0;
        for (const v of values) {
          min = Math.min(min, v);
          max = Math.max(max, v);
          sum += v;
        }
        // min and max are float32 values printed exactly; the mean was accumulated by the reference.
        expect(min, name).toBe(stats.min);
        expect(max, name).toBe(stats.max);
        const scale = Math.max(Math.abs(min), Math.abs(max));
        expect(Math.abs(sum / values.length - stats.mean), name).toBeLessThanOrEqual(1e-6 * scale);
      }
    } finally {
      file.close();
    }
  });

  it("reads the F16 UNet: offsets match an independent header parse, values match a hand half decode", () => {
    const bytes = fs.readFileSync(UNET);
    const headerLength = Number(bytes.readBigUInt64LE(0));
    const header = JSON.parse(bytes.subarray(8, 8 + headerLength).toString("utf8")) as Record<
      string,
      { dtype: string; shape: number[]; data_offsets: [number, number] }
    >;
    const config = JSON.parse(fs.readFileSync(UNET_CONFIG, "utf8")) as {
      block_out_channels: number[];
      in_channels: number;
      conv_in_kernel: number;
    };
    const file = SafetensorsFile.open(UNET);
    try {
      expect(file.entries.size).toBe(Object.keys(header).length - 1);
      const k = config.conv_in_kernel;
      expect(file.entry("conv_in.weight").shape).toEqual([config.block_out_channels[0], config.in_channels, k, k]);
      for (const [name, info] of Object.entries(header)) {
        if (name === "__metadata__") continue;
        const entry = file.entry(name);
        expect(entry.dtype).toBe("F16");
        expect(entry.offset).toBe(8 + headerLength + info.data_offsets[0]);
        expect(entry.byteLength).toBe(info.data_offsets[1] - info.data_offsets[0]);
        const values = file.readFloat32(name);
        const view = new DataView(bytes.buffer, bytes.byteOffset + entry.offset, entry.byteLength);
        for (let i = 0; i < values.length; i++) {
          if (values[i] !== decodeHalfByHand(view.getUint16(2 * i, true))) {
            throw new Error(`${name}[${i}]: ${values[i]} vs ${decodeHalfByHand(view.getUint16(2 * i, true))}`);
          }
        }
      }
      // First values as numpy's float16 decodes them (np.frombuffer(..., "<f2")).
      expect(file.entry("conv_in.bias").offset).toBe(78384);
      expect(hex(file.readRaw("conv_in.bias").subarray(0, 4))).toBe("f3acf9aa");
      expect([...file.readFloat32("conv_in.bias").subarray(0, 4)]).toEqual([
        -0.07733154296875, -0.054473876953125, 0.11187744140625, -0.02655029296875,
      ]);
      expect([...file.readFloat32("conv_in.weight").subarray(0, 4)]).toEqual([
        0.062347412109375, -0.182373046875, -0.1982421875, 0.218994140625,
      ]);
      expect([...file.readFloat32("time_embedding.linear_1.weight").subarray(0, 4)]).toEqual([
        0.022674560546875, 0.07965087890625, -0.10797119140625, -0.0163726806640625,
      ]);
    } finally {
      file.close();
    }
  });

  it("names the file and similar tensor names for an unknown name, and refuses reads after close", () => {
    const file = SafetensorsFile.open(UNET);
    expect(() => file.readRaw("conv_in.weigth")).toThrow(/diffusion_pytorch_model\.safetensors.*'conv_in\.weigth'/);
    expect(() => file.readRaw("conv_in.weigth")).toThrow(/similar names: 'conv_in\.weight'/);
    file.close();
    expect(() => file.readRaw("conv_in.weight")).toThrow(/conv_in\.weight.*closed/);
    file.close();
  });

  it("reads a tensor stored after 4.5 GB of a sparse file without reading the rest", () => {
    const big = 4_500_000_000;
    const header = `{"big":{"dtype":"U8","shape":[${big}],"data_offsets":[0,${big}]},"tail":{"dtype":"F32","shape":[2],"data_offsets":[${big},${big + 8}]}}`;
    const prefix = fileBytes(header);
    const target = tmpPath("sparse");
    const fd = fs.openSync(target, "w");
    try {
      fs.writeSync(fd, prefix, 0, prefix.length, 0);
      // 1.5 and -0.25 as little-endian float32.
      fs.writeSync(fd, Buffer.from("0000c03f000080be", "hex"), 0, 8, prefix.length + big);
    } finally {
      fs.closeSync(fd);
    }
    const file = SafetensorsFile.open(target);
    try {
      expect(file.entry("big").byteLength).toBe(big);
      expect(file.entry("tail").offset).toBe(prefix.length + big);
      expect([...file.readFloat32("tail")]).toEqual([1.5, -0.25]);
    } finally {
      file.close();
      fs.rmSync(target);
    }
  });
});

describe("writing", () => {
  it("matches the reference serializer's bytes (vectors from huggingface/safetensors tests)", () => {
    const floats = new Float32Array([0, 1, 2, 3, 4, 5]);
    const floatHex = "00000000" + "0000803f" + "00000040" + "00004040" + "00008040" + "0000a040";
    const cases: [Record<string, SafetensorsTensor>, Record<string, string> | undefined, string][] = [
      [
        { "attn.0": { dtype: "F32", shape: [1, 2, 3], data: floats } },
        undefined,
        "4000000000000000" +
          hex(Buffer.from('{"attn.0":{"dtype":"F32","shape":[1,2,3],"data_offsets":[0,24]}}')) +
          floatHex,
      ],
      [
        { attn0: { dtype: "F32", shape: [1, 1, 2, 3], data: floats } },
        undefined,
        "4800000000000000" +
          hex(Buffer.from('{"attn0":{"dtype":"F32","shape":[1,1,2,3],"data_offsets":[0,24]}}       ')) +
          floatHex,
      ],
      [{}, undefined, `0800000000000000${hex(Buffer.from("{}      "))}`],
      [{}, { framework: "pt" }, `2800000000000000${hex(Buffer.from('{"__metadata__":{"framework":"pt"}}     '))}`],
    ];
    for (const [tensors, metadata, expected] of cases) {
      const target = tmpPath("exact");
      writeSafetensors(target, tensors, metadata);
      expect(hex(fs.readFileSync(target))).toBe(expected);
      expect(fs.existsSync(`${target}.partial`)).toBe(false);
    }
  });

  it("orders tensors by decreasing alignment then name, and metadata keys by name", () => {
    const target = tmpPath("order");
    writeSafetensors(
      target,
      {
        b: { dtype: "U8", shape: [3], data: new Uint8Array([7, 8, 9]) },
        "10": { dtype: "F16", shape: [1], data: new Uint16Array([0x3c00]) },
        a: { dtype: "I64", shape: [], data: new BigInt64Array([-2n]) },
        "2": { dtype: "I64", shape: [1], data: new BigInt64Array([5n]) },
      },
      { z: "1", a: "2" },
    );
    const header =
      '{"__metadata__":{"a":"2","z":"1"},' +
      '"2":{"dtype":"I64","shape":[1],"data_offsets":[0,8]},' +
      '"a":{"dtype":"I64","shape":[],"data_offsets":[8,16]},' +
      '"10":{"dtype":"F16","shape":[1],"data_offsets":[16,18]},' +
      '"b":{"dtype":"U8","shape":[3],"data_offsets":[18,21]}}';
    expect(header.length).toBe(250);
    expect(hex(fs.readFileSync(target))).toBe(
      `0001000000000000${hex(Buffer.from(`${header}      `))}` +
        "0500000000000000" +
        "feffffffffffffff" +
        "003c" +
        "070809",
    );
  });

  it("round-trips every dtype bit for bit, with aligned offsets", () => {
    const dtypes = Object.keys(SAFETENSORS_DTYPE_BYTES) as SafetensorsDType[];
    const tensors: Record<string, SafetensorsTensor> = {};
    dtypes.forEach((dtype, k) => {
      const shape = [2, k + 1];
      const bytes = new Uint8Array(2 * (k + 1) * SAFETENSORS_DTYPE_BYTES[dtype]);
      for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 37 + k * 11) & 0xff;
      tensors[`t.${dtype}`] = { dtype, shape, data: bytes };
    });
    tensors.empty = { dtype: "F32", shape: [0, 3], data: new Float32Array(0) };
    tensors["ünïcode ✓"] = { dtype: "I32", shape: [], data: new Int32Array([-7]) };
    const target = tmpPath("roundtrip");
    writeSafetensors(target, tensors, { note: "round trip", "": "empty key" });
    const file = SafetensorsFile.open(target);
    try {
      expect(file.metadata).toEqual({ note: "round trip", "": "empty key" });
      expect([...file.entries.keys()].sort()).toEqual(Object.keys(tensors).sort());
      for (const [name, tensor] of Object.entries(tensors)) {
        const entry = file.entry(name);
        expect(entry.dtype).toBe(tensor.dtype);
        expect(entry.shape).toEqual(tensor.shape);
        expect(entry.offset % SAFETENSORS_DTYPE_BYTES[tensor.dtype]).toBe(0);
        const expected = new Uint8Array(tensor.data.buffer, tensor.data.byteOffset, tensor.data.byteLength);
        expect(hex(file.readRaw(name))).toBe(hex(expected));
      }
    } finally {
      file.close();
    }
  });

  it("upcasts hand-computed F16, BF16 and F64 bit patterns to float32", () => {
    const target = tmpPath("upcast");
    const f64 = new Float64Array([1 / 3, 1e40, -2.5, 2 ** -150]);
    writeSafetensors(target, {
      half: {
        dtype: "F16",
        shape: [9],
        data: new Uint16Array([0x3c00, 0xc000, 0x7bff, 0x0001, 0x3555, 0x8000, 0x7c00, 0xfc00, 0x7e00]),
      },
      brain: { dtype: "BF16", shape: [5], data: new Uint16Array([0x3f80, 0x4049, 0xc2f7, 0x0001, 0xff80]) },
      double: { dtype: "F64", shape: [4], data: f64 },
      int: { dtype: "I32", shape: [1], data: new Int32Array([1]) },
    });
    const file = SafetensorsFile.open(target);
    try {
      const half = [...file.readFloat32("half")];
      expect(half.slice(0, 5)).toEqual([1, -2, 65504, 2 ** -24, 0.333251953125]);
      expect(Object.is(half[5], -0)).toBe(true);
      expect(half.slice(6, 8)).toEqual([Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY]);
      expect(half[8]).toBeNaN();
      expect([...file.readFloat32("brain")]).toEqual([1, 3.140625, -123.5, 2 ** -133, Number.NEGATIVE_INFINITY]);
      // float32 nearest: 1/3 -> 0x3eaaaaab; 1e40 overflows; 2^-150 is a tie between 0 and 2^-149, to even (0).
      expect([...file.readFloat32("double")]).toEqual([0.3333333432674408, Number.POSITIVE_INFINITY, -2.5, 0]);
      expect(() => file.readFloat32("int")).toThrow(/tensor 'int'.*I32.*accepted: F32, F16, BF16, F64/);
      // Graph dtypes that hold the stored bits as they are (BF16 has none).
      expect(["F32", "F16", "I64", "BOOL", "BF16", "U8"].map((d) => graphDType(d as SafetensorsDType))).toEqual([
        "float32",
        "float16",
        "int64",
        "bool",
        undefined,
        undefined,
      ]);
    } finally {
      file.close();
    }
  });

  it("rejects invalid tensors before creating any file", () => {
    const cases: [Record<string, SafetensorsTensor>, RegExp][] = [
      [{ w: { dtype: "F32", shape: [2, 2], data: new Float32Array(3) } }, /'w'.*\[2, 2\] of F32 needs 16 bytes.*12/],
      [{ w: { dtype: "F17" as SafetensorsDType, shape: [1], data: new Float32Array(1) } }, /'w'.*unknown dtype "F17"/],
      [{ w: { dtype: "F32", shape: [-1], data: new Float32Array(1) } }, /'w'.*non-negative integers.*\[-1\]/],
      [{ __metadata__: { dtype: "F32", shape: [1], data: new Float32Array(1) } }, /'__metadata__'.*reserved/],
    ];
    for (const [tensors, message] of cases) {
      const target = tmpPath("invalid");
      expect(() => writeSafetensors(target, tensors)).toThrow(message);
      expect(() => writeSafetensors(target, tensors)).toThrow(target);
      expect(fs.existsSync(target)).toBe(false);
      expect(fs.existsSync(`${target}.partial`)).toBe(false);
    }
  });
});

describe("atomic writes", () => {
  afterEach(() => vi.restoreAllMocks());
  const good = { w: { dtype: "F32" as const, shape: [2], data: new Float32Array([1, 2]) } };

  function existingFile(): { target: string; before: string } {
    const target = tmpPath("existing");
    writeSafetensors(target, { old: { dtype: "U8", shape: [1], data: new Uint8Array([42]) } });
    return { target, before: hex(fs.readFileSync(target)) };
  }

  it("leaves an existing file untouched and no partial file when a write fails midway (ENOSPC)", () => {
    const { target, before } = existingFile();
    const realWrite = fs.writeSync;
    let calls = 0;
    vi.spyOn(fs, "writeSync").mockImplementation(((...args: Parameters<typeof fs.writeSync>) => {
      if (++calls === 3) throw Object.assign(new Error("ENOSPC: no space left on device, write"), { code: "ENOSPC" });
      return (realWrite as (...a: unknown[]) => number)(...args);
    }) as typeof fs.writeSync);
    expect(() => writeSafetensors(target, good)).toThrow(/ENOSPC/);
    expect(calls).toBe(3);
    expect(hex(fs.readFileSync(target))).toBe(before);
    expect(fs.existsSync(`${target}.partial`)).toBe(false);
  });

  it("leaves no file under the final name when fsync fails", () => {
    const target = tmpPath("fsync");
    vi.spyOn(fs, "fsyncSync").mockImplementation(() => {
      throw Object.assign(new Error("EIO: i/o error, fsync"), { code: "EIO" });
    });
    expect(() => writeSafetensors(target, good)).toThrow(/EIO/);
    expect(fs.existsSync(target)).toBe(false);
    expect(fs.existsSync(`${target}.partial`)).toBe(false);
  });

  it("leaves an existing file untouched when the partial file cannot be created", () => {
    const { target, before } = existingFile();
    fs.mkdirSync(`${target}.partial`);
    expect(() => writeSafetensors(target, good)).toThrow(/\.partial/);
    expect(hex(fs.readFileSync(target))).toBe(before);
    fs.rmdirSync(`${target}.partial`);
  });

  it("replaces a stale partial file from an earlier crash and then the old file", () => {
    const { target } = existingFile();
    fs.writeFileSync(`${target}.partial`, "half-written garbage");
    writeSafetensors(target, good);
    expect(fs.existsSync(`${target}.partial`)).toBe(false);
    const file = SafetensorsFile.open(target);
    expect([...file.entries.keys()]).toEqual(["w"]);
    expect([...file.readFloat32("w")]).toEqual([1, 2]);
    file.close();
  });

  it("fails clearly for a missing directory", () => {
    const target = path.join(tmp, "no-such-dir", "x.safetensors");
    expect(() => writeSafetensors(target, good)).toThrow(/ENOENT.*no-such-dir/);
  });
});

describe("hostile and truncated files", () => {
  const u8 = (...values: number[]) => new Uint8Array(values);
  const w = (info: string) => `{"w":${info}}`;
  // Each case: file bytes, and what the error must say besides the file's path.
  const cases: [string, Uint8Array, RegExp][] = [
    ["empty file", u8(), /0 bytes, fewer than the 8-byte header length/],
    ["7-byte file", u8(1, 0, 0, 0, 0, 0, 0), /7 bytes, fewer than the 8-byte header length/],
    ["header length 2^64-1", fileBytes("{}", u8(), 0xffffffffffffffffn), /18446744073709551615 exceeds the limit/],
    ["header length above 100 MB", fileBytes("{}", u8(), 100_000_001n), /100000001 exceeds the limit of 100000000/],
    ["header length beyond the file", fileBytes("{}", u8(), 1000n), /1000 exceeds the 2 bytes after.*truncated/],
    ["header length 0", fileBytes("", u8()), /header length 0 is below 2/],
    ["header length 1", fileBytes("{", u8()), /header length 1 is below 2/],
    ["invalid UTF-8", fileBytes(u8(0x7b, 0xff, 0xfe, 0x7d)), /not valid UTF-8/],
    ["invalid JSON", fileBytes('{"w":'), /not valid JSON/],
    ["a JSON array", fileBytes("[1, 2]  "), /must be a JSON object, got \[1,2\]/],
    ["JSON null", fileBytes("null"), /must be a JSON object, got null/],
    ["a JSON number", fileBytes("42"), /must be a JSON object, got 42/],
    ["an entry that is not an object", fileBytes('{"w":3}'), /tensor 'w': expected an object.*got 3/],
    [
      "unknown dtype",
      fileBytes(w('{"dtype":"F128","shape":[1],"data_offsets":[0,16]}'), new Uint8Array(16)),
      /tensor 'w': unknown dtype "F128"; accepted: BOOL, U8/,
    ],
    [
      "missing dtype",
      fileBytes(w('{"shape":[1],"data_offsets":[0,4]}'), new Uint8Array(4)),
      /'w': unknown dtype undefined/,
    ],
    [
      "negative shape",
      fileBytes(w('{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}'), new Uint8Array(4)),
      /tensor 'w': shape must be an array of non-negative integers, got \[-1\]/,
    ],
    [
      "fractional shape",
      fileBytes(w('{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}'), new Uint8Array(4)),
      /tensor 'w': shape must be .* got \[1.5\]/,
    ],
    [
      "shape not an array",
      fileBytes(w('{"dtype":"F32","shape":"4","data_offsets":[0,4]}'), new Uint8Array(4)),
      /tensor 'w': shape must be .* got "4"/,
    ],
    [
      "element count over 2^53",
      fileBytes(w('{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,4]}'), new Uint8Array(4)),
      /tensor 'w': shape \[4294967296, 4294967296\] of F32 needs over 2\^53 bytes/,
    ],
    [
      "data_offsets with three numbers",
      fileBytes(w('{"dtype":"U8","shape":[4],"data_offsets":[0,4,8]}'), new Uint8Array(4)),
      /tensor 'w': data_offsets must be two non-negative integers.*\[0,4,8\]/,
    ],
    [
      "data_offsets of 1e300",
      fileBytes(w('{"dtype":"U8","shape":[4],"data_offsets":[0,1e300]}'), new Uint8Array(4)),
      /tensor 'w': data_offsets must be two non-negative integers/,
    ],
    [
      "begin after end",
      fileBytes(w('{"dtype":"U8","shape":[0],"data_offsets":[4,0]}'), new Uint8Array(4)),
      /tensor 'w': data_offsets \[4, 0\] begin after they end/,
    ],
    [
      "offsets past the end",
      fileBytes(w('{"dtype":"U8","shape":[8],"data_offsets":[8,16]}'), new Uint8Array(8)),
      /tensor 'w': data_offsets \[8, 16\] end past the data buffer, which has 8 bytes/,
    ],
    [
      "truncated data",
      fileBytes(w('{"dtype":"F32","shape":[16],"data_offsets":[0,64]}'), new Uint8Array(32)),
      /tensor 'w': data_offsets \[0, 64\] end past the data buffer, which has 32 bytes \(truncated file\?\)/,
    ],
    [
      "byte length not shape x size",
      fileBytes(w('{"dtype":"F32","shape":[2,3],"data_offsets":[0,20]}'), new Uint8Array(20)),
      /tensor 'w': shape \[2, 3\] of F32 needs 24 bytes but data_offsets \[0, 20\] hold 20/,
    ],
    [
      "overlapping tensors",
      fileBytes(
        '{"a":{"dtype":"U8","shape":[8],"data_offsets":[0,8]},"b":{"dtype":"U8","shape":[8],"data_offsets":[4,12]}}',
        new Uint8Array(12),
      ),
      /tensor 'b' \(bytes \[4, 12\)\) overlaps tensor 'a' \(bytes \[0, 8\)\)/,
    ],
    [
      "a gap between tensors",
      fileBytes(
        '{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},"b":{"dtype":"U8","shape":[4],"data_offsets":[8,12]}}',
        new Uint8Array(12),
      ),
      /tensor 'b' \(bytes \[8, 12\)\) leaves a gap of 4 bytes: tensor 'a' ends at 4/,
    ],
    [
      "a gap before the first tensor",
      fileBytes(w('{"dtype":"U8","shape":[4],"data_offsets":[4,8]}'), new Uint8Array(8)),
      /tensor 'w' \(bytes \[4, 8\)\) leaves a gap of 4 bytes: the data buffer starts at 0/,
    ],
    [
      "trailing bytes",
      fileBytes(w('{"dtype":"U8","shape":[4],"data_offsets":[0,4]}'), new Uint8Array(6)),
      /cover 4 bytes of the 6-byte data buffer; 2 trailing bytes/,
    ],
    ["metadata not an object", fileBytes('{"__metadata__":["a"]}'), /'__metadata__' must be an object of strings/],
    ["metadata value not a string", fileBytes('{"__metadata__":{"n":1}}'), /'__metadata__.n' must be a string, got 1/],
  ];

  it.each(cases)("rejects %s with an error naming the file", (_label, bytes, message) => {
    const target = tmpPath("hostile");
    fs.writeFileSync(target, bytes);
    expect(() => SafetensorsFile.open(target)).toThrow(message);
    expect(() => SafetensorsFile.open(target)).toThrow(`${target}: invalid safetensors file`);
  });

  it("accepts the reference's doc example (I32 [2, 2], header without padding) and space padding", () => {
    const header = '{"test":{"dtype":"I32","shape":[2,2],"data_offsets":[0,16]}}';
    const target = tmpPath("doc");
    fs.writeFileSync(
      target,
      Buffer.concat([Buffer.from("3c00000000000000", "hex"), Buffer.from(header), Buffer.alloc(16)]),
    );
    const file = SafetensorsFile.open(target);
    expect(file.entry("test")).toEqual({ name: "test", dtype: "I32", shape: [2, 2], offset: 68, byteLength: 16 });
    expect(file.metadata).toEqual({});
    file.close();

    const padded = tmpPath("padded");
    const data = u8(1, 2, 3, 4);
    fs.writeFileSync(padded, fileBytes(`  ${w('{"dtype":"U8","shape":[4],"data_offsets":[0,4]}')}     `, data));
    const paddedFile = SafetensorsFile.open(padded);
    expect([...paddedFile.readRaw("w")]).toEqual([1, 2, 3, 4]);
    paddedFile.close();
  });

  it("reports a directory and a missing file by path, with what was expected there", () => {
    expect(() => SafetensorsFile.open(tmp)).toThrow(
      `${tmp}: it is a folder (EISDIR); expected a safetensors file there`,
    );
    const missing = path.join(tmp, "missing.safetensors");
    expect(() => SafetensorsFile.open(missing)).toThrow(
      `${missing}: nothing exists there (ENOENT); expected a safetensors file there`,
    );
  });

  it("reports a file truncated after it was opened, naming the tensor", () => {
    const target = tmpPath("shrinks");
    writeSafetensors(target, { w: { dtype: "F32", shape: [4], data: new Float32Array(4) } });
    const file = SafetensorsFile.open(target);
    fs.truncateSync(target, fs.statSync(target).size - 4);
    expect(() => file.readRaw("w")).toThrow(/tensor 'w': the file ended after 12 of 16 bytes/);
    file.close();
  });
});
