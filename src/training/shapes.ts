/**
 * Training the built-in model on procedural scenes (`npm run train:shapes`), in three resumable
 * phases on the graph layer: (1) the VAE, (2) encoding a fixed set of training scenes to latents,
 * (3) the text encoder and UNet together with the SD noise schedule, ε-prediction and 10%
 * empty-prompt dropout for classifier-free guidance (Ho & Salimans 2022), Min-SNR-γ loss weights,
 * stratified timesteps and token grounding of the object words' cross-attention. Everything is seeded.
 */
import fs from "node:fs";
import path from "node:path";
import * as G from "../graph/index.js";
import { float32ArrayToHalf } from "../graph/index.js";
import { toTensor } from "../image/index.js";
import { CLIPTextModel, parseCLIPTextConfig } from "../models/clip_text.js";
import type { ClipTokenizer } from "../models/clip_tokenizer.js";
import { type SafetensorsTensor, writeSafetensors } from "../models/safetensors.js";
import { type AttentionHook, parseUNetConfig, UNet2DConditionModel } from "../models/unet.js";
import { AutoencoderKL, parseVAEConfig } from "../models/vae.js";
import { WeightStore } from "../models/weights.js";
import { float32Output, Session } from "../runtime/session.js";
import { randomScene, renderScene, type Scene, scenePrompt } from "../scenes/index.js";
import { ddimAlphasCumprod, parseDDIMConfig } from "../schedulers/ddim.js";
import { gaussianArray, Rng } from "../util/rng.js";
import { checkCheckpointFits, emaWeights, loadCheckpoint, saveCheckpoint } from "./checkpoint.js";
import { type SceneGrounding, sceneGrounding, tokenGroundingLoss, writeGrounding } from "./grounding.js";
import { trainLoop } from "./loop.js";
import { SHAPES_CONFIGS, SHAPES_IMAGE_SIZE } from "./shapes_config.js";

/** Scenes for training come from seeds at and above this; evaluation uses seeds below it. */
export const TRAIN_SEED_BASE = 1_000_000;

export interface ShapesTrainingOptions {
  workDir: string;
  outDir: string;
  tokenizer: ClipTokenizer;
  seed: number;
  vaeSteps: number;
  vaeBatch: number;
  scenes: number;
  unetSteps: number;
  unetBatch: number;
  /** Which of the UNet phase's EMA copies to export (UNET_EMA_DECAY or one of UNET_EMA_TRACKS); UNET_EMA_DECAY by default. */
  exportEmaDecay?: number;
  threads?: number;
  log: (line: string) => void;
}

const S = SHAPES_IMAGE_SIZE;

/**
 * The text encoder and UNet learn from scenes whose objects are turned at most this many degrees from upright
 * (the VAE from scenes at any angle). At any angle the model has to pick an orientation for a star's five
 * points while it draws them: the model of that recipe got 35 of 51 star prompts right, the checker read 15
 * of the misses as triangles, and those looked at had six points. A star's period is 72°, so ±15° leaves it
 * one orientation to learn. The evaluation's scenes stay at any angle.
 */
export const UNET_ROTATION = 15;

/** Training scene k of the text encoder and UNet phase. */
function unetScene(k: number): Scene {
  return randomScene(TRAIN_SEED_BASE + k, { objects: "any", rotate: UNET_ROTATION });
}

/** The scenes rendered into one [N, 3, S, S] batch. */
function renderBatch(scenes: Scene[]): Float32Array {
  const images = new Float32Array(scenes.length * 3 * S * S);
  scenes.forEach((scene, i) => {
    images.set(toTensor(renderScene(scene, S)), i * 3 * S * S);
  });
  return images;
}

