/**
 * The CompVis → diffusers key mapping, pinned on key names of the real SD 1.5 release
 * (v1-5-pruned-emaonly.safetensors) with their diffusers counterparts, hand-checked against the
 * two checkpoints' layouts; and its inverse.
 */
import { describe, expect, it } from "vitest";
import { compVisKeyMapper, toCompVisKey } from "../../src/models/single_file.js";
import { UNET_SCHEMA } from "../../src/models/unet.js";

const unet = UNET_SCHEMA.defaults; // SD 1.5: layers_per_block 2, up blocks [UpBlock2D, CrossAttn ×3]
const vae = { block_out_channels: [128, 256, 512, 512] };
const map = compVisKeyMapper(unet, vae);

const PAIRS: [string, "unet" | "vae" | "text_encoder", string][] = [
  ["model.diffusion_model.input_blocks.0.0.weight", "unet", "conv_in.weight"],
  ["model.diffusion_model.time_embed.2.weight", "unet", "time_embedding.linear_2.weight"],
  ["model.diffusion_model.input_blocks.1.0.in_layers.0.weight", "unet", "down_blocks.0.resnets.0.norm1.weight"],
  [
    "model.diffusion_model.input_blocks.2.1.transformer_blocks.0.attn2.to_k.weight",
    "unet",
    "down_blocks.0.attentions.1.transformer_blocks.0.attn2.to_k.weight",
  ],
  ["model.diffusion_model.input_blocks.3.0.op.weight", "unet", "down_blocks.0.downsamplers.0.conv.weight"],
  [
    "model.diffusion_model.input_blocks.4.0.skip_connection.weight",
    "unet",
    "down_blocks.1.resnets.0.conv_shortcut.weight",
  ],
  ["model.diffusion_model.input_blocks.11.0.emb_layers.1.bias", "unet", "down_blocks.3.resnets.1.time_emb_proj.bias"],
  ["model.diffusion_model.middle_block.1.proj_in.weight", "unet", "mid_block.attentions.0.proj_in.weight"],
  ["model.diffusion_model.middle_block.2.out_layers.3.weight", "unet", "mid_block.resnets.1.conv2.weight"],
  ["model.diffusion_model.output_blocks.2.1.conv.weight", "unet", "up_blocks.0.upsamplers.0.conv.weight"],
  ["model.diffusion_model.output_blocks.3.1.norm.weight", "unet", "up_blocks.1.attentions.0.norm.weight"],
  ["model.diffusion_model.output_blocks.5.2.conv.weight", "unet", "up_blocks.1.upsamplers.0.conv.weight"],
  ["model.diffusion_model.output_blocks.8.2.conv.bias", "unet", "up_blocks.2.upsamplers.0.conv.bias"],
  ["model.diffusion_model.output_blocks.11.1.proj_out.bias", "unet", "up_blocks.3.attentions.2.proj_out.bias"],
  ["model.diffusion_model.output_blocks.0.0.out_layers.3.weight", "unet", "up_blocks.0.resnets.0.conv2.weight"],
  ["model.diffusion_model.out.0.weight", "unet", "conv_norm_out.weight"],
  ["model.diffusion_model.out.2.bias", "unet", "conv_out.bias"],
  [
    "first_stage_model.encoder.down.2.downsample.conv.weight",
    "vae",
    "encoder.down_blocks.2.downsamplers.0.conv.weight",
  ],
  [
    "first_stage_model.encoder.down.1.block.0.nin_shortcut.weight",
    "vae",
    "encoder.down_blocks.1.resnets.0.conv_shortcut.weight",
  ],
  ["first_stage_model.encoder.mid.attn_1.q.weight", "vae", "encoder.mid_block.attentions.0.to_q.weight"],
  ["first_stage_model.encoder.mid.attn_1.proj_out.bias", "vae", "encoder.mid_block.attentions.0.to_out.0.bias"],
  ["first_stage_model.encoder.mid.attn_1.norm.bias", "vae", "encoder.mid_block.attentions.0.group_norm.bias"],
  ["first_stage_model.encoder.mid.block_2.conv1.weight", "vae", "encoder.mid_block.resnets.1.conv1.weight"],
  ["first_stage_model.encoder.norm_out.weight", "vae", "encoder.conv_norm_out.weight"],
  ["first_stage_model.decoder.up.3.block.0.conv1.weight", "vae", "decoder.up_blocks.0.resnets.0.conv1.weight"],
  [
    "first_stage_model.decoder.up.1.block.0.nin_shortcut.weight",
    "vae",
    "decoder.up_blocks.2.resnets.0.conv_shortcut.weight",
  ],
  ["first_stage_model.decoder.up.1.upsample.conv.weight", "vae", "decoder.up_blocks.2.upsamplers.0.conv.weight"],
  ["first_stage_model.post_quant_conv.bias", "vae", "post_quant_conv.bias"],
  ["first_stage_model.decoder.conv_in.weight", "vae", "decoder.conv_in.weight"],
  [
    "cond_stage_model.transformer.text_model.encoder.layers.11.mlp.fc2.weight",
    "text_encoder",
    "text_model.encoder.layers.11.mlp.fc2.weight",
  ],
  ["cond_stage_model.transformer.text_model.final_layer_norm.bias", "text_encoder", "text_model.final_layer_norm.bias"],
];

describe("CompVis single-file key mapping", () => {
  it.each(PAIRS)("%s → %s %s", (compvis, component, diffusers) => {
    expect(map(compvis)).toEqual({ component, key: diffusers });
    expect(toCompVisKey(component, diffusers, unet, 4)).toBe(
      // the inverse always writes the current text_model.* layout
      compvis,
    );
  });

  it("drops EMA copies, DDPM buffers and position ids, and maps old text encoders without text_model", () => {
    for (const k of [
      "model_ema.decay",
      "model_ema.diffusion_modelinput_blocks00weight",
      "alphas_cumprod",
      "betas",
      "posterior_mean_coef1",
      "cond_stage_model.transformer.text_model.embeddings.position_ids",
    ]) {
      expect(map(k)).toBeNull();
    }
    expect(map("cond_stage_model.transformer.encoder.layers.0.self_attn.q_proj.weight")).toEqual({
      component: "text_encoder",
      key: "text_model.encoder.layers.0.self_attn.q_proj.weight",
    });
  });

  it("names unknown keys and refuses SD 2.x OpenCLIP text encoders", () => {
    expect(() => map("foo.bar")).toThrow(/unknown key 'foo.bar'/);
    expect(() => map("model.diffusion_model.something.weight")).toThrow(/unknown unet key/);
    expect(() => map("cond_stage_model.model.transformer.resblocks.0.attn.in_proj_weight")).toThrow(/SD 2.x/);
  });
});
