/**
 * No import cycle anywhere in src/: the static value imports (`import ... from`, `export ... from`;
 * `import type` is erased and ignored) of every file form a directed acyclic graph.
 */
import fs from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { importsOf, resolveRelative, SRC, sourceFiles } from "./sources.js";

type Graph = Map<string, string[]>;

function importGraph(): Graph {
  const graph: Graph = new Map();
  for (const file of sourceFiles()) {
    const { static: statics } = importsOf(fs.readFileSync(path.join(SRC, file), "utf8"));
    const targets = statics
      .filter((i) => !i.typeOnly)
      .map((i) => resolveRelative(file, i.specifier))
      .filter((t): t is string => t !== undefined);
    graph.set(file, [...new Set(targets)]);
  }
  return graph;
}

/**
 * One cycle per strongly connected component of more than one file (or a file importing itself),
 * as "a → b → a", followed by the component's other files when it has more.
 */
function findCycles(graph: Graph): string[] {
  // Tarjan's strongly connected components.
  let counter = 0;
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const components: string[][] = [];
  const visit = (v: string) => {
    index.set(v, counter);
    low.set(v, counter++);
    stack.push(v);
    onStack.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v) as number, low.get(w) as number));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v) as number, index.get(w) as number));
    }
    if (low.get(v) === index.get(v)) {
      const component: string[] = [];
      let w: string;
      do {
        w = stack.pop() as string;
        onStack.delete(w);
        component.push(w);
      } while (w !== v);
      if (component.length > 1 || (graph.get(v) ?? []).includes(v)) components.push(component);
    }
  };
  for (const v of graph.keys()) if (!index.has(v)) visit(v);
  // Name one concrete cycle in each component: a shortest path back to its first file.
  return components.map((component) => {
    const members = new Set(component);
    const start = [...component].sort()[0] as string;
    const previous = new Map<string, string>();
    const queue = [start];
    while (queue.length > 0) {
      const v = queue.shift() as string;
      for (const w of graph.get(v) ?? []) {
        if (!members.has(w)) continue;
        if (w === start) {
          const path = [v];
          while (path[0] !== start) path.unshift(previous.get(path[0] as string) as string);
          const cycle = [...path, start].join(" → ");
          const others = component.filter((f) => !path.includes(f)).sort();
          return others.length > 0 ? `${cycle} (also in the cycle: ${others.join(", ")})` : cycle;
        }
        if (!previous.has(w)) {
          previous.set(w, v);
          queue.push(w);
        }
      }
    }
    return component.join(", ");
  });
}

describe("import cycles", () => {
  it("there are none in src/", () => {
    expect(findCycles(importGraph())).toEqual([]);
  });

  it("the check names a cycle", () => {
    const graph: Graph = new Map([
      ["a.ts", ["b.ts"]],
      ["b.ts", ["c.ts"]],
      ["c.ts", ["a.ts"]],
      ["d.ts", ["a.ts"]],
    ]);
    expect(findCycles(graph)).toEqual(["a.ts → b.ts → c.ts → a.ts"]);
  });

  it("reads multi-line, export-from and type-only imports", () => {
    const { static: statics } = importsOf(
      [
        "import {",
        "  a,",
        "  type B,",
        '} from "./a.js";',
        'import type { C } from "./c.js";',
        'export * from "./d.js";',
        'export { e } from "./e.js";',
        'import "./f.js";',
      ].join("\n"),
    );
    expect(statics.map((i) => `${i.specifier}${i.typeOnly ? " (type)" : ""}`)).toEqual([
      "./a.js",
      "./c.js (type)",
      "./d.js",
      "./e.js",
      "./f.js",
    ]);
  });
});
