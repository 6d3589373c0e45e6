/**
 * The platform seam: files, byte ranges, atomic writes, hashing, temp space and the ONNX Runtime
 * binding, behind one small interface. The graph, models and algorithms call `getPlatform()`;
 * only this folder (and the front ends) imports `node:*` or `onnxruntime-*`. As transformers.js
 * exposes one `env` through which the backend and the file source are chosen, a front end may
 * `setPlatform()` once at start; on Node the Node implementation is loaded by default.
 *
 * File access is synchronous: Node's `fs` is, and so are a browser worker's OPFS sync access handles
 * (`FileSystemSyncAccessHandle.read(buffer, { at })`) or an in-memory file map. Whatever needs the
 * network goes through the asynchronous `ByteRangeReader` instead.
 */

/**
 * Bytes fetched by range, asynchronously: what a browser backs with HTTP Range requests
 * (`fetch(url, { headers: { Range: "bytes=a-b" } })`) and Node with a file.
 */
export interface ByteRangeReader {
  /** A name for messages (the URL or path). */
  readonly name: string;
  size(): Promise<number>;
  /** Exactly `length` bytes from `offset`. */
  read(offset: number, length: number): Promise<Uint8Array>;
}

/** A reader over bytes already in memory. */
export function memoryReader(bytes: Uint8Array, name = "<memory>"): ByteRangeReader {
  return {
    name,
    size: async () => bytes.byteLength,
    read: async (offset, length) => {
      if (offset + length > bytes.byteLength) {
        throw new Error(`${name}: bytes [${offset}, ${offset + length}) are past the end (${bytes.byteLength} bytes)`);
      }
      return bytes.subarray(offset, offset + length);
    },
  };
}

/** An open file read at arbitrary offsets (safetensors reads each tensor on demand). */
export interface RandomAccessFile {
  readonly path: string;
  readonly size: number;
  /**
   * Exactly `length` bytes from `offset`, in a fresh buffer at byte offset 0; fails if the file is
   * shorter, naming `what` (default: the path).
   */
  read(offset: number, length: number, what?: string): Uint8Array;
  close(): void;
}

export interface FileStat {
  size: number;
  isDirectory: boolean;
}

/** What is at a path, without following a final symlink: what an output check and a cache key need. */
export interface FileIdentity {
  kind: "file" | "directory" | "symlink" | "other";
  size: number;
  /** Device and inode: two paths with equal (dev, ino) name the same file (hard links). */
  dev: number;
  ino: number;
  mtimeMs: number;
}

/** A tensor as the ONNX Runtime binding holds it. */
export interface OrtTensor {
  readonly data: unknown;
  readonly dims: readonly number[];
  readonly type: string;
}

export interface OrtSession {
  run(feeds: Record<string, OrtTensor>, outputs?: readonly string[]): Promise<Record<string, OrtTensor>>;
  release(): Promise<void>;
}

/** The subset of ONNX Runtime's session options this project sets. */
export interface OrtSessionOptions {
  executionProviders: string[];
  graphOptimizationLevel: "disabled" | "basic" | "extended" | "all";
  enableCpuMemArena: boolean;
  enableMemPattern: boolean;
  logSeverityLevel: 0 | 1 | 2 | 3 | 4;
  intraOpNumThreads: number;
  interOpNumThreads: number;
  /** Session config entries, nested by their dotted keys ({ session: { ... } }). */
  extra: Record<string, unknown>;
}

/** ONNX Runtime (onnxruntime-node or onnxruntime-web) reduced to what the runtime layer uses. */
export interface OrtBinding {
  /** The binding's name, for messages ("onnxruntime-node"). */
  readonly name: string;
  /** Creates a session from a model file path (external data next to it) or the model's bytes. */
  createSession(model: string | Uint8Array, options: OrtSessionOptions): Promise<OrtSession>;
  /** Wraps host data without copying; `type` is ONNX Runtime's element type name ("float32"). */
  tensor(type: string, data: ArrayBufferView, dims: readonly number[]): OrtTensor;
  /** Execution providers this build offers ("cpu", "cuda", "webgpu", ...). */
  backends(): string[];
}

export interface Platform {
  readonly name: string;

