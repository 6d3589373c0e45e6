/**
 * The sampling loop's conditioning: which null embedding each prompt of the batch sees at each step.
 * A stand-in denoiser records the context rows it is given, so the check is exact and needs no model.
 */
import { describe, expect, it } from "vitest";
import type { Denoiser } from "../../src/editing/denoiser.js";
import { sample } from "../../src/editing/sample.js";
import { DDIM_CONFIG_DEFAULTS, ddimSchedule } from "../../src/schedulers/ddim.js";

const L = 2; // tokens × width of the toy embeddings: each is filled with one tag value
const constant = (tag: number) => new Float32Array(L).fill(tag);

/**
 * Records, per call, the first value of each of the U + N context rows ([∅ ×U, prompts]; U = N, or
 * N − 1 for a denoiser that leaves out the pinned source's ∅ row).
 */
function recordingDenoiser(prompts: number, unconditional = prompts): { denoiser: Denoiser; calls: number[][] } {
  const calls: number[][] = [];
  const denoiser = {
    prompts,
    unconditional,
    latentShape: [1, 1, 1],
    blendResolution: 0,
    async eps(latents: Float32Array, _t: number, context: Float32Array) {
      calls.push(Array.from({ length: unconditional + prompts }, (_, r) => context[r * L] as number));
      return { eps: new Float32Array(latents.length), outputs: {} };
    },
  } as unknown as Denoiser;
  return { denoiser, calls };
}

describe("sample", () => {
  const steps = 4;
  const schedule = ddimSchedule(DDIM_CONFIG_DEFAULTS, steps);
  const nulls = Array.from({ length: steps }, (_, i) => constant(10 + i)); // ∅_t of step i: 10 + i

  it("gives every prompt the step's ∅_t when the edited prompts have no null embeddings of their own", async () => {
    const { denoiser, calls } = recordingDenoiser(2);
    await sample({
      denoiser,
      schedule,
      zT: new Float32Array(1),
      nullEmbeddings: nulls,
      promptEmbeddings: [constant(1), constant(2)],
      guidance: 7.5,
    });
    expect(calls).toEqual([
      [10, 10, 1, 2],
      [11, 11, 1, 2],
      [12, 12, 1, 2],
      [13, 13, 1, 2],
    ]);
  });

  it("gives the source ∅_t and the edited prompts their own ∅ per step", async () => {
    const { denoiser, calls } = recordingDenoiser(3);
    const editNulls = [nulls[0], nulls[1], constant(0), constant(0)] as Float32Array[];
    await sample({
      denoiser,
      schedule,
      zT: new Float32Array(1),
      nullEmbeddings: nulls,
      editNullEmbeddings: editNulls,
      promptEmbeddings: [constant(1), constant(2), constant(3)],
      guidance: 7.5,
    });
    expect(calls).toEqual([
      [10, 10, 10, 1, 2, 3],
      [11, 11, 11, 1, 2, 3],
      [12, 0, 0, 1, 2, 3],
      [13, 0, 0, 1, 2, 3],
    ]);
  });

  it("gives a denoiser without the pinned source's ∅ row the edits' ∅ rows only", async () => {
    const { denoiser, calls } = recordingDenoiser(3, 2);
    const editNulls = [nulls[0], constant(0), constant(0), constant(0)] as Float32Array[];
    await sample({
      denoiser,
      schedule,
      zT: new Float32Array(1),
      nullEmbeddings: nulls,
      editNullEmbeddings: editNulls,
      promptEmbeddings: [constant(1), constant(2), constant(3)],
      sourceEmbeddings: [constant(4), constant(5), constant(6), constant(7)],
      guidance: 7.5,
    });
    expect(calls).toEqual([
      [10, 10, 4, 2, 3],
      [0, 0, 5, 2, 3],
      [0, 0, 6, 2, 3],
      [0, 0, 7, 2, 3],
    ]);
  });

  it("refuses null embeddings for another number of steps, naming both counts", async () => {
    const { denoiser } = recordingDenoiser(2);
    await expect(
      sample({
        denoiser,
        schedule,
        zT: new Float32Array(1),
        nullEmbeddings: nulls,
        editNullEmbeddings: nulls.slice(1),
        promptEmbeddings: [constant(1), constant(2)],
        guidance: 7.5,
      }),
    ).rejects.toThrow("sample: 3 null embeddings for 4 steps");
  });
});
