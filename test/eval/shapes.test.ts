/**
 * eval:shapes' text-to-image tally on the shipped model, against the same prompts generated and read here
 * one by one: per asked shape, how many were right and what the checker read in the wrong ones.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DEFAULT_MODEL } from "../../src/cli/main.js";
import { evaluateShapes } from "../../src/eval/shapes.js";
import { NullTextPipeline } from "../../src/pipeline.js";
import { checkImage, parsePrompt, randomScene, SHAPES, scenePrompt } from "../../src/scenes/index.js";

let pipe: NullTextPipeline;
beforeAll(async () => {
  pipe = await NullTextPipeline.load(DEFAULT_MODEL);
});
afterAll(async () => pipe.release());

describe("evaluateShapes", () => {
  it("tallies text-to-image per asked shape, with what the wrong images were read as", async () => {
    // 8 steps: a coarse sampler gets enough prompts wrong for the misread tally to be exercised
    const seeds = Array.from({ length: 12 }, (_, i) => 40 + i);
    const steps = 8;
    const r = await evaluateShapes(pipe, { seeds, t2iPrompts: seeds.length, reconScenes: 0, editScenes: 0, steps });

    const want = Object.fromEntries(
      SHAPES.map((sh) => [sh, { prompts: 0, right: 0, misread: {} as Record<string, number> }]),
    );
    for (const seed of seeds) {
      const prompt = scenePrompt(randomScene(seed, { objects: 1 }));
      const asked = parsePrompt(prompt).objects[0] as { color: string; shape: string };
      const found = checkImage(await pipe.generate(prompt, { seed, steps, guidance: 7.5 })).objects;
      const tally = want[asked.shape] as (typeof want)[string];
      tally.prompts++;
      const [o] = found;
      let seen: string | null = null;
      if (found.length !== 1 || !o) seen = `${found.length} objects`;
      else if (o.shape !== asked.shape) seen = o.color === asked.color ? o.shape : `${o.shape} of another colour`;
      else if (o.color !== asked.color) seen = "another colour";
      if (seen === null) tally.right++;
      else tally.misread[seen] = (tally.misread[seen] ?? 0) + 1;
    }
    const right = Object.values(want).reduce((n, c) => n + c.right, 0);
    expect(right).toBeLessThan(seeds.length);
    expect(r.t2i_accuracy).toBeCloseTo(right / seeds.length, 12);
    for (const [shape, c] of Object.entries(want)) {
      expect(r.t2i_by_shape[shape]?.prompts).toBe(c.prompts);
      expect(r.t2i_by_shape[shape]?.misread).toEqual(c.misread);
    }
  });
});
