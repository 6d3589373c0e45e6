#!/usr/bin/env node
// The nulltext command: the TypeScript sources through tsx in a checkout, the compiled build otherwise.
import { existsSync } from "node:fs";

const source = new URL("../src/cli/main.ts", import.meta.url);
let main;
if (existsSync(source)) {
  const { register } = await import("tsx/esm/api");
  register();
  ({ main } = await import(source.href));
} else {
  ({ main } = await import(new URL("../dist/cli/main.js", import.meta.url).href));
}
process.exitCode = await main(process.argv.slice(2));
