/**
 * Writes a diffusers folder with the full Stable Diffusion 1.5 configuration (UNet 320/640/1280/1280,
 * CLIP ViT-L/14 text encoder, the SD VAE) and random float32 weights initialised as PyTorch does,
 * for benchmarks. Never committed (it is 4 GB). Usage: tsx scripts/make-random-sd15.ts [OUT_DIR]
 */
import fs from "node:fs";
import path from "node:path";
import { CLIPTextModel, parseCLIPTextConfig } from "../src/models/clip_text.js";
import { type SafetensorsTensor, writeSafetensors } from "../src/models/safetensors.js";
import { parseUNetConfig, UNET_SCHEMA, UNet2DConditionModel } from "../src/models/unet.js";
import { AutoencoderKL, parseVAEConfig } from "../src/models/vae.js";
import { WeightStore } from "../src/models/weights.js";

export const SD15_CONFIGS = {
  unet: {
    ...UNET_SCHEMA.defaults,
    _class_name: "UNet2DConditionModel",
    cross_attention_dim: 768,
    sample_size: 64,
    attention_head_dim: 8,
  },
  vae: {
    _class_name: "AutoencoderKL",
    in_channels: 3,
    out_channels: 3,
    down_block_types: ["DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D"],
    up_block_types: ["UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D"],
    block_out_channels: [128, 256, 512, 512],
    layers_per_block: 2,
    latent_channels: 4,
    norm_num_groups: 32,
    sample_size: 512,
    scaling_factor: 0.18215,
  },
  text_encoder: {
    architectures: ["CLIPTextModel"],
    hidden_size: 768,
    intermediate_size: 3072,
    num_hidden_layers: 12,
    num_attention_heads: 12,
    projection_dim: 768,
    max_position_embeddings: 77,
    hidden_act: "quick_gelu",
    vocab_size: 49408,
  },
  scheduler: {
    _class_name: "PNDMScheduler",
    beta_start: 0.00085,
    beta_end: 0.012,
    beta_schedule: "scaled_linear",
    num_train_timesteps: 1000,
    set_alpha_to_one: false,
    skip_prk_steps: true,
    steps_offset: 1,
    clip_sample: false,
  },
};

export function makeRandomSD15(out: string): void {
  const root = path.resolve(import.meta.dirname, "..");
  const write = (rel: string, json: unknown) => {
    fs.mkdirSync(path.dirname(path.join(out, rel)), { recursive: true });
    fs.writeFileSync(path.join(out, rel), `${JSON.stringify(json, null, 2)}\n`);
  };
  const dump = (rel: string, store: WeightStore) => {
    const tensors: Record<string, SafetensorsTensor> = {};
    for (const [k, t] of store.weightTensors())
      tensors[k] = { dtype: "F32", shape: [...t.shape], data: store.trainableArrays().get(k) as Float32Array };
    writeSafetensors(path.join(out, rel), tensors);
  };
  fs.mkdirSync(out, { recursive: true });
  const parts: [string, () => WeightStore][] = [
    [
      "text_encoder/model.safetensors",
      () => {
        const s = WeightStore.forTraining("text_encoder", 1);
        new CLIPTextModel(s, parseCLIPTextConfig(SD15_CONFIGS.text_encoder, "text"));
        return s;
      },
    ],
    [
      "vae/diffusion_pytorch_model.safetensors",
      () => {
        const s = WeightStore.forTraining("vae", 2);
        new AutoencoderKL(s, parseVAEConfig(SD15_CONFIGS.vae, "vae"));
        return s;
      },
    ],
    [
      "unet/diffusion_pytorch_model.safetensors",
      () => {
        const s = WeightStore.forTraining("unet", 3);
        new UNet2DConditionModel(s, parseUNetConfig(SD15_CONFIGS.unet, "unet"));
        return s;
      },
    ],
  ];
  for (const [rel, make] of parts) {
    if (fs.existsSync(path.join(out, rel))) continue;
    console.error(`writing ${path.join(out, rel)}`);
    fs.mkdirSync(path.dirname(path.join(out, rel)), { recursive: true });
    dump(rel, make());
  }
  write("unet/config.json", SD15_CONFIGS.unet);
  write("vae/config.json", SD15_CONFIGS.vae);
  write("text_encoder/config.json", SD15_CONFIGS.text_encoder);
  write("scheduler/scheduler_config.json", SD15_CONFIGS.scheduler);
  write("model_index.json", {
    _class_name: "StableDiffusionPipeline",
    scheduler: ["diffusers", "PNDMScheduler"],
    text_encoder: ["transformers", "CLIPTextModel"],
    tokenizer: ["transformers", "CLIPTokenizer"],
    unet: ["diffusers", "UNet2DConditionModel"],
    vae: ["diffusers", "AutoencoderKL"],
  });
  fs.cpSync(path.join(root, "models", "nulltext-shapes", "tokenizer"), path.join(out, "tokenizer"), {
    recursive: true,
  });
}

if (process.argv[1] && import.meta.filename === path.resolve(process.argv[1])) {
  const out = path.resolve(process.argv[2] ?? path.join(import.meta.dirname, "..", ".cache", "sd15-random"));
  makeRandomSD15(out);
  console.error(`wrote ${out}`);
}