/** Phase 1: the autoencoder, with reconstruction (MSE + L1) and a small KL term. */
export async function trainVae(o: ShapesTrainingOptions): Promise<Map<string, Float32Array>> {
  const file = path.join(o.workDir, "vae.safetensors");
  const resume = loadCheckpoint(file);
  const config = parseVAEConfig(SHAPES_CONFIGS.vae, "vae config");
  const store = WeightStore.forTraining("vae", o.seed);
  const vae = new AutoencoderKL(store, config);
  if (resume?.extra.done) {
    checkCheckpointFits(file, resume, store.trainableTensors().keys(), store.trainableArrays());
    o.log(`vae: done (${resume.step} steps), using ${file}`);
    return resume.ema;
  }
  const B = o.vaeBatch;
  const image = G.input("image", [B, 3, S, S]);
  const noise = G.input("noise", [B, config.latent_channels, S / vae.downscale, S / vae.downscale]);
  const { mean, logvar } = vae.encode(image);
  const z = G.add(mean, G.mul(G.exp(G.mul(logvar, 0.5)), noise));
  const diff = G.sub(vae.decode(z), image);
  const mse = G.reduceMean(G.mul(diff, diff));
  const l1 = G.reduceMean(G.abs(diff));
  const kl = G.reduceMean(G.mul(G.sub(G.add(G.mul(mean, mean), G.exp(logvar)), G.add(logvar, 1)), 0.5));
  const loss = G.add(G.add(mse, G.mul(l1, 0.1)), G.mul(kl, 1e-5));
  const state = await trainLoop({
    phase: "vae",
    loss,
    metrics: { mse },
    params: store.weightTensors(),
    arrays: store.trainableArrays(),
    steps: o.vaeSteps,
    lr: 1e-3,
    warmup: 200,
    clipNorm: 1,
    emaDecay: 0.998,
    batch: (step) => {
      const scenes = Array.from({ length: B }, (_, i) =>
        randomScene(TRAIN_SEED_BASE + ((step * B + i) % 5_000_000), { objects: "any" }),
      );
      return { image: renderBatch(scenes), noise: gaussianArray(noise.size, o.seed * 7919 + step) };
    },
    checkpointFile: file,
    resume,
    threads: o.threads,
    log: o.log,
  });
  state.extra.done = true;
  saveCheckpoint(file, state);
  return state.ema;
}

/** Phase 2: the training scenes' latents (posterior means) and the latent scaling factor 1/std. */
export async function encodeScenes(
  o: ShapesTrainingOptions,
  vaeWeights: Map<string, Float32Array>,
): Promise<{ latents: Float32Array; prompts: string[]; scalingFactor: number }> {
  const file = path.join(o.workDir, `latents-${o.scenes}-rotate-${UNET_ROTATION}.bin`);
  const prompts = Array.from({ length: o.scenes }, (_, i) => scenePrompt(unetScene(i)));
  const config = parseVAEConfig(SHAPES_CONFIGS.vae, "vae config");
  const latentSize = config.latent_channels * (S / 4) * (S / 4);
  if (fs.existsSync(file)) {
    const buf = fs.readFileSync(file);
    const latents = new Float32Array(buf.buffer, buf.byteOffset, buf.length / 4);
    if (latents.length === o.scenes * latentSize) {
      o.log(`latents: using ${file}`);
      return { latents, prompts, scalingFactor: 1 / std(latents) };
    }
  }
  const vae = new AutoencoderKL(WeightStore.forTraining("vae", o.seed, vaeWeights), config);
  const B = 64;
  const image = G.input("image", [B, 3, S, S]);
  const session = await Session.create(G.compile({ mean: vae.encode(image).mean }, { name: "encode" }), {
    threads: o.threads,
  });
  const latents = new Float32Array(o.scenes * latentSize);
  const t0 = Date.now();
  for (let start = 0; start < o.scenes; start += B) {
    const scenes = Array.from({ length: B }, (_, i) => unetScene(Math.min(start + i, o.scenes - 1)));
    const mean = float32Output(await session.run({ image: renderBatch(scenes) }), "mean");
    latents.set(mean.subarray(0, Math.min(B, o.scenes - start) * latentSize), start * latentSize);
    if ((start / B) % 50 === 0) o.log(`latents: ${start}/${o.scenes} (${((Date.now() - t0) / 1000).toFixed(0)} s)`);
  }
  await session.release();
  fs.writeFileSync(`${file}.partial`, new Uint8Array(latents.buffer));
  fs.renameSync(`${file}.partial`, file);
  return { latents, prompts, scalingFactor: 1 / std(latents) };
}

