/**
 * Loading a Stable Diffusion model: a diffusers folder (`model_index.json` and one folder per
 * component), with float32 or float16 weights (`*.fp16.safetensors` variants, sharded files), or a
 * single CompVis-format checkpoint (as `v1-5-pruned-emaonly.safetensors`) through a key mapping.
 * Either may be a path, bytes in memory, or (a folder) files behind byte-range readers (URLs).
 */
import { type ByteRangeReader, fileError, getPlatform } from "../platform/platform.js";
import { type DDIMConfig, parseDDIMConfig } from "../schedulers/ddim.js";
import { concatBytes } from "../util/bytes.js";
import { baseName, dirName, joinPath } from "../util/paths.js";
import { type CLIPTextConfig, CLIPTextModel, parseCLIPTextConfig } from "./clip_text.js";
import { ClipTokenizer } from "./clip_tokenizer.js";
import { parseJson } from "./config.js";
import { decodeFloat32, firstNonFinite, SAFETENSORS_DTYPE_BYTES, SafetensorsFile } from "./safetensors.js";
import { compVisKeyMapper, inferSingleFileConfigs } from "./single_file.js";
import { parseUNetConfig, type UNet2DConditionConfig, UNet2DConditionModel } from "./unet.js";
import { AutoencoderKL, type AutoencoderKLConfig, parseVAEConfig, renameOldVAEAttention } from "./vae.js";
import { WeightStore } from "./weights.js";

export interface StableDiffusion {
  /** Where it was loaded from (a path, or the name given to an in-memory or remote source). */
  source: string;
  tokenizer: ClipTokenizer;
  textEncoder: CLIPTextModel;
  unet: UNet2DConditionModel;
  vae: AutoencoderKL;
  scheduler: DDIMConfig;
  /**
   * Identifies the weights and configs (for inversion files and resume state): a hash of the
   * configs and of every checkpoint's header and tensor bytes, the same whether the model was read
   * from a path, from bytes or from a reader (see FingerprintInput).
   */
  fingerprint: string;
}

/** A diffusers folder in memory: each file's bytes by its path in the folder ("unet/config.json"). */
export interface InMemoryFolder {
  files: Readonly<Record<string, Uint8Array>>;
  /** For messages and `StableDiffusion.source` (default "<memory>"). */
  name?: string;
}

/**
 * A diffusers folder whose files are fetched by range (a browser backs `open` with HTTP Range
 * requests to `<base URL>/<path>`). The small files (configs, tokenizer) are read whole; the
 * safetensors header is validated before its data is fetched.
 */
export interface RemoteFolder {
  name: string;
  /** Paths in the folder ("unet/diffusion_pytorch_model.safetensors"), as the Hub's file listing gives them. */
  files: readonly string[];
  open(path: string): ByteRangeReader;
}

/** Where a model comes from: a path (folder or .safetensors), a single-file checkpoint's bytes, or a folder's files. */
export type ModelSource = string | Uint8Array | InMemoryFolder | RemoteFolder;

export interface LoadOptions {
  /** Prefer `<name>.<variant>.safetensors` files (e.g. "fp16"), falling back to the plain ones. */
  variant?: string;
  /** For single-file checkpoints: a diffusers folder whose configs (and tokenizer) to use. */
  configFrom?: string | InMemoryFolder;
  /** For a single-file checkpoint given as bytes: its name in messages (default "<memory>.safetensors"). */
  name?: string;
  /**
   * Run the DDIM scheduler with this `steps_offset`. Default: 1, as diffusers' pipelines rewrite
   * any other value of the config to 1 (with a deprecation warning, since diffusers 0.4; the
   * official null-text notebook's scheduler, steps_offset 0, runs as 1). Give the config's value
   * to run it as written.
   */
  stepsOffset?: number;
}

const COMPONENT_CLASSES: Record<string, string[]> = {
  text_encoder: ["CLIPTextModel"],
  tokenizer: ["CLIPTokenizer", "CLIPTokenizerFast"],
  unet: ["UNet2DConditionModel"],
  vae: ["AutoencoderKL"],
  scheduler: [
    "DDIMScheduler",
    "PNDMScheduler",
    "LMSDiscreteScheduler",
    "EulerDiscreteScheduler",
    "EulerAncestralDiscreteScheduler",
    "DPMSolverMultistepScheduler",
    "DDPMScheduler",
  ],
};

/**
 * Loads a diffusers folder or a single `.safetensors` checkpoint, from a path, from memory
 * (`{ files }` for a folder, a `Uint8Array` for a checkpoint) or from byte-range readers.
 */
