/**
 * UNet2DConditionModel (diffusers `unet_2d_condition.py`, v0.21), the noise predictor of Stable
 * Diffusion 1.x and 2.x (Rombach et al. 2022, "High-Resolution Image Synthesis with Latent
 * Diffusion Models"). Property paths equal the checkpoint keys
 * (`down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k.weight`), and `forward` keeps
 * diffusers' numbered steps. Attention probabilities pass through one explicit hook, given when
 * the graph is built (Prompt-to-Prompt controls attention there).
 */

import type { Tensor } from "../graph/index.js";
import * as G from "../graph/index.js";
import { type ConfigSchema, ensureSupported, parseConfig, perBlock } from "./config.js";
import { Conv2d, GroupNorm, LayerNorm, Linear } from "./layers.js";
import type { WeightStore } from "./weights.js";

export interface UNet2DConditionConfig {
  sample_size: number | null;
  in_channels: number;
  out_channels: number;
  center_input_sample: boolean;
  flip_sin_to_cos: boolean;
  freq_shift: number;
  down_block_types: string[];
  mid_block_type: string;
  up_block_types: string[];
  block_out_channels: number[];
  layers_per_block: number | number[];
  downsample_padding: number;
  mid_block_scale_factor: number;
  dropout: number;
  act_fn: string;
  norm_num_groups: number;
  norm_eps: number;
  cross_attention_dim: number | number[];
  transformer_layers_per_block: number | number[];
  attention_head_dim: number | number[];
  num_attention_heads: number | number[] | null;
  use_linear_projection: boolean;
  upcast_attention: boolean;
  resnet_out_scale_factor: number;
  time_embedding_dim: number | null;
  conv_in_kernel: number;
  conv_out_kernel: number;
}

/** diffusers' defaults (UNet2DConditionModel.__init__). */
export const UNET_SCHEMA: ConfigSchema<UNet2DConditionConfig> = {
  defaults: {
    sample_size: null,
    in_channels: 4,
    out_channels: 4,
    center_input_sample: false,
    flip_sin_to_cos: true,
    freq_shift: 0,
    down_block_types: ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    mid_block_type: "UNetMidBlock2DCrossAttn",
    up_block_types: ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    block_out_channels: [320, 640, 1280, 1280],
    layers_per_block: 2,
    downsample_padding: 1,
    mid_block_scale_factor: 1,
    dropout: 0,
    act_fn: "silu",
    norm_num_groups: 32,
    norm_eps: 1e-5,
    cross_attention_dim: 1280,
    transformer_layers_per_block: 1,
    attention_head_dim: 8,
    num_attention_heads: null,
    use_linear_projection: false,
    upcast_attention: false,
    resnet_out_scale_factor: 1,
    time_embedding_dim: null,
    conv_in_kernel: 3,
    conv_out_kernel: 3,
  },
  neutral: {
    only_cross_attention: false,
    dual_cross_attention: false,
    class_embed_type: null,
    addition_embed_type: null,
    addition_time_embed_dim: null,
    num_class_embeds: null,
    encoder_hid_dim: null,
    encoder_hid_dim_type: null,
    resnet_time_scale_shift: "default",
    resnet_skip_time_act: false,
    time_embedding_type: "positional",
    time_embedding_act_fn: null,
    timestep_post_act: null,
    time_cond_proj_dim: null,
    projection_class_embeddings_input_dim: null,
    attention_type: "default",
    class_embeddings_concat: false,
    mid_block_only_cross_attention: null,
    cross_attention_norm: null,
    reverse_transformer_layers_per_block: null,
  },
  // Options of conditioning heads that are absent when the neutral values above hold.
  ignored: ["addition_embed_type_num_heads"],
};

