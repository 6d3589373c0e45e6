/**
 * The hostile-input corpus through the command line (in process, on the parity model): outputs that
 * would clobber inputs or non-files, locked outputs, damaged models, damaged inversion files, bad
 * images and out-of-range options. Every case ends with a clear message naming the offending
 * path/field/value, exit code 1 or 2, no stack trace, and every file that existed before it
 * byte-identical (and no new file) afterwards. The corpus is generated here (see corpus.ts).
 */
import { spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { main } from "../../src/cli/main.js";
import { writePng } from "../../src/image/index.js";
import { encodeInversion, type Inversion } from "../../src/inversion/file.js";
import { SafetensorsFile } from "../../src/models/safetensors.js";
import { NullTextPipeline } from "../../src/pipeline.js";
import {
  copyModel,
  fifo,
  flipBitIn,
  headerLength,
  overlapping,
  pngBomb,
  poisonTensor,
  snapshot,
  withHeader,
} from "./corpus.js";

const PARITY = fileURLToPath(new URL("../../../shared/parity/model", import.meta.url));
const root = fs.mkdtempSync(path.join(os.tmpdir(), "nulltext-hostile-"));
process.env.NULLTEXT_CACHE_DIR = path.join(root, ".cache");
const common = ["--model", PARITY, "--threads", "1"];

let fingerprint = "";
let embeddingShape: [number, number] = [77, 32];
let sleeper: ReturnType<typeof spawn> | undefined;

/** A valid inversion for the parity model (a DDIM inversion needs no tensors of its own). */
function inversion(overrides: Partial<Inversion> = {}): Inversion {
  return {
    prompt: "a photo of a cat",
    settings: { method: "ddim", steps: 2, guidance: 7.5 },
    model: fingerprint,
    modelSource: PARITY,
    imageHash: "00",
    width: 128,
    height: 128,
    latentShape: [4, 16, 16],
    zT: Float32Array.from({ length: 4 * 16 * 16 }, (_, i) => Math.sin(i)),
    tensors: {},
    embeddingShape,
    ...overrides,
  };
}

async function run(args: string[]): Promise<{ rc: number; err: string }> {
  const err: string[] = [];
  vi.spyOn(console, "error").mockImplementation((...a) => {
    err.push(a.join(" "));
  });
  vi.spyOn(console, "log").mockImplementation(() => {});
  vi.spyOn(process.stderr, "write").mockImplementation((chunk) => {
    err.push(String(chunk));
    return true;
  });
  try {
    return { rc: await main(args), err: err.join("\n") };
  } finally {
    vi.restoreAllMocks();
  }
}

interface Case {
  name: string;
  /** Writes the case's files into `d`; returns the command line. */
  setup: (d: string) => string[] | Promise<string[]>;
  rc: 1 | 2;
  message: RegExp | ((d: string) => RegExp);
}

const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

async function photo(d: string): Promise<string> {
  const file = path.join(d, "photo.png");
  const data = new Uint8Array(64 * 64 * 3).map((_, i) => (i * 13) % 256);
  await writePng(file, { width: 64, height: 64, data });
  return file;
}

function nti(d: string, inv: Inversion = inversion(), name = "x.nti"): string {
  const file = path.join(d, name);
  fs.writeFileSync(file, encodeInversion(inv));
  return file;
}

/** The JSON header an inversion is written with. */
function headerOf(inv: Inversion): Record<string, unknown> {
  return JSON.parse(SafetensorsFile.fromBytes(encodeInversion(inv)).metadata.nulltext ?? "{}");
}

function ntiBytes(d: string, bytes: Uint8Array): string {
  const file = path.join(d, "x.nti");
  fs.writeFileSync(file, bytes);
  return file;
}

const invert = async (d: string, out: string, ...extra: string[]) => [
  "invert",
  await photo(d),
  "--prompt",
  "a photo",
  "--out",
  out,
  "--steps",
  "2",
  ...common,
  ...extra,
];
const reconstruct = (file: string, d: string, ...model: string[]) => [
  "reconstruct",
  file,
  "--out",
  path.join(d, "r.png"),
  ...model,
];
const info = (model: string) => ["info", model, "--threads", "1"];

const CASES: Record<string, Case[]> = {
  "outputs that would clobber an input or a non-file (refused before the model loads)": [
    {
      name: "--out is the input image",
      setup: async (d) => invert(d, path.join(d, "photo.png")),
      rc: 2,
      message: (d) =>
        new RegExp(
          `--out: output ${esc(d)}/photo\\.png is the input ${esc(d)}/photo\\.png; writing it would destroy the input: choose another output path`,
        ),
    },
    {
      name: "--out is a hard link of the input image",
      setup: async (d) => {
        const args = await invert(d, path.join(d, "link.png"));
        fs.linkSync(path.join(d, "photo.png"), path.join(d, "link.png"));
        return args;
      },
      rc: 2,
      message: /link\.png is the input .*photo\.png \(the same file\)/,
    },
    {
      name: "reconstruct's --out is the inversion file",
      setup: (d) => ["reconstruct", nti(d), "--out", path.join(d, "x.nti"), ...common],
      rc: 2,
      message: /output .*x\.nti is the input .*x\.nti; writing it would destroy the input/,
    },
    {
      name: "--out is a symbolic link",
      setup: async (d) => {
        fs.writeFileSync(path.join(d, "target.nti"), "keep me");
        fs.symlinkSync(path.join(d, "target.nti"), path.join(d, "link.nti"));
        return invert(d, path.join(d, "link.nti"));
      },
      rc: 2,
      message: /output .*link\.nti is a symbolic link \(nulltext neither writes through links nor replaces them/,
    },
    {
      name: "--out is a dangling symbolic link",
      setup: async (d) => {
        fs.symlinkSync(path.join(d, "nowhere"), path.join(d, "dangling.nti"));
        return invert(d, path.join(d, "dangling.nti"));
      },
      rc: 2,
      message: /dangling\.nti is a symbolic link/,
    },
    {
      name: "--out is a FIFO",
      setup: async (d) => invert(d, fifo(path.join(d, "pipe.nti"))),
      rc: 2,
      message: /output .*pipe\.nti is not a regular file \(a device, pipe or socket\); refusing to replace it/,
    },
    {
      name: "--out is a device (/dev/full)",
      setup: (d) => ["reconstruct", nti(d), "--out", "/dev/full", ...common],
      rc: 2,
      message: /output \/dev\/full is not a regular file \(a device, pipe or socket\)/,
    },
    {
      name: "--out is a folder",
      setup: async (d) => {
        fs.mkdirSync(path.join(d, "folder.nti"));
        return invert(d, path.join(d, "folder.nti"));
      },
      rc: 2,
      message: /output .*folder\.nti is a folder; refusing to replace it/,
    },
    {
      name: "--out inside a file used as a folder",
      setup: async (d) => {
        fs.writeFileSync(path.join(d, "file.txt"), "a file");
        return invert(d, path.join(d, "file.txt", "out.nti"));
      },
      rc: 2,
      message: /output .*file\.txt\/out\.nti: .*file\.txt is not a folder/,
    },
    {
      name: "--out in a missing folder",
      setup: async (d) => invert(d, path.join(d, "missing", "out.nti")),
      rc: 2,
      message: /output .*missing\/out\.nti: its folder .*missing does not exist/,
    },
    {
      name: "--out in a folder nobody may write (/sys/kernel)",
      setup: (d) => ["reconstruct", nti(d), "--out", "/sys/kernel/out.png", ...common],
      rc: 2,
      message:
        /--out: output \/sys\/kernel\/out\.png: cannot write in the folder \/sys\/kernel: (permission denied \(EACCES\)|the file system is read-only \(EROFS\)|operation not permitted \(EPERM\))\n/,
    },
    {
      name: "--out over a weight file inside the model folder",
      setup: (d) => {
        const model = copyModel(PARITY, path.join(d, "model"));
        const weights = path.join(model, "unet", "diffusion_pytorch_model.safetensors");
        return ["reconstruct", nti(d), "--out", weights, "--model", model, "--threads", "1"];
      },
      rc: 2,
      message:
        /output .*model\/unet\/diffusion_pytorch_model\.safetensors is inside the input folder .*model; writing there could replace its files/,
    },
    {
      name: "the report beside --out is a folder (found by the job before any compute)",
      setup: async (d) => {
        fs.mkdirSync(path.join(d, "x.nti.json"));
        return invert(d, path.join(d, "x.nti"));
      },
      rc: 1,
      message: /output .*x\.nti\.json is a folder; refusing to replace it/,
    },
    {
      name: "the resume state beside --out is a symbolic link",
      setup: async (d) => {
        fs.writeFileSync(path.join(d, "elsewhere"), "precious");
        fs.symlinkSync(path.join(d, "elsewhere"), path.join(d, "x.nti.resume"));
        return invert(d, path.join(d, "x.nti"));
      },
      rc: 1,
      message: /output .*x\.nti\.resume is a symbolic link/,
    },
  ],
  "concurrent runs": [
    {
      name: "another running nulltext holds the output's lock (refused before the model loads)",
      setup: (d) => {
        fs.writeFileSync(path.join(d, "g.png.lock"), JSON.stringify({ pid: sleeper?.pid }));
        return ["generate", "--prompt", "x", "--steps", "1", "--out", path.join(d, "g.png"), ...common];
      },
      rc: 1,
      message: () =>
        new RegExp(`g\\.png is being written by another nulltext run \\(pid ${sleeper?.pid}, lock .*g\\.png\\.lock\\)`),
    },
  ],
  "damaged model folders (info MODEL)": [
    {
      name: "NaN in a UNet tensor",
      setup: (d) => {
        const model = copyModel(PARITY, path.join(d, "model"));
        poisonTensor(path.join(model, "unet", "diffusion_pytorch_model.safetensors"), "conv_in.weight", Number.NaN, 7);
        return info(model);
      },
      rc: 1,
      message:
        /unet\/diffusion_pytorch_model\.safetensors: tensor 'conv_in\.weight' holds NaN at element 7: the weights are damaged/,
    },
    {
      name: "Inf in a text-encoder tensor",
      setup: (d) => {
        const model = copyModel(PARITY, path.join(d, "model"));
        const name = poisonTensor(path.join(model, "text_encoder", "model.safetensors"), undefined, -Infinity, 0);
        fs.writeFileSync(path.join(d, "tensor.txt"), name);
        return info(model);
      },
      rc: 1,
      message: /text_encoder\/model\.safetensors: tensor '.+' holds -Infinity at element 0/,
    },
    {
      name: "a weight file replaced by a folder",
      setup: (d) => {
        const model = copyModel(PARITY, path.join(d, "model"));
        const file = path.join(model, "vae", "diffusion_pytorch_model.safetensors");
        fs.rmSync(file);
        fs.mkdirSync(file);
        return info(model);
      },
      rc: 1,
      message:
        /vae\/diffusion_pytorch_model\.safetensors: it is a folder \(EISDIR\); expected a safetensors file there/,
    },
    {
      name: "a config replaced by a folder",
      setup: (d) => {
        const model = copyModel(PARITY, path.join(d, "model"));
        fs.rmSync(path.join(model, "unet", "config.json"));
        fs.mkdirSync(path.join(model, "unet", "config.json"));
        return info(model);
      },
      rc: 1,
      message: /unet\/config\.json: it is a folder \(EISDIR\); expected the unet's config\.json \(a text file\) there/,
    },
    {
      name: "a config with an unknown option",
      setup: (d) => {
        const model = copyModel(PARITY, path.join(d, "model"));
        const file = path.join(model, "unet", "config.json");
        fs.writeFileSync(file, JSON.stringify({ ...JSON.parse(fs.readFileSync(file, "utf8")), bogus_option: 3 }));
        return info(model);
      },
      rc: 1,
      message: /bogus_option/,
    },
    {
      name: "missing weights",
      setup: (d) => {
        const model = copyModel(PARITY, path.join(d, "model"));
        fs.rmSync(path.join(model, "unet", "diffusion_pytorch_model.safetensors"));
        return info(model);
      },
      rc: 1,
      message: /no diffusion_pytorch_model\.safetensors in .*model\/unet/,
    },
    {
      name: "truncated weights",
      setup: (d) => {
        const model = copyModel(PARITY, path.join(d, "model"));
        const file = path.join(model, "vae", "diffusion_pytorch_model.safetensors");
        fs.truncateSync(file, Math.floor(fs.statSync(file).size / 2));
        return info(model);
      },
      rc: 1,
      message:
        /vae\/diffusion_pytorch_model\.safetensors: invalid safetensors file: tensor '.+': data_offsets .* end past the data buffer.*\(truncated file\?\)/,
    },
    {
      name: "a header length beyond the limit",
      setup: (d) => {
        const model = copyModel(PARITY, path.join(d, "model"));
        const file = path.join(model, "vae", "diffusion_pytorch_model.safetensors");
        fs.writeFileSync(file, headerLength(fs.readFileSync(file), 2n ** 60n));
        return info(model);
      },
      rc: 1,
      message: /header length 1152921504606846976 exceeds the limit of 100000000 bytes/,
    },
    {
      name: "overlapping tensor offsets",
      setup: (d) => {
        const model = copyModel(PARITY, path.join(d, "model"));
        fs.writeFileSync(path.join(model, "vae", "diffusion_pytorch_model.safetensors"), overlapping());
        return info(model);
      },
      rc: 1,
      message:
        /vae\/diffusion_pytorch_model\.safetensors: invalid safetensors file: tensor 'b' \(bytes \[4, 12\)\) overlaps tensor 'a' \(bytes \[0, 8\)\)/,
    },
    {
      name: "a FIFO as the checkpoint (would block a plain open)",
      setup: (d) => info(fifo(path.join(d, "model.safetensors"))),
      rc: 1,
      message:
        /model\.safetensors: it is not a regular file \(a pipe, socket or device\) \(ENOTFILE\); expected a safetensors file there/,
    },
    {
      name: "a FIFO as a config file",
      setup: (d) => {
        const model = copyModel(PARITY, path.join(d, "model"));
        fs.rmSync(path.join(model, "vae", "config.json"));
        fifo(path.join(model, "vae", "config.json"));
        return info(model);
      },
      rc: 1,
      message: /vae\/config\.json: it is not a regular file .*expected the vae's config\.json \(a text file\) there/,
    },
    {
      name: "a model path that does not exist",
      setup: (d) => info(path.join(d, "no-such-model")),
      rc: 1,
      message: /no-such-model does not exist \(expected a diffusers folder or a \.safetensors checkpoint\)/,
    },
    {
      name: "a PyTorch pickle",
      setup: (d) => {
        fs.writeFileSync(path.join(d, "model.ckpt"), "PK");
        return info(path.join(d, "model.ckpt"));
      },
      rc: 1,
      message: /model\.ckpt is a PyTorch pickle; only \.safetensors checkpoints are read/,
    },
  ],
  "damaged inversion files (reconstruct)": [
    {
      name: "metadata null",
      setup: (d) => reconstruct(ntiBytes(d, withHeader(inversion(), "null")), d, ...common),
      rc: 1,
      message: /x\.nti: corrupt inversion header \(not an object\): null/,
    },
    {
      name: "metadata without settings",
      setup: (d) => {
        const { settings: _, ...rest } = headerOf(inversion());
        return reconstruct(ntiBytes(d, withHeader(inversion(), JSON.stringify(rest))), d, ...common);
      },
      rc: 1,
      message: /x\.nti: corrupt inversion header: 'settings' is undefined, expected an object/,
    },
    {
      name: "one bit flipped in the stored prompt",
      setup: (d) => reconstruct(ntiBytes(d, flipBitIn(encodeInversion(inversion()), "a photo of a cat")), d, ...common),
      rc: 1,
      message:
        /x\.nti: corrupt inversion file: checksum [0-9a-f]{8} of the header and tensors ≠ the stored [0-9a-f]{8} \(the file was changed or damaged after it was written\)/,
    },
    {
      name: "one bit flipped in z_T's data",
      setup: (d) => {
        const bytes = encodeInversion(inversion());
        bytes[bytes.length - 5] = (bytes[bytes.length - 5] as number) ^ 0x10;
        return reconstruct(ntiBytes(d, bytes), d, ...common);
      },
      rc: 1,
      message: /x\.nti: corrupt inversion file: checksum/,
    },
    {
      name: "z_T of 3e38 (checksum valid)",
      setup: (d) => {
        const zT = inversion().zT;
        zT[0] = 3e38;
        return reconstruct(nti(d, inversion({ zT })), d, ...common);
      },
      rc: 1,
      message: /x\.nti: tensor 'z_T' holds 3\.\d+e\+38 at index 0, beyond the bound ±1000: the file is corrupt/,
    },
    {
      name: "NaN in z_T (checksum valid)",
      setup: (d) => {
        const zT = inversion().zT;
        zT[2] = Number.NaN;
        return reconstruct(nti(d, inversion({ zT })), d, ...common);
      },
      rc: 1,
      message: /x\.nti: tensor 'z_T' holds NaN at index 2: the file is corrupt/,
    },
    {
      name: "an unknown header field",
      setup: (d) => {
        const header = JSON.stringify({ format: "nulltext-inversion", version: 3, extra: 1 });
        return reconstruct(ntiBytes(d, withHeader(inversion(), header)), d, ...common);
      },
      rc: 1,
      message: /x\.nti: corrupt inversion header: unknown field 'extra'/,
    },
    {
      name: "a settings value out of range",
      setup: (d) =>
        reconstruct(nti(d, inversion({ settings: { method: "ddim", steps: 2, guidance: -1e9 } })), d, ...common),
      rc: 1,
      message: /x\.nti: corrupt inversion header: 'settings': .*guidance/,
    },
    {
      name: "an unknown format version",
      setup: (d) =>
        reconstruct(
          ntiBytes(d, withHeader(inversion(), JSON.stringify({ format: "nulltext-inversion", version: 99 }))),
          d,
          ...common,
        ),
      rc: 1,
      message: /x\.nti: inversion format version 99; this nulltext reads versions 1, 2, 3/,
    },
    {
      name: "a truncated inversion file",
      setup: (d) => {
        const bytes = encodeInversion(inversion());
        return reconstruct(ntiBytes(d, bytes.subarray(0, bytes.length - 100)), d, ...common);
      },
      rc: 1,
      message: /x\.nti: invalid safetensors file: .*\(truncated file\?\)/,
    },
    {
      name: "made with another model, reconstruct without --model",
      setup: (d) =>
        reconstruct(nti(d, inversion({ model: "deadbeef", modelSource: "/models/sd-v1-5" })), d, "--threads", "1"),
      rc: 1,
      message:
        /x\.nti was made with another model \(fingerprint deadbeef\) than the built-in model \(no --model given\) \(fingerprint [0-9a-f]{32}\): run again with --model '\/models\/sd-v1-5', or invert the image again with this model/,
    },
    {
      name: "made with another model, --model given",
      setup: (d) => reconstruct(nti(d, inversion({ model: "deadbeef", modelSource: "/models/sd-v1-5" })), d, ...common),
      rc: 1,
      message: new RegExp(
        `than --model ${esc(PARITY)} \\(fingerprint [0-9a-f]{32}\\): run again with --model '/models/sd-v1-5'`,
      ),
    },
    {
      name: "made with another model, an older file without the model's path",
      setup: (d) => reconstruct(nti(d, inversion({ model: "deadbeef", modelSource: undefined })), d, ...common),
      rc: 1,
      message:
        /x\.nti was made with another model \(fingerprint deadbeef\) than --model .* \(fingerprint [0-9a-f]{32}\); it was written by an older nulltext, whose fingerprints no model matches now: invert the image again/,
    },
    {
      name: "a folder given as the inversion",
      setup: (d) => {
        fs.mkdirSync(path.join(d, "dir.nti"));
        return reconstruct(path.join(d, "dir.nti"), d, ...common);
      },
      rc: 2,
      message: /dir\.nti is not a file \(expected an inversion file written by nulltext invert\)/,
    },
  ],
  "bad images (invert)": [
    {
      name: "a decompression bomb (100000×100000 header)",
      setup: (d) =>
        invert(d, path.join(d, "x.nti")).then((a) => [
          "invert",
          pngBomb(path.join(d, "bomb.png"), 100000, 100000),
          ...a.slice(2),
        ]),
      rc: 1,
      message: /bomb\.png.*pixel limit/i,
    },
    {
      name: "an empty file",
      setup: (d) => {
        fs.writeFileSync(path.join(d, "empty.png"), "");
        return invert(d, path.join(d, "x.nti")).then((a) => ["invert", path.join(d, "empty.png"), ...a.slice(2)]);
      },
      rc: 1,
      message: /empty\.png": the file is empty \(0 bytes\)/,
    },
    {
      name: "a truncated PNG",
      setup: async (d) => {
        const args = await invert(d, path.join(d, "x.nti"));
        fs.writeFileSync(path.join(d, "cut.png"), fs.readFileSync(path.join(d, "photo.png")).subarray(0, 60));
        return ["invert", path.join(d, "cut.png"), ...args.slice(2)];
      },
      rc: 1,
      message: /cut\.png.*corrupt or truncated/,
    },
    {
      name: "a folder as the image",
      setup: async (d) => {
        const args = await invert(d, path.join(d, "x.nti"));
        fs.mkdirSync(path.join(d, "dir.png"));
        return ["invert", path.join(d, "dir.png"), ...args.slice(2)];
      },
      rc: 1,
      message: /dir\.png": it is a directory, not a file/,
    },
  ],
  "options and arguments out of bounds": [
    {
      name: "--threads 100000",
      setup: async (d) => [...(await invert(d, path.join(d, "x.nti"))), "--threads", "100000"],
      rc: 2,
      message: /--threads 100000 is not valid: expected an integer in 1\.\.\d+ \(4× the \d+ CPUs\)/,
    },
    {
      name: "--threads 0",
      setup: (d) => ["generate", "--prompt", "x", "--out", path.join(d, "g.png"), "--threads", "0"],
      rc: 2,
      message: /--threads 0 is not valid: expected an integer in 1\.\./,
    },
    {
      name: "--threads 1.5",
      setup: (d) => ["generate", "--prompt", "x", "--out", path.join(d, "g.png"), "--threads", "1.5"],
      rc: 2,
      message: /--threads 1\.5 is not valid/,
    },
    {
      name: "an extra positional argument to invert (an unquoted prompt)",
      setup: async (d) => {
        const args = await invert(d, path.join(d, "x.nti"));
        return [args[0] as string, args[1] as string, "cat", ...args.slice(2)];
      },
      rc: 2,
      message: /invert takes IMAGE; unexpected "cat" \(quote a prompt with spaces/,
    },
    {
      name: "a positional argument to generate",
      setup: (d) => ["generate", "a", "cat", "--prompt", "x", "--out", path.join(d, "g.png")],
      rc: 2,
      message: /generate takes no positional argument; unexpected "a", "cat"/,
    },
    {
      name: "two inversion files to edit",
      setup: (d) => ["edit", nti(d), nti(d, inversion(), "y.nti"), "--prompt", "a dog", "--out", path.join(d, "e.png")],
      rc: 2,
      message: /edit takes INVERSION; unexpected ".*y\.nti"/,
    },
    {
      name: "--guidance not a number",
      setup: (d) => ["generate", "--prompt", "x", "--out", path.join(d, "g.png"), "--guidance", "lots"],
      rc: 2,
      message: /--guidance lots is not valid: expected a number/,
    },
    {
      name: "--steps 0",
      setup: async (d) => ["invert", await photo(d), "--prompt", "x", "--out", path.join(d, "x.nti"), "--steps", "0"],
      rc: 2,
      message: /steps 0/,
    },
  ],
};

beforeAll(async () => {
  const pipe = await NullTextPipeline.load(PARITY, { threads: 1 });
  fingerprint = pipe.model.fingerprint;
  embeddingShape = [pipe.model.textEncoder.config.max_position_embeddings, pipe.model.unet.crossAttentionDim];
  await pipe.release();
  sleeper = spawn("sleep", ["120"], { stdio: "ignore" });
});

afterAll(() => {
  sleeper?.kill();
});

describe("hostile inputs through the CLI", () => {
  for (const [category, cases] of Object.entries(CASES)) {
    describe(category, () => {
      for (const c of cases) {
        it(c.name, async () => {
          const d = fs.mkdtempSync(path.join(root, "case-"));
          const args = await c.setup(d);
          const before = snapshot(d);
          const { rc, err } = await run(args);
          expect(err).toMatch(typeof c.message === "function" ? c.message(d) : c.message);
          expect(rc).toBe(c.rc);
          expect(err).not.toMatch(/\n\s+at .+:\d+:\d+/);
          expect(err).not.toMatch(/TypeError|ReferenceError|Cannot read properties/);
          expect(snapshot(d)).toEqual(before);
          if (args.includes("/dev/full")) expect(fs.statSync("/dev/full").isCharacterDevice()).toBe(true);
        }, 30_000);
      }
    });
  }
});
