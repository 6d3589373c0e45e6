/**
 * The shipped model end to end, through the ordinary loader: text-to-image that the scene checker
 * reads correctly, the paper's reconstruction ordering (null-text inversion at w = 7.5 far above DDIM
 * inversion at w = 7.5 and close to DDIM at w = 1), and Prompt-to-Prompt edits that the checker reads
 * as the new attribute while pixels outside the edited region stay put.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DEFAULT_MODEL } from "../../src/cli/main.js";
import { maskedPsnr, psnr } from "../../src/image/index.js";
import { NullTextPipeline } from "../../src/pipeline.js";
import {
  checkPrompt,
  editPrompt,
  editRegion,
  editScene,
  parsePrompt,
  randomScene,
  renderScene,
  scenePrompt,
} from "../../src/scenes/index.js";

let pipe: NullTextPipeline;
const STEPS = 25;

beforeAll(async () => {
  pipe = await NullTextPipeline.load(DEFAULT_MODEL);
});
afterAll(async () => pipe.release());

describe("the built-in model", () => {
  it("loads as a diffusers folder with the real CLIP tokenizer, at 64×64", () => {
    expect(pipe.resolution).toBe(64);
    expect(pipe.model.tokenizer.vocabSize).toBe(49408);
    expect(pipe.model.unet.config.cross_attention_dim).toBe(pipe.model.textEncoder.config.hidden_size);
  });

  it("draws what one-object prompts say (checker), for fixed seeds", async () => {
    const prompts = [
      "a red circle on a white background",
      "a blue square on a black background",
      "a yellow star on a striped background",
      "a green triangle on a checked background",
    ];
    const results = [];
    for (const [i, prompt] of prompts.entries()) {
      const image = await pipe.generate(prompt, { seed: 100 + i, steps: STEPS });
      const want = parsePrompt(prompt);
      const check = checkPrompt(image, { objects: want.objects.map((o) => ({ color: o.color, shape: o.shape })) });
      results.push(
        `${prompt}: ${check.count && check.objects[0]?.color && check.objects[0]?.shape ? "ok" : check.reading.objects.map((o) => `${o.color} ${o.shape}`).join("+")}`,
      );
    }
    expect(results.filter((r) => !r.endsWith(": ok"))).toEqual([]);
  });

  it("reconstructs: null-text inversion ≫ DDIM at w = 7.5, and within 1.5 dB of DDIM at w = 1", async () => {
    const scene = randomScene(11, { objects: 1 });
    const image = renderScene(scene, 64);
    const prompt = scenePrompt(scene);
    const pivots = await pipe.ddimPivots(image, prompt, STEPS);
    const score = async (method: "ddim" | "nti", guidance: number) => {
      const { inversion } = await pipe.invert(image, prompt, { method, guidance, steps: STEPS, pivots });
      return psnr(image, await pipe.reconstruct(inversion));
    };
    const ddim1 = await score("ddim", 1);
    const ddim75 = await score("ddim", 7.5);
    const nti = await score("nti", 7.5);
    expect(nti).toBeGreaterThan(ddim75 + 5);
    expect(nti).toBeGreaterThan(ddim1 - 1.5);
  });

  it("edits a colour and a shape: the checker reads the new attribute; outside the edited region PSNR ≥ 25 dB", async () => {
    const scene = randomScene(21, { objects: 1 });
    const image = renderScene(scene, 64);
    const prompt = scenePrompt(scene);
    const object = scene.objects[0] as NonNullable<(typeof scene.objects)[0]>;
    const { inversion } = await pipe.invert(image, prompt, { steps: STEPS, innerSteps: 10 });
    for (const edit of [
      { kind: "color" as const, objectIndex: 0, to: object.color === "blue" ? ("yellow" as const) : ("blue" as const) },
      {
        kind: "shape" as const,
        objectIndex: 0,
        to: object.shape === "square" ? ("circle" as const) : ("square" as const),
      },
    ]) {
      const target = editPrompt(scene, edit);
      let mask: Uint8Array | undefined;
      const [source, result] = await pipe.edit(inversion, [{ prompt: target }], {
        localBlend: {
          words: [
            [2, 1],
            [2, 1],
          ],
        },
        onBlendMasks: (m) => {
          mask = m[0];
        },
      });
      // Local blend: outside the final mask (dilated by one latent cell, the decoder's reach) the
      // edit's pixels equal the source reconstruction's within 10/255.
      const far = farFromMask(mask as Uint8Array, 16, 1);
      let worst = 0;
      let counted = 0;
      for (let p = 0; p < 64 * 64; p++) {
        if (!far[Math.floor(p / 64 / 4) * 16 + Math.floor((p % 64) / 4)]) continue;
        counted++;
        for (let ch = 0; ch < 3; ch++)
          worst = Math.max(
            worst,
            Math.abs((result?.data[3 * p + ch] as number) - (source?.data[3 * p + ch] as number)),
          );
      }
      expect(counted).toBeGreaterThan(64 * 64 * 0.3);
      expect(worst).toBeLessThanOrEqual(10);
      const truth = editScene(scene, edit);
      const check = checkPrompt(result as typeof image, truth);
      expect(
        check.objects[0]?.[edit.kind],
        `${target}: read ${check.reading.objects.map((o) => `${o.color} ${o.shape}`)}`,
      ).toBe(true);
      const outside = editRegion(scene, edit, 64, 2).map((v) => 1 - v);
      expect(maskedPsnr(result as typeof image, image, { width: 64, height: 64, data: outside })).toBeGreaterThan(25);
    }
  });
});

/** Latent cells at Chebyshev distance > r from every masked cell. */
function farFromMask(mask: Uint8Array, size: number, r: number): Uint8Array {
  const out = new Uint8Array(size * size).fill(1);
  for (let y = 0; y < size; y++)
    for (let x = 0; x < size; x++) {
      if (!mask[y * size + x]) continue;
      for (let dy = -r; dy <= r; dy++)
        for (let dx = -r; dx <= r; dx++) {
          const yy = y + dy;
          const xx = x + dx;
          if (yy >= 0 && yy < size && xx >= 0 && xx < size) out[yy * size + xx] = 0;
        }
    }
  return out;
}