  /** The whole file. */
  readFile(path: string): Uint8Array;
  /** Opens a file for positioned reads until `close`. */
  openFile(path: string): RandomAccessFile;
  /** Size and kind, or undefined when nothing exists at `path`. */
  stat(path: string): FileStat | undefined;
  /**
   * Kind, size, device, inode and modification time of what is at `path`, or undefined when
   * nothing is; a final symlink is described itself unless `followLinks`.
   */
  identify(path: string, options?: { followLinks?: boolean }): FileIdentity | undefined;
  /**
   * Creates `path` with `data` only if nothing exists there (O_EXCL): true when created, false when
   * something was already there. Lock files and write probes use it.
   */
  createExclusive(path: string, data: string): boolean;
  /** This process's id (for lock files). */
  readonly pid: number;
  /** Whether a process with this id is running on this machine. */
  processAlive(pid: number): boolean;
  /**
   * A folder for small files kept across runs (the model fingerprints' cache), or undefined where
   * nothing persists.
   */
  cacheDir(): string | undefined;
  /** Names (not paths) of the entries of a folder. */
  listDir(path: string): string[];
  /** The path with links resolved (so two names of one file are recognised as one). */
  realPath(path: string): string;
  makeDir(path: string): void;
  /** Removes a file or folder; nothing happens if it does not exist. */
  remove(path: string): void;
  /**
   * Writes `data` (bytes, UTF-8 text, or chunks written one after another as the iterable yields
   * them, so they need not all be in memory at once) to a temporary file in the same folder,
   * flushes it and renames it over `path`: readers see the old file or the whole new one, never a
   * partial write. `durable: false` skips the flush to disk, for temporary files (default true).
   */
  writeFileAtomic(
    path: string,
    data: Uint8Array | string | Iterable<Uint8Array>,
    options?: { durable?: boolean },
  ): void;
  /**
   * Makes `link` a second name of the file `existing` (a hard link); false where the platform cannot
   * (another filesystem, no links), and the caller then copies.
   */
  linkFile(existing: string, link: string): boolean;

  /** SHA-256 of `bytes`, as lowercase hex (async, as WebCrypto's `digest`). */
  sha256(bytes: Uint8Array): Promise<string>;

  /**
   * A folder for files this process writes and reads back (compiled ONNX models with external
   * data), removed when the process ends.
   */
  tempDir(): string;
  /** A diagnostic for the user (stderr on Node, the console in a browser). */
  warn(message: string): void;
  /** Threads ONNX Runtime may use by default (every CPU the process may use). */
  defaultThreads(): number;
  /** Bytes of memory new allocations may take without swapping (Linux: MemAvailable), or undefined where unknown. */
  availableMemory(): number | undefined;

  /** The ONNX Runtime binding, loaded on first use. */
  ort(): OrtBinding;
}

let current: Platform | undefined;

/**
 * On Node, the Node implementation is imported when this module is first loaded, unless a platform
 * was already set; a browser build sets its own with `setPlatform` before using the library.
 */
const nodeDefault: Platform | undefined =
  typeof (globalThis as { process?: { versions?: { node?: string } } }).process?.versions?.node === "string"
    ? (await import("./node.js")).nodePlatform
    : undefined;

/** The platform in use; on Node the Node one unless another was set. */
export function getPlatform(): Platform {
  const platform = current ?? nodeDefault;
  if (!platform) {
    throw new Error("nulltext: no platform set; call setPlatform() with a browser implementation before use");
  }
  return platform;
}

/** Replaces the platform (a browser implementation, or a test double); returns the previous one. */
export function setPlatform(platform: Platform): Platform | undefined {
  const previous = current ?? nodeDefault;
  current = platform;
  return previous;
}

const FS_ERRORS: Record<string, string> = {
  ENOENT: "nothing exists there",
  EISDIR: "it is a folder",
  ENOTDIR: "a part of the path is not a folder",
  ENOTFILE: "it is not a regular file (a pipe, socket or device)",
  EACCES: "permission denied",
  EPERM: "operation not permitted",
  ELOOP: "too many levels of symbolic links",
  ENAMETOOLONG: "the name is too long",
  EMFILE: "too many open files",
  ENOSPC: "no space left on the device",
  EROFS: "the file system is read-only",
};

/**
 * An error for a file-system failure at `path` that names the path, what went wrong in words and
 * what was expected there (`expected`, e.g. "a safetensors file"); other errors pass unchanged.
 */
export function fileError(error: unknown, path: string, expected: string): Error {
  const reason = fileErrorReason(error);
  if (reason === undefined) return error as Error;
  return Object.assign(new Error(`${path}: ${reason}; expected ${expected} there`), {
    code: (error as { code: string }).code,
  });
}

/** A file-system failure in words with its code ("permission denied (EACCES)"), or undefined for other errors. */
export function fileErrorReason(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code !== "string") return undefined;
  return `${FS_ERRORS[code] ?? (error as Error).message} (${code})`;
}
