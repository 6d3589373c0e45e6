/**
 * AutoencoderKL (diffusers `autoencoder_kl.py` and `vae.py`, v0.21): the KL-regularised image
 * autoencoder of latent diffusion (Rombach et al. 2022). `encode` returns the posterior's mean
 * and log-variance (after quant_conv, log-variance clamped to [−30, 20]); `decode` maps a latent
 * (already divided by the scaling factor) back to an image in [−1, 1].
 */

import type { Tensor } from "../graph/index.js";
import * as G from "../graph/index.js";
import { type ConfigSchema, ensureSupported, parseConfig } from "./config.js";
import { Conv2d, GroupNorm, Linear } from "./layers.js";
import type { WeightStore } from "./weights.js";

export interface AutoencoderKLConfig {
  in_channels: number;
  out_channels: number;
  down_block_types: string[];
  up_block_types: string[];
  block_out_channels: number[];
  layers_per_block: number;
  act_fn: string;
  latent_channels: number;
  norm_num_groups: number;
  sample_size: number;
  scaling_factor: number;
}

/** diffusers' defaults (AutoencoderKL.__init__). */
export const VAE_SCHEMA: ConfigSchema<AutoencoderKLConfig> = {
  defaults: {
    in_channels: 3,
    out_channels: 3,
    down_block_types: ["DownEncoderBlock2D"],
    up_block_types: ["UpDecoderBlock2D"],
    block_out_channels: [64],
    layers_per_block: 1,
    act_fn: "silu",
    latent_channels: 4,
    norm_num_groups: 32,
    sample_size: 32,
    scaling_factor: 0.18215,
  },
  neutral: {
    shift_factor: null,
    latents_mean: null,
    latents_std: null,
    use_quant_conv: true,
    use_post_quant_conv: true,
    mid_block_add_attention: true,
  },
  // force_upcast only asks diffusers to run fp16 VAEs in fp32; we always compute in fp32.
  ignored: ["force_upcast"],
};

export function parseVAEConfig(json: unknown, file: string): AutoencoderKLConfig {
  const c = parseConfig(json, VAE_SCHEMA, file);
  ensureSupported(["silu", "swish"].includes(c.act_fn), file, "act_fn", c.act_fn, "silu");
  const n = c.block_out_channels.length;
  ensureSupported(
    c.down_block_types.length === n && c.down_block_types.every((t) => t === "DownEncoderBlock2D"),
    file,
    "down_block_types",
    c.down_block_types,
    `${n} × DownEncoderBlock2D`,
  );
  ensureSupported(
    c.up_block_types.length === n && c.up_block_types.every((t) => t === "UpDecoderBlock2D"),
    file,
    "up_block_types",
    c.up_block_types,
    `${n} × UpDecoderBlock2D`,
  );
  return c;
}

/** Old checkpoints name the VAE attention query/key/value/proj_attn; current diffusers to_q/to_k/to_v/to_out.0. */
export function renameOldVAEAttention(key: string): string {
  return key
    .replace(/\.attentions\.(\d+)\.query\./, ".attentions.$1.to_q.")
    .replace(/\.attentions\.(\d+)\.key\./, ".attentions.$1.to_k.")
    .replace(/\.attentions\.(\d+)\.value\./, ".attentions.$1.to_v.")
    .replace(/\.attentions\.(\d+)\.proj_attn\./, ".attentions.$1.to_out.0.");
}

class ResnetBlock2D {
  readonly norm1: GroupNorm;
  readonly conv1: Conv2d;
  readonly norm2: GroupNorm;
  readonly conv2: Conv2d;
  readonly conv_shortcut?: Conv2d;

  constructor(
    w: WeightStore,
    readonly prefix: string,
    inChannels: number,
    outChannels: number,
    groups: number,
  ) {
    this.norm1 = new GroupNorm(w, `${prefix}.norm1`, groups, inChannels, 1e-6);
    this.conv1 = new Conv2d(w, `${prefix}.conv1`, inChannels, outChannels, 3, { padding: 1 });
    this.norm2 = new GroupNorm(w, `${prefix}.norm2`, groups, outChannels, 1e-6);
    this.conv2 = new Conv2d(w, `${prefix}.conv2`, outChannels, outChannels, 3, { padding: 1 });
    if (inChannels !== outChannels)
      this.conv_shortcut = new Conv2d(w, `${prefix}.conv_shortcut`, inChannels, outChannels, 1);
  }