function std(x: Float32Array): number {
  let s = 0;
  let s2 = 0;
  for (const v of x) {
    s += v;
    s2 += v * v;
  }
  const mean = s / x.length;
  return Math.sqrt(s2 / x.length - mean * mean);
}

/**
 * Recorded in the UNet checkpoint, so that a resume never continues another recipe's run (a checkpoint of
 * another model size is refused by checkCheckpointFits).
 */
export const UNET_RECIPE = `eps, min-snr-5, stratified-t, token-grounding-0.02, rotate-${UNET_ROTATION}`;

/**
 * Refuses a UNet checkpoint (its `extra`, read from `file`) written by another recipe, finished or not, and
 * continuing an unfinished one with another batch size (`--unet-batch`); a finished one re-exports whatever the
 * batch. Checkpoints from before the batch was recorded were batch 32.
 */
export function checkUnetResume(file: string, extra: Record<string, unknown>, batch: number): void {
  if (extra.recipe !== UNET_RECIPE) {
    throw new Error(
      `${file} was written by training recipe ${JSON.stringify(extra.recipe ?? "none recorded (plain ε loss, before recipes were recorded)")}, ` +
        `this code trains ${JSON.stringify(UNET_RECIPE)}: move the file away (or pass --work DIR) to train from scratch`,
    );
  }
  const saved = extra.batch ?? 32;
  if (!extra.done && saved !== batch)
    throw new Error(
      `${file} is a run with batches of ${saved}, not ${batch}: resume it with --unet-batch ${saved}, or move the file away (or pass --work DIR) to train from scratch`,
    );
}
/**
 * The exported weights are this EMA of the text encoder's and UNet's. The loop's warm-up caps the decay at
 * (1 + step)/(10 + step), which passes 0.998 at step 4490 and 0.999 only at step 8990: in a 6800-step run a
 * decay of 0.999 or more is the warm-up's own average, about the last step/9 steps (see loop.ts).
 */
export const UNET_EMA_DECAY = 0.998;
/**
 * Further averaging windows to keep in the checkpoint beside it, to compare after a run (`npm run
 * train:shapes -- --ema D` exports one from a finished run). None by default: each costs an extra pass over
 * every weight per step.
 */
export const UNET_EMA_TRACKS: number[] = [];

/** Weight of the token grounding loss (grounding.ts) against the ε loss. */
export const GROUNDING_WEIGHT = 0.02;

/** γ of the Min-SNR loss weighting (Hang et al. 2023 use 5). */
export const MIN_SNR_GAMMA = 5;

/**
 * Min-SNR-γ weight of one sample's ε-prediction loss (Hang et al. 2023, "Efficient Diffusion Training
 * via Min-SNR Weighting Strategy", eq. 8 rewritten for ε): min(SNR(t), γ) / SNR(t) with
 * SNR(t) = ᾱ_t / (1 − ᾱ_t). Low-noise steps, whose ε-loss is large and conflicting, stop dominating the
 * gradient; the high-noise steps that decide layout, shape and colour keep weight 1.
 */
export function minSnrWeight(alphaBar: number, gamma: number): number {
  const snr = alphaBar / (1 - alphaBar);
  return Math.min(snr, gamma) / snr;
}

/**
 * One timestep per sample of a batch, stratified: sample i is drawn uniformly from the i-th of `count`
 * equal slices of [0, T), then the batch is shuffled. Every batch covers the whole noise range, which
 * lowers the variance of the gradient against independent uniform draws (the same marginal, uniform t).
 */