export function parseUNetConfig(json: unknown, file: string): UNet2DConditionConfig {
  const c = parseConfig(json, UNET_SCHEMA, file, [
    "sample_size",
    "num_attention_heads",
    "time_embedding_dim",
    "layers_per_block[]",
    "cross_attention_dim[]",
    "transformer_layers_per_block[]",
    "attention_head_dim[]",
    "num_attention_heads[]",
  ]);
  const n = c.block_out_channels.length;
  ensureSupported(["silu", "swish"].includes(c.act_fn), file, "act_fn", c.act_fn, "silu");
  ensureSupported(
    c.mid_block_type === "UNetMidBlock2DCrossAttn",
    file,
    "mid_block_type",
    c.mid_block_type,
    "UNetMidBlock2DCrossAttn",
  );
  ensureSupported(
    c.down_block_types.length === n,
    file,
    "down_block_types",
    c.down_block_types,
    `one per block_out_channels entry (${n})`,
  );
  ensureSupported(
    c.up_block_types.length === n,
    file,
    "up_block_types",
    c.up_block_types,
    `one per block_out_channels entry (${n})`,
  );
  for (const t of c.down_block_types) {
    ensureSupported(
      ["CrossAttnDownBlock2D", "DownBlock2D"].includes(t),
      file,
      "down_block_types",
      t,
      "CrossAttnDownBlock2D or DownBlock2D",
    );
  }
  for (const t of c.up_block_types) {
    ensureSupported(
      ["CrossAttnUpBlock2D", "UpBlock2D"].includes(t),
      file,
      "up_block_types",
      t,
      "CrossAttnUpBlock2D or UpBlock2D",
    );
  }
  for (const k of [c.conv_in_kernel, c.conv_out_kernel])
    ensureSupported(k % 2 === 1, file, "conv_in_kernel/conv_out_kernel", k, "odd sizes");
  return c;
}

/** What the attention hook sees: where the layer is, and its probabilities [B, heads, Nq, Nk]. */
export interface AttentionSite {
  /** Checkpoint prefix of the attention layer, e.g. "up_blocks.1.attentions.0.transformer_blocks.0.attn2". */
  name: string;
  place: "down" | "mid" | "up";
  kind: "self" | "cross";
  /** Spatial size [h, w] of the queries (Nq = h·w). */
  resolution: [number, number];
}

/**
 * Attention control, given when the graph is built. The hook names the layers it touches; only
 * those keep their full probability matrix for `apply` to see, every other layer keeps blocked,
 * memory-bounded attention (G.attention without a probsHook).
 */
export interface AttentionHook {
  touches(site: AttentionSite): boolean;
  /** probs [B, heads, Nq, Nk] → the probabilities the layer uses. */
  apply(probs: Tensor, site: AttentionSite): Tensor;
}

interface Ctx {
  temb: Tensor;
  context: Tensor;
  hook?: AttentionHook;
  place: AttentionSite["place"];
}

class ResnetBlock2D {
  readonly norm1: GroupNorm;
  readonly conv1: Conv2d;
  readonly time_emb_proj: Linear;
  readonly norm2: GroupNorm;
  readonly conv2: Conv2d;
  readonly conv_shortcut?: Conv2d;

  constructor(
    w: WeightStore,
    readonly prefix: string,
    inChannels: number,
    outChannels: number,
    tembChannels: number,
    groups: number,
    eps: number,
    private readonly outputScaleFactor: number,
  ) {
    this.norm1 = new GroupNorm(w, `${prefix}.norm1`, groups, inChannels, eps);
    this.conv1 = new Conv2d(w, `${prefix}.conv1`, inChannels, outChannels, 3, { padding: 1 });
    this.time_emb_proj = new Linear(w, `${prefix}.time_emb_proj`, tembChannels, outChannels);
    this.norm2 = new GroupNorm(w, `${prefix}.norm2`, groups, outChannels, eps);
    this.conv2 = new Conv2d(w, `${prefix}.conv2`, outChannels, outChannels, 3, { padding: 1 });
    if (inChannels !== outChannels)
      this.conv_shortcut = new Conv2d(w, `${prefix}.conv_shortcut`, inChannels, outChannels, 1);
  }

