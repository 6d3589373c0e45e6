/**
 * Quality of the built-in model, measured against ground truth that only procedural scenes give:
 * VAE reconstruction, text-to-image correctness read by the scene checker, the reconstruction
 * comparison of the paper, and word-swap edits (colour, shape) scored against the true edited render,
 * for DDIM inversion, negative-prompt inversion and null-text inversion side by side.
 */
import { maskedPsnr, psnr, type RgbImage, ssim } from "../image/index.js";
import type { Inversion } from "../inversion/file.js";
import type { NullTextPipeline } from "../pipeline.js";
import {
  COLORS,
  checkPrompt,
  editedWord,
  editPrompt,
  editRegion,
  editScene,
  type PromptCheck,
  parsePrompt,
  randomScene,
  renderScene,
  type Scene,
  type SceneEdit,
  SHAPES,
  scenePrompt,
} from "../scenes/index.js";
import { Rng } from "../util/rng.js";
import { type ReconMethodName, type ReconRow, reconstructionComparison } from "./recon.js";

export interface ShapesEvalOptions {
  /** Scene seeds (disjoint from training's, which start at 1 000 000). */
  seeds: number[];
  t2iPrompts?: number;
  reconScenes?: number;
  editScenes?: number;
  steps?: number;
  /** Prompt-to-Prompt injection fractions of the word swaps (default P2P_DEFAULTS). */
  crossReplaceSteps?: number;
  selfReplaceSteps?: number;
  /** Fraction of the steps in which the edited prompts use the inversion's ∅ (default EDIT_NULL_STEPS). */
  nullSteps?: number;
  log?: (line: string) => void;
}

export interface EditScores {
  success: number;
  psnr_outside: number;
  psnr_gt: number;
}

export interface ShapesEvalResult {
  vae_psnr: number;
  t2i_accuracy: number;
  /**
   * Text-to-image accuracy per asked shape (prompts asking for that shape, and the share right), and what the
   * checker read in the images that were wrong: the shape drawn (with " of another colour" when the colour
   * was wrong too, or only "another colour"), or "N objects" when it found another number of objects.
   */
  t2i_by_shape: Record<string, { prompts: number; accuracy: number; misread: Record<string, number> }>;
  recon: Record<string, number>;
  recon_rows: ReconRow[];
  edit: Record<"ddim" | "npi" | "nti", EditScores & { color: EditScores; shape: EditScores }>;
  seeds: [number, number];
  seconds: number;
}

