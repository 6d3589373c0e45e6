/**
 * Every registered inversion method on the built-in model, PIE-Bench-style (Ju et al. 2023, §5:
 * reconstruction, background preservation outside the edit mask, edit success, cost) but against
 * ground truth that procedural scenes give: for each scene seed, each method (with its defaults)
 * inverts the scene, reconstructs it (PSNR and SSIM against the input), and makes the two word swaps
 * eval:shapes makes (colour, shape of one object; Prompt-to-Prompt replace with local blend),
 * scored by the scene checker (success), outside the true edit region against the input (PSNR, SSIM,
 * MSE) and against the true edited render (PSNR); with the inversion's and the edits' seconds and
 * the inversion's UNet evaluations and gradient passes (VJPs) per image.
 */
import { psnr, type RgbImage, ssim } from "../image/index.js";
import { METHODS } from "../inversion/registry.js";
import type { NullTextPipeline } from "../pipeline.js";
import { randomScene, renderScene, scenePrompt } from "../scenes/index.js";
import { scoreWordSwap, wordSwaps } from "./shapes.js";

export interface MethodsEvalOptions {
  /** Scene seeds (disjoint from training's, which start at 1 000 000). */
  seeds: number[];
  /** Method ids (default: every registered method, in the registry's order). */
  methods?: string[];
  /** DDIM steps of every method (default: each method's own default). */
  steps?: number;
  /** Settings other than a method's defaults, by method id (e.g. a skip that fits fewer steps). */
  settings?: Record<string, Record<string, unknown>>;
  /** Prompt-to-Prompt injection fractions and the edited prompts' ∅ fraction (the pipeline's defaults). */
  crossReplaceSteps?: number;
  selfReplaceSteps?: number;
  nullSteps?: number;
  log?: (line: string) => void;
}

/** One method's means over the scenes (the --json row: exactly these keys). */
export interface MethodRow {
  method: string;
  recon_psnr: number;
  recon_ssim: number;
  /** Share of the colour and shape swaps (together) the checker reads as done, 0..1. */
  edit_success: number;
  psnr_outside: number;
  psnr_truth: number;
  invert_seconds: number;
  /** Seconds of one edit (a two-prompt sampling and its decoding). */
  edit_seconds: number;
  unet_evals: number;
  vjps: number;
}

/** What the table shows besides the row: per kind, and SSIM/MSE outside the edit region. */
export interface MethodDetail {
  success_color: number;
  success_shape: number;
  ssim_outside: number;
  mse_outside: number;
}

export interface MethodsEvalResult {
  vae_psnr: number;
  rows: MethodRow[];
  details: Record<string, MethodDetail>;
  seeds: [number, number];
  seconds: number;
}

export async function evaluateMethods(pipe: NullTextPipeline, o: MethodsEvalOptions): Promise<MethodsEvalResult> {
  const t0 = performance.now();
  const log = o.log ?? (() => {});
  const ids = o.methods ?? [...METHODS.keys()];
  for (const id of ids)
    if (!METHODS.has(id))
      throw new Error(
        `eval:methods: unknown method ${JSON.stringify(id)} (methods: ${[...METHODS.keys()].join(", ")})`,
      );
  if (o.seeds.length === 0) throw new Error("eval:methods: no seeds");
  const size = pipe.resolution;
  const scenes = o.seeds.map((seed) => {
    const scene = randomScene(seed, { objects: "any" });
    return { seed, scene, image: renderScene(scene, size), prompt: scenePrompt(scene) };
  });

  // compile every session once before anything is timed (the first method would pay for it)
  const first = scenes[0] as (typeof scenes)[number];
  const warm = await pipe.invert(first.image, first.prompt, { method: "ddim", steps: 1 });
  await pipe.reconstruct(warm.inversion);
  await pipe.edit(warm.inversion, [{ prompt: first.prompt }]);

  let vae = 0;
  for (const { image } of scenes) {
    const [rec] = await pipe.decodeLatents(await pipe.encodeImage(image));
    vae += psnr(image, rec as RgbImage);
  }
  log(`vae: ${(vae / scenes.length).toFixed(2)} dB over ${scenes.length} scenes`);

  const zero = () => ({
    row: { recon_psnr: 0, recon_ssim: 0, edit_success: 0, psnr_outside: 0, psnr_truth: 0 },
    cost: { invert_seconds: 0, edit_seconds: 0, unet_evals: 0, vjps: 0 },
    detail: { success_color: 0, success_shape: 0, ssim_outside: 0, mse_outside: 0 },
  });
  const sums = new Map(ids.map((id) => [id, zero()]));
  for (const [i, { seed, scene, image, prompt }] of scenes.entries()) {
    const swaps = wordSwaps(scene, seed);
    for (const id of ids) {
      const s = sums.get(id) as ReturnType<typeof zero>;
      const t1 = performance.now();
      const { inversion, stats } = await pipe.invert(image, prompt, {
        method: id,
        steps: o.steps,
        ...o.settings?.[id],
      });
      s.cost.invert_seconds += (performance.now() - t1) / 1000;
      s.cost.unet_evals += stats.unetEvals;
      s.cost.vjps += stats.vjps;
      const rec = await pipe.reconstruct(inversion);
      s.row.recon_psnr += psnr(image, rec);
      s.row.recon_ssim += ssim(image, rec);
      for (const edit of swaps) {
        const score = await scoreWordSwap(pipe, inversion, scene, image, edit, o);
        s.row.edit_success += score.success / swaps.length;
        s.row.psnr_outside += score.psnr_outside / swaps.length;
        s.row.psnr_truth += score.psnr_gt / swaps.length;
        s.cost.edit_seconds += score.seconds / swaps.length;
        s.detail.ssim_outside += score.ssim_outside / swaps.length;
        s.detail.mse_outside += score.mse_outside / swaps.length;
        s.detail[edit.kind === "color" ? "success_color" : "success_shape"] += score.success;
      }
    }
    log(`scenes: ${i + 1}/${scenes.length}`);
  }
  const n = scenes.length;
  const mean = <T extends Record<string, number>>(r: T): T =>
    Object.fromEntries(Object.entries(r).map(([k, v]) => [k, v / n])) as T;
  const rows: MethodRow[] = ids.map((id) => {
    const s = sums.get(id) as ReturnType<typeof zero>;
    return { method: id, ...mean(s.row), ...mean(s.cost) };
  });
  return {
    vae_psnr: vae / n,
    rows,
    details: Object.fromEntries(ids.map((id) => [id, mean((sums.get(id) as ReturnType<typeof zero>).detail)])),
    seeds: [Math.min(...o.seeds), Math.max(...o.seeds)],
    seconds: (performance.now() - t0) / 1000,
  };
}
