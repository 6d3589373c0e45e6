/**
 * The core never touches the host: files under these folders import no `node:*` module and no
 * `onnxruntime-*` package and use neither `Buffer` nor `process` — everything host-specific goes
 * through src/platform (so the core bundles for a browser).
 */
import fs from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { importsOf, SRC, sourceFiles, withoutComments } from "./sources.js";

const CORE = ["graph", "models", "schedulers", "inversion", "editing", "runtime", "optim", "util"];

/** Every violation in `file` (src-relative), as "file:line: what". */
function violations(file: string): string[] {
  const text = fs.readFileSync(path.join(SRC, file), "utf8");
  const found: string[] = [];
  const { static: statics, dynamic } = importsOf(text);
  for (const i of [...statics, ...dynamic]) {
    if (i.specifier.startsWith("node:") || /^onnxruntime-/.test(i.specifier)) {
      found.push(`${file}:${i.line}: imports '${i.specifier}'`);
    }
  }
  const code = withoutComments(text);
  code.split("\n").forEach((line, k) => {
    if (/(?<![\w.$])Buffer\b/.test(line)) found.push(`${file}:${k + 1}: uses Buffer`);
    if (/(?<![\w.$])process\s*\./.test(line)) found.push(`${file}:${k + 1}: uses process`);
  });
  return found;
}

describe("the core is free of host APIs", () => {
  it("has files in every checked folder", () => {
    const files = sourceFiles();
    for (const dir of CORE)
      expect(
        files.some((f) => f.startsWith(`${dir}/`)),
        dir,
      ).toBe(true);
  });

  for (const dir of CORE) {
    it(`src/${dir} imports no node:* or onnxruntime-* and uses no Buffer or process`, () => {
      const found = sourceFiles()
        .filter((f) => f.startsWith(`${dir}/`))
        .flatMap(violations);
      expect(found).toEqual([]);
    });
  }

  it("src/platform/web.ts, the browser implementation, imports no node:* or onnxruntime-* either", () => {
    expect(violations("platform/web.ts")).toEqual([]);
  });

  it("catches what it is meant to catch", () => {
    const probe = [
      'import fs from "node:fs";',
      'import type { Tensor } from "onnxruntime-common";',
      "const b = Buffer.from([1]);",
      "if (process.env.X) {}",
      "// Buffer and process.env in a comment are fine",
      'const s = "ArrayBuffer";',
    ].join("\n");
    const { static: statics } = importsOf(probe);
    expect(statics.map((i) => i.specifier)).toEqual(["node:fs", "onnxruntime-common"]);
    const code = withoutComments(probe);
    expect(code.split("\n").filter((l) => /(?<![\w.$])Buffer\b/.test(l))).toHaveLength(1);
    expect(code.split("\n").filter((l) => /(?<![\w.$])process\s*\./.test(l))).toHaveLength(1);
  });
});
