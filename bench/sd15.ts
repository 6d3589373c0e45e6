/** The SD 1.5 UNet the benchmarks measure: full configuration, random weights made once, never committed. */
import fs from "node:fs";
import path from "node:path";
import { makeRandomSD15 } from "../scripts/make-random-sd15.js";
import * as G from "../src/graph/index.js";
import type { UNet2DConditionModel } from "../src/models/unet.js";

export const SD15_MODEL = path.resolve(import.meta.dirname, "..", ".cache", "sd15-random");

/** The random SD 1.5 folder, generated on first use (scripts/make-random-sd15.ts). */
export function randomSD15(): string {
  if (!fs.existsSync(path.join(SD15_MODEL, "unet", "diffusion_pytorch_model.safetensors"))) {
    console.error(`generating random SD 1.5 weights in ${SD15_MODEL} (once)`);
    makeRandomSD15(SD15_MODEL);
  }
  return SD15_MODEL;
}

/**
 * The UNet at latent×latent: output `eps`, and with `grad` also `vjp`, the gradient with respect to
 * the context. Inputs: sample, timestep, context (77 tokens), and with `grad` cotangent.
 */
export function unetGraph(unet: UNet2DConditionModel, latent: number, grad: boolean): Record<string, G.Tensor> {
  const channels = unet.config.in_channels;
  const sample = G.input("sample", [1, channels, latent, latent]);
  const timestep = G.input("timestep", [1]);
  const context = G.input("context", [1, 77, unet.crossAttentionDim]);
  const eps = unet.forward(sample, timestep, context);
  if (!grad) return { eps };
  const cotangent = G.input("cotangent", [1, channels, latent, latent]);
  return { eps, vjp: G.vjp([eps], [cotangent], [context])[0] as G.Tensor };
}
