/**
 * Single-file checkpoints in the original CompVis latent-diffusion naming (`model.diffusion_model.*`,
 * `first_stage_model.*`, `cond_stage_model.transformer.*`, as in `v1-5-pruned-emaonly.safetensors`):
 * the key mapping to diffusers' names in both directions, and configs inferred from tensor shapes.
 * The mapping follows the layout of ldm's `openaimodel.UNetModel`, `autoencoder.AutoencoderKL` and
 * diffusers' `convert_from_ckpt.py` conventions (SD 1.x; SD 2.x's OpenCLIP text encoder is refused).
 */
import { type DDIMConfig, parseDDIMConfig } from "../schedulers/ddim.js";
import { CLIP_TEXT_SCHEMA, type CLIPTextConfig } from "./clip_text.js";
import { SafetensorsFile, type SafetensorsTensor, writeSafetensors } from "./safetensors.js";
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

type Rule = [RegExp, (m: string[]) => string | null];

function applyRules(rules: readonly Rule[], key: string): string | null | undefined {
  for (const [pattern, rewrite] of rules) {
    const m = key.match(pattern);
    if (m) return rewrite([...m]);
  }
  return undefined;
}

const n = (s: string | undefined) => Number(s);

/** ldm UNetModel → diffusers UNet2DConditionModel, for L resnets per block. */
function unetRules(L: number): Rule[] {
  const resnet = (rest: string | undefined) => renamePrefix(rest as string, RESNET_TO_DIFFUSERS);
  const down = (i: string | undefined) => [Math.floor((n(i) - 1) / (L + 1)), (n(i) - 1) % (L + 1)] as const;
  const up = (i: string | undefined) => [Math.floor(n(i) / (L + 1)), n(i) % (L + 1)] as const;
  return [
    [/^time_embed\.(0|2)\.(.*)$/, (m) => `time_embedding.linear_${m[1] === "0" ? 1 : 2}.${m[2]}`],
    [/^input_blocks\.0\.0\.(.*)$/, (m) => `conv_in.${m[1]}`],
    [/^out\.0\.(.*)$/, (m) => `conv_norm_out.${m[1]}`],
    [/^out\.2\.(.*)$/, (m) => `conv_out.${m[1]}`],
    [/^input_blocks\.(\d+)\.0\.op\.(.*)$/, (m) => `down_blocks.${down(m[1])[0]}.downsamplers.0.conv.${m[2]}`],
    [/^input_blocks\.(\d+)\.0\.(.*)$/, (m) => `down_blocks.${down(m[1])[0]}.resnets.${down(m[1])[1]}.${resnet(m[2])}`],
    [/^input_blocks\.(\d+)\.1\.(.*)$/, (m) => `down_blocks.${down(m[1])[0]}.attentions.${down(m[1])[1]}.${m[2]}`],
    [/^middle_block\.1\.(.*)$/, (m) => `mid_block.attentions.0.${m[1]}`],
    [/^middle_block\.(0|2)\.(.*)$/, (m) => `mid_block.resnets.${m[1] === "0" ? 0 : 1}.${resnet(m[2])}`],
    [/^output_blocks\.(\d+)\.0\.(.*)$/, (m) => `up_blocks.${up(m[1])[0]}.resnets.${up(m[1])[1]}.${resnet(m[2])}`],
    [/^output_blocks\.(\d+)\.[12]\.(conv\..*)$/, (m) => `up_blocks.${up(m[1])[0]}.upsamplers.0.${m[2]}`],
    [/^output_blocks\.(\d+)\.1\.(.*)$/, (m) => `up_blocks.${up(m[1])[0]}.attentions.${up(m[1])[1]}.${m[2]}`],
  ];
}

