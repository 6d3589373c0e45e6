/**
 * The same model from a path, from bytes in memory and from byte-range readers: equal fingerprints
 * and equal text-encoder outputs (the parity model in ../shared/parity).
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import * as G from "../../src/graph/index.js";
import { loadStableDiffusion, type StableDiffusion } from "../../src/models/loader.js";
import { encodeSafetensors, SafetensorsFile, writeSafetensors } from "../../src/models/safetensors.js";
import { writeCompVisCheckpoint } from "../../src/models/single_file.js";
import { memoryReader } from "../../src/platform/platform.js";
import { Session } from "../../src/runtime/session.js";

const MODEL = fileURLToPath(new URL("../../../shared/parity/model", import.meta.url));

/** Every file of a folder by its relative path. */
function folderBytes(dir: string): Record<string, Uint8Array> {
  const files: Record<string, Uint8Array> = {};
  const walk = (rel: string) => {
    for (const name of fs.readdirSync(path.join(dir, rel))) {
      const p = rel ? `${rel}/${name}` : name;
      if (fs.statSync(path.join(dir, p)).isDirectory()) walk(p);
      else files[p] = new Uint8Array(fs.readFileSync(path.join(dir, p)));
    }
  };
  walk("");
  return files;
}

const sessions: Session[] = [];
afterAll(async () => {
  for (const s of sessions) await s.release();
});

async function encode(model: StableDiffusion): Promise<Float32Array> {
  const ids = ["a photo of a cat", "a red square"].map((p) => model.tokenizer.encode(p).ids);
  const input = G.input("input_ids", [ids.length, (ids[0] as number[]).length], "int64");
  const s = await Session.create(G.compile({ h: model.textEncoder.forward(input) }, { name: "text" }), { threads: 1 });
  sessions.push(s);
  const out = await s.run({ input_ids: BigInt64Array.from(ids.flat().map(BigInt)) });
  return out.h?.data as Float32Array;
}

describe("loading from bytes and byte ranges", () => {
  it("gives the path-loaded model's fingerprint and text-encoder output", async () => {
    const fromPath = await loadStableDiffusion(MODEL);
    const files = folderBytes(MODEL);
    const fromBytes = await loadStableDiffusion({ files, name: "parity" });
    const fromReaders = await loadStableDiffusion({
      name: "https://example.invalid/parity",
      files: Object.keys(files),
      open: (p) => memoryReader(files[p] as Uint8Array, p),
    });
    expect(fromBytes.source).toBe("parity");
    expect(fromBytes.fingerprint).toBe(fromPath.fingerprint);
    expect(fromReaders.fingerprint).toBe(fromPath.fingerprint);
    const expected = await encode(fromPath);
    expect(expected.length).toBeGreaterThan(0);
    expect(await encode(fromBytes)).toEqual(expected);
    expect(await encode(fromReaders)).toEqual(expected);
  });

  it("loads a single-file checkpoint from bytes as from its path", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "nulltext-source-"));
    try {
      const file = path.join(dir, "parity.safetensors");
      const model = await loadStableDiffusion(MODEL);
      writeCompVisCheckpoint(MODEL, file, model.unet.config, model.vae.config.block_out_channels.length);
      const fromPath = await loadStableDiffusion(file, { configFrom: MODEL });
      const bytes = new Uint8Array(fs.readFileSync(file));
      const fromBytes = await loadStableDiffusion(bytes, {
        name: "parity.safetensors",
        configFrom: { files: folderBytes(MODEL) },
      });
      expect(fromBytes.fingerprint).toBe(fromPath.fingerprint);
      expect(await encode(fromBytes)).toEqual(await encode(fromPath));
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it("names a missing file of an in-memory folder", async () => {
    const files = folderBytes(MODEL);
    delete files["unet/config.json"];
    await expect(loadStableDiffusion({ files, name: "mem" })).rejects.toThrow(
      "unet: cannot read mem/unet/config.json (missing)",
    );
  });
});

describe("safetensors in memory", () => {
  const tensors = {
    b: { dtype: "F16" as const, shape: [3], data: new Uint16Array([0x3c00, 0xc000, 0x0000]) },
    a: { dtype: "F32" as const, shape: [2, 2], data: new Float32Array([1, 2, 3, 4]) },
  };

  it("encodes the bytes writeSafetensors writes, and reads them back", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "nulltext-st-"));
    try {
      const file = path.join(dir, "t.safetensors");
      writeSafetensors(file, tensors, { k: "v" });
      const bytes = encodeSafetensors(tensors, { k: "v" });
      expect(bytes).toEqual(new Uint8Array(fs.readFileSync(file)));
      const st = SafetensorsFile.fromBytes(bytes, "t");
      expect(st.metadata).toEqual({ k: "v" });
      expect([...st.readFloat32("a")]).toEqual([1, 2, 3, 4]);
      expect([...st.readFloat32("b")]).toEqual([1, -2, 0]);
      expect(st.viewRaw("a")?.buffer).toBe(bytes.buffer);
      const remote = await SafetensorsFile.fromReader(memoryReader(bytes, "remote"), { chunkBytes: 7 });
      expect([...remote.readFloat32("a")]).toEqual([1, 2, 3, 4]);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it("rejects a bad header before fetching the data", async () => {
    const bytes = encodeSafetensors(tensors);
    new DataView(bytes.buffer).setBigUint64(0, 10n ** 12n, true);
    let reads = 0;
    const reader = memoryReader(bytes, "bad");
    const counting = {
      ...reader,
      read: (o: number, l: number) => {
        reads++;
        return reader.read(o, l);
      },
    };
    await expect(SafetensorsFile.fromReader(counting)).rejects.toThrow("bad: invalid safetensors file: header length");
    expect(reads).toBe(1);
  });
});