export async function loadStableDiffusion(source: ModelSource, options: LoadOptions = {}): Promise<StableDiffusion> {
  if (source instanceof Uint8Array) {
    const name = options.name ?? "<memory>.safetensors";
    return loadSingleFile(SafetensorsFile.fromBytes(source, name), options);
  }
  if (typeof source !== "string") {
    const folder = "open" in source ? await remoteFolder(source) : memoryFolder(source);
    return loadFolder(folder, options);
  }
  const stat = getPlatform().stat(source);
  if (!stat) {
    throw new Error(`model: ${source} does not exist (expected a diffusers folder or a .safetensors checkpoint)`);
  }
  if (stat.isDirectory) return loadFolder(localFolder(source), options);
  if (source.endsWith(".ckpt") || source.endsWith(".bin") || source.endsWith(".pt")) {
    throw new Error(
      `model: ${source} is a PyTorch pickle; only .safetensors checkpoints are read (pickles can run code)`,
    );
  }
  return loadSingleFile(SafetensorsFile.open(source), options);
}

/** A diffusers folder, wherever its files are; paths are relative to it ("unet/config.json"). */
interface ModelFolder {
  /** The folder's path or name, for messages. */
  readonly name: string;
  has(path: string): boolean;
  /** Names of the entries of a subfolder ([] if there is none). */
  list(dir: string): string[];
  /** A text file's contents; fails naming the file when it is missing. */
  text(path: string, what: string): string;
  safetensors(path: string): Promise<SafetensorsFile>;
}

function localFolder(dir: string): ModelFolder {
  const platform = getPlatform();
  const at = (p: string) => joinPath(dir, p);
  return {
    name: dir,
    has: (p) => platform.stat(at(p)) !== undefined,
    list: (p) => (platform.stat(at(p))?.isDirectory ? platform.listDir(at(p)) : []),
    text: (p, what) => {
      if (!platform.stat(at(p))) throw new Error(`${what}: cannot read ${at(p)} (missing)`);
      try {
        return new TextDecoder().decode(platform.readFile(at(p)));
      } catch (error) {
        throw fileError(error, at(p), `the ${what}'s ${baseName(p)} (a text file)`);
      }
    },
    safetensors: async (p) => SafetensorsFile.open(at(p)),
  };
}

function memoryFolder(source: InMemoryFolder): ModelFolder {
  const name = source.name ?? "<memory>";
  const files = new Map(Object.entries(source.files).map(([p, bytes]) => [joinPath(p), bytes]));
  const get = (p: string, what: string) => {
    const bytes = files.get(joinPath(p));
    if (!bytes) throw new Error(`${what}: cannot read ${joinPath(name, p)} (missing)`);
    return bytes;
  };
  return {
    name,
    has: (p) => files.has(joinPath(p)),
    list: (dir) => {
      const prefix = `${joinPath(dir)}/`;
      return [...files.keys()]
        .filter((p) => p.startsWith(prefix))
        .map((p) => p.slice(prefix.length).split("/")[0] as string);
    },
    text: (p, what) => new TextDecoder().decode(get(p, what)),
    safetensors: async (p) => SafetensorsFile.fromBytes(get(p, "model"), joinPath(name, p)),
  };
}

/** The small files of a remote folder are fetched up front, so that reading configs needs no network. */
async function remoteFolder(source: RemoteFolder): Promise<ModelFolder> {
  const small: Record<string, Uint8Array> = {};
  for (const p of source.files) {
    if (!/\.(json|txt)$/.test(p)) continue;
    const reader = source.open(p);
    small[p] = await reader.read(0, await reader.size());
  }
  const folder = memoryFolder({ files: small, name: source.name });
  const listed = new Set(source.files.map((p) => joinPath(p)));
  return {
    ...folder,
    has: (p) => listed.has(joinPath(p)),
    list: (dir) => {
      const prefix = `${joinPath(dir)}/`;
      return [...listed].filter((p) => p.startsWith(prefix)).map((p) => p.slice(prefix.length).split("/")[0] as string);
    },
    safetensors: (p) => SafetensorsFile.fromReader(source.open(p)),
  };
}

function folderJson(folder: ModelFolder, path: string, what: string): unknown {
  return parseJson(folder.text(path, what), joinPath(folder.name, path), what);
}

/** Bump when what the fingerprint covers changes (cached digests of another scheme are not used). */
const FINGERPRINT_SCHEME = "nulltext-fingerprint-2";
/** Tensors are hashed in pieces of at most this many bytes (the same pieces from a path, bytes or a reader). */
const PIECE_BYTES = 64 * 2 ** 20;

