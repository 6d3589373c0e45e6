/** The Node implementation of the platform: `node:fs`, `node:crypto` and onnxruntime-node. */
import { createHash } from "node:crypto";
import fs from "node:fs";
import { createRequire } from "node:module";
import os from "node:os";
import path from "node:path";
import type * as OrtNode from "onnxruntime-node";
import type { FileIdentity, OrtBinding, OrtSession, OrtTensor, Platform, RandomAccessFile } from "./platform.js";

/** Positioned reads of exactly `bytes.byteLength` bytes (one read returns at most ~2 GiB on Linux). */
function readFully(fd: number, bytes: Uint8Array, position: number, what: string): void {
  let done = 0;
  while (done < bytes.byteLength) {
    const n = fs.readSync(fd, bytes, done, bytes.byteLength - done, position + done);
    if (n === 0) {
      throw new Error(`${what}: the file ended after ${done} of ${bytes.byteLength} bytes at offset ${position}`);
    }
    done += n;
  }
}

function writeFully(fd: number, bytes: Uint8Array, position: number, file: string): void {
  let done = 0;
  while (done < bytes.byteLength) {
    const n = fs.writeSync(fd, bytes, done, bytes.byteLength - done, position + done);
    if (n === 0) throw new Error(`${file}: the write made no progress at offset ${position + done}`);
    done += n;
  }
}

function allocate(length: number, what: string): Uint8Array {
  try {
    return new Uint8Array(length);
  } catch (error) {
    throw new Error(`${what}: cannot allocate ${length} bytes (${(error as Error).message})`);
  }
}

/**
 * Refuses what is not a regular file before opening it: opening a FIFO for reading blocks until a
 * writer comes, and a device may never end.
 */
function requireRegularFile(file: string): void {
  const stat = fs.statSync(file);
  if (stat.isFile()) return;
  const code = stat.isDirectory() ? "EISDIR" : "ENOTFILE";
  throw Object.assign(new Error(`${file}: not a regular file`), { code });
}

function openFile(file: string): RandomAccessFile {
  requireRegularFile(file);
  let fd: number | undefined = fs.openSync(file, "r");
  let size: number;
  try {
    const stat = fs.fstatSync(fd);
    if (!stat.isFile()) {
      const kind = stat.isDirectory() ? "EISDIR" : "ENOTFILE";
      throw Object.assign(new Error(`${file}: not a regular file`), { code: kind });
    }
    size = stat.size;
  } catch (error) {
    fs.closeSync(fd);
    throw error;
  }
  return {
    path: file,
    size,
    read(offset, length, what = file) {
      if (fd === undefined) throw new Error(`${what}: cannot read: the file was closed`);
      const bytes = allocate(length, what);
      readFully(fd, bytes, offset, what);
      return bytes;
    },
    close() {
      if (fd !== undefined) fs.closeSync(fd);
      fd = undefined;
    },
  };
}

