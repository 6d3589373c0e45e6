/**
 * Loading a Stable Diffusion model: a diffusers folder (`model_index.json` and one folder per
 * component), with float32 or float16 weights (`*.fp16.safetensors` variants, sharded files), or a
 * single CompVis-format checkpoint (as `v1-5-pruned-emaonly.safetensors`) through a key mapping.
 */
import { createHash } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { type DDIMConfig, parseDDIMConfig } from "../schedulers/ddim.js";
import { type CLIPTextConfig, CLIPTextModel, parseCLIPTextConfig } from "./clip_text.js";
import { ClipTokenizer } from "./clip_tokenizer.js";
import { readJson } from "./config.js";
import { compVisKeyMapper, inferSingleFileConfigs } from "./single_file.js";
import { parseUNetConfig, type UNet2DConditionConfig, UNet2DConditionModel } from "./unet.js";
import { AutoencoderKL, type AutoencoderKLConfig, parseVAEConfig, renameOldVAEAttention } from "./vae.js";
import { WeightStore } from "./weights.js";

export interface StableDiffusion {
  /** Where it was loaded from. */
  source: string;
  tokenizer: ClipTokenizer;
  textEncoder: CLIPTextModel;
  unet: UNet2DConditionModel;
  vae: AutoencoderKL;
  scheduler: DDIMConfig;
  /** Identifies the weights and configs (for inversion files): a hash of configs and checkpoint headers. */
  fingerprint: string;
}

