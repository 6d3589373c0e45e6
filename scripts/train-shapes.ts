/**
 * npm run train:shapes — reproduces the built-in model from scratch (seeded), resuming after an
 * interruption from the checkpoints in --work (default .cache/train-shapes). Writes the diffusers
 * folder to --out (default models/nulltext-shapes).
 * Options: --seed N, --vae-steps N, --unet-steps N, --unet-batch N, --scenes N, --threads N, --ema D (which of the
 * UNet phase's weight averages to export: its main decay, the default, or one of the further tracks it
 * keeps; on a finished run this re-exports in seconds).
 */
import fs from "node:fs";
import path from "node:path";
import { ClipTokenizer } from "../src/models/clip_tokenizer.js";
import { encodeScenes, exportShapesModel, trainUnet, trainVae } from "../src/training/shapes.js";

const arg = (name: string, fallback: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? (process.argv[i + 1] as string) : fallback;
};
const root = path.resolve(import.meta.dirname, "..");
const outDir = path.resolve(arg("out", path.join(root, "models", "nulltext-shapes")));
const workDir = path.resolve(arg("work", path.join(root, ".cache", "train-shapes")));
const tokenizerDir = path.join(root, "models", "nulltext-shapes", "tokenizer");
const t0 = Date.now();
const log = (line: string) => console.log(`[${((Date.now() - t0) / 1000).toFixed(0).padStart(5)} s] ${line}`);
const options = {
  workDir,
  outDir,
  tokenizer: await ClipTokenizer.fromFolder(tokenizerDir),
  seed: Number(arg("seed", "1")),
  vaeSteps: Number(arg("vae-steps", "1000")),
  vaeBatch: 16,
  scenes: Number(arg("scenes", "40000")),
  unetSteps: Number(arg("unet-steps", "6800")),
  unetBatch: Number(arg("unet-batch", "32")),
  exportEmaDecay: process.argv.includes("--ema") ? Number(arg("ema", "")) : undefined,
  threads: Number(arg("threads", "0")) || undefined,
  log,
};
for (const [name, value] of [
  ["vae-steps", options.vaeSteps],
  ["unet-steps", options.unetSteps],
  ["unet-batch", options.unetBatch],
  ["scenes", options.scenes],
] as const)
  if (!(Number.isInteger(value) && value > 0))
    throw new Error(`--${name} must be a positive integer, got ${arg(name, "")}`);
if (!(Number.isInteger(options.seed) && options.seed >= 0))
  throw new Error(`--seed must be a non-negative integer, got ${arg("seed", "")}`);
const ema = options.exportEmaDecay;
if (ema !== undefined && !(ema > 0 && ema < 1))
  throw new Error(`--ema must be a decay between 0 and 1, got ${arg("ema", "")}`);
fs.mkdirSync(workDir, { recursive: true });
const vae = await trainVae(options);
const data = await encodeScenes(options, vae);
log(`latent scaling factor ${data.scalingFactor.toPrecision(6)}`);
const { text, unet } = await trainUnet(options, data);
exportShapesModel(outDir, tokenizerDir, { text, unet, vae }, data.scalingFactor);
log(`wrote ${outDir}`);
