/**
 * The core on a platform with no file system: the web platform's in-memory files and WebCrypto,
 * with onnxruntime-node standing in for onnxruntime-web (the same InferenceSession/Tensor API).
 * The parity model loads from its in-memory paths with the fingerprint and text-encoder output
 * it has on Node.
 */
import fs from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, it } from "vitest";
import * as G from "../../src/graph/index.js";
import { loadStableDiffusion, type StableDiffusion } from "../../src/models/loader.js";
import { getPlatform, setPlatform } from "../../src/platform/platform.js";
import { createWebPlatform, type OrtModule } from "../../src/platform/web.js";
import { Session } from "../../src/runtime/session.js";

const MODEL = fileURLToPath(new URL("../../../shared/parity/model", import.meta.url));
const ort = createRequire(import.meta.url)("onnxruntime-node") as OrtModule;
const node = getPlatform();
afterEach(() => {
  setPlatform(node);
});

function filesUnder(dir: string, at: string): Record<string, Uint8Array> {
  const out: Record<string, Uint8Array> = {};
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, entry.name);
    if (entry.isDirectory()) Object.assign(out, filesUnder(p, `${at}/${entry.name}`));
    else out[`${at}/${entry.name}`] = new Uint8Array(fs.readFileSync(p));
  }
  return out;
}

async function encode(model: StableDiffusion): Promise<Float32Array> {
  const ids = [model.tokenizer.encode("a blue circle").ids];
  const input = G.input("input_ids", [1, (ids[0] as number[]).length], "int64");
  const s = await Session.create(G.compile({ h: model.textEncoder.forward(input) }, { name: "text" }), { threads: 1 });
  const out = await s.run({ input_ids: BigInt64Array.from(ids.flat().map(BigInt)) });
  await s.release();
  return out.h?.data as Float32Array;
}

describe("the web platform", () => {
  it("runs the loader, compile and sessions over in-memory files", async () => {
    const onNode = await loadStableDiffusion(MODEL);
    const expected = await encode(onNode);
    const web = createWebPlatform({ ort, files: filesUnder(MODEL, "/models/parity"), threads: 1 });
    setPlatform(web);
    expect(web.listDir("/models/parity").sort()).toEqual(fs.readdirSync(MODEL).sort());
    const onWeb = await loadStableDiffusion("/models/parity");
    expect(onWeb.fingerprint).toBe(onNode.fingerprint);
    expect(await encode(onWeb)).toEqual(expected);
  });

  it("hashes with WebCrypto as Node does", async () => {
    const web = createWebPlatform({ ort });
    const bytes = new TextEncoder().encode("null-text inversion");
    expect(await web.sha256(bytes)).toBe(await node.sha256(bytes));
  });

  it("keeps files, folders and atomic replacements in memory", () => {
    const web = createWebPlatform({ ort });
    web.makeDir("/a/b");
    web.writeFileAtomic("/a/b/x.txt", "one");
    web.writeFileAtomic("/a/b/x.txt", [Uint8Array.of(116), Uint8Array.of(119, 111)]);
    expect(new TextDecoder().decode(web.readFile("/a/b/x.txt"))).toBe("two");
    expect(web.stat("/a")).toEqual({ size: 0, isDirectory: true });
    expect(web.listDir("/a")).toEqual(["b"]);
    expect(web.linkFile("/a/b/x.txt", "/a/y.txt")).toBe(true);
    expect(web.openFile("/a/y.txt").read(1, 2)).toEqual(Uint8Array.of(119, 111));
    expect(() => web.openFile("/a/y.txt").read(2, 5, "y")).toThrow("y: the file ended after 1 of 5 bytes at offset 2");
    expect(() => web.writeFileAtomic("/nowhere/z", "z")).toThrow(/ENOENT/);
    web.remove("/a/b");
    expect(web.stat("/a/b/x.txt")).toBeUndefined();
    expect(web.listDir("/a")).toEqual(["y.txt"]);
  });
});
