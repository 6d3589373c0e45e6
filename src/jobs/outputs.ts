/**
 * Every file a job writes goes through here: written whole to a temporary file beside it and
 * renamed over the target (the platform's atomic write), so a crash or a cancellation leaves either
 * the old file or the complete new one. Output naming lives here too, and the guarantees every
 * front end gets before any compute: an output is never an input of the same job, never a folder,
 * link, device or pipe, its folder exists and is writable, and one run at a time writes it (a lock
 * file beside it naming the run's pid).
 */
import { encodePng, type RgbImage } from "../image/index.js";
import { fileErrorReason, getPlatform } from "../platform/platform.js";
import { dirName, joinPath } from "../util/paths.js";

/** Raised when an output cannot be written as asked; the message names the path and the reason. */
export class OutputError extends Error {}

/** Raised when another run is writing the output (its lock is held by a running process). */
export class OutputBusyError extends OutputError {}

export function writeOutput(path: string, data: Uint8Array | string): void {
  refuseNonFile(path);
  getPlatform().writeFileAtomic(path, data);
}

export function writeJsonOutput(path: string, value: unknown): void {
  writeOutput(path, `${JSON.stringify(value, null, 2)}\n`);
}

export async function writePngOutput(path: string, image: RgbImage): Promise<void> {
  writeOutput(path, await encodePng(image));
}

/** The files an inversion writes beside `out`: its report, its side-by-side grid and its resume state. */
export function inversionSidecars(out: string): { report: string; grid: string; resume: string } {
  return { report: `${out}.json`, grid: `${out}.grid.png`, resume: `${out}.resume` };
}

/**
 * The edited images of `count` prompts written for `out`: `out` itself for one edit, else
 * `out-1.png`, `out-2.png`, ...; the grid `out.grid.png`, the report `out.json`.
 */
export function editOutputs(out: string, count: number): { images: string[]; grid: string; report: string } {
  const stem = out.replace(/\.png$/i, "");
  return {
    images: count === 1 ? [out] : Array.from({ length: count }, (_, i) => `${stem}-${i + 1}.png`),
    grid: `${stem}.grid.png`,
    report: `${out}.json`,
  };
}

/** Something at `path` that a rename would replace but that is not a regular file: refused. */
function refuseNonFile(path: string): void {
  const at = getPlatform().identify(path);
  if (!at || at.kind === "file") return;
  const what =
    at.kind === "directory"
      ? "a folder"
      : at.kind === "symlink"
        ? "a symbolic link (nulltext neither writes through links nor replaces them; give the real path)"
        : "not a regular file (a device, pipe or socket)";
  throw new OutputError(`output ${path} is ${what}; refusing to replace it`);
}

/**
 * Checks, before any compute, that each of `outputs` can be written without clobbering anything:
 * nothing or a regular file is there, it is not one of `inputs` (same device and inode, so links and
 * other spellings of an input are recognised), and its folder exists and is writable (a probe file
 * is created and removed there).
 */
