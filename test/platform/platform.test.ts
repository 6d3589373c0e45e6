/** The platform seam: swapping the implementation, and the path helpers the core uses instead of node:path. */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import * as G from "../../src/graph/index.js";
import { SafetensorsFile, writeSafetensors } from "../../src/models/safetensors.js";
import { getPlatform, type Platform, setPlatform } from "../../src/platform/platform.js";
import { Session } from "../../src/runtime/session.js";
import { baseName, dirName, extName, joinPath } from "../../src/util/paths.js";

const node = getPlatform();
afterEach(() => {
  setPlatform(node);
});

describe("the platform", () => {
  it("is the Node one by default", () => {
    expect(node.name).toBe("node");
    expect(node.ort().backends()).toContain("cpu");
  });

  it("hashes with SHA-256", async () => {
    expect(await node.sha256(new TextEncoder().encode("abc"))).toBe(
      "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
    );
  });

  it("writes chunks from an iterable atomically", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "nulltext-platform-"));
    try {
      const file = path.join(dir, "f.bin");
      function* chunks() {
        yield Uint8Array.of(1, 2);
        yield Uint8Array.of(3);
      }
      node.writeFileAtomic(file, chunks());
      expect([...fs.readFileSync(file)]).toEqual([1, 2, 3]);
      node.writeFileAtomic(file, "text", { durable: false });
      expect(fs.readFileSync(file, "utf8")).toBe("text");
      expect(fs.readdirSync(dir)).toEqual(["f.bin"]);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it("is what compile goes through: external data copied where a link is impossible", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "nulltext-platform-"));
    try {
      const file = path.join(dir, "w.safetensors");
      writeSafetensors(file, {
        w: { dtype: "F32", shape: [2, 3], data: Float32Array.of(1, 2, 3, 4, 5, 6) },
        b: { dtype: "F16", shape: [3], data: Uint16Array.of(0x3800, 0xc000, 0x3400) }, // 0.5, -2, 0.25
      });
      const st = SafetensorsFile.open(file);
      const source = (name: string) => {
        const e = st.entry(name);
        const dtype = e.dtype === "F32" ? ("float32" as const) : ("float16" as const);
        return { kind: "file" as const, path: file, offset: e.offset, byteLength: e.byteLength, dtype };
      };
      const warnings: string[] = [];
      const noLinks: Platform = { ...node, linkFile: () => false, warn: (m) => warnings.push(m) };
      expect(setPlatform(noLinks)).toBe(node);
      const x = G.input("x", [1, 2]);
      const w = G.weight("w", [2, 3], source("w"));
      const b = G.weight("b", [3], source("b"), { dtype: "float32" });
      const y = G.add(G.matmul(x, w), b);
      const out = path.join(dir, "model");
      const compiled = G.compile({ y }, { externalDir: out, inlineLimitBytes: 0, name: "copied" });
      expect(compiled.model.kind).toBe("file");
      expect(warnings).toHaveLength(1);
      expect(warnings[0]).toMatch(/another filesystem/);
      expect(fs.readdirSync(out).sort()).toEqual(["copied.onnx", "copied.weights"]);
      const session = await Session.create(compiled, { threads: 1 });
      const result = await session.run({ x: Float32Array.of(1, -1) });
      expect(Array.from(result.y?.data as Float32Array)).toEqual([1 - 4 + 0.5, 2 - 5 - 2, 3 - 6 + 0.25]);
      await session.release();
      st.close();
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("path helpers", () => {
  it("agree with node:path's posix functions", () => {
    const cases = ["a/b/c.json", "/a//b/./c/../d.safetensors", "a", "./a/", "../x/y", "/", "a/b/"];
    for (const p of cases) {
      expect(joinPath(p), p).toBe(path.posix.join(p));
      expect(dirName(p), p).toBe(path.posix.dirname(p));
      expect(baseName(p), p).toBe(path.posix.basename(p));
      expect(extName(p), p).toBe(path.posix.extname(p));
    }
    expect(joinPath("/m", "unet", "config.json")).toBe(path.posix.join("/m", "unet", "config.json"));
    expect(joinPath("m", "", "..", "x")).toBe(path.posix.join("m", "", "..", "x"));
  });
});