/**
 * The fingerprint's input, in order: the configs (as UTF-8) and, per checkpoint file, a digest of
 * its header and of every tensor's bytes. Each file's bytes are read once, in pieces, and scanned
 * for NaN and ±Inf on the way (refused naming the file and the tensor). A file on disk's digest is
 * cached under the platform's cache folder keyed by its real path, size, mtime and inode, so a
 * second load of unchanged weights reads none of their bytes.
 */
class FingerprintInput {
  private readonly parts: Uint8Array[] = [];

  add(part: string | Uint8Array): this {
    this.parts.push(typeof part === "string" ? new TextEncoder().encode(part) : part);
    return this;
  }

  async addCheckpoint(file: SafetensorsFile): Promise<void> {
    this.add(`${baseName(file.path)} ${file.size} ${await checkpointDigest(file)}\n`);
  }

  async digest(): Promise<string> {
    return (
      await getPlatform().sha256(concatBytes([new TextEncoder().encode(FINGERPRINT_SCHEME), ...this.parts]))
    ).slice(0, 32);
  }
}

/** A checkpoint's digest from the cache (file on disk, unchanged) or computed (and then cached). */
async function checkpointDigest(file: SafetensorsFile): Promise<string> {
  const platform = getPlatform();
  const cache = file.inMemory ? undefined : digestCacheEntry(file.path);
  if (cache) {
    try {
      const stored = JSON.parse(new TextDecoder().decode(platform.readFile(cache.path))) as Record<string, unknown>;
      if (stored.key === cache.key && typeof stored.digest === "string") return stored.digest;
    } catch {
      // no cache entry yet, or an unreadable one: computed below
    }
  }
  const digest = await hashCheckpoint(file);
  if (cache) {
    try {
      platform.makeDir(dirName(cache.path));
      platform.writeFileAtomic(cache.path, JSON.stringify({ key: cache.key, digest }), { durable: false });
    } catch {
      // A cache that cannot be written (read-only home) costs the next load the hash, nothing else.
    }
  }
  return digest;
}

/** Where a file's digest is cached and the key it must match (its identity now). */
function digestCacheEntry(path: string): { path: string; key: string } | undefined {
  const platform = getPlatform();
  const dir = platform.cacheDir();
  const id = platform.identify(path, { followLinks: true });
  if (!dir || !id) return undefined;
  const real = platform.realPath(path);
  const key = `${FINGERPRINT_SCHEME} ${real} size=${id.size} mtime=${id.mtimeMs} dev=${id.dev} ino=${id.ino}`;
  // The file name only spreads entries; the key inside decides.
  let h = 0x811c9dc5;
  for (let i = 0; i < real.length; i++) h = Math.imul(h ^ real.charCodeAt(i), 0x01000193) >>> 0;
  const name = `${baseName(real).replace(/[^\w.-]/g, "_")}-${h.toString(16).padStart(8, "0")}.json`;
  return { path: joinPath(dir, "fingerprints", name), key };
}

/**
 * sha256 of the file's header bytes and of each tensor's bytes, in pieces of PIECE_BYTES within each
 * tensor; every float tensor is scanned for NaN/±Inf in the same pass.
 */
async function hashCheckpoint(file: SafetensorsFile): Promise<string> {
  const platform = getPlatform();
  const entries = [...file.entries.values()].sort((a, b) => a.offset - b.offset);
  const dataStart = entries.length ? Math.min(...entries.map((e) => e.offset)) : file.size;
  const digests: string[] = [await platform.sha256(file.readBytes(0, dataStart))];
  for (const entry of entries) {
    const element = SAFETENSORS_DTYPE_BYTES[entry.dtype];
    const piece = Math.floor(PIECE_BYTES / element) * element;
    for (let at = 0; at < entry.byteLength; at += piece) {
      const length = Math.min(piece, entry.byteLength - at);
      const bytes = file.readBytes(entry.offset + at, length);
      const bad = firstNonFinite(entry.dtype, bytes);
      if (bad >= 0) {
        const index = at / element + bad;
        const value = decodeFloat32(entry.dtype, bytes.slice(bad * element, (bad + 1) * element))[0];
        throw new Error(
          `${file.path}: tensor '${entry.name}' holds ${value} at element ${index}: the weights are damaged (NaN and ±Inf are refused at load)`,
        );
      }
      digests.push(await platform.sha256(bytes));
    }
  }
  return (await platform.sha256(new TextEncoder().encode(digests.join("\n")))).slice(0, 32);
}

