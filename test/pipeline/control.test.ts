/**
 * Attention control compiled into the UNet graph, on the parity model: with the control switched
 * off an edited prompt samples exactly as it would alone; with the source prompt as its own "edit"
 * under full control, the edit reproduces the source; the source row is never altered by edits; the
 * edited prompts' null embeddings follow nullSteps.
 */
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Inversion } from "../../src/inversion/file.js";
import { NullTextPipeline } from "../../src/pipeline.js";

const MODEL = fileURLToPath(new URL("../../../shared/parity/model", import.meta.url));
let pipe: NullTextPipeline;
let inv: Inversion;

function maxDiff(a: Float32Array, b: Float32Array): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs((a[i] as number) - (b[i] as number)));
  return m;
}

beforeAll(async () => {
  pipe = await NullTextPipeline.load(MODEL, { threads: 2 });
  const r = pipe.resolution;
  const image = {
    width: r,
    height: r,
    data: new Uint8Array(r * r * 3).map((_, i) => (Math.sin(i * 0.01) * 100 + 128) | 0),
  };
  inv = (await pipe.invert(image, "a photo of a cat", { method: "nti", steps: 8, innerSteps: 3 })).inversion;
});

afterAll(async () => {
  await pipe.release();
});

describe("Prompt-to-Prompt control in the graph", () => {
  it("is the identity when no step injects attention", async () => {
    const size = inv.zT.length;
    // nullSteps 1: the edited prompt samples with the inversion's ∅_t at every step, as it would alone
    const edited = await pipe.editLatents(inv, [{ prompt: "a photo of a dog" }], {
      crossReplaceSteps: 0,
      selfReplaceSteps: 0,
      nullSteps: 1,
    });
    const alone = await pipe.reconstructLatent({ ...inv, prompt: "a photo of a dog" });
    const source = await pipe.reconstructLatent(inv);
    // batch 4 vs batch 2 evaluation: equal up to float32 summation order
    expect(maxDiff(edited.subarray(size), alone)).toBeLessThan(1e-4);
    expect(maxDiff(edited.subarray(0, size), source)).toBeLessThan(1e-4);
    // and the two prompts really differ
    expect(maxDiff(alone, source)).toBeGreaterThan(1e-2);
  });

  it("reproduces the source when the edit is the source prompt under full control", async () => {
    const size = inv.zT.length;
    const edited = await pipe.editLatents(inv, [{ prompt: "a photo of a cat" }], {
      crossReplaceSteps: 1,
      selfReplaceSteps: 1,
      nullSteps: 1,
    });
    expect(maxDiff(edited.subarray(size), edited.subarray(0, size))).toBeLessThan(1e-5);
  });

  it("samples the edited prompt with ∅_t for the first nullSteps of the steps and the empty prompt's ∅ after", async () => {
    const size = inv.zT.length;
    const dog = { ...inv, prompt: "a photo of a dog" };
    const edited = await pipe.editLatents(inv, [{ prompt: dog.prompt }], {
      crossReplaceSteps: 0,
      selfReplaceSteps: 0,
      nullSteps: 0,
    });
    // with no ∅_t at all, the edit row is the prompt sampled alone from z_T with the empty ∅ (a DDIM inversion's ∅)
    const empty = await pipe.reconstructLatent({
      ...dog,
      settings: { ...inv.settings, method: "ddim" },
      tensors: {},
    });
    expect(maxDiff(edited.subarray(size), empty)).toBeLessThan(1e-4);
    expect(maxDiff(edited.subarray(0, size), await pipe.reconstructLatent(inv))).toBeLessThan(1e-4);
    // half the steps on ∅_t lies apart from both
    const half = await pipe.editLatents(inv, [{ prompt: dog.prompt }], {
      crossReplaceSteps: 0,
      selfReplaceSteps: 0,
      nullSteps: 0.5,
    });
    expect(maxDiff(half.subarray(size), empty)).toBeGreaterThan(1e-3);
    expect(maxDiff(half.subarray(size), await pipe.reconstructLatent(dog))).toBeGreaterThan(1e-3);
    await expect(pipe.editLatents(inv, [{ prompt: dog.prompt }], { nullSteps: 1.5 })).rejects.toThrow(
      "nullSteps 1.5: expected a fraction in [0, 1]",
    );
  });

  it("changes the edit, not the source, when attention is injected or re-weighted", async () => {
    const size = inv.zT.length;
    const free = await pipe.editLatents(inv, [{ prompt: "a photo of a dog" }], {
      crossReplaceSteps: 0,
      selfReplaceSteps: 0,
    });
    const controlled = await pipe.editLatents(
      inv,
      [{ prompt: "a photo of a dog", reweight: [{ word: "dog", scale: 3 }] }],
      {
        crossReplaceSteps: 0.8,
        selfReplaceSteps: 0.5,
      },
    );
    expect(maxDiff(controlled.subarray(0, size), free.subarray(0, size))).toBeLessThan(1e-4);
    expect(maxDiff(controlled.subarray(size), free.subarray(size))).toBeGreaterThan(1e-3);
  });
});
