/**
 * CLIPTextModel (transformers `modeling_clip.py`, the text tower of Radford et al. 2021, "Learning
 * Transferable Visual Models From Natural Language Supervision"): token and position embeddings,
 * pre-norm transformer layers under a causal mask, final layer norm. Returns `last_hidden_state`,
 * the context Stable Diffusion conditions on. Weight keys follow `text_encoder/model.safetensors`.
 */

import type { Tensor } from "../graph/index.js";
import * as G from "../graph/index.js";
import { type ConfigSchema, ensureSupported, parseConfig } from "./config.js";
import { Embedding, LayerNorm, Linear } from "./layers.js";
import type { WeightStore } from "./weights.js";

export interface CLIPTextConfig {
  vocab_size: number;
  hidden_size: number;
  intermediate_size: number;
  projection_dim: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  max_position_embeddings: number;
  hidden_act: string;
  layer_norm_eps: number;
  attention_dropout: number;
  dropout: number;
  initializer_range: number;
  initializer_factor: number;
  pad_token_id: number;
  bos_token_id: number;
  eos_token_id: number;
}

/** transformers' CLIPTextConfig defaults. */
export const CLIP_TEXT_SCHEMA: ConfigSchema<CLIPTextConfig> = {
  defaults: {
    vocab_size: 49408,
    hidden_size: 512,
    intermediate_size: 2048,
    projection_dim: 512,
    num_hidden_layers: 12,
    num_attention_heads: 8,
    max_position_embeddings: 77,
    hidden_act: "quick_gelu",
    layer_norm_eps: 1e-5,
    attention_dropout: 0,
    dropout: 0,
    initializer_range: 0.02,
    initializer_factor: 1,
    pad_token_id: 1,
    bos_token_id: 49406,
    eos_token_id: 49407,
  },
  // PretrainedConfig's generic attributes: metadata and generation settings that do not change the encoder.
  ignored: [
    "architectures",
    "model_type",
    "torch_dtype",
    "transformers_version",
    "name_or_path",
    "return_dict",
    "output_hidden_states",
    "output_attentions",
    "torchscript",
    "use_bfloat16",
    "tie_word_embeddings",
    "is_encoder_decoder",
    "is_decoder",
    "cross_attention_hidden_size",
    "add_cross_attention",
    "tie_encoder_decoder",
    "max_length",
    "min_length",
    "do_sample",
    "early_stopping",
    "num_beams",
    "num_beam_groups",
    "diversity_penalty",
    "temperature",
    "top_k",
    "top_p",
    "typical_p",
    "repetition_penalty",
    "length_penalty",
    "no_repeat_ngram_size",
    "encoder_no_repeat_ngram_size",
    "bad_words_ids",
    "num_return_sequences",
    "chunk_size_feed_forward",
    "output_scores",
    "return_dict_in_generate",
    "forced_bos_token_id",
    "forced_eos_token_id",
    "remove_invalid_values",
    "exponential_decay_length_penalty",
    "suppress_tokens",
    "begin_suppress_tokens",
    "finetuning_task",
    "id2label",
    "label2id",
    "tokenizer_class",
    "prefix",
    "sep_token_id",
    "decoder_start_token_id",
    "task_specific_params",
    "problem_type",
    "pruned_heads",
    "gradient_checkpointing",
  ],
};

export function parseCLIPTextConfig(json: unknown, file: string): CLIPTextConfig {
  const c = parseConfig(json, CLIP_TEXT_SCHEMA, file);
  ensureSupported(
    ["quick_gelu", "gelu"].includes(c.hidden_act),
    file,
    "hidden_act",
    c.hidden_act,
    "quick_gelu or gelu",
  );
  ensureSupported(
    c.hidden_size % c.num_attention_heads === 0,
    file,
    "num_attention_heads",
    c.num_attention_heads,
    `must divide hidden_size ${c.hidden_size}`,
  );
  return c;
}

class CLIPAttention {
  readonly q_proj: Linear;
  readonly k_proj: Linear;
  readonly v_proj: Linear;
  readonly out_proj: Linear;

  constructor(
    w: WeightStore,
    prefix: string,
    private readonly c: CLIPTextConfig,
  ) {
    const d = c.hidden_size;
    this.q_proj = new Linear(w, `${prefix}.q_proj`, d, d);
    this.k_proj = new Linear(w, `${prefix}.k_proj`, d, d);
    this.v_proj = new Linear(w, `${prefix}.v_proj`, d, d);
    this.out_proj = new Linear(w, `${prefix}.out_proj`, d, d);
  }