  forward(x: Tensor, temb: Tensor): Tensor {
    return G.withScope(this.prefix, () => {
      let h = this.conv1.forward(G.silu(this.norm1.forward(x)));
      const t = this.time_emb_proj.forward(G.silu(temb)); // [B, C]
      h = G.add(h, G.unsqueeze(t, [2, 3]));
      h = this.conv2.forward(G.silu(this.norm2.forward(h)));
      const shortcut = this.conv_shortcut ? this.conv_shortcut.forward(x) : x;
      const out = G.add(shortcut, h);
      return this.outputScaleFactor === 1 ? out : G.div(out, this.outputScaleFactor);
    });
  }
}

class Attention {
  readonly to_q: Linear;
  readonly to_k: Linear;
  readonly to_v: Linear;
  readonly to_out: [Linear];

  constructor(
    w: WeightStore,
    readonly prefix: string,
    queryDim: number,
    contextDim: number,
    private readonly heads: number,
    headDim: number,
    private readonly kind: "self" | "cross",
  ) {
    const inner = heads * headDim;
    this.to_q = new Linear(w, `${prefix}.to_q`, queryDim, inner, false);
    this.to_k = new Linear(w, `${prefix}.to_k`, contextDim, inner, false);
    this.to_v = new Linear(w, `${prefix}.to_v`, contextDim, inner, false);
    this.to_out = [new Linear(w, `${prefix}.to_out.0`, inner, queryDim)];
  }

  forward(x: Tensor, context: Tensor, ctx: Ctx, resolution: [number, number]): Tensor {
    return G.withScope(this.prefix, () => {
      const site: AttentionSite = { name: this.prefix, place: ctx.place, kind: this.kind, resolution };
      const hook = ctx.hook;
      const o = G.attention(this.to_q.forward(x), this.to_k.forward(context), this.to_v.forward(context), {
        heads: this.heads,
        probsHook: hook?.touches(site) ? (p) => hook.apply(p, site) : undefined,
      });
      return this.to_out[0].forward(o);
    });
  }
}

/** GEGLU feed-forward (Shazeer 2020): proj → (h, gate) → h·gelu(gate) → linear. */
class FeedForward {
  readonly net: [{ proj: Linear }, null, Linear];

  constructor(
    w: WeightStore,
    prefix: string,
    dim: number,
    private readonly inner = 4 * dim,
  ) {
    this.net = [
      { proj: new Linear(w, `${prefix}.net.0.proj`, dim, 2 * inner) },
      null,
      new Linear(w, `${prefix}.net.2`, inner, dim),
    ];
  }

  forward(x: Tensor): Tensor {
    const [h, gate] = G.split(this.net[0].proj.forward(x), [this.inner, this.inner], -1) as [Tensor, Tensor];
    return this.net[2].forward(G.mul(h, G.gelu(gate)));
  }
}

class BasicTransformerBlock {
  readonly norm1: LayerNorm;
  readonly attn1: Attention;
  readonly norm2: LayerNorm;
  readonly attn2: Attention;
  readonly norm3: LayerNorm;
  readonly ff: FeedForward;

  constructor(w: WeightStore, prefix: string, dim: number, heads: number, headDim: number, crossDim: number) {
    this.norm1 = new LayerNorm(w, `${prefix}.norm1`, dim, 1e-5);
    this.attn1 = new Attention(w, `${prefix}.attn1`, dim, dim, heads, headDim, "self");
    this.norm2 = new LayerNorm(w, `${prefix}.norm2`, dim, 1e-5);
    this.attn2 = new Attention(w, `${prefix}.attn2`, dim, crossDim, heads, headDim, "cross");
    this.norm3 = new LayerNorm(w, `${prefix}.norm3`, dim, 1e-5);
    this.ff = new FeedForward(w, `${prefix}.ff`, dim);
  }

  forward(x: Tensor, ctx: Ctx, resolution: [number, number]): Tensor {
    const n1 = this.norm1.forward(x);
    let h = G.add(x, this.attn1.forward(n1, n1, ctx, resolution));
    h = G.add(h, this.attn2.forward(this.norm2.forward(h), ctx.context, ctx, resolution));
    return G.add(h, this.ff.forward(this.norm3.forward(h)));
  }
}