export async function evaluateShapes(pipe: NullTextPipeline, o: ShapesEvalOptions): Promise<ShapesEvalResult> {
  const t0 = performance.now();
  const log = o.log ?? (() => {});
  const size = pipe.resolution;
  const steps = o.steps ?? 50;
  const seed = (i: number) => o.seeds[i % o.seeds.length] as number;
  const count = (n: number | undefined, d: number) => Math.min(n ?? d, o.seeds.length);

  // 1. VAE reconstruction
  const vaeScenes = count(undefined, 200);
  let vae = 0;
  for (let i = 0; i < vaeScenes; i++) {
    const img = renderScene(randomScene(seed(i), { objects: "any" }), size);
    const [rec] = await pipe.decodeLatents(await pipe.encodeImage(img));
    vae += psnr(img, rec as RgbImage);
  }
  log(`vae: ${(vae / vaeScenes).toFixed(2)} dB over ${vaeScenes} scenes`);

  // 2. text-to-image, one-object prompts at guidance 7.5
  const t2i = count(o.t2iPrompts, 200);
  type Tally = { prompts: number; right: number; misread: Record<string, number> };
  const byShape = new Map<string, Tally>(SHAPES.map((sh) => [sh, { prompts: 0, right: 0, misread: {} }]));
  for (let i = 0; i < t2i; i++) {
    const prompt = scenePrompt(randomScene(seed(i), { objects: 1 }));
    const img = await pipe.generate(prompt, { seed: seed(i), steps, guidance: 7.5 });
    const want = parsePrompt(prompt);
    const read = checkPrompt(img, { objects: want.objects.map((ob) => ({ color: ob.color, shape: ob.shape })) });
    // right = exactly one object, of the asked colour and shape (the background is not scored)
    const ok = read.count && read.objects[0]?.color && read.objects[0]?.shape;
    const tally = byShape.get(want.objects[0]?.shape as string) as Tally;
    tally.prompts++;
    if (ok) tally.right++;
    else {
      const seen = misreading(read);
      tally.misread[seen] = (tally.misread[seen] ?? 0) + 1;
    }
  }
  const right = [...byShape.values()].reduce((sum, c) => sum + c.right, 0);
  log(`t2i: ${right}/${t2i} right`);

  // 3. reconstruction comparison, and 4. word-swap edits of the same scenes with the same inversions
  const reconN = count(o.reconScenes, 50);
  const editN = count(o.editScenes, 50);
  const scenes = Array.from({ length: Math.max(reconN, editN) }, (_, i) => randomScene(seed(i), { objects: "any" }));
  const methods: ["ddim" | "npi" | "nti", ReconMethodName][] = [
    ["ddim", "ddim_w7_5"],
    ["npi", "npi"],
    ["nti", "nti"],
  ];
  const zero = (): EditScores => ({ success: 0, psnr_outside: 0, psnr_gt: 0 });
  const sums = Object.fromEntries(methods.map(([m]) => [m, { color: zero(), shape: zero() }])) as Record<
    string,
    Record<"color" | "shape", EditScores>
  >;
  const editScene_ = async (i: number, inversions: Map<ReconMethodName, Inversion>) => {
    if (i >= editN) return;
    const scene = scenes[i] as Scene;
    const image = renderScene(scene, size);
    const swaps = wordSwaps(scene, seed(i));
    for (const [name, method] of methods) {
      const inversion = inversions.get(method) as Inversion;
      for (const edit of swaps) {
        const score = await scoreWordSwap(pipe, inversion, scene, image, edit, o);
        const s = (sums[name] as Record<"color" | "shape", EditScores>)[edit.kind];
        s.success += score.success;
        s.psnr_outside += score.psnr_outside;
        s.psnr_gt += score.psnr_gt;
      }
    }
  };
  const items = scenes.map((scene) => ({ image: renderScene(scene, size), prompt: scenePrompt(scene) }));
  const reconRows = await reconstructionComparison(pipe, items, {
    steps,
    methods: ["ddim_w1", "ddim_w7_5", "npi", "nti"],
    onInversions: editScene_,
    onItem: (i, n) => log(`scenes: ${i}/${n} (reconstruction and edits)`),
  });
  const recon = Object.fromEntries(reconRows.map((r) => [r.method, r.psnr]));
  const avg = (e: EditScores): EditScores => ({
    success: e.success / editN,
    psnr_outside: e.psnr_outside / editN,
    psnr_gt: e.psnr_gt / editN,
  });
  const edit = Object.fromEntries(
    methods.map(([m]) => {
      const c = avg((sums[m] as Record<"color" | "shape", EditScores>).color);
      const sh = avg((sums[m] as Record<"color" | "shape", EditScores>).shape);
      return [
        m,
        {
          success: (c.success + sh.success) / 2,
          psnr_outside: (c.psnr_outside + sh.psnr_outside) / 2,
          psnr_gt: (c.psnr_gt + sh.psnr_gt) / 2,
          color: c,
          shape: sh,
        },
      ];
    }),
  ) as ShapesEvalResult["edit"];
  return {
    vae_psnr: vae / vaeScenes,
    t2i_accuracy: t2i ? right / t2i : Number.NaN,
    t2i_by_shape: Object.fromEntries(
      [...byShape].map(([sh, c]) => [
        sh,
        { prompts: c.prompts, accuracy: c.prompts ? c.right / c.prompts : Number.NaN, misread: c.misread },
      ]),
    ),
    recon,
    recon_rows: reconRows,
    edit,
    seeds: [Math.min(...o.seeds), Math.max(...o.seeds)],
    seconds: (performance.now() - t0) / 1000,
  };
}

