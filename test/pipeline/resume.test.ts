/** An interrupted null-text inversion resumes from its last finished timestep and ends where an uninterrupted run ends. */
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type InversionResume, NullTextPipeline } from "../../src/pipeline.js";

const MODEL = fileURLToPath(new URL("../../../shared/parity/model", import.meta.url));
let pipe: NullTextPipeline;
let image: { width: number; height: number; data: Uint8Array };

beforeAll(async () => {
  pipe = await NullTextPipeline.load(MODEL, { threads: 2 });
  const r = pipe.resolution;
  image = { width: r, height: r, data: new Uint8Array(r * r * 3).map((_, i) => (i * 7919) % 251) };
});
afterAll(async () => pipe.release());

describe("resuming an interrupted inversion", () => {
  it("continues after the last saved step and matches an uninterrupted run", async () => {
    const settings = { method: "nti" as const, steps: 6, innerSteps: 2 };
    const full = await pipe.invert(image, "a photo of a cat", settings);

    let saved: InversionResume | null = null;
    const interrupted = pipe.invert(image, "a photo of a cat", {
      ...settings,
      checkpoint: {
        save: (s) => {
          saved = structuredClone(s);
          if (s.state?.completed === 3) throw new Error("simulated crash");
        },
      },
    });
    await expect(interrupted).rejects.toThrow("simulated crash");
    expect((saved as InversionResume | null)?.state?.completed).toBe(3);

    const resumedSteps: number[] = [];
    const resumed = await pipe.invert(image, "a photo of a cat", {
      ...settings,
      onProgress: (p) => {
        if (p.phase === "method" || p.phase === "ddim") resumedSteps.push(p.step);
      },
      checkpoint: { load: () => saved },
    });
    // No DDIM inversion again, only steps 4..6 of the optimisation.
    expect(resumedSteps).toEqual([4, 5, 6]);
    expect(resumed.stats.resumed).toBe(true);
    // the optimisation trace: one entry per step, carried over the interruption
    expect(full.stats.trace).toHaveLength(6);
    expect(resumed.stats.trace).toEqual(full.stats.trace);
    full.stats.trace.forEach((t, i) => {
      expect(t.step).toBe(i + 1);
      expect(t.iterations === 2 || (t.iterations === 1 && t.early_stop)).toBe(true);
      expect(t.early_stop).toBe(t.last_loss < 1e-5 + 2e-5 * i);
      expect(Number.isFinite(t.first_loss) && Number.isFinite(t.last_loss)).toBe(true);
      if (t.iterations === 1) expect(t.last_loss).toBe(t.first_loss);
    });
    // the DDIM and negative-prompt inversions optimise nothing
    expect((await pipe.invert(image, "a photo of a cat", { method: "npi", steps: 3 })).stats.trace).toEqual([]);
    expect(resumed.inversion.tensors.embeddings?.shape[0]).toBe(6);
    expect(Array.from(resumed.inversion.tensors.embeddings?.data ?? [])).toEqual(
      Array.from(full.inversion.tensors.embeddings?.data ?? [1]),
    );
    expect(Array.from(resumed.inversion.zT)).toEqual(Array.from(full.inversion.zT));
  });

  it("ignores saved state of another prompt or settings", async () => {
    let saved: InversionResume | null = null;
    await pipe.invert(image, "a photo of a cat", {
      steps: 3,
      innerSteps: 1,
      checkpoint: {
        save: (s) => {
          saved = structuredClone(s);
        },
      },
    });
    const steps: number[] = [];
    await pipe.invert(image, "a photo of a dog", {
      steps: 3,
      innerSteps: 1,
      onProgress: (p) => p.phase === "method" && steps.push(p.step),
      checkpoint: { load: () => saved },
    });
    expect(steps).toEqual([1, 2, 3]);
  });
});