/** Transformer2DModel for continuous inputs: norm, proj_in, transformer blocks, proj_out, residual. */
class Transformer2DModel {
  readonly norm: GroupNorm;
  readonly proj_in: Linear | Conv2d;
  readonly transformer_blocks: BasicTransformerBlock[];
  readonly proj_out: Linear | Conv2d;

  constructor(
    w: WeightStore,
    readonly prefix: string,
    channels: number,
    heads: number,
    layers: number,
    crossDim: number,
    groups: number,
    private readonly linear: boolean,
  ) {
    const headDim = channels / heads;
    if (!Number.isInteger(headDim)) throw new Error(`${prefix}: ${channels} channels do not split into ${heads} heads`);
    this.norm = new GroupNorm(w, `${prefix}.norm`, groups, channels, 1e-6);
    this.proj_in = linear
      ? new Linear(w, `${prefix}.proj_in`, channels, channels)
      : new Conv2d(w, `${prefix}.proj_in`, channels, channels, 1);
    this.transformer_blocks = Array.from(
      { length: layers },
      (_, i) => new BasicTransformerBlock(w, `${prefix}.transformer_blocks.${i}`, channels, heads, headDim, crossDim),
    );
    this.proj_out = linear
      ? new Linear(w, `${prefix}.proj_out`, channels, channels)
      : new Conv2d(w, `${prefix}.proj_out`, channels, channels, 1);
  }

  forward(x: Tensor, ctx: Ctx): Tensor {
    return G.withScope(this.prefix, () => {
      const [b, c, h, wd] = x.shape as [number, number, number, number];
      const toTokens = (t: Tensor) => G.transpose(G.reshape(t, [b, c, h * wd]), [0, 2, 1]); // [B, HW, C]
      const toImage = (t: Tensor) => G.reshape(G.transpose(t, [0, 2, 1]), [b, c, h, wd]);
      const normed = this.norm.forward(x);
      let tokens = this.linear ? this.proj_in.forward(toTokens(normed)) : toTokens(this.proj_in.forward(normed));
      for (const block of this.transformer_blocks) tokens = block.forward(tokens, ctx, [h, wd]);
      const out = this.linear ? toImage(this.proj_out.forward(tokens)) : this.proj_out.forward(toImage(tokens));
      return G.add(out, x);
    });
  }
}

class Downsample2D {
  readonly conv: Conv2d;

  constructor(
    w: WeightStore,
    prefix: string,
    channels: number,
    private readonly padding: number,
  ) {
    this.conv = new Conv2d(w, `${prefix}.conv`, channels, channels, 3, { stride: 2, padding });
  }

  forward(x: Tensor): Tensor {
    // diffusers pads (0, 1, 0, 1) when padding = 0 (the VAE's and some UNets' convention)
    return this.padding === 0 ? this.conv.forward(x, [0, 0, 1, 1]) : this.conv.forward(x);
  }
}

class Upsample2D {
  readonly conv: Conv2d;

  constructor(w: WeightStore, prefix: string, channels: number) {
    this.conv = new Conv2d(w, `${prefix}.conv`, channels, channels, 3, { padding: 1 });
  }

  forward(x: Tensor): Tensor {
    return this.conv.forward(G.upsampleNearest(x, 2));
  }
}

interface BlockSpec {
  w: WeightStore;
  prefix: string;
  layers: number;
  inChannels: number;
  outChannels: number;
  tembChannels: number;
  groups: number;
  eps: number;
  outputScale: number;
  attention: { heads: number; transformerLayers: number; crossDim: number; linear: boolean } | null;
}

class DownBlock {
  readonly resnets: ResnetBlock2D[];
  readonly attentions?: Transformer2DModel[];
  readonly downsamplers?: [Downsample2D];

  constructor(s: BlockSpec, addDownsample: boolean, downsamplePadding: number) {
    this.resnets = Array.from(
      { length: s.layers },
      (_, i) =>
        new ResnetBlock2D(
          s.w,
          `${s.prefix}.resnets.${i}`,
          i === 0 ? s.inChannels : s.outChannels,
          s.outChannels,
          s.tembChannels,
          s.groups,
          s.eps,
          s.outputScale,
        ),
    );
    this.attentions = blockAttentions(s);
    if (addDownsample)
      this.downsamplers = [new Downsample2D(s.w, `${s.prefix}.downsamplers.0`, s.outChannels, downsamplePadding)];
  }