/** The two word swaps of a scene that the evals score: one object's colour, then its shape, drawn from the seed. */
export function wordSwaps(scene: Scene, seed: number): WordSwap[] {
  const rng = new Rng(seed ^ 0x5bd1e995);
  const k = rng.int(scene.objects.length);
  const object = scene.objects[k] as NonNullable<(typeof scene.objects)[number]>;
  return [
    { kind: "color", objectIndex: k, to: rng.pick(COLORS.filter((c) => c !== object.color)) },
    { kind: "shape", objectIndex: k, to: rng.pick(SHAPES.filter((sh) => sh !== object.shape)) },
  ];
}

export type WordSwap = Extract<SceneEdit, { kind: "color" | "shape" }>;

export interface WordSwapScore {
  /** 1 when the checker reads the edited object with the new colour (or shape), else 0. */
  success: number;
  /** PSNR, SSIM and MSE (on [0, 1]) against the source image outside the true edit region (dilated 2 px). */
  psnr_outside: number;
  ssim_outside: number;
  mse_outside: number;
  /** PSNR against the true edited render. */
  psnr_gt: number;
  /** Seconds of the edit (sampling and decoding). */
  seconds: number;
}

/**
 * Edits an inversion of `scene` with one word swap (Prompt-to-Prompt replace, local blend on the
 * edited object's colour and shape words) and scores it against ground truth. SSIM outside the
 * region is PIE-Bench's background SSIM: both images equal inside the region (the source's pixels),
 * so only the background differs.
 */
export async function scoreWordSwap(
  pipe: NullTextPipeline,
  inversion: Inversion,
  scene: Scene,
  image: RgbImage,
  edit: WordSwap,
  o: { crossReplaceSteps?: number; selfReplaceSteps?: number; nullSteps?: number } = {},
): Promise<WordSwapScore> {
  const size = image.width;
  const target = editPrompt(scene, edit);
  const word = editedWord(scene, edit);
  // local blend on the edited object's words: its colour and shape, by position in the prompt
  const objectWords = [word.index, edit.kind === "color" ? word.index + 1 : word.index - 1];
  const t0 = performance.now();
  const [, result] = (await pipe.edit(inversion, [{ prompt: target, mode: "replace" }], {
    localBlend: { words: [objectWords, objectWords] },
    crossReplaceSteps: o.crossReplaceSteps,
    selfReplaceSteps: o.selfReplaceSteps,
    nullSteps: o.nullSteps,
  })) as [RgbImage, RgbImage];
  const seconds = (performance.now() - t0) / 1000;
  const truth = editScene(scene, edit);
  const region = editRegion(scene, edit, size, 2);
  const outside = region.map((v) => 1 - v);
  const check = checkPrompt(result, truth);
  const obj = check.objects[edit.objectIndex];
  const psnrOutside = maskedPsnr(result, image, { width: size, height: size, data: outside });
  const background = {
    ...result,
    data: result.data.map((v, i) => (region[Math.floor(i / 3)] ? (image.data[i] as number) : v)),
  };
  return {
    success: obj?.found && (edit.kind === "color" ? obj.color : obj.shape) ? 1 : 0,
    psnr_outside: psnrOutside,
    ssim_outside: ssim(background, image),
    mse_outside: 10 ** (-psnrOutside / 10),
    psnr_gt: psnr(result, renderScene(truth, size)),
    seconds,
  };
}

/** What the checker read in a wrong one-object image, as ShapesEvalResult.t2i_by_shape's `misread` names it. */
function misreading(read: PromptCheck): string {
  const o = read.objects[0];
  if (!read.count || !o?.found) return `${read.reading.objects.length} objects`;
  if (o.shape) return "another colour";
  return o.color ? o.found.shape : `${o.found.shape} of another colour`;
}
