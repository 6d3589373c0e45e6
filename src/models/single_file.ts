/**
 * Single-file checkpoints in the original CompVis latent-diffusion naming (`model.diffusion_model.*`,
 * `first_stage_model.*`, `cond_stage_model.transformer.*`, as in `v1-5-pruned-emaonly.safetensors`):
 * the key mapping to diffusers' names in both directions, and configs inferred from tensor shapes.
 * The mapping follows the layout of ldm's `openaimodel.UNetModel`, `autoencoder.AutoencoderKL` and
 * diffusers' `convert_from_ckpt.py` conventions (SD 1.x; SD 2.x's OpenCLIP text encoder is refused).
 */
import { type DDIMConfig, parseDDIMConfig } from "../schedulers/ddim.js";
import { CLIP_TEXT_SCHEMA, type CLIPTextConfig } from "./clip_text.js";
import { SafetensorsFile } from "./safetensors.js";
import { UNET_SCHEMA, type UNet2DConditionConfig } from "./unet.js";
import { type AutoencoderKLConfig, VAE_SCHEMA } from "./vae.js";

export type Component = "text_encoder" | "unet" | "vae";
export type Mapped = { component: Component; key: string };

const RESNET_TO_DIFFUSERS: [string, string][] = [
  ["in_layers.0.", "norm1."],
  ["in_layers.2.", "conv1."],
  ["emb_layers.1.", "time_emb_proj."],
  ["out_layers.0.", "norm2."],
  ["out_layers.3.", "conv2."],
  ["skip_connection.", "conv_shortcut."],
];
const VAE_RESNET_TO_DIFFUSERS: [string, string][] = [["nin_shortcut.", "conv_shortcut."]];
const VAE_ATTN_TO_DIFFUSERS: [string, string][] = [
  ["norm.", "group_norm."],
  ["q.", "to_q."],
  ["k.", "to_k."],
  ["v.", "to_v."],
  ["proj_out.", "to_out.0."],
];

function renamePrefix(rest: string, table: [string, string][], reverse = false): string {
  for (const [a, b] of table) {
    const [from, to] = reverse ? [b, a] : [a, b];
    if (rest.startsWith(from)) return to + rest.slice(from.length);
  }
  return rest;
}

/** Buffers of the training-time DDPM and EMA copies found in CompVis checkpoints: not model weights. */
const IGNORED =
  /^(model_ema\.|betas$|alphas_cumprod|alphas_cumprod_prev$|sqrt_|log_one_minus|posterior_|logvar$|lvlb_weights$|cond_stage_model\.transformer\.(text_model\.)?embeddings\.position_ids$)/;

/**
 * CompVis key → diffusers component and key; "ignore" for known non-weights; undefined for a key
 * this mapping does not know (the loader reports it).
 */
export function compVisKeyMapper(
  unet: Pick<UNet2DConditionConfig, "layers_per_block">,
  vae: Pick<AutoencoderKLConfig, "block_out_channels">,
): (key: string) => Mapped | null {
  if (Array.isArray(unet.layers_per_block))
    throw new Error("single-file checkpoints with per-block layers_per_block are not supported");
  const L = unet.layers_per_block as number;
  const vaeBlocks = vae.block_out_channels.length;
  return (key: string) => {
    if (IGNORED.test(key)) return null;
    let m: RegExpMatchArray | null;
    if (key.startsWith("cond_stage_model.model.")) {
      throw new Error(
        `${key}: SD 2.x single-file checkpoints (OpenCLIP text encoder) are not supported; use the diffusers folder`,
      );
    }
    if ((m = key.match(/^cond_stage_model\.transformer\.(?:text_model\.)?(.*)$/))) {
      return { component: "text_encoder", key: `text_model.${m[1]}` };
    }
    if ((m = key.match(/^model\.diffusion_model\.(.*)$/)))
      return { component: "unet", key: unetKey(m[1] as string, L, key) };
    if ((m = key.match(/^first_stage_model\.(.*)$/)))
      return { component: "vae", key: vaeKey(m[1] as string, vaeBlocks, key) };
    throw new Error(`single-file checkpoint: unknown key '${key}'`);
  };
}