  /** Returns the output and the residuals the up path concatenates. */
  forward(x: Tensor, ctx: Ctx): { h: Tensor; residuals: Tensor[] } {
    const residuals: Tensor[] = [];
    let h = x;
    this.resnets.forEach((resnet, i) => {
      h = resnet.forward(h, ctx.temb);
      const attn = this.attentions?.[i];
      if (attn) h = attn.forward(h, ctx);
      residuals.push(h);
    });
    if (this.downsamplers) {
      h = this.downsamplers[0].forward(h);
      residuals.push(h);
    }
    return { h, residuals };
  }
}

/** A cross-attention block's Transformer2DModel per layer (`attentions.i`), none for a plain block. */
function blockAttentions(s: BlockSpec): Transformer2DModel[] | undefined {
  const a = s.attention;
  if (!a) return undefined;
  return Array.from(
    { length: s.layers },
    (_, i) =>
      new Transformer2DModel(
        s.w,
        `${s.prefix}.attentions.${i}`,
        s.outChannels,
        a.heads,
        a.transformerLayers,
        a.crossDim,
        s.groups,
        a.linear,
      ),
  );
}

class UpBlock {
  readonly resnets: ResnetBlock2D[];
  readonly attentions?: Transformer2DModel[];
  readonly upsamplers?: [Upsample2D];

  constructor(s: BlockSpec, prevOutputChannels: number, addUpsample: boolean) {
    this.resnets = Array.from({ length: s.layers }, (_, i) => {
      const skip = i === s.layers - 1 ? s.inChannels : s.outChannels;
      const resIn = i === 0 ? prevOutputChannels : s.outChannels;
      return new ResnetBlock2D(
        s.w,
        `${s.prefix}.resnets.${i}`,
        resIn + skip,
        s.outChannels,
        s.tembChannels,
        s.groups,
        s.eps,
        s.outputScale,
      );
    });
    this.attentions = blockAttentions(s);
    if (addUpsample) this.upsamplers = [new Upsample2D(s.w, `${s.prefix}.upsamplers.0`, s.outChannels)];
  }

  forward(x: Tensor, residuals: Tensor[], ctx: Ctx): Tensor {
    let h = x;
    this.resnets.forEach((resnet, i) => {
      const skip = residuals.pop() as Tensor;
      h = resnet.forward(G.concat([h, skip], 1), ctx.temb);
      const attn = this.attentions?.[i];
      if (attn) h = attn.forward(h, ctx);
    });
    return this.upsamplers ? this.upsamplers[0].forward(h) : h;
  }
}

class UNetMidBlock2DCrossAttn {
  readonly resnets: [ResnetBlock2D, ResnetBlock2D];
  readonly attentions: [Transformer2DModel];

  constructor(s: BlockSpec) {
    const a = s.attention as NonNullable<BlockSpec["attention"]>;
    const c = s.inChannels;
    const resnet = (i: number) =>
      new ResnetBlock2D(s.w, `${s.prefix}.resnets.${i}`, c, c, s.tembChannels, s.groups, s.eps, s.outputScale);
    this.resnets = [resnet(0), resnet(1)];
    this.attentions = [
      new Transformer2DModel(
        s.w,
        `${s.prefix}.attentions.0`,
        c,
        a.heads,
        a.transformerLayers,
        a.crossDim,
        s.groups,
        a.linear,
      ),
    ];
  }

  forward(x: Tensor, ctx: Ctx): Tensor {
    const h = this.resnets[0].forward(x, ctx.temb);
    return this.resnets[1].forward(this.attentions[0].forward(h, ctx), ctx.temb);
  }
}

export interface UNetForwardOptions {
  attentionHook?: AttentionHook;
}