  forward(x: Tensor): Tensor {
    return G.withScope(this.prefix, () => {
      let h = this.conv1.forward(G.silu(this.norm1.forward(x)));
      h = this.conv2.forward(G.silu(this.norm2.forward(h)));
      return G.add(this.conv_shortcut ? this.conv_shortcut.forward(x) : x, h);
    });
  }
}

/** Single-head spatial self-attention with its own GroupNorm and a residual (the VAE mid block's). */
class AttentionBlock {
  readonly group_norm: GroupNorm;
  readonly to_q: Linear;
  readonly to_k: Linear;
  readonly to_v: Linear;
  readonly to_out: [Linear];

  constructor(
    w: WeightStore,
    readonly prefix: string,
    channels: number,
    groups: number,
  ) {
    this.group_norm = new GroupNorm(w, `${prefix}.group_norm`, groups, channels, 1e-6);
    this.to_q = new Linear(w, `${prefix}.to_q`, channels, channels);
    this.to_k = new Linear(w, `${prefix}.to_k`, channels, channels);
    this.to_v = new Linear(w, `${prefix}.to_v`, channels, channels);
    this.to_out = [new Linear(w, `${prefix}.to_out.0`, channels, channels)];
  }

  forward(x: Tensor): Tensor {
    return G.withScope(this.prefix, () => {
      const [b, c, h, wd] = x.shape as [number, number, number, number];
      const tokens = G.transpose(G.reshape(this.group_norm.forward(x), [b, c, h * wd]), [0, 2, 1]);
      const o = G.attention(this.to_q.forward(tokens), this.to_k.forward(tokens), this.to_v.forward(tokens), {
        heads: 1,
      });
      const out = G.reshape(G.transpose(this.to_out[0].forward(o), [0, 2, 1]), [b, c, h, wd]);
      return G.add(out, x);
    });
  }
}

class MidBlock {
  readonly resnets: [ResnetBlock2D, ResnetBlock2D];
  readonly attentions: [AttentionBlock];

  constructor(w: WeightStore, prefix: string, channels: number, groups: number) {
    this.resnets = [0, 1].map((i) => new ResnetBlock2D(w, `${prefix}.resnets.${i}`, channels, channels, groups)) as [
      ResnetBlock2D,
      ResnetBlock2D,
    ];
    this.attentions = [new AttentionBlock(w, `${prefix}.attentions.0`, channels, groups)];
  }

  forward(x: Tensor): Tensor {
    return this.resnets[1].forward(this.attentions[0].forward(this.resnets[0].forward(x)));
  }
}

class Encoder {
  readonly conv_in: Conv2d;
  readonly down_blocks: { resnets: ResnetBlock2D[]; downsamplers?: [{ conv: Conv2d }] }[];
  readonly mid_block: MidBlock;
  readonly conv_norm_out: GroupNorm;
  readonly conv_out: Conv2d;

  constructor(w: WeightStore, c: AutoencoderKLConfig) {
    const ch = c.block_out_channels;
    const g = c.norm_num_groups;
    this.conv_in = new Conv2d(w, "encoder.conv_in", c.in_channels, ch[0] as number, 3, { padding: 1 });
    let out = ch[0] as number;
    this.down_blocks = ch.map((channels, i) => {
      const input = out;
      out = channels;
      const prefix = `encoder.down_blocks.${i}`;
      const resnets = Array.from(
        { length: c.layers_per_block },
        (_, j) => new ResnetBlock2D(w, `${prefix}.resnets.${j}`, j === 0 ? input : out, out, g),
      );
      const last = i === ch.length - 1;
      return last
        ? { resnets }
        : {
            resnets,
            downsamplers: [{ conv: new Conv2d(w, `${prefix}.downsamplers.0.conv`, out, out, 3, { stride: 2 }) }],
          };
    });
    const top = ch[ch.length - 1] as number;
    this.mid_block = new MidBlock(w, "encoder.mid_block", top, g);
    this.conv_norm_out = new GroupNorm(w, "encoder.conv_norm_out", g, top, 1e-6);
    this.conv_out = new Conv2d(w, "encoder.conv_out", top, 2 * c.latent_channels, 3, { padding: 1 });
  }