function unetKey(k: string, L: number, full: string): string {
  let m: RegExpMatchArray | null;
  if ((m = k.match(/^time_embed\.(0|2)\.(.*)$/))) return `time_embedding.linear_${m[1] === "0" ? 1 : 2}.${m[2]}`;
  if ((m = k.match(/^input_blocks\.0\.0\.(.*)$/))) return `conv_in.${m[1]}`;
  if ((m = k.match(/^out\.(0|2)\.(.*)$/))) return `${m[1] === "0" ? "conv_norm_out" : "conv_out"}.${m[2]}`;
  if ((m = k.match(/^input_blocks\.(\d+)\.(\d+)\.(.*)$/))) {
    const i = Number(m[1]) - 1;
    const block = Math.floor(i / (L + 1));
    const layer = i % (L + 1);
    const rest = m[3] as string;
    if (layer === L && m[2] === "0" && rest.startsWith("op."))
      return `down_blocks.${block}.downsamplers.0.conv.${rest.slice(3)}`;
    if (m[2] === "0") return `down_blocks.${block}.resnets.${layer}.${renamePrefix(rest, RESNET_TO_DIFFUSERS)}`;
    if (m[2] === "1") return `down_blocks.${block}.attentions.${layer}.${rest}`;
  }
  if ((m = k.match(/^middle_block\.(\d)\.(.*)$/))) {
    const rest = m[2] as string;
    if (m[1] === "1") return `mid_block.attentions.0.${rest}`;
    return `mid_block.resnets.${m[1] === "0" ? 0 : 1}.${renamePrefix(rest, RESNET_TO_DIFFUSERS)}`;
  }
  if ((m = k.match(/^output_blocks\.(\d+)\.(\d+)\.(.*)$/))) {
    const i = Number(m[1]);
    const block = Math.floor(i / (L + 1));
    const layer = i % (L + 1);
    const rest = m[3] as string;
    if (m[2] === "0") return `up_blocks.${block}.resnets.${layer}.${renamePrefix(rest, RESNET_TO_DIFFUSERS)}`;
    if (rest.startsWith("conv.")) return `up_blocks.${block}.upsamplers.0.${rest}`;
    if (m[2] === "1") return `up_blocks.${block}.attentions.${layer}.${rest}`;
  }
  throw new Error(`single-file checkpoint: unknown UNet key '${full}'`);
}

function vaeKey(k: string, blocks: number, full: string): string {
  let m: RegExpMatchArray | null;
  if ((m = k.match(/^(encoder|decoder)\.(conv_in|conv_out)\.(.*)$/))) return k;
  if ((m = k.match(/^(quant_conv|post_quant_conv)\.(.*)$/))) return k;
  if ((m = k.match(/^(encoder|decoder)\.norm_out\.(.*)$/))) return `${m[1]}.conv_norm_out.${m[2]}`;
  if ((m = k.match(/^(encoder|decoder)\.mid\.block_(1|2)\.(.*)$/))) {
    return `${m[1]}.mid_block.resnets.${Number(m[2]) - 1}.${renamePrefix(m[3] as string, VAE_RESNET_TO_DIFFUSERS)}`;
  }
  if ((m = k.match(/^(encoder|decoder)\.mid\.attn_1\.(.*)$/))) {
    return `${m[1]}.mid_block.attentions.0.${renamePrefix(m[2] as string, VAE_ATTN_TO_DIFFUSERS)}`;
  }
  if ((m = k.match(/^encoder\.down\.(\d+)\.block\.(\d+)\.(.*)$/))) {
    return `encoder.down_blocks.${m[1]}.resnets.${m[2]}.${renamePrefix(m[3] as string, VAE_RESNET_TO_DIFFUSERS)}`;
  }
  if ((m = k.match(/^encoder\.down\.(\d+)\.downsample\.conv\.(.*)$/)))
    return `encoder.down_blocks.${m[1]}.downsamplers.0.conv.${m[2]}`;
  // The decoder's up blocks are numbered from the lowest resolution in CompVis, from the highest in diffusers.
  if ((m = k.match(/^decoder\.up\.(\d+)\.block\.(\d+)\.(.*)$/))) {
    return `decoder.up_blocks.${blocks - 1 - Number(m[1])}.resnets.${m[2]}.${renamePrefix(m[3] as string, VAE_RESNET_TO_DIFFUSERS)}`;
  }
  if ((m = k.match(/^decoder\.up\.(\d+)\.upsample\.conv\.(.*)$/))) {
    return `decoder.up_blocks.${blocks - 1 - Number(m[1])}.upsamplers.0.conv.${m[2]}`;
  }
  throw new Error(`single-file checkpoint: unknown VAE key '${full}'`);
}

