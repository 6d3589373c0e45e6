/**
 * npm run eval:shapes -- [--json] [--seeds A..B] [--model M] [--t2i N] [--recon N] [--edits N]
 *   [--cross-steps F] [--self-steps F]   (Prompt-to-Prompt injection fractions of the word swaps)
 *   [--null-steps F]   (fraction of the steps in which the edited prompts use the inversion's ∅_t; 1 = the paper)
 * Quality of the built-in model on scenes drawn with seeds disjoint from training (default 0..199).
 */

import { argValue, printTable, wantsJson } from "../bench/common.js";
import { DEFAULT_MODEL } from "../src/cli/main.js";
import { evaluateShapes } from "../src/eval/shapes.js";
import { NullTextPipeline } from "../src/pipeline.js";
import { seedsArg, wordSwapArgs } from "./eval-args.js";

const seeds = seedsArg("0..199");
// checked here, before the model loads, rather than at the first edit minutes into the run
const { crossReplaceSteps, selfReplaceSteps, nullSteps } = wordSwapArgs();
const pipe = await NullTextPipeline.load(argValue("--model") ?? DEFAULT_MODEL);
const r = await evaluateShapes(pipe, {
  seeds,
  t2iPrompts: Number(argValue("--t2i") ?? 200),
  reconScenes: Number(argValue("--recon") ?? 50),
  editScenes: Number(argValue("--edits") ?? 50),
  crossReplaceSteps,
  selfReplaceSteps,
  nullSteps,
  log: (l) => process.stderr.write(`${l}\n`),
});
if (wantsJson()) {
  console.log(
    JSON.stringify({
      vae_psnr: r.vae_psnr,
      t2i_accuracy: r.t2i_accuracy,
      recon: r.recon,
      edit: r.edit,
      seeds: r.seeds,
    }),
  );
} else {
  const p2p = `Prompt-to-Prompt cross ${crossReplaceSteps}, self ${selfReplaceSteps}, edited prompts' ∅_t for ${nullSteps} of the steps`;
  console.log(`eval:shapes — seeds ${r.seeds[0]}..${r.seeds[1]}, ${p2p}, ${r.seconds.toFixed(0)} s\n`);
  console.log(`VAE reconstruction PSNR   ${r.vae_psnr.toFixed(2)} dB   (target ≥ 30)`);
  if (Number.isNaN(r.t2i_accuracy)) console.log("text-to-image accuracy    not measured (--t2i 0)\n");
  else {
    console.log(`text-to-image accuracy    ${(100 * r.t2i_accuracy).toFixed(1)} %   (target ≥ 90)`);
    const perShape = Object.entries(r.t2i_by_shape)
      .filter(([, c]) => c.prompts > 0)
      .map(([sh, c]) => `${sh} ${(100 * c.accuracy).toFixed(0)}% of ${c.prompts}`);
    console.log(`  by asked shape          ${perShape.join(", ")}`);
    const misread = Object.entries(r.t2i_by_shape)
      .filter(([, c]) => Object.keys(c.misread).length > 0)
      .map(
        ([sh, c]) =>
          `${sh} → ${Object.entries(c.misread)
            .map(([seen, n]) => `${seen} ${n}`)
            .join(", ")}`,
      );
    console.log(`  wrong ones, read as     ${misread.join("; ") || "none"}\n`);
  }
  printTable(
    r.recon_rows.map((x) => ({
      reconstruction: x.method,
      "PSNR dB": x.psnr.toFixed(2),
      SSIM: x.ssim.toFixed(4),
      "UNet evals": x.unet_evals.toFixed(0),
    })),
  );
  console.log("");
  printTable(
    Object.entries(r.edit).flatMap(([method, e]) =>
      (["color", "shape"] as const).map((kind) => ({
        edit: `${method} ${kind}`,
        "success %": (100 * e[kind].success).toFixed(1),
        "PSNR outside dB": e[kind].psnr_outside.toFixed(2),
        "PSNR vs truth dB": e[kind].psnr_gt.toFixed(2),
      })),
    ),
  );
  console.log(
    "\ntargets (null-text inversion): reconstruction within 1 dB of ddim_w1 and ≥ 5 dB above ddim_w7_5; edits ≥ 80% success, ≥ 25 dB outside",
  );
}
await pipe.release();