  forward(x: Tensor): Tensor {
    let h = this.conv_in.forward(x);
    for (const block of this.down_blocks) {
      for (const r of block.resnets) h = r.forward(h);
      // Downsample2D with padding 0: pad right and bottom by one, then a stride-2 3×3 convolution.
      if (block.downsamplers) h = block.downsamplers[0].conv.forward(h, [0, 0, 1, 1]);
    }
    h = this.mid_block.forward(h);
    return this.conv_out.forward(G.silu(this.conv_norm_out.forward(h)));
  }
}

class Decoder {
  readonly conv_in: Conv2d;
  readonly mid_block: MidBlock;
  readonly up_blocks: { resnets: ResnetBlock2D[]; upsamplers?: [{ conv: Conv2d }] }[];
  readonly conv_norm_out: GroupNorm;
  readonly conv_out: Conv2d;

  constructor(w: WeightStore, c: AutoencoderKLConfig) {
    const reversed = [...c.block_out_channels].reverse();
    const g = c.norm_num_groups;
    const top = reversed[0] as number;
    this.conv_in = new Conv2d(w, "decoder.conv_in", c.latent_channels, top, 3, { padding: 1 });
    this.mid_block = new MidBlock(w, "decoder.mid_block", top, g);
    let out = top;
    this.up_blocks = reversed.map((channels, i) => {
      const input = out;
      out = channels;
      const prefix = `decoder.up_blocks.${i}`;
      const resnets = Array.from(
        { length: c.layers_per_block + 1 },
        (_, j) => new ResnetBlock2D(w, `${prefix}.resnets.${j}`, j === 0 ? input : out, out, g),
      );
      const last = i === reversed.length - 1;
      return last
        ? { resnets }
        : {
            resnets,
            upsamplers: [{ conv: new Conv2d(w, `${prefix}.upsamplers.0.conv`, out, out, 3, { padding: 1 }) }],
          };
    });
    const bottom = reversed[reversed.length - 1] as number;
    this.conv_norm_out = new GroupNorm(w, "decoder.conv_norm_out", g, bottom, 1e-6);
    this.conv_out = new Conv2d(w, "decoder.conv_out", bottom, c.out_channels, 3, { padding: 1 });
  }

  forward(z: Tensor): Tensor {
    let h = this.mid_block.forward(this.conv_in.forward(z));
    for (const block of this.up_blocks) {
      for (const r of block.resnets) h = r.forward(h);
      if (block.upsamplers) h = block.upsamplers[0].conv.forward(G.upsampleNearest(h, 2));
    }
    return this.conv_out.forward(G.silu(this.conv_norm_out.forward(h)));
  }
}

export class AutoencoderKL {
  readonly encoder: Encoder;
  readonly decoder: Decoder;
  readonly quant_conv: Conv2d;
  readonly post_quant_conv: Conv2d;

  constructor(
    w: WeightStore,
    readonly config: AutoencoderKLConfig,
  ) {
    const l = config.latent_channels;
    this.encoder = new Encoder(w, config);
    this.decoder = new Decoder(w, config);
    this.quant_conv = new Conv2d(w, "quant_conv", 2 * l, 2 * l, 1);
    this.post_quant_conv = new Conv2d(w, "post_quant_conv", l, l, 1);
  }

  /** Pixel size per latent cell. */
  get downscale(): number {
    return 2 ** (this.config.block_out_channels.length - 1);
  }

  /** image [B, 3, H, W] in [−1, 1] → posterior mean and log-variance [B, L, H/f, W/f]. */
  encode(image: Tensor): { mean: Tensor; logvar: Tensor } {
    const [, c, h, w] = image.shape as [number, number, number, number];
    if (c !== this.config.in_channels)
      throw new Error(`VAE: image ${image} must have ${this.config.in_channels} channels`);
    if (h % this.downscale || w % this.downscale)
      throw new Error(`VAE: image size ${h}×${w} must be a multiple of ${this.downscale}`);
    const moments = G.withScope("encoder", () => this.quant_conv.forward(this.encoder.forward(image)));
    const l = this.config.latent_channels;
    const [mean, logvar] = G.split(moments, [l, l], 1) as [Tensor, Tensor];
    return { mean, logvar: G.clip(logvar, -30, 20) };
  }

  /** latent [B, L, h, w] (unscaled) → image [B, 3, h·f, w·f], not clamped. */
  decode(latent: Tensor): Tensor {
    if (latent.shape[1] !== this.config.latent_channels) {
      throw new Error(`VAE: latent ${latent} must have ${this.config.latent_channels} channels`);
    }
    return G.withScope("decoder", () => this.decoder.forward(this.post_quant_conv.forward(latent)));
  }
}