/** diffusers key → CompVis key (the inverse mapping; used to write single-file checkpoints). */
export function toCompVisKey(
  component: Component,
  key: string,
  unet: Pick<UNet2DConditionConfig, "layers_per_block" | "up_block_types">,
  vaeBlocks: number,
): string {
  const L = unet.layers_per_block as number;
  let m: RegExpMatchArray | null;
  if (component === "text_encoder") return `cond_stage_model.transformer.${key}`;
  if (component === "vae") {
    let k = key;
    if ((m = k.match(/^(encoder|decoder)\.conv_norm_out\.(.*)$/))) k = `${m[1]}.norm_out.${m[2]}`;
    else if ((m = k.match(/^(encoder|decoder)\.mid_block\.resnets\.(\d)\.(.*)$/))) {
      k = `${m[1]}.mid.block_${Number(m[2]) + 1}.${renamePrefix(m[3] as string, VAE_RESNET_TO_DIFFUSERS, true)}`;
    } else if ((m = k.match(/^(encoder|decoder)\.mid_block\.attentions\.0\.(.*)$/))) {
      k = `${m[1]}.mid.attn_1.${renamePrefix(m[2] as string, VAE_ATTN_TO_DIFFUSERS, true)}`;
    } else if ((m = k.match(/^encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\.(.*)$/))) {
      k = `encoder.down.${m[1]}.block.${m[2]}.${renamePrefix(m[3] as string, VAE_RESNET_TO_DIFFUSERS, true)}`;
    } else if ((m = k.match(/^encoder\.down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.*)$/)))
      k = `encoder.down.${m[1]}.downsample.conv.${m[2]}`;
    else if ((m = k.match(/^decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.(.*)$/))) {
      k = `decoder.up.${vaeBlocks - 1 - Number(m[1])}.block.${m[2]}.${renamePrefix(m[3] as string, VAE_RESNET_TO_DIFFUSERS, true)}`;
    } else if ((m = k.match(/^decoder\.up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.*)$/))) {
      k = `decoder.up.${vaeBlocks - 1 - Number(m[1])}.upsample.conv.${m[2]}`;
    }
    return `first_stage_model.${k}`;
  }
  let k = key;
  if ((m = k.match(/^time_embedding\.linear_(1|2)\.(.*)$/))) k = `time_embed.${m[1] === "1" ? 0 : 2}.${m[2]}`;
  else if ((m = k.match(/^conv_in\.(.*)$/))) k = `input_blocks.0.0.${m[1]}`;
  else if ((m = k.match(/^conv_norm_out\.(.*)$/))) k = `out.0.${m[1]}`;
  else if ((m = k.match(/^conv_out\.(.*)$/))) k = `out.2.${m[1]}`;
  else if ((m = k.match(/^down_blocks\.(\d+)\.resnets\.(\d+)\.(.*)$/))) {
    k = `input_blocks.${1 + Number(m[1]) * (L + 1) + Number(m[2])}.0.${renamePrefix(m[3] as string, RESNET_TO_DIFFUSERS, true)}`;
  } else if ((m = k.match(/^down_blocks\.(\d+)\.attentions\.(\d+)\.(.*)$/))) {
    k = `input_blocks.${1 + Number(m[1]) * (L + 1) + Number(m[2])}.1.${m[3]}`;
  } else if ((m = k.match(/^down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.*)$/))) {
    k = `input_blocks.${(Number(m[1]) + 1) * (L + 1)}.0.op.${m[2]}`;
  } else if ((m = k.match(/^mid_block\.resnets\.(\d)\.(.*)$/))) {
    k = `middle_block.${m[1] === "0" ? 0 : 2}.${renamePrefix(m[2] as string, RESNET_TO_DIFFUSERS, true)}`;
  } else if ((m = k.match(/^mid_block\.attentions\.0\.(.*)$/))) k = `middle_block.1.${m[1]}`;
  else if ((m = k.match(/^up_blocks\.(\d+)\.resnets\.(\d+)\.(.*)$/))) {
    k = `output_blocks.${Number(m[1]) * (L + 1) + Number(m[2])}.0.${renamePrefix(m[3] as string, RESNET_TO_DIFFUSERS, true)}`;
  } else if ((m = k.match(/^up_blocks\.(\d+)\.attentions\.(\d+)\.(.*)$/))) {
    k = `output_blocks.${Number(m[1]) * (L + 1) + Number(m[2])}.1.${m[3]}`;
  } else if ((m = k.match(/^up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.*)$/))) {
    const block = Number(m[1]);
    const hasAttention = unet.up_block_types[block] === "CrossAttnUpBlock2D";
    k = `output_blocks.${block * (L + 1) + L}.${hasAttention ? 2 : 1}.conv.${m[2]}`;
  }
  return `model.diffusion_model.${k}`;
}

