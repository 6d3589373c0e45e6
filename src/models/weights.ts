/**
 * Where a model's weights come from: a checkpoint (one or more safetensors files, loaded
 * strictly: every key used, every shape checked, known-ignorable keys skipped on purpose), or
 * fresh arrays initialised as PyTorch does, for training. Model code asks for each weight by its
 * checkpoint key and expected shape; the store hands back a graph weight tensor.
 */

import type { Tensor, WeightSource } from "../graph/index.js";
import * as G from "../graph/index.js";
import { type SafetensorsEntry, SafetensorsFile } from "./safetensors.js";

/** How a fresh weight is initialised (PyTorch's defaults for each layer kind). */
export type Init =
  | { kind: "uniform"; bound: number }
  | { kind: "normal"; std: number }
  | { kind: "constant"; value: number };

export const init = {
  /** nn.Linear / nn.Conv2d weights and biases: U(−1/√fan_in, 1/√fan_in) (kaiming_uniform with a = √5). */
  fanIn: (fanIn: number): Init => ({ kind: "uniform", bound: 1 / Math.sqrt(fanIn) }),
  normal: (std: number): Init => ({ kind: "normal", std }),
  ones: { kind: "constant", value: 1 } as Init,
  zeros: { kind: "constant", value: 0 } as Init,
};

interface Located {
  file: SafetensorsFile;
  entry: SafetensorsEntry;
}

export interface CheckpointOptions {
  /** What these weights are, for messages (e.g. "unet"). */
  component: string;
  /** Maps a key as stored in the file to the model's key (old names, CompVis names); null drops it. */
  rename?: (fileKey: string) => string | null;
  /** Keys in the file that are deliberately unused (e.g. text_model.embeddings.position_ids). */
  ignore?: (modelKey: string) => boolean;
}

export class WeightStore {
  private readonly tensors = new Map<string, Tensor>();
  private readonly used = new Set<string>();

  private constructor(
    readonly component: string,
    private readonly located: Map<string, Located> | null,
    private readonly arrays: Map<string, Float32Array>,
    private readonly trainable: boolean,
    private readonly seed: number,
    private readonly ignore: (key: string) => boolean,
    private readonly frozen: (key: string) => boolean = () => false,
  ) {}

  /** Weights read from safetensors files, referenced in place where possible. */
  static fromCheckpoint(files: readonly string[], options: CheckpointOptions): WeightStore {
    return WeightStore.fromFiles(
      files.map((path) => SafetensorsFile.open(path)),
      options,
    );
  }

  /**
   * Weights of open safetensors files: referenced in place in files on disk, viewed without a copy
   * in files held in memory.
   */
  static fromFiles(files: readonly SafetensorsFile[], options: CheckpointOptions): WeightStore {
    const located = new Map<string, Located>();
    for (const file of files) {
      const path = file.path;
      for (const entry of file.entries.values()) {
        const key = options.rename ? options.rename(entry.name) : entry.name;
        if (key === null) continue;
        const previous = located.get(key);
        if (previous) {
          throw new Error(
            `${options.component}: weight '${key}' appears twice (${previous.file.path}: '${previous.entry.name}', ${path}: '${entry.name}')`,
          );
        }
        located.set(key, { file, entry });
      }
    }
    return new WeightStore(options.component, located, new Map(), false, 0, options.ignore ?? (() => false));
  }

  /**
   * Trainable weights: `arrays` (e.g. a training checkpoint) where given, otherwise fresh values from
   * each layer's PyTorch initialisation, drawn from a generator seeded per key (so adding a layer
   * does not change the others).
   */
  static forTraining(
    component: string,
    seed: number,
    arrays: Map<string, Float32Array> = new Map(),
    options: { frozen?: (key: string) => boolean } = {},
  ): WeightStore {
    return new WeightStore(component, null, arrays, true, seed, () => false, options.frozen);
  }

  /** The weight stored under `key`, which must have `shape`. */
  get(key: string, shape: readonly number[], initialiser: Init): Tensor {
    const cached = this.tensors.get(key);
    if (cached) {
      if (cached.shape.join() !== shape.join()) {
        throw new Error(`${this.component}: '${key}' requested as [${shape}] and as [${cached.shape}]`);
      }
      return cached;
    }
    const t = this.located ? this.fromFile(key, shape) : this.fromArrays(key, shape, initialiser);
    this.tensors.set(key, t);
    this.used.add(key);
    return t;
  }

