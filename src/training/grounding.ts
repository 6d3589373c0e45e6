/**
 * Token grounding for the built-in model's training: the cross-attention of each object word (its
 * colour and its shape) is asked to fall inside the object, with TokenCompose's token loss
 * (Wang et al. 2024, "TokenCompose: Text-to-Image Diffusion with Token-level Supervision", eq. 3):
 *
 *   L_token = mean over supervised tokens i of (1 − Σ_{u ∈ B_i} A_{i,u} / Σ_u A_{i,u})²,
 *
 * A_{i,u} the attention of query position u to token i averaged over heads, B_i the cells the token's
 * object touches. Procedural scenes give exact object masks for free. Prompt-to-Prompt's local blend
 * reads these maps to confine an edit to the edited object; left alone, a small model trained for an
 * hour spreads its object words over the whole image and the blend mask covers everything.
 */
import type { Tensor } from "../graph/index.js";
import * as G from "../graph/index.js";
import type { ClipTokenizer } from "../models/clip_tokenizer.js";
import { objectMask, promptWords, type Scene, scenePrompt } from "../scenes/index.js";

/**
 * L_token of one cross-attention layer. probs [B, heads, r·r, L]; region [B, 1, r·r, L] (1 where the
 * token's object is); tokens [B, 1, 1, L] (1 on supervised tokens). Returns a scalar: the mean over
 * supervised tokens of the batch (0 when there are none).
 */
export function tokenGroundingLoss(probs: Tensor, region: Tensor, tokens: Tensor): Tensor {
  const a = G.reduceMean(probs, [1], true); // [B, 1, Nq, L]
  const inside = G.reduceSum(G.mul(a, region), [2], true); // [B, 1, 1, L]
  const total = G.reduceSum(a, [2], true);
  const miss = G.sub(1, G.div(inside, G.add(total, 1e-12)));
  const perToken = G.mul(G.mul(miss, miss), tokens);
  return G.div(G.reduceSum(perToken), G.maximum(G.reduceSum(tokens), 1));
}

/** An object word's token, and the cells its object touches at each resolution (square grids). */
export interface SceneGrounding {
  tokens: { position: number; object: number }[];
  /** resolution r → per object, r·r cells: 1 where the object touches. */
  cells: Map<number, Uint8Array[]>;
}

/**
 * The token positions of every object's colour and shape word in the scene's prompt, and the cells
 * (at each of `resolutions`, dividing `imageSize`) that each object touches in the rendered scene.
 */
export function sceneGrounding(
  scene: Scene,
  tokenizer: ClipTokenizer,
  imageSize: number,
  resolutions: readonly number[],
): SceneGrounding {
  const prompt = scenePrompt(scene);
  const tokens: SceneGrounding["tokens"] = [];
  promptWords(scene).forEach(({ role }, wordIndex) => {
    if (role.kind !== "color" && role.kind !== "shape") return;
    for (const position of tokenizer.wordTokenIndices(prompt, wordIndex))
      tokens.push({ position, object: role.objectIndex });
  });
  const masks = scene.objects.map((_, i) => objectMask(scene, i, imageSize));
  const cells = new Map(resolutions.map((r) => [r, masks.map((m) => touchedCells(m, imageSize, r))]));
  return { tokens, cells };
}

/**
 * Writes sample `i` of a batch's inputs of tokenGroundingLoss: `tokens` [B, L] and each resolution's
 * `regions` [B, r·r, L] (zero-filled by the caller; a sample left unwritten is not supervised).
 */
export function writeGrounding(
  g: SceneGrounding,
  i: number,
  maxTokens: number,
  tokens: Float32Array,
  regions: Map<number, Float32Array>,
): void {
  for (const { position, object } of g.tokens) {
    if (position >= maxTokens) continue;
    tokens[i * maxTokens + position] = 1;
    for (const [r, region] of regions) {
      const touched = g.cells.get(r)?.[object];
      if (!touched) throw new Error(`grounding: no cells at resolution ${r} for object ${object}`);
      const base = i * r * r * maxTokens;
      for (let u = 0; u < r * r; u++) region[base + u * maxTokens + position] = touched[u] as number;
    }
  }
}

/** 1 for each cell of an r×r grid over a size×size mask that contains a masked pixel. */
function touchedCells(mask: Uint8Array, size: number, r: number): Uint8Array {
  if (size % r !== 0) throw new Error(`grounding: resolution ${r} does not divide the image size ${size}`);
  const f = size / r;
  const out = new Uint8Array(r * r);
  for (let y = 0; y < size; y++)
    for (let x = 0; x < size; x++) if (mask[y * size + x]) out[Math.floor(y / f) * r + Math.floor(x / f)] = 1;
  return out;
}