/**
 * Configs for a single-file checkpoint from its tensor shapes. Head counts are not visible in the
 * weights: SD 1.x's 8 heads are assumed (64-wide heads when the context is 1024 wide, as SD 2.x).
 */
export function inferSingleFileConfigs(file: string): {
  text: CLIPTextConfig;
  unet: UNet2DConditionConfig;
  vae: AutoencoderKLConfig;
  scheduler: DDIMConfig;
} {
  const st = SafetensorsFile.open(file);
  try {
    const shape = (key: string): readonly number[] => {
      const e = st.entries.get(key);
      if (!e) throw new Error(`${file}: not a Stable Diffusion checkpoint in CompVis naming (no '${key}')`);
      return e.shape;
    };
    const has = (key: string) => st.entries.has(key);
    const keys = [...st.entries.keys()];
    if (keys.some((k) => k.startsWith("cond_stage_model.model."))) {
      throw new Error(
        `${file}: SD 2.x single-file checkpoints (OpenCLIP text encoder) are not supported; use the diffusers folder`,
      );
    }
    const u = "model.diffusion_model.";
    const [c0, inCh] = shape(`${u}input_blocks.0.0.weight`) as [number, number];
    const outCh = shape(`${u}out.2.weight`)[0] as number;
    let L = 1;
    while (!has(`${u}input_blocks.${L + 1}.0.op.weight`)) {
      L++;
      if (L > 16) throw new Error(`${file}: cannot find the first downsampling block`);
    }
    const inputIndices = keys
      .map((k) => k.match(/^model\.diffusion_model\.input_blocks\.(\d+)\./))
      .filter(Boolean)
      .map((m) => Number(m?.[1]));
    // input_blocks: conv_in, then (L resnets + 1 downsampler) per block, without the last downsampler
    const nBlocks = Math.round((Math.max(...inputIndices) + 1) / (L + 1));
    const channels: number[] = [];
    const crossBlocks: boolean[] = [];
    for (let b = 0; b < nBlocks; b++) {
      const first = 1 + b * (L + 1);
      channels.push(shape(`${u}input_blocks.${first}.0.out_layers.3.weight`)[0] as number);
      crossBlocks.push(has(`${u}input_blocks.${first}.1.proj_in.weight`));
    }
    const attnKey = keys.find((k) => k.endsWith("attn2.to_k.weight") && k.startsWith(u));
    const crossDim = attnKey ? (shape(attnKey)[1] as number) : 768;
    const projIn = keys.find((k) => k.startsWith(u) && k.endsWith("proj_in.weight"));
    const linear = projIn ? shape(projIn).length === 2 : false;
    const depth =
      new Set(keys.filter((k) => k.startsWith(`${u}input_blocks.1.1.transformer_blocks.`)).map((k) => k.split(".")[5]))
        .size || 1;
    const unet: UNet2DConditionConfig = {
      ...UNET_SCHEMA.defaults,
      in_channels: inCh,
      out_channels: outCh,
      block_out_channels: channels,
      layers_per_block: L,
      cross_attention_dim: crossDim,
      use_linear_projection: linear,
      transformer_layers_per_block: depth,
      attention_head_dim: crossDim === 1024 ? channels.map((ch) => ch / 64) : 8,
      down_block_types: crossBlocks.map((x) => (x ? "CrossAttnDownBlock2D" : "DownBlock2D")),
      up_block_types: [...crossBlocks].reverse().map((x) => (x ? "CrossAttnUpBlock2D" : "UpBlock2D")),
      sample_size: null,
    };
    if (c0 !== channels[0]) throw new Error(`${file}: conv_in has ${c0} channels, the first block ${channels[0]}`);

    const v = "first_stage_model.";
    const vaeChannels: number[] = [];
    for (let i = 0; has(`${v}encoder.down.${i}.block.0.conv1.weight`); i++)
      vaeChannels.push(shape(`${v}encoder.down.${i}.block.0.conv1.weight`)[0] as number);
    let vaeLayers = 0;
    while (has(`${v}encoder.down.0.block.${vaeLayers}.conv1.weight`)) vaeLayers++;
    const vae: AutoencoderKLConfig = {
      ...VAE_SCHEMA.defaults,
      block_out_channels: vaeChannels,
      layers_per_block: vaeLayers,
      latent_channels: (shape(`${v}quant_conv.weight`)[0] as number) / 2,
      down_block_types: vaeChannels.map(() => "DownEncoderBlock2D"),
      up_block_types: vaeChannels.map(() => "UpDecoderBlock2D"),
      sample_size: 512,
    };

    const t = keys.some((k) => k.startsWith("cond_stage_model.transformer.text_model."))
      ? "cond_stage_model.transformer.text_model."
      : "cond_stage_model.transformer.";
    const [vocab, hidden] = shape(`${t}embeddings.token_embedding.weight`) as [number, number];
    let layers = 0;
    while (has(`${t}encoder.layers.${layers}.mlp.fc1.weight`)) layers++;
    const text: CLIPTextConfig = {
      ...CLIP_TEXT_SCHEMA.defaults,
      vocab_size: vocab,
      hidden_size: hidden,
      intermediate_size: shape(`${t}encoder.layers.0.mlp.fc1.weight`)[0] as number,
      num_hidden_layers: layers,
      num_attention_heads: Math.max(1, hidden / 64),
      max_position_embeddings: shape(`${t}embeddings.position_embedding.weight`)[0] as number,
      projection_dim: hidden,
    };
    const scheduler = parseDDIMConfig({
      num_train_timesteps: 1000,
      beta_start: 0.00085,
      beta_end: 0.012,
      beta_schedule: "scaled_linear",
      clip_sample: false,
      set_alpha_to_one: false,
      steps_offset: 1,
    });
    return { text, unet, vae, scheduler };
  } finally {
    st.close();
  }
}