  private fromFile(key: string, shape: readonly number[]): Tensor {
    const hit = (this.located as Map<string, Located>).get(key);
    if (!hit) {
      const near = [...(this.located as Map<string, Located>).keys()]
        .filter((k) => k.split(".").slice(0, 2).join(".") === key.split(".").slice(0, 2).join("."))
        .slice(0, 5);
      throw new Error(
        `${this.component}: the checkpoint has no weight '${key}' [${shape}]${near.length ? ` (nearby: ${near.join(", ")})` : ""}`,
      );
    }
    const { file, entry } = hit;
    // A size-1 trailing axis may differ (a 1×1 convolution stored for a linear layer, as in old VAE checkpoints).
    const squeeze = (s: readonly number[]) => {
      const out = [...s];
      while (out.length > 1 && out[out.length - 1] === 1) out.pop();
      return out.join();
    };
    if (entry.shape.join() !== shape.join() && squeeze(entry.shape) !== squeeze(shape)) {
      throw new Error(
        `${this.component}: weight '${key}' in ${file.path} has shape [${entry.shape}], the model config implies [${shape}]`,
      );
    }
    let source: WeightSource;
    const inMemory = (entry.dtype === "F32" || entry.dtype === "F16") && file.inMemory;
    if (inMemory) {
      source = { kind: "array", data: memoryWeight(file, entry) };
    } else if (entry.dtype === "F32" || entry.dtype === "F16") {
      source = {
        kind: "file",
        path: file.path,
        offset: entry.offset,
        byteLength: entry.byteLength,
        dtype: entry.dtype === "F32" ? "float32" : "float16",
      };
    } else if (entry.dtype === "BF16" || entry.dtype === "F64") {
      source = { kind: "array", data: file.readFloat32(entry.name) };
    } else {
      throw new Error(
        `${this.component}: weight '${key}' in ${file.path} is ${entry.dtype}; expected F32, F16 or BF16`,
      );
    }
    return G.weight(key, shape, source, { dtype: "float32" });
  }

  private fromArrays(key: string, shape: readonly number[], initialiser: Init): Tensor {
    const n = shape.reduce((a, b) => a * b, 1);
    let data = this.arrays.get(key);
    if (data) {
      if (data.length !== n)
        throw new Error(`${this.component}: '${key}' has ${data.length} values, [${shape}] needs ${n}`);
    } else {
      data = initialise(initialiser, n, hashSeed(this.seed, key));
      this.arrays.set(key, data);
    }
    return G.weight(key, shape, data, { trainable: this.trainable && !this.frozen(key) });
  }

  /** Checkpoint keys the model did not ask for (besides the ignorable ones): an error, as a strict loader. */
  finish(): void {
    if (!this.located) return;
    const unused = [...this.located.keys()].filter((k) => !this.used.has(k) && !this.ignore(k));
    if (unused.length) {
      const first = this.located.get(unused[0] as string) as Located;
      throw new Error(
        `${this.component}: ${unused.length} weight(s) in ${first.file.path} are not used by the model built from its config: ${unused.slice(0, 8).join(", ")}${unused.length > 8 ? ", ..." : ""}`,
      );
    }
  }

  /** Every weight this store created, by key (the trainable arrays, for optimisers and checkpoints). */
  trainableArrays(): Map<string, Float32Array> {
    return this.arrays;
  }

  /** The weights that get gradients (in a training store, all but the frozen ones), by key. */
  trainableTensors(): Map<string, Tensor> {
    return new Map([...this.tensors].filter(([, t]) => t.leaf?.kind === "weight" && t.leaf.trainable));
  }

  /** The weight tensors requested so far, by key. */
  weightTensors(): Map<string, Tensor> {
    return this.tensors;
  }
}

/** An F32 or F16 tensor of a file in memory as a typed array on its bytes (copied only if misaligned). */
function memoryWeight(file: SafetensorsFile, entry: SafetensorsEntry): Float32Array | Uint16Array {
  const raw = file.viewRaw(entry.name) as Uint8Array;
  const size = entry.dtype === "F32" ? 4 : 2;
  const bytes = raw.byteOffset % size === 0 ? raw : raw.slice();
  const count = bytes.byteLength / size;
  return size === 4
    ? new Float32Array(bytes.buffer, bytes.byteOffset, count)
    : new Uint16Array(bytes.buffer, bytes.byteOffset, count);
}

function hashSeed(seed: number, key: string): number {
  let h = (seed ^ 0x9e3779b9) >>> 0;
  for (let i = 0; i < key.length; i++) h = Math.imul(h ^ key.charCodeAt(i), 0x01000193) >>> 0;
  return h;
}

function initialise(i: Init, n: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  if (i.kind === "constant") return out.fill(i.value);
  let a = seed >>> 0;
  const uniform = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  for (let k = 0; k < n; k++) {
    if (i.kind === "uniform") out[k] = (2 * uniform() - 1) * i.bound;
    else out[k] = i.std * Math.sqrt(-2 * Math.log(1 - uniform())) * Math.cos(2 * Math.PI * uniform());
  }
  return out;
}
