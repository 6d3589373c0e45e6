/**
 * Interruptions of the real command (bin/nulltext.js and its worker process) on the parity model:
 * SIGTERM to the command stops the worker after it saved its resume state (exit 143, no output);
 * kill -9 of the command leaves no worker running and nothing written later; a worker killed by a
 * signal is reported with the signal's name and a hint (exit 137).
 */
import { type ChildProcess, spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { beforeAll, describe, expect, it } from "vitest";
import { writePng } from "../../src/image/index.js";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const PARITY = path.join(ROOT, "..", "shared", "parity", "model");
const dir = fs.mkdtempSync(path.join(os.tmpdir(), "nulltext-signals-"));
const at = (name: string) => path.join(dir, name);

interface Running {
  child: ChildProcess;
  stderr: () => string;
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** `nulltext invert` with enough inner steps to be interrupted while optimising. */
function startInvert(out: string): Running {
  const child = spawn(
    process.execPath,
    [
      path.join(ROOT, "bin", "nulltext.js"),
      "invert",
      at("photo.png"),
      "--prompt",
      "a photo",
      "--out",
      out,
      "--model",
      PARITY,
      "--steps",
      "3",
      "--inner-steps",
      "50",
      "--early-stop",
      "0",
      "--threads",
      "1",
    ],
    { stdio: ["ignore", "pipe", "pipe"], env: workerEnv() },
  );
  let err = "";
  child.stderr?.on("data", (d) => {
    err += String(d);
  });
  child.stdout?.resume();
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on("exit", (code, signal) => resolve({ code, signal })),
  );
  return { child, stderr: () => err, exit };
}

/** The environment without the malloc setting, so that bin/nulltext.js starts a worker as a user's shell would. */
function workerEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  delete env.MALLOC_MMAP_THRESHOLD_;
  delete env.MALLOC_TRIM_THRESHOLD_;
  return env;
}

async function until(what: string, ok: () => boolean, seconds = 60): Promise<void> {
  const end = Date.now() + seconds * 1000;
  while (!ok()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** The pids whose parent is `pid` (from /proc). */
function childrenOf(pid: number): number[] {
  return fs
    .readdirSync("/proc")
    .filter((d) => /^\d+$/.test(d))
    .filter((d) => {
      try {
        const stat = fs.readFileSync(`/proc/${d}/stat`, "utf8");
        return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]) === pid;
      } catch {
        return false;
      }
    })
    .map(Number);
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

beforeAll(async () => {
  const data = new Uint8Array(128 * 128 * 3).map((_, i) => (i * 37) % 256);
  await writePng(at("photo.png"), { width: 128, height: 128, data });
});

describe("signals (Linux: the worker is found in /proc)", () => {
  it("SIGTERM to nulltext stops the worker after saving the resume state: exit 143, no output", async () => {
    const out = at("term.nti");
    const run = startInvert(out);
    await until("the saved DDIM pivot", () => fs.existsSync(`${out}.resume`));
    run.child.kill("SIGTERM");
    const { code } = await run.exit;
    expect(code).toBe(143);
    expect(run.stderr()).toMatch(/SIGTERM: stopping after the current step/);
    expect(run.stderr()).toMatch(/stopped by SIGTERM; outputs were not written \(an interrupted inversion resumes/);
    expect(run.stderr()).not.toMatch(/\n\s+at /);
    expect(fs.existsSync(out)).toBe(false);
    expect(fs.existsSync(`${out}.lock`)).toBe(false);
    expect(fs.statSync(`${out}.resume`).size).toBeGreaterThan(0);
  }, 90_000);

  it("kill -9 of nulltext leaves no worker: it stops without writing anything later", async () => {
    const out = at("orphan.nti");
    const run = startInvert(out);
    await until("the DDIM phase", () => /DDIM/.test(run.stderr()));
    const [worker] = childrenOf(run.child.pid as number);
    expect(worker).toBeGreaterThan(0);
    run.child.kill("SIGKILL");
    await run.exit;
    await until("the worker to stop", () => !alive(worker as number), 15);
    expect(fs.existsSync(out)).toBe(false);
    expect(fs.existsSync(`${out}.json`)).toBe(false);
  }, 90_000);

  it("a worker killed by a signal is reported by name with a hint, exit 137", async () => {
    const out = at("oom.nti");
    const run = startInvert(out);
    await until("the worker", () => childrenOf(run.child.pid as number).length > 0);
    const [worker] = childrenOf(run.child.pid as number);
    process.kill(worker as number, "SIGKILL");
    const { code } = await run.exit;
    expect(code).toBe(137);
    expect(run.stderr()).toMatch(
      /nulltext: the worker process was killed by SIGKILL: usually the system's out-of-memory killer \(see `dmesg`\)/,
    );
    expect(fs.existsSync(out)).toBe(false);
  }, 90_000);
});