async function loadFolder(folder: ModelFolder, options: LoadOptions): Promise<StableDiffusion> {
  const dir = folder.name;
  const index = folderJson(folder, "model_index.json", "model") as Record<string, unknown>;
  for (const [component, classes] of Object.entries(COMPONENT_CLASSES)) {
    const entry = index[component];
    if (!Array.isArray(entry) || typeof entry[1] !== "string") {
      throw new Error(`model: ${joinPath(dir, "model_index.json")} has no '${component}' component`);
    }
    if (!classes.includes(entry[1])) {
      throw new Error(`model: ${component} is a ${entry[1]}; supported: ${classes.join(", ")}`);
    }
  }
  const hash = new FingerprintInput();
  const config = <T>(component: string, file: string, parse: (json: unknown, file: string) => T): T => {
    const p = joinPath(component, file);
    const json = folderJson(folder, p, component);
    hash.add(`${component}/${file}\n${JSON.stringify(json)}\n`);
    return parse(json, joinPath(dir, p));
  };
  const textConfig = config("text_encoder", "config.json", parseCLIPTextConfig);
  const unetConfig = config("unet", "config.json", parseUNetConfig);
  const vaeConfig = config("vae", "config.json", parseVAEConfig);
  const scheduler = config("scheduler", "scheduler_config.json", (j, f) =>
    parseSchedulerForPipeline(j, f, options.stepsOffset),
  );
  const tokenizer = await ClipTokenizer.fromFiles(joinPath(dir, "tokenizer"), async (name) => {
    const p = joinPath("tokenizer", name);
    return folder.has(p) ? folder.text(p, "tokenizer") : undefined;
  });

  const weights = async (component: string, base: string) => {
    const files: SafetensorsFile[] = [];
    for (const p of findWeightFiles(folder, component, base, options.variant)) {
      const file = await folder.safetensors(p);
      await hash.addCheckpoint(file);
      files.push(file);
    }
    return files;
  };
  const textStore = WeightStore.fromFiles(await weights("text_encoder", "model"), {
    component: "text_encoder",
    ignore: (k) => k === "text_model.embeddings.position_ids",
  });
  const unetStore = WeightStore.fromFiles(await weights("unet", "diffusion_pytorch_model"), { component: "unet" });
  const vaeStore = WeightStore.fromFiles(await weights("vae", "diffusion_pytorch_model"), {
    component: "vae",
    rename: renameOldVAEAttention,
  });
  return assemble(
    dir,
    tokenizer,
    textConfig,
    unetConfig,
    vaeConfig,
    scheduler,
    { textStore, unetStore, vaeStore },
    await hash.digest(),
  );
}

function assemble(
  source: string,
  tokenizer: ClipTokenizer,
  textConfig: CLIPTextConfig,
  unetConfig: UNet2DConditionConfig,
  vaeConfig: AutoencoderKLConfig,
  scheduler: DDIMConfig,
  stores: { textStore: WeightStore; unetStore: WeightStore; vaeStore: WeightStore },
  fingerprint: string,
): StableDiffusion {
  const textEncoder = new CLIPTextModel(stores.textStore, textConfig);
  stores.textStore.finish();
  const unet = new UNet2DConditionModel(stores.unetStore, unetConfig);
  stores.unetStore.finish();
  const vae = new AutoencoderKL(stores.vaeStore, vaeConfig);
  stores.vaeStore.finish();
  if (unet.crossAttentionDim !== textConfig.hidden_size) {
    throw new Error(
      `model: the UNet's cross_attention_dim ${unet.crossAttentionDim} ≠ the text encoder's hidden_size ${textConfig.hidden_size}`,
    );
  }
  if (unetConfig.in_channels !== vaeConfig.latent_channels) {
    throw new Error(
      `model: the UNet takes ${unetConfig.in_channels} channels, the VAE makes ${vaeConfig.latent_channels}`,
    );
  }
  if (tokenizer.vocabSize > textConfig.vocab_size) {
    throw new Error(
      `model: the tokenizer has ${tokenizer.vocabSize} tokens, the text encoder ${textConfig.vocab_size}`,
    );
  }
  return { source, tokenizer, textEncoder, unet, vae, scheduler, fingerprint };
}

/**
 * The scheduler as StableDiffusionPipeline uses it: diffusers' pipeline replaces an outdated
 * `steps_offset` ≠ 1 (with a warning, as diffusers gives) and `clip_sample: true` (latents are not
 * in [−1, 1]) with the SD values. `stepsOffset` (LoadOptions) runs the given offset instead.
 */