export class UNet2DConditionModel {
  readonly conv_in: Conv2d;
  readonly time_embedding: { linear_1: Linear; linear_2: Linear };
  readonly down_blocks: DownBlock[];
  readonly mid_block: UNetMidBlock2DCrossAttn;
  readonly up_blocks: UpBlock[];
  readonly conv_norm_out: GroupNorm;
  readonly conv_out: Conv2d;
  /** Context width each cross-attention expects (the text encoder's hidden size). */
  readonly crossAttentionDim: number;

  constructor(
    w: WeightStore,
    readonly config: UNet2DConditionConfig,
    file = "unet config",
  ) {
    const c = config;
    const n = c.block_out_channels.length;
    const ch = c.block_out_channels;
    const heads = perBlock(c.num_attention_heads ?? c.attention_head_dim, n, file, "attention_head_dim");
    const crossDims = perBlock(c.cross_attention_dim, n, file, "cross_attention_dim");
    const layersPerBlock = perBlock(c.layers_per_block, n, file, "layers_per_block");
    const transformerLayers = perBlock(c.transformer_layers_per_block, n, file, "transformer_layers_per_block");
    if (new Set(crossDims).size !== 1)
      throw new Error(`${file}: different cross_attention_dim per block is not supported`);
    this.crossAttentionDim = crossDims[0] as number;
    const timeDim = c.time_embedding_dim ?? 4 * (ch[0] as number);

    // 1. time
    this.time_embedding = {
      linear_1: new Linear(w, "time_embedding.linear_1", ch[0] as number, timeDim),
      linear_2: new Linear(w, "time_embedding.linear_2", timeDim, timeDim),
    };
    // 2. pre-process
    this.conv_in = new Conv2d(w, "conv_in", c.in_channels, ch[0] as number, c.conv_in_kernel, {
      padding: (c.conv_in_kernel - 1) / 2,
    });
    const spec = (
      prefix: string,
      i: number,
      layers: number,
      inCh: number,
      outCh: number,
      cross: boolean,
      outputScale: number,
    ): BlockSpec => ({
      w,
      prefix,
      layers,
      inChannels: inCh,
      outChannels: outCh,
      tembChannels: timeDim,
      groups: c.norm_num_groups,
      eps: c.norm_eps,
      outputScale,
      attention: cross
        ? {
            heads: heads[i] as number,
            transformerLayers: transformerLayers[i] as number,
            crossDim: crossDims[i] as number,
            linear: c.use_linear_projection,
          }
        : null,
    });
    // 3. down
    this.down_blocks = c.down_block_types.map((type, i) => {
      const inCh = i === 0 ? (ch[0] as number) : (ch[i - 1] as number);
      const s = spec(
        `down_blocks.${i}`,
        i,
        layersPerBlock[i] as number,
        inCh,
        ch[i] as number,
        type === "CrossAttnDownBlock2D",
        c.resnet_out_scale_factor,
      );
      return new DownBlock(s, i < n - 1, c.downsample_padding);
    });
    // 4. mid
    const last = ch[n - 1] as number;
    this.mid_block = new UNetMidBlock2DCrossAttn(
      spec("mid_block", n - 1, 1, last, last, true, c.mid_block_scale_factor),
    );
    // 5. up
    const reversed = [...ch].reverse();
    const rHeads = [...heads].reverse();
    const rLayers = [...layersPerBlock].reverse();
    const rTransformer = [...transformerLayers].reverse();
    const rCross = [...crossDims].reverse();
    let outputChannel = reversed[0] as number;
    this.up_blocks = c.up_block_types.map((type, i) => {
      const prev = outputChannel;
      outputChannel = reversed[i] as number;
      const inCh = reversed[Math.min(i + 1, n - 1)] as number;
      const s: BlockSpec = {
        ...spec(`up_blocks.${i}`, 0, (rLayers[i] as number) + 1, inCh, outputChannel, false, c.resnet_out_scale_factor),
        attention:
          type === "CrossAttnUpBlock2D"
            ? {
                heads: rHeads[i] as number,
                transformerLayers: rTransformer[i] as number,
                crossDim: rCross[i] as number,
                linear: c.use_linear_projection,
              }
            : null,
      };
      return new UpBlock(s, prev, i < n - 1);
    });
    // 6. post-process
    this.conv_norm_out = new GroupNorm(w, "conv_norm_out", c.norm_num_groups, ch[0] as number, c.norm_eps);
    this.conv_out = new Conv2d(w, "conv_out", ch[0] as number, c.out_channels, c.conv_out_kernel, {
      padding: (c.conv_out_kernel - 1) / 2,
    });
  }

