/**
 * The torch.nn layers that diffusers and transformers models are made of. Each holds its weights
 * under the checkpoint's key names (`<prefix>.weight`, `<prefix>.bias`) and applies the same
 * function as its PyTorch counterpart.
 */

import type { Tensor } from "../graph/index.js";
import * as G from "../graph/index.js";
import { init, type WeightStore } from "./weights.js";

/** nn.Linear: y = x·Wᵀ + b over the last axis. */
export class Linear {
  readonly weight: Tensor;
  readonly bias?: Tensor;

  constructor(w: WeightStore, prefix: string, inFeatures: number, outFeatures: number, bias = true) {
    this.weight = w.get(`${prefix}.weight`, [outFeatures, inFeatures], init.fanIn(inFeatures));
    if (bias) this.bias = w.get(`${prefix}.bias`, [outFeatures], init.fanIn(inFeatures));
  }

  forward(x: Tensor): Tensor {
    return G.linear(x, this.weight, this.bias);
  }
}

export interface Conv2dOptions {
  stride?: number;
  padding?: number;
  bias?: boolean;
}

/** nn.Conv2d with a square kernel and symmetric padding. */
export class Conv2d {
  readonly weight: Tensor;
  readonly bias?: Tensor;
  private readonly stride: number;
  private readonly padding: number;

  constructor(
    w: WeightStore,
    prefix: string,
    inChannels: number,
    outChannels: number,
    kernel: number,
    o: Conv2dOptions = {},
  ) {
    const fanIn = inChannels * kernel * kernel;
    this.weight = w.get(`${prefix}.weight`, [outChannels, inChannels, kernel, kernel], init.fanIn(fanIn));
    if (o.bias ?? true) this.bias = w.get(`${prefix}.bias`, [outChannels], init.fanIn(fanIn));
    this.stride = o.stride ?? 1;
    this.padding = o.padding ?? 0;
  }

  forward(x: Tensor, pads?: [number, number, number, number]): Tensor {
    const p = this.padding;
    return G.conv2d(x, this.weight, this.bias, { strides: [this.stride, this.stride], pads: pads ?? [p, p, p, p] });
  }
}

/** nn.GroupNorm with affine parameters. */
export class GroupNorm {
  readonly weight: Tensor;
  readonly bias: Tensor;

  constructor(
    w: WeightStore,
    prefix: string,
    readonly groups: number,
    channels: number,
    readonly eps: number,
  ) {
    if (channels % groups) throw new Error(`${prefix}: ${channels} channels do not divide into ${groups} groups`);
    this.weight = w.get(`${prefix}.weight`, [channels], init.ones);
    this.bias = w.get(`${prefix}.bias`, [channels], init.zeros);
  }

  forward(x: Tensor): Tensor {
    return G.groupNorm(x, this.groups, this.weight, this.bias, this.eps);
  }
}

/** nn.LayerNorm over the last axis. */
export class LayerNorm {
  readonly weight: Tensor;
  readonly bias: Tensor;

  constructor(
    w: WeightStore,
    prefix: string,
    channels: number,
    readonly eps: number,
  ) {
    this.weight = w.get(`${prefix}.weight`, [channels], init.ones);
    this.bias = w.get(`${prefix}.bias`, [channels], init.zeros);
  }

  forward(x: Tensor): Tensor {
    return G.layerNorm(x, this.weight, this.bias, this.eps);
  }
}

/** nn.Embedding: rows of a table looked up by integer ids. */
export class Embedding {
  readonly weight: Tensor;

  constructor(w: WeightStore, prefix: string, count: number, dim: number, std = 1) {
    this.weight = w.get(`${prefix}.weight`, [count, dim], init.normal(std));
  }

  forward(ids: Tensor): Tensor {
    return G.gather(this.weight, ids, 0);
  }
}
