/**
 * Classifier-free guidance (Ho & Salimans 2022, "Classifier-Free Diffusion Guidance", eq. 6, in
 * the form Stable Diffusion and the null-text inversion code use):
 *
 *   ε̃ = ε_u + w·(ε_c − ε_u)
 *
 * with ε_u the noise predicted for the null (unconditional) embedding and ε_c for the prompt. One
 * definition for the host arrays and one for graphs, with the same operations in the same order,
 * so both give the same float32 values.
 */
import type { Tensor } from "../graph/index.js";
import * as G from "../graph/index.js";

/** ε_u + w·(ε_c − ε_u) on host arrays. */
export function guidedNoise(epsUncond: Float32Array, epsCond: Float32Array, w: number): Float32Array {
  if (epsUncond.length !== epsCond.length)
    throw new Error(`guidedNoise: ε_u has ${epsUncond.length} values, ε_c ${epsCond.length}`);
  const out = new Float32Array(epsUncond.length);
  for (let k = 0; k < out.length; k++)
    out[k] = (epsUncond[k] as number) + w * ((epsCond[k] as number) - (epsUncond[k] as number));
  return out;
}

/** ε_u + w·(ε_c − ε_u) as graph ops; w a scalar or a graph input. */
export function guidedNoiseGraph(epsUncond: Tensor, epsCond: Tensor, w: Tensor | number): Tensor {
  return G.add(epsUncond, G.mul(w, G.sub(epsCond, epsUncond)));
}
