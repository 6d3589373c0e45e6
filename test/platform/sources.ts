/** The TypeScript files under src/ and their static imports, for the layering tests. */
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

export const SRC = fileURLToPath(new URL("../../src", import.meta.url));

/** Paths relative to src/ ("graph/compile.ts") of every .ts file, sorted. */
export function sourceFiles(): string[] {
  const out: string[] = [];
  const walk = (rel: string) => {
    for (const entry of fs.readdirSync(path.join(SRC, rel), { withFileTypes: true })) {
      const p = rel ? `${rel}/${entry.name}` : entry.name;
      if (entry.isDirectory()) walk(p);
      else if (entry.name.endsWith(".ts")) out.push(p);
    }
  };
  walk("");
  return out.sort();
}

/** The text with comments blanked (strings are kept, so "https://" survives). */
export function withoutComments(text: string): string {
  return text.replace(
    /\/\*[\s\S]*?\*\/|("(?:\\.|[^"\\\n])*"|'(?:\\.|[^'\\\n])*'|`(?:\\.|[^`\\])*`)|\/\/[^\n]*/g,
    (m, str) => (str ? m : m.replace(/[^\n]/g, " ")),
  );
}

export interface Import {
  specifier: string;
  /** `import type` / `export type`: erased at compile time. */
  typeOnly: boolean;
  line: number;
}

/** Static `import ... from`, `export ... from` and side-effect imports, plus dynamic `import("...")`. */
export function importsOf(text: string): { static: Import[]; dynamic: Import[] } {
  const code = withoutComments(text);
  const lineAt = (index: number) => code.slice(0, index).split("\n").length;
  const statics: Import[] = [];
  const pattern = /(?:^|[;\n])\s*(import|export)\s+(type\s+)?(?:[\w*{}\s,$]*?\s+from\s+)?["']([^"']+)["']/g;
  for (const m of code.matchAll(pattern)) {
    statics.push({ specifier: m[3] as string, typeOnly: m[2] !== undefined, line: lineAt(m.index ?? 0) });
  }
  const dynamic: Import[] = [];
  for (const m of code.matchAll(/\bimport\s*\(\s*["']([^"']+)["']\s*\)|\brequire\s*\(\s*["']([^"']+)["']\s*\)/g)) {
    dynamic.push({ specifier: (m[1] ?? m[2]) as string, typeOnly: false, line: lineAt(m.index ?? 0) });
  }
  return { static: statics, dynamic };
}

/** The src/-relative file a relative specifier of `from` names ("./ops/shape.js" → "graph/ops/shape.ts"). */
export function resolveRelative(from: string, specifier: string): string | undefined {
  if (!specifier.startsWith(".")) return undefined;
  const joined = path.posix.normalize(path.posix.join(path.posix.dirname(from), specifier));
  for (const candidate of [joined.replace(/\.js$/, ".ts"), `${joined}.ts`, `${joined}/index.ts`]) {
    if (fs.existsSync(path.join(SRC, candidate)) && candidate.endsWith(".ts")) return candidate;
  }
  return undefined;
}