export function stratifiedTimesteps(rng: Rng, count: number, T: number): number[] {
  const out = Array.from({ length: count }, (_, i) => Math.min(T - 1, Math.floor(((i + rng.next()) * T) / count)));
  for (let i = count - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    [out[i], out[j]] = [out[j] as number, out[i] as number];
  }
  return out;
}

/**
 * Phase 3: text encoder and UNet, ε-prediction on scaled latents (Ho et al. 2020, Algorithm 1), with the
 * Min-SNR-γ weighting and stratified timesteps above, plus the token grounding loss (grounding.ts)
 * weighted by GROUNDING_WEIGHT.
 */
export async function trainUnet(
  o: ShapesTrainingOptions,
  data: { latents: Float32Array; prompts: string[]; scalingFactor: number },
): Promise<{ text: Map<string, Float32Array>; unet: Map<string, Float32Array> }> {
  const file = path.join(o.workDir, "unet.safetensors");
  const resume = loadCheckpoint(file);
  const textConfig = parseCLIPTextConfig(SHAPES_CONFIGS.text_encoder, "text config");
  const unetConfig = parseUNetConfig(SHAPES_CONFIGS.unet, "unet config");
  const split = (m: Map<string, Float32Array>) => ({
    text: new Map([...m].filter(([k]) => k.startsWith("text_encoder/")).map(([k, v]) => [k.slice(13), v])),
    unet: new Map([...m].filter(([k]) => k.startsWith("unet/")).map(([k, v]) => [k.slice(5), v])),
  });
  // The token embedding table (49408 rows, a dozen of them used) stays at its random initialisation:
  // the transformer layers learn to read it, and the step skips a 3.2M-parameter update.
  const textStore = WeightStore.forTraining("text_encoder", o.seed + 1, new Map(), {
    frozen: (k) => k === "text_model.embeddings.token_embedding.weight",
  });
  const unetStore = WeightStore.forTraining("unet", o.seed + 2);
  const text = new CLIPTextModel(textStore, textConfig);
  const unet = new UNet2DConditionModel(unetStore, unetConfig);
  const B = o.unetBatch;
  const L = unetConfig.in_channels;
  const hw = S / 4;
  const latentSize = L * hw * hw;
  const K = textConfig.max_position_embeddings;
  const ids = G.input("input_ids", [B, K], "int64");
  const z0 = G.input("latents", [B, L, hw, hw]);
  const noise = G.input("noise", [B, L, hw, hw]);
  const t = G.input("timestep", [B]);
  const a = G.input("sqrt_alpha_bar", [B, 1, 1, 1]);
  const b = G.input("sqrt_one_minus_alpha_bar", [B, 1, 1, 1]);
  const w = G.input("loss_weight", [B, 1, 1, 1]);
  // Token grounding on the cross-attention of every level that has it (the mid block's excepted).
  const groundRes = unetConfig.down_block_types.flatMap((type, i) =>
    type === "CrossAttnDownBlock2D" ? [hw / 2 ** i] : [],
  );
  const groundTokens = G.input("ground_tokens", [B, 1, 1, K]);
  const groundRegions = new Map(groundRes.map((r) => [r, G.input(`ground_region_${r}`, [B, 1, r * r, K])]));
  const groundTerms: G.Tensor[] = [];
  const hook: AttentionHook = {
    touches: (site) => site.kind === "cross" && site.place !== "mid" && groundRegions.has(site.resolution[0]),
    apply: (probs, site) => {
      groundTerms.push(tokenGroundingLoss(probs, groundRegions.get(site.resolution[0]) as G.Tensor, groundTokens));
      return probs;
    },
  };
  const zt = G.add(G.mul(a, z0), G.mul(b, noise));
  const eps = unet.forward(zt, t, text.forward(ids), { attentionHook: hook });
  const diff = G.sub(eps, noise);
  const epsLoss = G.reduceMean(G.mul(w, G.mul(diff, diff)));
  const groundLoss = G.div(
    groundTerms.reduce((x, y) => G.add(x, y)),
    groundTerms.length,
  );
  const loss = G.add(epsLoss, G.mul(groundLoss, GROUNDING_WEIGHT));
  // One key space for both models in the optimiser and the checkpoint.
  const params = new Map<string, G.Tensor>();
  const arrays = new Map<string, Float32Array>();
  for (const [prefix, store] of [
    ["text_encoder/", textStore],
    ["unet/", unetStore],
  ] as const) {
    for (const [k, v] of store.trainableTensors()) params.set(prefix + k, v);
    for (const [k, v] of store.trainableArrays()) arrays.set(prefix + k, v);
  }
  // Weights outside the optimiser (frozen) go to the export as they are.
  const withFrozen = (ema: Map<string, Float32Array>) => {
    const all = new Map(ema);
    for (const [k, v] of arrays) if (!all.has(k)) all.set(k, v);
    return split(all);
  };
  if (resume) checkUnetResume(file, resume.extra, B);
  if (resume?.extra.done) {
    checkCheckpointFits(file, resume, params.keys(), arrays);
    o.log(`unet: done (${resume.step} steps), using ${file}`);
    return withFrozen(emaWeights(file, resume, o.exportEmaDecay ?? UNET_EMA_DECAY, UNET_EMA_DECAY));
  }
  const alphas = ddimAlphasCumprod(parseDDIMConfig(SHAPES_CONFIGS.scheduler));
  const tokenCache = new Map<string, number[]>();
  const tokens = (p: string) => {
    let v = tokenCache.get(p);
    if (!v) {
      v = o.tokenizer.encode(p).ids;
      tokenCache.set(p, v);
    }
    return v;
  };
  const empty = tokens("");
  const count = data.prompts.length;
  const groundingCache = new Map<number, SceneGrounding>();
  const grounding = (k: number) => {
    let g = groundingCache.get(k);
    if (!g) {
      g = sceneGrounding(unetScene(k), o.tokenizer, S, groundRes);
      groundingCache.set(k, g);
    }
    return g;
  };
  const state = await trainLoop({
    phase: "unet",
    loss,
    metrics: { eps: epsLoss, ground: groundLoss },
    params,
    arrays,
    steps: o.unetSteps,
    lr: 1e-3,
    warmup: 300,
    clipNorm: 1,
    emaDecay: UNET_EMA_DECAY,
    emaTracks: UNET_EMA_TRACKS,
    batch: (step) => {
      const rng = new Rng(o.seed * 104729 + step);
      const latents = new Float32Array(B * latentSize);
      const idData = new BigInt64Array(B * K);
      const ts = new Float32Array(B);
      const sa = new Float32Array(B);
      const sb = new Float32Array(B);
      const lw = new Float32Array(B);
      const steps = stratifiedTimesteps(rng, B, alphas.length);
      const gTokens = new Float32Array(B * K);
      const gRegions = new Map(groundRes.map((r) => [r, new Float32Array(B * r * r * K)]));
      for (let i = 0; i < B; i++) {
        const k = rng.int(count);
        const src = data.latents.subarray(k * latentSize, (k + 1) * latentSize);
        for (let j = 0; j < latentSize; j++) latents[i * latentSize + j] = (src[j] as number) * data.scalingFactor;
        // 10% of prompts dropped to "" so the model also learns the unconditional ε (classifier-free guidance)
        const dropped = rng.next() < 0.1;
        const id = dropped ? empty : tokens(data.prompts[k] as string);
        if (!dropped) writeGrounding(grounding(k), i, K, gTokens, gRegions);
        id.forEach((v, j) => {
          idData[i * K + j] = BigInt(v);
        });
        const tt = steps[i] as number;
        const alphaBar = alphas[tt] as number;
        ts[i] = tt;
        sa[i] = Math.sqrt(alphaBar);
        sb[i] = Math.sqrt(1 - alphaBar);
        lw[i] = minSnrWeight(alphaBar, MIN_SNR_GAMMA);
      }
      return {
        input_ids: idData,
        latents,
        noise: gaussianArray(B * latentSize, o.seed * 31337 + step),
        timestep: ts,
        sqrt_alpha_bar: sa,
        sqrt_one_minus_alpha_bar: sb,
        loss_weight: lw,
        ground_tokens: gTokens,
        ...Object.fromEntries(groundRes.map((r) => [`ground_region_${r}`, gRegions.get(r) as Float32Array])),
      };
    },
    checkpointFile: file,
    resume,
    extra: { recipe: UNET_RECIPE, batch: B },
    threads: o.threads,
    log: o.log,
  });
  state.extra.done = true;
  saveCheckpoint(file, state);
  return withFrozen(emaWeights(file, state, o.exportEmaDecay ?? UNET_EMA_DECAY, UNET_EMA_DECAY));
}