  /** Spatial size multiple the latent must have (one halving per downsampling block). */
  get sizeMultiple(): number {
    return 2 ** (this.config.block_out_channels.length - 1);
  }

  /**
   * sample [B, C, H, W], timestep [B] (float, in training steps), context [B, L, cross_attention_dim]
   * → predicted noise (or v) [B, C_out, H, W].
   */
  forward(sample: Tensor, timestep: Tensor, context: Tensor, options: UNetForwardOptions = {}): Tensor {
    const c = this.config;
    const [b, inC, h, wd] = sample.shape as [number, number, number, number];
    if (inC !== c.in_channels)
      throw new Error(`UNet: sample ${sample} has ${inC} channels, the config says ${c.in_channels}`);
    if (h % this.sizeMultiple || wd % this.sizeMultiple) {
      throw new Error(`UNet: latent size ${h}×${wd} must be a multiple of ${this.sizeMultiple}`);
    }
    if (context.rank !== 3 || context.shape[0] !== b || context.shape[2] !== this.crossAttentionDim) {
      throw new Error(`UNet: context ${context} must be [${b}, L, ${this.crossAttentionDim}]`);
    }
    if (timestep.rank !== 1 || timestep.shape[0] !== b) throw new Error(`UNet: timestep ${timestep} must be [${b}]`);

    // 0. center input if necessary
    let x = c.center_input_sample ? G.sub(G.mul(sample, 2), 1) : sample;

    // 1. time
    const tEmb = timestepEmbedding(timestep, c.block_out_channels[0] as number, c.flip_sin_to_cos, c.freq_shift);
    const temb = G.withScope("time_embedding", () =>
      this.time_embedding.linear_2.forward(G.silu(this.time_embedding.linear_1.forward(tEmb))),
    );

    // 2. pre-process
    x = this.conv_in.forward(x);

    // 3. down
    const ctx: Ctx = { temb, context, hook: options.attentionHook, place: "down" };
    const residuals: Tensor[] = [x];
    for (const block of this.down_blocks) {
      const out = block.forward(x, ctx);
      x = out.h;
      residuals.push(...out.residuals);
    }

    // 4. mid
    x = G.withScope("mid_block", () => this.mid_block.forward(x, { ...ctx, place: "mid" }));

    // 5. up
    for (const block of this.up_blocks) x = block.forward(x, residuals, { ...ctx, place: "up" });

    // 6. post-process
    return G.withScope("conv_out", () => this.conv_out.forward(G.silu(this.conv_norm_out.forward(x))));
  }
}

/**
 * Sinusoidal timestep embedding (diffusers `get_timestep_embedding`, from Vaswani et al. 2017):
 * frequencies exp(−ln(10000)·i/(half − shift)), [sin, cos] (or [cos, sin] when flipped).
 * The frequencies are computed in float32 as PyTorch does.
 */
export function timestepEmbedding(timestep: Tensor, dim: number, flipSinToCos: boolean, shift: number): Tensor {
  const half = Math.floor(dim / 2);
  const freqs = new Float32Array(half);
  const f = Math.fround;
  for (let i = 0; i < half; i++) freqs[i] = f(Math.exp(f(f(f(-Math.log(10000)) * i) / f(half - shift))));
  const args = G.mul(G.unsqueeze(timestep, [1]), G.constant(freqs, [1, half])); // [B, half]
  const sin = G.sin(args);
  const cos = G.cos(args);
  const emb = G.concat(flipSinToCos ? [cos, sin] : [sin, cos], 1);
  if (dim % 2) return G.pad(emb, [0, 0, 0, 1]);
  return emb;
}
