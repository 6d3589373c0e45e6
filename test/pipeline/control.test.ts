/**
 * Attention control compiled into the UNet graph, on the parity model: with the control switched
 * off an edited prompt samples exactly as it would alone; with the source prompt as its own "edit"
 * under full control, the edit reproduces the source; the source row is never altered by edits.
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
    const edited = await pipe.editLatents(inv, [{ prompt: "a photo of a dog" }], {
      crossReplaceSteps: 0,
      selfReplaceSteps: 0,
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
    });
    expect(maxDiff(edited.subarray(size), edited.subarray(0, size))).toBeLessThan(1e-5);
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