/** ldm AutoencoderKL → diffusers AutoencoderKL, for `blocks` resolution levels. */
function vaeRules(blocks: number): Rule[] {
  const resnet = (rest: string | undefined) => renamePrefix(rest as string, VAE_RESNET_TO_DIFFUSERS);
  // The decoder's up blocks are numbered from the lowest resolution in ldm, from the highest in diffusers.
  const flip = (i: string | undefined) => blocks - 1 - n(i);
  return [
    [/^((?:en|de)coder\.conv_(?:in|out)\..*)$/, (m) => m[1] as string],
    [/^((?:post_)?quant_conv\..*)$/, (m) => m[1] as string],
    [/^(encoder|decoder)\.norm_out\.(.*)$/, (m) => `${m[1]}.conv_norm_out.${m[2]}`],
    [/^(encoder|decoder)\.mid\.block_(1|2)\.(.*)$/, (m) => `${m[1]}.mid_block.resnets.${n(m[2]) - 1}.${resnet(m[3])}`],
    [
      /^(encoder|decoder)\.mid\.attn_1\.(.*)$/,
      (m) => `${m[1]}.mid_block.attentions.0.${renamePrefix(m[2] as string, VAE_ATTN_TO_DIFFUSERS)}`,
    ],
    [
      /^encoder\.down\.(\d+)\.block\.(\d+)\.(.*)$/,
      (m) => `encoder.down_blocks.${m[1]}.resnets.${m[2]}.${resnet(m[3])}`,
    ],
    [
      /^encoder\.down\.(\d+)\.downsample\.conv\.(.*)$/,
      (m) => `encoder.down_blocks.${m[1]}.downsamplers.0.conv.${m[2]}`,
    ],
    [
      /^decoder\.up\.(\d+)\.block\.(\d+)\.(.*)$/,
      (m) => `decoder.up_blocks.${flip(m[1])}.resnets.${m[2]}.${resnet(m[3])}`,
    ],
    [/^decoder\.up\.(\d+)\.upsample\.conv\.(.*)$/, (m) => `decoder.up_blocks.${flip(m[1])}.upsamplers.0.conv.${m[2]}`],
  ];
}

/**
 * CompVis key → diffusers component and key; null for known non-weights (EMA copies, DDPM
 * buffers, position ids); an error naming any other key.
 */
export function compVisKeyMapper(
  unet: Pick<UNet2DConditionConfig, "layers_per_block">,
  vae: Pick<AutoencoderKLConfig, "block_out_channels">,
): (key: string) => Mapped | null {
  if (Array.isArray(unet.layers_per_block))
    throw new Error("single-file checkpoints with per-block layers_per_block are not supported");
  const uRules = unetRules(unet.layers_per_block as number);
  const vRules = vaeRules(vae.block_out_channels.length);
  return (key: string) => {
    if (IGNORED.test(key)) return null;
    if (key.startsWith("cond_stage_model.model.")) {
      throw new Error(
        `${key}: SD 2.x single-file checkpoints (OpenCLIP text encoder) are not supported; use the diffusers folder`,
      );
    }
    const text = key.match(/^cond_stage_model\.transformer\.(?:text_model\.)?(.*)$/);
    if (text) return { component: "text_encoder", key: `text_model.${text[1]}` };
    const sub = (prefix: string, rules: Rule[], component: Component): Mapped | undefined => {
      if (!key.startsWith(prefix)) return undefined;
      const mapped = applyRules(rules, key.slice(prefix.length));
      if (!mapped) throw new Error(`single-file checkpoint: unknown ${component} key '${key}'`);
      return { component, key: mapped };
    };
    const found = sub("model.diffusion_model.", uRules, "unet") ?? sub("first_stage_model.", vRules, "vae");
    if (!found) throw new Error(`single-file checkpoint: unknown key '${key}'`);
    return found;
  };
}

