/**
 * Token grounding (TokenCompose's token loss) for the built-in model's training: the loss against a
 * float64 loop over its definition, and the targets of a hand-placed scene against the geometry of its
 * objects and the CLIP tokenizer's word positions.
 */
import path from "node:path";
import { describe, expect, it } from "vitest";
import * as G from "../../src/graph/index.js";
import { ClipTokenizer } from "../../src/models/clip_tokenizer.js";
import type { Scene } from "../../src/scenes/index.js";
import { sceneGrounding, tokenGroundingLoss, writeGrounding } from "../../src/training/grounding.js";
import { evaluate } from "../graph/harness.js";
import { random } from "../graph/reference.js";

describe("token grounding loss", () => {
  const [B, H, Q, L] = [2, 3, 6, 5];
  // probabilities: positive, each query row sums to 1 over the tokens
  const raw = random(B * H * Q * L, 3, 0.05, 1);
  const probs = Float32Array.from(raw, (v, i) => {
    const row = Math.floor(i / L) * L;
    let s = 0;
    for (let k = 0; k < L; k++) s += raw[row + k] as number;
    return v / s;
  });
  const region = Float32Array.from(random(B * Q * L, 4), (v) => (v > 0 ? 1 : 0));

  const reference = (tokens: Float32Array) => {
    let sum = 0;
    let count = 0;
    for (let b = 0; b < B; b++)
      for (let k = 0; k < L; k++) {
        if (!tokens[b * L + k]) continue;
        let inside = 0;
        let total = 0;
        for (let q = 0; q < Q; q++) {
          let a = 0;
          for (let h = 0; h < H; h++) a += probs[((b * H + h) * Q + q) * L + k] as number;
          a /= H;
          inside += a * (region[(b * Q + q) * L + k] as number);
          total += a;
        }
        sum += (1 - inside / total) ** 2;
        count++;
      }
    return count ? sum / count : 0;
  };

  const run = async (tokens: Float32Array) => {
    const loss = tokenGroundingLoss(
      G.input("probs", [B, H, Q, L]),
      G.input("region", [B, 1, Q, L]),
      G.input("tokens", [B, 1, 1, L]),
    );
    const out = await evaluate({ loss }, { probs, region, tokens });
    return (out.loss!.data as Float32Array)[0] as number;
  };

  it("is the mean over supervised tokens of (1 − attention inside / attention in all)²", async () => {
    const tokens = Float32Array.from([0, 1, 1, 0, 0, 1, 0, 0, 0, 1]);
    const want = reference(tokens);
    expect(want).toBeGreaterThan(0.05);
    expect(Math.abs((await run(tokens)) - want)).toBeLessThan(1e-6);
  });

  it("is 0 with no supervised token (an empty prompt)", async () => {
    expect(await run(new Float32Array(B * L))).toBe(0);
  });
});

describe("grounding targets of a scene", () => {
  it("supervise each object's colour and shape tokens with the cells the object touches", async () => {
    const tokenizer = await ClipTokenizer.fromFolder(
      path.resolve(import.meta.dirname, "../../models/nulltext-shapes/tokenizer"),
    );
    // "a red circle and a blue square on a white background": <bos> a red circle and a blue square …
    const scene: Scene = {
      background: "white",
      objects: [
        { shape: "circle", color: "red", cx: 0.3, cy: 0.6, size: 0.12 },
        { shape: "square", color: "blue", cx: 0.75, cy: 0.25, size: 0.1, rotation: 0 },
      ],
    };
    const g = sceneGrounding(scene, tokenizer, 64, [16, 8]);
    expect(g.tokens).toEqual([
      { position: 2, object: 0 },
      { position: 3, object: 0 },
      { position: 6, object: 1 },
      { position: 7, object: 1 },
    ]);
    const K = 77;
    const tokens = new Float32Array(K);
    const regions = new Map([16, 8].map((r) => [r, new Float32Array(r * r * K)]));
    writeGrounding(g, 0, K, tokens, regions);
    expect([...tokens.keys()].filter((k) => tokens[k])).toEqual([2, 3, 6, 7]);

    // The circle: centre (19.2, 38.4) px, radius 7.68 px. A cell whose square comes closer to the centre
    // than radius − 1 px must be marked for the circle's tokens; one farther than radius + 1 px must not.
    for (const r of [16, 8]) {
      const region = regions.get(r) as Float32Array;
      const f = 64 / r;
      let marked = 0;
      for (let cy = 0; cy < r; cy++)
        for (let cx = 0; cx < r; cx++) {
          const dx = Math.max(cx * f - 19.2, 0, 19.2 - (cx + 1) * f);
          const dy = Math.max(cy * f - 38.4, 0, 38.4 - (cy + 1) * f);
          const d = Math.hypot(dx, dy);
          const u = cy * r + cx;
          for (const k of [2, 3]) {
            if (d < 7.68 - 1) expect(region[u * K + k], `cell ${cx},${cy} at ${r}`).toBe(1);
            if (d > 7.68 + 1) expect(region[u * K + k], `cell ${cx},${cy} at ${r}`).toBe(0);
          }
          if (region[u * K + 2]) marked++;
          // The upright square: centre (48, 16) px, half side 6.4·√½ = 4.53 px, so pixels 43..52 across and
          // 11..20 down; its tokens' region is exactly the cells of that rectangle.
          const inSquare = cx * f <= 52 && (cx + 1) * f > 43 && cy * f <= 20 && (cy + 1) * f > 11;
          for (const k of [6, 7]) expect(region[u * K + k], `square cell ${cx},${cy} at ${r}`).toBe(inSquare ? 1 : 0);
          // unsupervised tokens have no region
          for (const k of [0, 1, 4, 5, 8, 9, 10, 11]) expect(region[u * K + k]).toBe(0);
        }
      expect(marked).toBeGreaterThan(0);
      expect(marked).toBeLessThan(r * r);
    }
  });
});
