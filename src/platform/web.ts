/**
 * A platform for browsers (and other hosts without `node:*`): files live in memory, under paths the
 * page chooses (fetched weights, uploads), SHA-256 comes from WebCrypto, and ONNX Runtime is the
 * module the page passes in (onnxruntime-web; its `InferenceSession` and `Tensor` are all that is
 * used), so this file imports neither. A model compiled with external data is handed to ONNX Runtime
 * as bytes with its data files alongside (`externalData`), since a browser session cannot open paths.
 *
 *   import * as ort from "onnxruntime-web";
 *   setPlatform(createWebPlatform({ ort, files: { "/sd/unet/config.json": bytes, ... } }));
 *   const sd = await loadStableDiffusion("/sd");
 */
import { baseName, dirName, joinPath } from "../util/paths.js";
import type { OrtBinding, OrtSession, OrtSessionOptions, OrtTensor, Platform, RandomAccessFile } from "./platform.js";

/** The part of onnxruntime-web (or any onnxruntime-common binding) this platform calls. */
export interface OrtModule {
  InferenceSession: {
    create(
      model: Uint8Array,
      options?: OrtSessionOptions & { externalData?: { path: string; data: Uint8Array }[] },
    ): Promise<unknown>;
  };
  Tensor: new (type: never, data: never, dims: readonly number[]) => unknown;
}

export interface WebPlatformOptions {
  ort: OrtModule;
  /** Files to start with, by absolute path ("/models/sd/unet/config.json"). */
  files?: Readonly<Record<string, Uint8Array>>;
  /** Execution providers the ORT build offers (default cpu, wasm, webgpu). */
  backends?: readonly string[];
  /** Default ONNX Runtime threads (default `navigator.hardwareConcurrency`, else 1). */
  threads?: number;
}