/** diffusers key → CompVis key: the inverse mapping, for writing single-file checkpoints. */
export function toCompVisKey(
  component: Component,
  key: string,
  unet: Pick<UNet2DConditionConfig, "layers_per_block" | "up_block_types">,
  vaeBlocks: number,
): string {
  if (component === "text_encoder") return `cond_stage_model.transformer.${key}`;
  const L = unet.layers_per_block as number;
  if (component === "vae") {
    const resnet = (rest: string | undefined) => renamePrefix(rest as string, VAE_RESNET_TO_DIFFUSERS, true);
    const flip = (i: string | undefined) => vaeBlocks - 1 - n(i);
    const rules: Rule[] = [
      [/^(encoder|decoder)\.conv_norm_out\.(.*)$/, (m) => `${m[1]}.norm_out.${m[2]}`],
      [
        /^(encoder|decoder)\.mid_block\.resnets\.(\d)\.(.*)$/,
        (m) => `${m[1]}.mid.block_${n(m[2]) + 1}.${resnet(m[3])}`,
      ],
      [
        /^(encoder|decoder)\.mid_block\.attentions\.0\.(.*)$/,
        (m) => `${m[1]}.mid.attn_1.${renamePrefix(m[2] as string, VAE_ATTN_TO_DIFFUSERS, true)}`,
      ],
      [
        /^encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\.(.*)$/,
        (m) => `encoder.down.${m[1]}.block.${m[2]}.${resnet(m[3])}`,
      ],
      [
        /^encoder\.down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.*)$/,
        (m) => `encoder.down.${m[1]}.downsample.conv.${m[2]}`,
      ],
      [
        /^decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.(.*)$/,
        (m) => `decoder.up.${flip(m[1])}.block.${m[2]}.${resnet(m[3])}`,
      ],
      [
        /^decoder\.up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.*)$/,
        (m) => `decoder.up.${flip(m[1])}.upsample.conv.${m[2]}`,
      ],
    ];
    return `first_stage_model.${applyRules(rules, key) ?? key}`;
  }
  const resnet = (rest: string | undefined) => renamePrefix(rest as string, RESNET_TO_DIFFUSERS, true);
  const downIndex = (b: string | undefined, l: string | undefined) => 1 + n(b) * (L + 1) + n(l);
  const upIndex = (b: string | undefined, l: string | undefined) => n(b) * (L + 1) + n(l);
  const rules: Rule[] = [
    [/^time_embedding\.linear_(1|2)\.(.*)$/, (m) => `time_embed.${m[1] === "1" ? 0 : 2}.${m[2]}`],
    [/^conv_in\.(.*)$/, (m) => `input_blocks.0.0.${m[1]}`],
    [/^conv_norm_out\.(.*)$/, (m) => `out.0.${m[1]}`],
    [/^conv_out\.(.*)$/, (m) => `out.2.${m[1]}`],
    [/^down_blocks\.(\d+)\.resnets\.(\d+)\.(.*)$/, (m) => `input_blocks.${downIndex(m[1], m[2])}.0.${resnet(m[3])}`],
    [/^down_blocks\.(\d+)\.attentions\.(\d+)\.(.*)$/, (m) => `input_blocks.${downIndex(m[1], m[2])}.1.${m[3]}`],
    [
      /^down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.*)$/,
      (m) => `input_blocks.${(n(m[1]) + 1) * (L + 1)}.0.op.${m[2]}`,
    ],
    [/^mid_block\.resnets\.(\d)\.(.*)$/, (m) => `middle_block.${m[1] === "0" ? 0 : 2}.${resnet(m[2])}`],
    [/^mid_block\.attentions\.0\.(.*)$/, (m) => `middle_block.1.${m[1]}`],
    [/^up_blocks\.(\d+)\.resnets\.(\d+)\.(.*)$/, (m) => `output_blocks.${upIndex(m[1], m[2])}.0.${resnet(m[3])}`],
    [/^up_blocks\.(\d+)\.attentions\.(\d+)\.(.*)$/, (m) => `output_blocks.${upIndex(m[1], m[2])}.1.${m[3]}`],
    [
      /^up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.*)$/,
      (m) =>
        `output_blocks.${upIndex(m[1], String(L))}.${unet.up_block_types[n(m[1])] === "CrossAttnUpBlock2D" ? 2 : 1}.conv.${m[2]}`,
    ],
  ];
  return `model.diffusion_model.${applyRules(rules, key) ?? key}`;
}

/**
 * Configs for a single-file checkpoint from its tensor shapes. Head counts are not visible in the
 * weights: SD 1.x's 8 heads are assumed (64-wide heads when the context is 1024 wide, as SD 2.x).
 */
export function inferSingleFileConfigs(source: string | SafetensorsFile): {
  text: CLIPTextConfig;
  unet: UNet2DConditionConfig;
  vae: AutoencoderKLConfig;
  scheduler: DDIMConfig;
} {
  // A path is opened (and closed) here; an open file stays open for the caller.
  const st = typeof source === "string" ? SafetensorsFile.open(source) : source;
  const file = st.path;
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
    if (typeof source === "string") st.close();
  }
}

/**
 * Writes a diffusers folder's text encoder, UNet and VAE as one checkpoint in CompVis naming
 * (the layout of the original Stable Diffusion releases), keeping each tensor's dtype.
 */
export function writeCompVisCheckpoint(
  folder: string,
  out: string,
  unet: Pick<UNet2DConditionConfig, "layers_per_block" | "up_block_types">,
  vaeBlocks: number,
): void {
  const tensors: Record<string, SafetensorsTensor> = {};
  const parts: [Component, string][] = [
    ["text_encoder", "text_encoder/model.safetensors"],
    ["unet", "unet/diffusion_pytorch_model.safetensors"],
    ["vae", "vae/diffusion_pytorch_model.safetensors"],
  ];
  for (const [component, file] of parts) {
    const st = SafetensorsFile.open(`${folder}/${file}`);
    try {
      for (const entry of st.entries.values()) {
        tensors[toCompVisKey(component, entry.name, unet, vaeBlocks)] = {
          dtype: entry.dtype,
          shape: entry.shape,
          data: st.readRaw(entry.name),
        };
      }
    } finally {
      st.close();
    }
  }
  writeSafetensors(out, tensors);
}