function syncDirectory(directory: string): void {
  // Makes the rename itself durable. Opening a directory for fsync is not possible on Windows,
  // where the rename is durable enough for our purposes, so a failure here is not an error.
  let fd: number | undefined;
  try {
    fd = fs.openSync(directory, "r");
    fs.fsyncSync(fd);
  } catch {
    // see above
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
}

function writeFileAtomic(
  file: string,
  data: Uint8Array | string | Iterable<Uint8Array>,
  options: { durable?: boolean } = {},
): void {
  const durable = options.durable ?? true;
  const chunks: Iterable<Uint8Array> =
    typeof data === "string" ? [new TextEncoder().encode(data)] : data instanceof Uint8Array ? [data] : data;
  const partial = `${file}.partial`;
  // A stale partial (a crash) is ours to replace; created exclusively, so that a link left at that
  // name is removed rather than written through.
  fs.rmSync(partial, { force: true });
  const fd = fs.openSync(partial, "wx");
  try {
    let position = 0;
    for (const chunk of chunks) {
      writeFully(fd, chunk, position, partial);
      position += chunk.byteLength;
    }
    if (durable) fs.fsyncSync(fd);
  } catch (error) {
    fs.closeSync(fd);
    fs.rmSync(partial, { force: true });
    throw error;
  }
  fs.closeSync(fd);
  try {
    fs.renameSync(partial, file);
  } catch (error) {
    fs.rmSync(partial, { force: true });
    throw error;
  }
  if (durable) syncDirectory(path.dirname(file));
}

let processDir: string | undefined;

/** `$NULLTEXT_CACHE/<pid>` or `<os temp>/nulltext-onnx/<pid>`, removed when the process exits. */
function tempDir(): string {
  if (!processDir) {
    const dir = path.join(process.env.NULLTEXT_CACHE ?? path.join(os.tmpdir(), "nulltext-onnx"), `${process.pid}`);
    processDir = dir;
    process.once("exit", () => fs.rmSync(dir, { recursive: true, force: true }));
  }
  return processDir;
}

let binding: OrtBinding | undefined;

/** onnxruntime-node, required on first use (loading its native library takes a moment). */
function ort(): OrtBinding {
  if (binding) return binding;
  const lib = createRequire(import.meta.url)("onnxruntime-node") as typeof OrtNode;
  binding = {
    name: "onnxruntime-node",
    async createSession(model, options) {
      const session =
        typeof model === "string"
          ? await lib.InferenceSession.create(model, options)
          : await lib.InferenceSession.create(model, options);
      return session as unknown as OrtSession;
    },
    tensor(type, data, dims) {
      return new lib.Tensor(type as "float32", data as Float32Array, dims) as OrtTensor;
    },
    backends: () => lib.listSupportedBackends().map((b) => b.name),
  };
  return binding;
}

function identify(file: string, options: { followLinks?: boolean } = {}): FileIdentity | undefined {
  let stat: fs.Stats | undefined;
  try {
    stat = (options.followLinks ? fs.statSync : fs.lstatSync)(file, { throwIfNoEntry: false });
  } catch (error) {
    // A part of the path is a file: nothing can exist there.
    if ((error as NodeJS.ErrnoException).code === "ENOTDIR") return undefined;
    throw error;
  }
  if (!stat) return undefined;
  const kind = stat.isFile() ? "file" : stat.isDirectory() ? "directory" : stat.isSymbolicLink() ? "symlink" : "other";
  return { kind, size: stat.size, dev: stat.dev, ino: stat.ino, mtimeMs: stat.mtimeMs };
}

function createExclusive(file: string, data: string): boolean {
  let fd: number;
  try {
    fd = fs.openSync(file, "wx");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "EEXIST") return false;
    throw error;
  }
  try {
    fs.writeSync(fd, data);
  } finally {
    fs.closeSync(fd);
  }
  return true;
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: it exists but belongs to another user.
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** `$NULLTEXT_CACHE_DIR`, else `$XDG_CACHE_HOME/nulltext` or `~/.cache/nulltext`. */
function cacheDir(): string | undefined {
  if (process.env.NULLTEXT_CACHE_DIR) return process.env.NULLTEXT_CACHE_DIR;
  const base = process.env.XDG_CACHE_HOME ?? path.join(os.homedir(), ".cache");
  return path.join(base, "nulltext");
}

export const nodePlatform: Platform = {
  name: "node",
  readFile: (file) => {
    requireRegularFile(file);
    const bytes = fs.readFileSync(file);
    return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  },
  openFile,
  stat: (file) => {
    const stat = fs.statSync(file, { throwIfNoEntry: false });
    return stat ? { size: stat.size, isDirectory: stat.isDirectory() } : undefined;
  },
  identify,
  createExclusive,
  pid: process.pid,
  processAlive,
  cacheDir,
  listDir: (dir) => fs.readdirSync(dir),
  realPath: (file) => fs.realpathSync(file),
  makeDir: (dir) => {
    fs.mkdirSync(dir, { recursive: true });
  },
  remove: (file) => fs.rmSync(file, { recursive: true, force: true }),
  writeFileAtomic,
  linkFile: (existing, link) => {
    try {
      fs.linkSync(existing, link);
      return true;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === "EXDEV" || code === "EPERM" || code === "EMLINK") return false;
      throw err;
    }
  },
  sha256: async (bytes) => createHash("sha256").update(bytes).digest("hex"),
  tempDir,
  warn: (message) => {
    process.stderr.write(`${message}\n`);
  },
  defaultThreads: () => os.availableParallelism(),
  availableMemory: () => os.freemem(),
  ort,
};