/** A platform over an in-memory file tree, WebCrypto and the given ONNX Runtime module. */
export function createWebPlatform(options: WebPlatformOptions): Platform {
  const files = new Map<string, Uint8Array>();
  for (const [path, bytes] of Object.entries(options.files ?? {})) files.set(joinPath(path), bytes);
  const dirs = new Set<string>(["/"]);
  const addDirs = (path: string) => {
    for (let d = dirName(path); !dirs.has(d); d = dirName(d)) dirs.add(d);
  };
  for (const path of files.keys()) addDirs(path);

  const missing = (path: string) =>
    Object.assign(new Error(`ENOENT: no such file, '${path}'`), { code: "ENOENT" as const });
  const get = (path: string) => {
    const bytes = files.get(joinPath(path));
    if (!bytes) throw missing(path);
    return bytes;
  };

  const openFile = (path: string): RandomAccessFile => {
    const bytes = get(path);
    let open = true;
    return {
      path,
      size: bytes.byteLength,
      read(offset, length, what = path) {
        if (!open) throw new Error(`${what}: cannot read: the file was closed`);
        if (offset + length > bytes.byteLength) {
          const got = Math.max(0, bytes.byteLength - offset);
          throw new Error(`${what}: the file ended after ${got} of ${length} bytes at offset ${offset}`);
        }
        return bytes.slice(offset, offset + length);
      },
      close() {
        open = false;
      },
    };
  };

  // Two names of one byte array (linkFile) are one file: the array's identity is its inode.
  const inodes = new WeakMap<Uint8Array, number>();
  let lastInode = 0;
  const inode = (bytes: Uint8Array): number => {
    const known = inodes.get(bytes);
    if (known !== undefined) return known;
    lastInode += 1;
    inodes.set(bytes, lastInode);
    return lastInode;
  };

  let binding: OrtBinding | undefined;
  const ort = (): OrtBinding => {
    if (binding) return binding;
    const lib = options.ort;
    binding = {
      name: "onnxruntime-web",
      async createSession(model, sessionOptions) {
        if (typeof model !== "string") return (await lib.InferenceSession.create(model, sessionOptions)) as OrtSession;
        // Every other file of the model's folder may hold its external data.
        const folder = `${dirName(joinPath(model))}/`;
        const externalData = [...files]
          .filter(([p]) => p.startsWith(folder) && p !== joinPath(model) && !p.slice(folder.length).includes("/"))
          .map(([p, data]) => ({ path: baseName(p), data }));
        return (await lib.InferenceSession.create(get(model), { ...sessionOptions, externalData })) as OrtSession;
      },
      tensor: (type, data, dims) => new lib.Tensor(type as never, data as never, dims) as OrtTensor,
      backends: () => [...(options.backends ?? ["cpu", "wasm", "webgpu"])],
    };
    return binding;
  };

  const concat = (chunks: Iterable<Uint8Array>): Uint8Array => {
    const list = [...chunks];
    const out = new Uint8Array(list.reduce((n, c) => n + c.byteLength, 0));
    let at = 0;
    for (const c of list) {
      out.set(c, at);
      at += c.byteLength;
    }
    return out;
  };

  return {
    name: "web",
    readFile: (path) => get(path),
    openFile,
    stat: (path) => {
      const p = joinPath(path);
      const bytes = files.get(p);
      if (bytes) return { size: bytes.byteLength, isDirectory: false };
      return dirs.has(p) ? { size: 0, isDirectory: true } : undefined;
    },
    identify: (path) => {
      const p = joinPath(path);
      const bytes = files.get(p);
      if (bytes) return { kind: "file", size: bytes.byteLength, dev: 0, ino: inode(bytes), mtimeMs: 0 };
      return dirs.has(p) ? { kind: "directory", size: 0, dev: 0, ino: 0, mtimeMs: 0 } : undefined;
    },
    createExclusive: (path, data) => {
      const p = joinPath(path);
      if (files.has(p) || dirs.has(p)) return false;
      if (!dirs.has(dirName(p))) throw missing(dirName(p));
      files.set(p, new TextEncoder().encode(data));
      return true;
    },
    // One page is one process: its locks are its own.
    pid: 1,
    processAlive: (pid) => pid === 1,
    cacheDir: () => undefined,
    listDir: (path) => {
      const p = joinPath(path);
      if (!dirs.has(p)) throw missing(path);
      const prefix = p === "/" ? "/" : `${p}/`;
      const names = new Set<string>();
      for (const entry of [...files.keys(), ...dirs]) {
        if (entry.startsWith(prefix) && entry !== p) names.add(entry.slice(prefix.length).split("/")[0] as string);
      }
      return [...names].sort();
    },
    realPath: (path) => joinPath(path),
    makeDir: (path) => {
      const p = joinPath(path);
      dirs.add(p);
      addDirs(p);
    },
    remove: (path) => {
      const p = joinPath(path);
      files.delete(p);
      for (const f of [...files.keys()]) if (f.startsWith(`${p}/`)) files.delete(f);
      for (const d of [...dirs]) if (d === p || d.startsWith(`${p}/`)) dirs.delete(d);
    },
    // A replacement in memory is atomic by nature.
    writeFileAtomic: (path, data) => {
      const p = joinPath(path);
      if (!dirs.has(dirName(p))) throw missing(dirName(p));
      files.set(
        p,
        typeof data === "string"
          ? new TextEncoder().encode(data)
          : data instanceof Uint8Array
            ? data.slice()
            : concat(data),
      );
    },
    // Two names of one byte array.
    linkFile: (existing, link) => {
      files.set(joinPath(link), get(existing));
      return true;
    },
    sha256: async (bytes) => {
      const digest = new Uint8Array(await globalThis.crypto.subtle.digest("SHA-256", bytes as Uint8Array<ArrayBuffer>));
      return [...digest].map((b) => b.toString(16).padStart(2, "0")).join("");
    },
    tempDir: () => "/tmp/nulltext-onnx",
    warn: (message) => console.warn(message),
    defaultThreads: () =>
      options.threads ??
      (globalThis as { navigator?: { hardwareConcurrency?: number } }).navigator?.hardwareConcurrency ??
      1,
    // a page cannot see the machine's free memory (navigator.deviceMemory is a rounded total)
    availableMemory: () => undefined,
    ort,
  };
}