  forward(x: Tensor, causalMask: Tensor): Tensor {
    const heads = this.c.num_attention_heads;
    const o = G.attention(this.q_proj.forward(x), this.k_proj.forward(x), this.v_proj.forward(x), {
      heads,
      mask: causalMask,
    });
    return this.out_proj.forward(o);
  }
}

class CLIPMLP {
  readonly fc1: Linear;
  readonly fc2: Linear;

  constructor(
    w: WeightStore,
    prefix: string,
    private readonly c: CLIPTextConfig,
  ) {
    this.fc1 = new Linear(w, `${prefix}.fc1`, c.hidden_size, c.intermediate_size);
    this.fc2 = new Linear(w, `${prefix}.fc2`, c.intermediate_size, c.hidden_size);
  }

  forward(x: Tensor): Tensor {
    const h = this.fc1.forward(x);
    return this.fc2.forward(this.c.hidden_act === "quick_gelu" ? G.quickGelu(h) : G.gelu(h));
  }
}

class CLIPEncoderLayer {
  readonly layer_norm1: LayerNorm;
  readonly self_attn: CLIPAttention;
  readonly layer_norm2: LayerNorm;
  readonly mlp: CLIPMLP;

  constructor(
    w: WeightStore,
    readonly prefix: string,
    c: CLIPTextConfig,
  ) {
    this.layer_norm1 = new LayerNorm(w, `${prefix}.layer_norm1`, c.hidden_size, c.layer_norm_eps);
    this.self_attn = new CLIPAttention(w, `${prefix}.self_attn`, c);
    this.layer_norm2 = new LayerNorm(w, `${prefix}.layer_norm2`, c.hidden_size, c.layer_norm_eps);
    this.mlp = new CLIPMLP(w, `${prefix}.mlp`, c);
  }

  forward(x: Tensor, causalMask: Tensor): Tensor {
    return G.withScope(this.prefix, () => {
      const h = G.add(x, this.self_attn.forward(this.layer_norm1.forward(x), causalMask));
      return G.add(h, this.mlp.forward(this.layer_norm2.forward(h)));
    });
  }
}

export class CLIPTextModel {
  readonly text_model: {
    embeddings: { token_embedding: Embedding; position_embedding: Embedding };
    encoder: { layers: CLIPEncoderLayer[] };
    final_layer_norm: LayerNorm;
  };

  constructor(
    w: WeightStore,
    readonly config: CLIPTextConfig,
  ) {
    const c = config;
    const std = c.initializer_range * c.initializer_factor;
    this.text_model = {
      embeddings: {
        token_embedding: new Embedding(w, "text_model.embeddings.token_embedding", c.vocab_size, c.hidden_size, std),
        position_embedding: new Embedding(
          w,
          "text_model.embeddings.position_embedding",
          c.max_position_embeddings,
          c.hidden_size,
          std,
        ),
      },
      encoder: {
        layers: Array.from(
          { length: c.num_hidden_layers },
          (_, i) => new CLIPEncoderLayer(w, `text_model.encoder.layers.${i}`, c),
        ),
      },
      final_layer_norm: new LayerNorm(w, "text_model.final_layer_norm", c.hidden_size, c.layer_norm_eps),
    };
  }

  /** input_ids [B, L] int64 → last_hidden_state [B, L, hidden]. */
  forward(inputIds: Tensor): Tensor {
    const m = this.text_model;
    const length = inputIds.shape[1] as number;
    if (length > this.config.max_position_embeddings) {
      throw new Error(
        `CLIPTextModel: ${length} tokens exceed max_position_embeddings ${this.config.max_position_embeddings}`,
      );
    }
    // 1. embeddings: tokens plus positions 0..L-1
    const positions = G.slice(m.embeddings.position_embedding.weight, [0], [length], [0]);
    let h = G.add(m.embeddings.token_embedding.forward(inputIds), positions);
    // 2. causal mask: position i attends to positions ≤ i
    const mask = new Float32Array(length * length);
    for (let i = 0; i < length; i++)
      for (let j = i + 1; j < length; j++) mask[i * length + j] = Number.NEGATIVE_INFINITY;
    const causal = G.constant(mask, [length, length]);
    // 3. encoder layers
    for (const layer of m.encoder.layers) h = layer.forward(h, causal);
    // 4. final layer norm
    return m.final_layer_norm.forward(h);
  }
}
