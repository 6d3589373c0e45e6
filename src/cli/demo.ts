/**
 * `nulltext demo`: the whole mission on the built-in model in about a minute — draw a scene, invert
 * it with null-text inversion, edit it twice with Prompt-to-Prompt (a colour swap and a shape swap,
 * each with local blending), check the results with the scene checker, and write a grid image and a
 * JSON report.
 */
import fs from "node:fs";
import path from "node:path";
import { P2P_DEFAULTS } from "../editing/prompt_to_prompt/index.js";
import { grid, maskedPsnr, psnr, type RgbImage } from "../image/index.js";
import { editJob, invertJob, writeJsonOutput, writePngOutput } from "../jobs/index.js";
import { EDIT_NULL_STEPS, NullTextPipeline } from "../pipeline.js";
import {
  checkPrompt,
  editedWord,
  editPrompt,
  editRegion,
  editScene,
  randomScene,
  renderScene,
  type SceneEdit,
  scenePrompt,
} from "../scenes/index.js";
import { COLORS, SHAPES } from "../scenes/scene.js";
import { progressPrinter } from "./progress.js";

export interface DemoOptions {
  out: string;
  model: string;
  seed?: number;
  threads?: number;
  unetWeights?: "auto" | "shared" | "per-session";
}

export async function runDemo(o: DemoOptions): Promise<void> {
  const t0 = performance.now();
  fs.mkdirSync(o.out, { recursive: true });
  const pipe = await NullTextPipeline.load(o.model, { threads: o.threads, unetWeights: o.unetWeights });
  try {
    await demo(pipe, o, t0);
  } finally {
    await pipe.release();
  }
}

async function demo(pipe: NullTextPipeline, o: DemoOptions, t0: number): Promise<void> {
  const size = pipe.resolution;
  const scene = randomScene(o.seed ?? 7, { objects: 1 });
  const image = renderScene(scene, size);
  const prompt = scenePrompt(scene);
  console.log(`scene: "${prompt}" (${size}×${size})`);

  const progress = progressPrinter({ ddim: "DDIM invert", nti: "null-text" });
  const {
    inversion,
    reconstruction,
    report: inverted,
  } = await invertJob(pipe, { image, prompt, onProgress: progress });

  const object = scene.objects[0];
  if (!object) throw new Error("demo scene has no object");
  const edits: SceneEdit[] = [
    { kind: "color", objectIndex: 0, to: COLORS.find((c) => c !== object.color) ?? "red" },
    { kind: "shape", objectIndex: 0, to: SHAPES.find((s) => s !== object.shape) ?? "circle" },
  ];
  const results = [];
  const images: RgbImage[] = [image, reconstruction];
  for (const edit of edits) {
    const word = editedWord(scene, edit);
    const edited = editPrompt(scene, edit);
    const {
      images: [result],
    } = await editJob(pipe, {
      inversion,
      edits: [{ prompt: edited }],
      reconstruction: false,
      promptToPrompt: { localBlend: { words: [[object.shape], [edit.kind === "shape" ? word.to : object.shape]] } },
      onProgress: progressPrinter({ sample: `edit ${word.to}` }),
    });
    if (!result) throw new Error("demo: the edit returned no image");
    images.push(result);
    const truth = editScene(scene, edit);
    const outside = editRegion(scene, edit, size, 2).map((v) => 1 - v);
    const check = checkPrompt(result, truth);
    results.push({
      prompt: edited,
      edit,
      prompt_to_prompt: {
        cross_replace_steps: P2P_DEFAULTS.crossReplaceSteps,
        self_replace_steps: P2P_DEFAULTS.selfReplaceSteps,
        null_steps: EDIT_NULL_STEPS,
        local_blend: true,
      },
      checker: { success: check.all, read: check.reading.objects.map((r) => `${r.color} ${r.shape}`) },
      psnr_outside_object: maskedPsnr(result, image, { width: size, height: size, data: outside }),
      psnr_vs_ground_truth: psnr(result, renderScene(truth, size)),
    });
    await writePngOutput(path.join(o.out, `edit-${edit.kind}.png`), result);
  }
  await writePngOutput(path.join(o.out, "input.png"), image);
  await writePngOutput(path.join(o.out, "reconstruction.png"), reconstruction);
  await writePngOutput(path.join(o.out, "grid.png"), grid(images, images.length, 2));
  const report = {
    command: "demo",
    model: pipe.model.source,
    prompt,
    inversion: {
      method: inversion.settings.method,
      unet_evals: inverted.unet_evals,
      vjps: inverted.vjps,
      seconds: inverted.seconds,
    },
    reconstruction: { psnr: inverted.reconstruction.psnr, ssim: inverted.reconstruction.ssim },
    edits: results,
    seconds: (performance.now() - t0) / 1000,
  };
  writeJsonOutput(path.join(o.out, "report.json"), report);
  console.log(`reconstruction PSNR ${report.reconstruction.psnr.toFixed(2)} dB`);
  for (const r of results) {
    console.log(
      `edit "${r.prompt}": checker ${r.checker.success ? "OK" : "MISS"} (${r.checker.read.join(", ")}), PSNR outside the object ${r.psnr_outside_object.toFixed(2)} dB`,
    );
  }
  console.log(
    `wrote ${path.join(o.out, "grid.png")} (input | reconstruction | edits) and report.json in ${report.seconds.toFixed(1)} s`,
  );
}
