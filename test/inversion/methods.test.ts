/**
 * The methods interface and registry: every registered method declares complete, valid defaults;
 * settings are filled, typed and checked with errors naming the value; each method gives the
 * sampler the conditioning its paper defines; and a method's per-step correction reaches the
 * sampling loop (a stand-in denoiser, no model).
 */
import { describe, expect, it } from "vitest";
import type { Denoiser } from "../../src/editing/denoiser.js";
import { sample } from "../../src/editing/sample.js";
import { type InversionSettings, stack } from "../../src/inversion/method.js";
import { getMethod, METHODS, resolveSettings } from "../../src/inversion/registry.js";
import { DDIM_CONFIG_DEFAULTS, ddimSchedule } from "../../src/schedulers/ddim.js";

const fill = (n: number, v: number) => new Float32Array(n).fill(v);

describe("inversion methods", () => {
  it("registers the paper's method, its baselines and ablations, each with valid defaults", () => {
    // the paper's method first (the default), then its baselines and ablations; later methods follow
    expect([...METHODS.keys()].slice(0, 5)).toEqual(["nti", "npi", "ddim", "nti-global", "nti-conditional"]);
    for (const m of METHODS.values()) {
      // every method says its steps and guidance (edit-friendly DDPM's paper guides at 3.5, the others at 7.5)
      expect(m.defaults.steps).toBe(50);
      expect(typeof m.defaults.guidance).toBe("number");
      expect(() => m.validate({ method: m.id, ...m.defaults } as InversionSettings)).not.toThrow();
      expect(m.summary.length).toBeGreaterThan(10);
    }
    // the paper's settings (Mokady et al. 2023, §3.2 and the official notebook)
    expect(resolveSettings({})).toEqual({
      method: "nti",
      steps: 50,
      guidance: 7.5,
      innerSteps: 10,
      lr: 0.01,
      earlyStop: 1e-5,
      earlyStopSlope: 2e-5,
    });
    // settings that do not apply to a method are not listed for it
    expect(resolveSettings({ method: "npi" })).toEqual({ method: "npi", steps: 50, guidance: 7.5 });
    expect(Object.keys(resolveSettings({ method: "nti-global" }))).toEqual([
      "method",
      "steps",
      "guidance",
      "innerSteps",
      "lr",
    ]);
  });

  it("asks for the UNet's gradient only for the methods that optimise", () => {
    const optimising = [...METHODS.values()].filter((m) => m.optimises).map((m) => m.id);
    expect(optimising).toEqual(["nti", "nti-global", "nti-conditional"]);
  });

  it("answers bad settings with the offending value and what is accepted", () => {
    const cases: [Record<string, unknown>, RegExp][] = [
      [
        { method: "magic" },
        /unknown inversion method "magic" \(methods: nti, npi, ddim, nti-global, nti-conditional, /,
      ],
      [{ method: 3 }, /method 3 is not a method id/],
      [{ steps: 1.5 }, /steps 1\.5 is invalid \(an integer in 1\.\.1000\)/],
      [{ steps: 5000 }, /steps 5000 is invalid/],
      [{ guidance: Number.NaN }, /guidance NaN is invalid \(a number in \[0, 100\]\)/],
      [{ guidance: "7" }, /setting 'guidance' is "7", expected a number/],
      [{ lr: 0 }, /lr 0 is invalid \(a number in \(0, 10\)\)/],
      [{ innerSteps: 0 }, /innerSteps 0 is invalid/],
      [{ earlyStop: -1 }, /earlyStop -1 is invalid \(a number in \[0, 1\)\)/],
      [{ method: "ddim", lr: 0.1 }, /setting 'lr' applies to nti, nti-global, nti-conditional, not to ddim/],
      [
        { method: "nti-global", earlyStop: 0 },
        /setting 'earlyStop' applies to nti, nti-conditional, not to nti-global/,
      ],
      [
        { frobnicate: 1 },
        /setting 'frobnicate' is unknown \(nti takes steps, guidance, innerSteps, lr, earlyStop, earlyStopSlope\)/,
      ],
    ];
    for (const [partial, message] of cases) expect(() => resolveSettings(partial)).toThrow(message);
  });

  it("gives the sampler each method's conditioning", () => {
    const [L, D] = [3, 2];
    const cond = fill(L * D, 1);
    const empty = fill(L * D, 0);
    const per = stack([fill(L * D, 10), fill(L * D, 11)], [L, D]);
    const settings = (method: string) => resolveSettings({ method, steps: 2 });
    const c = (method: string, tensors = {}) =>
      getMethod(method).conditioning(tensors, settings(method), { cond, empty });
    // null-text inversion: the optimised ∅_t per step
    expect((c("nti", { embeddings: per }).nulls as Float32Array[]).map((e) => e[0])).toEqual([10, 11]);
    // negative-prompt inversion: ∅ := the prompt's embedding (Miyake et al. 2023)
    expect(c("npi").nulls).toBe(cond);
    // DDIM inversion: the empty prompt's ∅
    expect(c("ddim").nulls).toBe(empty);
    // one global ∅
    expect((c("nti-global", { embeddings: stack([fill(L * D, 7)], [L, D]) }).nulls as Float32Array)[0]).toBe(7);
    // the prompt embedding optimised per step, ∅ the empty prompt's
    const conditional = c("nti-conditional", { embeddings: per });
    expect(conditional.nulls).toBe(empty);
    expect(conditional.source?.map((e) => e[0])).toEqual([10, 11]);
    // what a method stores is checked by shape
    expect(() => getMethod("nti").checkStored({ embeddings: per }, settings("nti"), [L, D])).not.toThrow();
    expect(() => getMethod("nti").checkStored({ embeddings: per }, { ...settings("nti"), steps: 3 }, [L, D])).toThrow(
      /'embeddings' has shape \[2,3,2\], expected \[3,3,2\]/,
    );
  });

  it("passes a method's per-step latent correction to the sampling loop", async () => {
    const steps = 3;
    const seen: number[][] = [];
    const denoiser = {
      prompts: 2,
      unconditional: 2,
      latentShape: [1, 1, 1],
      async eps(latents: Float32Array) {
        seen.push(Array.from(latents));
        return { eps: new Float32Array(latents.length), outputs: {} };
      },
    } as unknown as Denoiser;
    const calls: number[] = [];
    await sample({
      denoiser,
      schedule: ddimSchedule(DDIM_CONFIG_DEFAULTS, steps),
      zT: Float32Array.of(1, 1),
      nullEmbeddings: fill(2, 0),
      promptEmbeddings: [fill(2, 1), fill(2, 2)],
      guidance: 7.5,
      // e.g. pulling the source (first) latent back to a stored value after every step
      afterStep: (i, latents) => {
        calls.push(i);
        return Float32Array.of(100 + i, latents[1] as number);
      },
    });
    expect(calls).toEqual([0, 1, 2]);
    expect(seen.map((l) => l[0])).toEqual([1, 100, 101]);
  });
});