function parseSchedulerForPipeline(json: unknown, file: string, stepsOffset?: number): DDIMConfig {
  const c = parseDDIMConfig(json, file);
  if (stepsOffset === undefined && c.steps_offset !== 1) {
    getPlatform().warn(
      `${file}: steps_offset is ${c.steps_offset}; running it as 1, as diffusers' pipelines do ` +
        `(pass stepsOffset: ${c.steps_offset}, or --steps-offset ${c.steps_offset}, to run the scheduler as written)`,
    );
  }
  return { ...c, steps_offset: stepsOffset ?? 1, clip_sample: false };
}

/** The safetensors file(s) of a component: plain, variant, or sharded with an index. */
export function weightFiles(dir: string, base: string, variant?: string): string[] {
  return findWeightFiles(localFolder(dir), "", base, variant).map((p) => joinPath(dir, p));
}

/** The paths in `folder` of a component's safetensors file(s). */
function findWeightFiles(folder: ModelFolder, component: string, base: string, variant?: string): string[] {
  const candidates = variant ? [`${base}.${variant}`, base] : [base, `${base}.fp16`];
  const dir = joinPath(folder.name, component);
  for (const name of candidates) {
    const single = joinPath(component, `${name}.safetensors`);
    if (folder.has(single)) return [single];
    const index = joinPath(component, `${name}.safetensors.index.json`);
    if (folder.has(index)) {
      const map = (folderJson(folder, index, dir) as { weight_map?: Record<string, string> }).weight_map;
      if (!map) throw new Error(`${joinPath(folder.name, index)}: no weight_map`);
      return [...new Set(Object.values(map))].map((f) => joinPath(component, f));
    }
  }
  const pickles = folder.list(component).filter((f) => /\.(bin|ckpt|pt)$/.test(f));
  throw new Error(
    `model: no ${base}.safetensors in ${dir}${pickles.length ? ` (found ${pickles.join(", ")}: convert PyTorch pickles to safetensors first)` : ""}`,
  );
}

async function loadSingleFile(file: SafetensorsFile, options: LoadOptions): Promise<StableDiffusion> {
  const hash = new FingerprintInput();
  await hash.addCheckpoint(file);
  const inferred = inferSingleFileConfigs(file);
  let textConfig = inferred.text;
  let unetConfig = inferred.unet;
  let vaeConfig = inferred.vae;
  let scheduler = { ...inferred.scheduler, steps_offset: options.stepsOffset ?? inferred.scheduler.steps_offset };
  let tokenizerFolder = localFolder(
    joinPath(dirName(new URL(import.meta.url).pathname), "..", "..", "models", "nulltext-shapes"),
  );
  if (options.configFrom) {
    const folder =
      typeof options.configFrom === "string" ? localFolder(options.configFrom) : memoryFolder(options.configFrom);
    const read = <T>(p: string, parse: (j: unknown, f: string) => T) =>
      parse(folderJson(folder, p, "config"), joinPath(folder.name, p));
    textConfig = read("text_encoder/config.json", parseCLIPTextConfig);
    unetConfig = read("unet/config.json", parseUNetConfig);
    vaeConfig = read("vae/config.json", parseVAEConfig);
    scheduler = read("scheduler/scheduler_config.json", (j, f) => parseSchedulerForPipeline(j, f, options.stepsOffset));
    tokenizerFolder = folder;
  }
  hash.add(JSON.stringify({ textConfig, unetConfig, vaeConfig, scheduler }));
  const tokenizer = await ClipTokenizer.fromFiles(joinPath(tokenizerFolder.name, "tokenizer"), async (name) => {
    const p = joinPath("tokenizer", name);
    return tokenizerFolder.has(p) ? tokenizerFolder.text(p, "tokenizer") : undefined;
  });
  const mapper = compVisKeyMapper(unetConfig, vaeConfig);
  const store = (component: "text_encoder" | "unet" | "vae") =>
    WeightStore.fromFiles([file], {
      component: `${component} (from ${baseName(file.path)})`,
      rename: (key) => {
        const mapped = mapper(key);
        return mapped && mapped.component === component ? mapped.key : null;
      },
      ignore: (k) => k === "text_model.embeddings.position_ids",
    });
  return assemble(
    file.path,
    tokenizer,
    textConfig,
    unetConfig,
    vaeConfig,
    scheduler,
    {
      textStore: store("text_encoder"),
      unetStore: store("unet"),
      vaeStore: store("vae"),
    },
    await hash.digest(),
  );
}
