/**
 * The shipped model end to end, through the ordinary loader: text-to-image that the scene checker
 * reads correctly, the paper's reconstruction ordering (null-text inversion at w = 7.5 far above DDIM
 * inversion at w = 7.5 and close to DDIM at w = 1), and Prompt-to-Prompt edits (a colour, a shape) that
 * the checker reads as the new attribute while pixels outside the edited region stay put.
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

  it("draws the prompt's colour on the prompt's background, for fixed seeds (checker)", async () => {
    // The model's colours and backgrounds are reliable; its shapes are not (eval:shapes measures
    // colour-and-shape accuracy over 200 prompts), so this pins colour and background only.
    const prompts = [
      "a red circle on a white background",
      "a blue square on a black background",
      "a yellow star on a striped background",
      "a green triangle on a checked background",
    ];
    const misses = [];
    for (const [i, prompt] of prompts.entries()) {
      const image = await pipe.generate(prompt, { seed: 100 + i, steps: STEPS });
      const want = parsePrompt(prompt);
      const check = checkPrompt(image, want);
      const colours: string[] = check.reading.objects.map((o) => o.color);
      if (check.reading.background !== want.background || !colours.includes(String(want.objects[0]?.color)))
        misses.push(
          `${prompt}: read ${check.reading.objects.map((o) => `${o.color} ${o.shape}`)} on ${check.reading.background}`,
        );
    }
    expect(misses).toEqual([]);
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

  it("edits a colour (checker reads the new one); the source row is the reconstruction; local blend keeps pixels outside its mask", async () => {
    const scene = randomScene(21, { objects: 1 });
    const image = renderScene(scene, 64);
    const prompt = scenePrompt(scene);
    const object = scene.objects[0] as NonNullable<(typeof scene.objects)[0]>;
    const { inversion } = await pipe.invert(image, prompt, { steps: STEPS, innerSteps: 10 });
    const reconstruction = await pipe.reconstruct(inversion);
    const edit = {
      kind: "color" as const,
      objectIndex: 0,
      to: object.color === "blue" ? ("yellow" as const) : ("blue" as const),
    };
    const target = editPrompt(scene, edit);

    const [source, result] = await pipe.edit(inversion, [{ prompt: target }]);
    const check = checkPrompt(result as typeof image, editScene(scene, edit));
    expect(
      check.objects[0]?.color,
      `${target}: read ${check.reading.objects.map((o) => `${o.color} ${o.shape}`)}`,
    ).toBe(true);
    // The source row of a two-prompt batch samples what reconstruct samples alone (batching changes
    // only float rounding).
    expect(psnr(source as typeof image, reconstruction)).toBeGreaterThan(40);

    // Local blend resets the edited latent to the source's outside its mask at every blended step, so
    // outside the final mask the two final latents are identical; the decoder (with a self-attention
    // block) spreads the inside change a little, bounded here as PSNR ≥ 30 dB on the pixels more than
    // two latent cells from the mask (at one cell the current model's edit measured 28.2 dB). A threshold
    // of 0.95 (the official one is 0.3) draws a smaller mask, leaving more of the image outside it to check
    // (at least a fifth of the cells, asserted below).
    let mask: Uint8Array | undefined;
    const latents = await pipe.editLatents(inversion, [{ prompt: target }], {
      localBlend: {
        words: [
          [object.color, object.shape],
          [edit.to, object.shape],
        ],
        threshold: [0.95, 0.95],
      },
      onBlendMasks: (m) => {
        mask = m[0];
      },
    });
    const m = mask as Uint8Array;
    const [C, side] = pipe.latentShape; // [4, 16, 16] for the built-in model
    const size = pipe.resolution; // 64
    const cell = size / side;
    const plane = side * side;
    let outsideCells = 0;
    let latentDiff = 0;
    for (let p = 0; p < plane; p++) {
      if (m[p]) continue;
      outsideCells++;
      for (let ch = 0; ch < C; ch++)
        latentDiff = Math.max(
          latentDiff,
          Math.abs((latents[ch * plane + p] as number) - (latents[C * plane + ch * plane + p] as number)),
        );
    }
    expect(outsideCells).toBeGreaterThan(plane * 0.2);
    expect(latentDiff).toBe(0);
    const [blendSource, blended] = await pipe.decodeLatents(latents);
    const far = farFromMask(m, side, 2);
    const pixels = Uint8Array.from(
      { length: size * size },
      (_, p) => far[Math.floor(p / (size * cell)) * side + Math.floor((p % size) / cell)] as number,
    );
    expect(pixels.reduce((x, y) => x + y, 0)).toBeGreaterThan(size * size * 0.1);
    expect(
      maskedPsnr(blended as typeof image, blendSource as typeof image, { width: size, height: size, data: pixels }),
    ).toBeGreaterThan(30);
  });

  it("swaps a shape (checker reads the new one) with the edited prompt off ∅_t after the first steps; pixels outside the object stay", async () => {
    // A triangle to a square: the edit that the paper's schedule (∅_t at every step, nullSteps 1) most
    // often misses on this model, keeping the triangle (eval:shapes, BENCHMARKS.md).
    const scene = randomScene(25, { objects: 1 });
    const image = renderScene(scene, 64);
    const { inversion } = await pipe.invert(image, scenePrompt(scene), { steps: STEPS, innerSteps: 10 });
    const edit = { kind: "shape" as const, objectIndex: 0, to: "square" as const };
    expect(scene.objects[0]?.shape).toBe("triangle");
    const [source, result] = await pipe.edit(inversion, [{ prompt: editPrompt(scene, edit) }], {
      localBlend: { words: [["triangle"], ["square"]] },
    });
    const truth = editScene(scene, edit);
    const check = checkPrompt(result as typeof image, truth);
    expect(check.all, `read ${check.reading.objects.map((o) => `${o.color} ${o.shape}`)}`).toBe(true);
    expect(psnr(source as typeof image, await pipe.reconstruct(inversion))).toBeGreaterThan(40);
    const outside = editRegion(scene, edit, 64, 2).map((v) => 1 - v);
    expect(maskedPsnr(result as typeof image, image, { width: 64, height: 64, data: outside })).toBeGreaterThan(25);
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