export function checkOutputs(outputs: readonly string[], inputs: readonly string[] = []): void {
  const platform = getPlatform();
  const inputIds = inputs.flatMap((input) => {
    const id = platform.identify(input, { followLinks: true });
    return id ? [{ input, id }] : [];
  });
  // A folder input (a diffusers model) holds inputs too: nothing is written inside it.
  const inputDirs = inputIds.filter((i) => i.id.kind === "directory").map((i) => `${platform.realPath(i.input)}/`);
  const probed = new Set<string>();
  const first = outputs[0];
  const holder = first === undefined ? undefined : lockHolder(`${first}.lock`);
  if (first !== undefined && holder !== undefined && holder !== platform.pid && platform.processAlive(holder)) {
    throw busy(first, holder);
  }
  for (const out of outputs) {
    refuseNonFile(out);
    const id = platform.identify(out, { followLinks: true });
    const same = id && inputIds.find((i) => i.id.dev === id.dev && i.id.ino === id.ino);
    if (same) {
      throw new OutputError(
        `output ${out} is the input ${same.input}${out === same.input ? "" : " (the same file)"}; writing it would destroy the input: choose another output path`,
      );
    }
    const dir = dirName(out) || ".";
    const realDir = platform.identify(dir, { followLinks: true }) ? `${platform.realPath(dir)}/` : undefined;
    const inside = realDir && inputDirs.find((d) => realDir.startsWith(d));
    if (inside) {
      throw new OutputError(
        `output ${out} is inside the input folder ${inside.slice(0, -1)}; writing there could replace its files: choose another output path`,
      );
    }
    if (probed.has(dir)) continue;
    probed.add(dir);
    const folder = platform.identify(dir, { followLinks: true });
    if (!folder) throw new OutputError(`output ${out}: its folder ${dir} does not exist`);
    if (folder.kind !== "directory") throw new OutputError(`output ${out}: ${dir} is not a folder`);
    const probe = joinPath(dir, `.nulltext-probe-${platform.pid}-${Date.now().toString(36)}`);
    try {
      if (platform.createExclusive(probe, "")) platform.remove(probe);
    } catch (error) {
      const reason = fileErrorReason(error);
      if (reason === undefined) throw error;
      throw new OutputError(`output ${out}: cannot write in the folder ${dir}: ${reason}`);
    }
  }
}

/** Locks held by this process, by lock path (two jobs of one server must not share an output either). */
const held = new Set<string>();

export interface OutputLock {
  readonly path: string;
  release(): void;
}

/**
 * Takes the lock of `out` (`out.lock`, holding this process's pid): one run at a time writes an
 * output and its resume state. A lock held by a running process is refused at once with its pid;
 * a lock left by a process that is gone is taken over, and `onNote` is told.
 */
export function lockOutput(out: string, onNote: (message: string) => void = () => {}): OutputLock {
  const platform = getPlatform();
  const path = `${out}.lock`;
  if (held.has(path)) {
    throw new OutputBusyError(
      `${out} is being written by another job of this process (pid ${platform.pid}); wait for it to finish`,
    );
  }
  const record = JSON.stringify({ pid: platform.pid, started: new Date().toISOString() });
  refuseNonFile(path);
  if (!platform.createExclusive(path, record)) {
    const holder = lockHolder(path);
    if (holder !== undefined && holder !== platform.pid && platform.processAlive(holder)) throw busy(out, holder);
    onNote(
      holder === undefined
        ? `taking over the unreadable lock ${path}`
        : `taking over the lock ${path} of pid ${holder}, which is no longer running`,
    );
    platform.remove(path);
    if (!platform.createExclusive(path, record)) {
      const other = lockHolder(path);
      throw new OutputBusyError(
        `${out} is being written by another nulltext run (pid ${other ?? "unknown"}, lock ${path})`,
      );
    }
  }
  held.add(path);
  return {
    path,
    release() {
      if (!held.delete(path)) return;
      // Removed only while it is still ours (a takeover by another run after a long stop is theirs).
      if (lockHolder(path) === platform.pid) platform.remove(path);
    },
  };
}

function busy(out: string, pid: number): OutputBusyError {
  return new OutputBusyError(
    `${out} is being written by another nulltext run (pid ${pid}, lock ${out}.lock); wait for it to finish or stop it`,
  );
}

/** The pid recorded in a lock file, or undefined when it is missing or unreadable. */
function lockHolder(path: string): number | undefined {
  try {
    const pid = (JSON.parse(new TextDecoder().decode(getPlatform().readFile(path))) as { pid?: unknown }).pid;
    return Number.isInteger(pid) && (pid as number) > 0 ? (pid as number) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Runs `f` with every output checked (checkOutputs) and the first one locked; the lock goes on
 * every path out. The job's outputs are all named after the first, so one lock covers them.
 */
export async function withOutputs<T>(
  outputs: readonly string[],
  inputs: readonly string[],
  onNote: ((message: string) => void) | undefined,
  f: () => Promise<T>,
): Promise<T> {
  if (outputs.length === 0) return f();
  checkOutputs(outputs, inputs);
  const lock = lockOutput(outputs[0] as string, onNote);
  try {
    return await f();
  } finally {
    lock.release();
  }
}
