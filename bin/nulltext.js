#!/usr/bin/env node
// The nulltext command: the TypeScript sources through tsx in a checkout, the compiled build otherwise.
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { constants } from "node:os";

// glibc returns big freed buffers to the OS and faults fresh pages in again on the next use, which
// makes runs of the same graph up to 6× slower at random (measured, see notes). Keeping them is a
// start-up setting, so set it and start the command again once, as a worker process. The worker
// gets SIGINT/SIGTERM/SIGHUP when this process does (it stops after saving the resume state), and
// watches this process through an IPC channel: if this one dies (even by kill -9) the worker stops
// without writing outputs, so no orphan writes anything later.
if (process.platform === "linux" && process.env.MALLOC_MMAP_THRESHOLD_ === undefined) {
  const child = spawn(process.execPath, [...process.execArgv, ...process.argv.slice(1)], {
    stdio: ["inherit", "inherit", "inherit", "ipc"],
    env: { ...process.env, MALLOC_MMAP_THRESHOLD_: "33554432", MALLOC_TRIM_THRESHOLD_: "17179869184" },
  });
  const forwarded = new Set();
  for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"]) {
    process.on(signal, () => {
      forwarded.add(signal);
      child.kill(signal);
    });
  }
  child.on("error", (error) => {
    process.stderr.write(`nulltext: cannot start the worker process: ${error.message}\n`);
    process.exit(1);
  });
  child.on("exit", (code, signal) => {
    if (signal) {
      const number = constants.signals[signal] ?? 0;
      if (!forwarded.has(signal)) process.stderr.write(`nulltext: ${killedBy(signal)}\n`);
      process.exit(128 + number);
    }
    process.exit(code ?? 1);
  });
} else {
  const source = new URL("../src/cli/main.ts", import.meta.url);
  let cli;
  if (existsSync(source)) {
    const { register } = await import("tsx/esm/api");
    register();
    ({ cli } = await import(source.href));
  } else {
    ({ cli } = await import(new URL("../dist/cli/main.js", import.meta.url).href));
  }
  process.exitCode = await cli(process.argv.slice(2));
}

/** What a worker's death by `signal` means, with a hint. */
function killedBy(signal) {
  const hints = {
    SIGKILL:
      "usually the system's out-of-memory killer (see `dmesg`): try fewer --threads, a smaller model or more memory",
    SIGSEGV: "a crash in native code (ONNX Runtime or an image library); run again with NULLTEXT_DEBUG=1 and report it",
    SIGBUS: "a mapped file changed or vanished under it (a model file rewritten during the run?)",
    SIGABRT: "native code aborted (often an allocation failure: out of memory)",
    SIGTERM: "stopped from outside; run the same command again to resume an inversion",
    SIGINT: "stopped from outside; run the same command again to resume an inversion",
  };
  return `the worker process was killed by ${signal}: ${hints[signal] ?? "stopped from outside"}`;
}