export interface LoadOptions {
  /** Prefer `<name>.<variant>.safetensors` files (e.g. "fp16"), falling back to the plain ones. */
  variant?: string;
  /** For single-file checkpoints: a diffusers folder whose configs (and tokenizer) to use. */
  configFrom?: string;
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

/** Loads a diffusers folder or a single `.safetensors` checkpoint. */
export async function loadStableDiffusion(source: string, options: LoadOptions = {}): Promise<StableDiffusion> {
  let stat: fs.Stats;
  try {
    stat = fs.statSync(source);
  } catch {
    throw new Error(`model: ${source} does not exist (expected a diffusers folder or a .safetensors checkpoint)`);
  }
  if (stat.isDirectory()) return loadFolder(source, options);
  if (source.endsWith(".ckpt") || source.endsWith(".bin") || source.endsWith(".pt")) {
    throw new Error(
      `model: ${source} is a PyTorch pickle; only .safetensors checkpoints are read (pickles can run code)`,
    );
  }
  return loadSingleFile(source, options);
}

async function loadFolder(dir: string, options: LoadOptions): Promise<StableDiffusion> {
  const index = readJson(path.join(dir, "model_index.json"), "model") as Record<string, unknown>;
  for (const [component, classes] of Object.entries(COMPONENT_CLASSES)) {
    const entry = index[component];
    if (!Array.isArray(entry) || typeof entry[1] !== "string") {
      throw new Error(`model: ${path.join(dir, "model_index.json")} has no '${component}' component`);
    }
    if (!classes.includes(entry[1])) {
      throw new Error(`model: ${component} is a ${entry[1]}; supported: ${classes.join(", ")}`);
    }
  }
  const hash = createHash("sha256");
  const config = <T>(component: string, file: string, parse: (json: unknown, file: string) => T): T => {
    const p = path.join(dir, component, file);
    const json = readJson(p, component);
    hash.update(`${component}/${file}\n${JSON.stringify(json)}\n`);
    return parse(json, p);
  };
  const textConfig = config("text_encoder", "config.json", parseCLIPTextConfig);
  const unetConfig = config("unet", "config.json", parseUNetConfig);
  const vaeConfig = config("vae", "config.json", parseVAEConfig);
  const scheduler = config("scheduler", "scheduler_config.json", parseSchedulerForPipeline);
  const tokenizer = await ClipTokenizer.fromFolder(path.join(dir, "tokenizer"));

  const weights = (component: string, base: string) => {
    const files = weightFiles(path.join(dir, component), base, options.variant);
    for (const f of files) hashCheckpoint(hash, f);
    return files;
  };
  const textStore = WeightStore.fromCheckpoint(weights("text_encoder", "model"), {
    component: "text_encoder",
    ignore: (k) => k === "text_model.embeddings.position_ids",
  });
  const unetStore = WeightStore.fromCheckpoint(weights("unet", "diffusion_pytorch_model"), { component: "unet" });
  const vaeStore = WeightStore.fromCheckpoint(weights("vae", "diffusion_pytorch_model"), {
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
    hash,
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
  hash: ReturnType<typeof createHash>,
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
  return { source, tokenizer, textEncoder, unet, vae, scheduler, fingerprint: hash.digest("hex").slice(0, 32) };
}

/**
 * The scheduler as StableDiffusionPipeline uses it: diffusers' pipeline replaces an outdated
 * `steps_offset` ≠ 1 and `clip_sample: true` (latents are not in [−1, 1]) with the SD values.
 */
function parseSchedulerForPipeline(json: unknown, file: string): DDIMConfig {
  const c = parseDDIMConfig(json, file);
  return { ...c, steps_offset: 1, clip_sample: false };
}

/** The safetensors file(s) of a component: plain, variant, or sharded with an index. */
export function weightFiles(dir: string, base: string, variant?: string): string[] {
  const candidates = variant ? [`${base}.${variant}`, base] : [base, `${base}.fp16`];
  for (const name of candidates) {
    const single = path.join(dir, `${name}.safetensors`);
    if (fs.existsSync(single)) return [single];
    const index = path.join(dir, `${name}.safetensors.index.json`);
    if (fs.existsSync(index)) {
      const map = (readJson(index, dir) as { weight_map?: Record<string, string> }).weight_map;
      if (!map) throw new Error(`${index}: no weight_map`);
      return [...new Set(Object.values(map))].map((f) => path.join(dir, f));
    }
  }
  const pickles = fs.existsSync(dir) ? fs.readdirSync(dir).filter((f) => /\.(bin|ckpt|pt)$/.test(f)) : [];
  throw new Error(
    `model: no ${base}.safetensors in ${dir}${pickles.length ? ` (found ${pickles.join(", ")}: convert PyTorch pickles to safetensors first)` : ""}`,
  );
}

/** Hashes a checkpoint by its size and header (names, shapes, offsets), not by its gigabytes of data. */
function hashCheckpoint(hash: ReturnType<typeof createHash>, file: string): void {
  const fd = fs.openSync(file, "r");
  try {
    const size = fs.fstatSync(fd).size;
    const head = Buffer.alloc(Math.min(size, 1 << 20));
    fs.readSync(fd, head, 0, head.length, 0);
    const tail = Buffer.alloc(Math.min(size, 1 << 16));
    fs.readSync(fd, tail, 0, tail.length, size - tail.length);
    hash
      .update(`${path.basename(file)} ${size}\n`)
      .update(head)
      .update(tail);
  } finally {
    fs.closeSync(fd);
  }
}

async function loadSingleFile(file: string, options: LoadOptions): Promise<StableDiffusion> {
  const hash = createHash("sha256");
  hashCheckpoint(hash, file);
  const inferred = inferSingleFileConfigs(file);
  let textConfig = inferred.text;
  let unetConfig = inferred.unet;
  let vaeConfig = inferred.vae;
  let scheduler = inferred.scheduler;
  let tokenizerDir = path.join(
    path.dirname(new URL(import.meta.url).pathname),
    "..",
    "..",
    "models",
    "nulltext-shapes",
    "tokenizer",
  );
  if (options.configFrom) {
    const dir = options.configFrom;
    const read = <T>(p: string, parse: (j: unknown, f: string) => T) =>
      parse(readJson(path.join(dir, p), "config"), path.join(dir, p));
    textConfig = read("text_encoder/config.json", parseCLIPTextConfig);
    unetConfig = read("unet/config.json", parseUNetConfig);
    vaeConfig = read("vae/config.json", parseVAEConfig);
    scheduler = read("scheduler/scheduler_config.json", parseSchedulerForPipeline);
    tokenizerDir = path.join(dir, "tokenizer");
  }
  hash.update(JSON.stringify({ textConfig, unetConfig, vaeConfig, scheduler }));
  const tokenizer = await ClipTokenizer.fromFolder(tokenizerDir);
  const mapper = compVisKeyMapper(unetConfig, vaeConfig);
  const store = (component: "text_encoder" | "unet" | "vae") =>
    WeightStore.fromCheckpoint([file], {
      component: `${component} (from ${path.basename(file)})`,
      rename: (key) => {
        const mapped = mapper(key);
        return mapped && mapped.component === component ? mapped.key : null;
      },
      ignore: (k) => k === "text_model.embeddings.position_ids",
    });
  return assemble(
    file,
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
    hash,
  );
}
