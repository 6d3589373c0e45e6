#!/usr/bin/env node
// The nulltext command: the TypeScript sources through tsx in a checkout, the compiled build otherwise.
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";

// glibc returns big freed buffers to the OS and faults fresh pages in again on the next use, which
// makes runs of the same graph up to 6× slower at random (measured, see notes). Keeping them is a
// start-up setting, so set it and start again once.
if (process.platform === "linux" && process.env.MALLOC_MMAP_THRESHOLD_ === undefined) {
  const child = spawnSync(process.execPath, [...process.execArgv, ...process.argv.slice(1)], {
    stdio: "inherit",
    env: { ...process.env, MALLOC_MMAP_THRESHOLD_: "33554432", MALLOC_TRIM_THRESHOLD_: "17179869184" },
  });
  process.exit(child.status ?? 1);
}

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