/** Writes the diffusers folder: configs, float16 weights, tokenizer. */
export function exportShapesModel(
  outDir: string,
  tokenizerDir: string,
  weights: { text: Map<string, Float32Array>; unet: Map<string, Float32Array>; vae: Map<string, Float32Array> },
  scalingFactor: number,
): void {
  const write = (dir: string, name: string, json: unknown) => {
    fs.mkdirSync(path.join(outDir, dir), { recursive: true });
    const file = path.join(outDir, dir, name);
    fs.writeFileSync(`${file}.partial`, `${JSON.stringify(json, null, 2)}\n`);
    fs.renameSync(`${file}.partial`, file);
  };
  const tensors = (
    m: Map<string, Float32Array>,
    shapes: Map<string, readonly number[]>,
  ): Record<string, SafetensorsTensor> => {
    const out: Record<string, SafetensorsTensor> = {};
    for (const [k, v] of m) out[k] = { dtype: "F16", shape: shapes.get(k) as number[], data: float32ArrayToHalf(v) };
    return out;
  };
  const shapesOf = (store: WeightStore) => new Map([...store.weightTensors()].map(([k, t]) => [k, t.shape]));
  const textStore = WeightStore.forTraining("t", 0, weights.text);
  new CLIPTextModel(textStore, parseCLIPTextConfig(SHAPES_CONFIGS.text_encoder, "t"));
  const unetStore = WeightStore.forTraining("u", 0, weights.unet);
  new UNet2DConditionModel(unetStore, parseUNetConfig(SHAPES_CONFIGS.unet, "u"));
  const vaeStore = WeightStore.forTraining("v", 0, weights.vae);
  new AutoencoderKL(vaeStore, parseVAEConfig(SHAPES_CONFIGS.vae, "v"));

  fs.mkdirSync(outDir, { recursive: true });
  write("", "model_index.json", SHAPES_CONFIGS.model_index);
  write("scheduler", "scheduler_config.json", SHAPES_CONFIGS.scheduler);
  write("text_encoder", "config.json", SHAPES_CONFIGS.text_encoder);
  write("unet", "config.json", SHAPES_CONFIGS.unet);
  write("vae", "config.json", { ...SHAPES_CONFIGS.vae, scaling_factor: Number(scalingFactor.toPrecision(6)) });
  writeSafetensors(path.join(outDir, "text_encoder", "model.safetensors"), tensors(weights.text, shapesOf(textStore)));
  writeSafetensors(
    path.join(outDir, "unet", "diffusion_pytorch_model.safetensors"),
    tensors(weights.unet, shapesOf(unetStore)),
  );
  writeSafetensors(
    path.join(outDir, "vae", "diffusion_pytorch_model.safetensors"),
    tensors(weights.vae, shapesOf(vaeStore)),
  );
  if (path.resolve(tokenizerDir) !== path.resolve(outDir, "tokenizer")) {
    fs.mkdirSync(path.join(outDir, "tokenizer"), { recursive: true });
    for (const f of fs.readdirSync(tokenizerDir))
      fs.copyFileSync(path.join(tokenizerDir, f), path.join(outDir, "tokenizer", f));
  }
}
