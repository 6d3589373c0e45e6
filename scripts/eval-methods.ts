/**
 * npm run eval:methods -- [--json] [--seeds A..B] [--methods a,b,...] [--steps N] [--model M]
 *   [--set id.setting=value,...]   (settings other than a method's defaults, e.g. ddpm.skip=2 with --steps 5)
 *   [--cross-steps F] [--self-steps F] [--null-steps F]
 * Every registered inversion method (each with its defaults) on the built-in model, on scenes drawn
 * with seeds disjoint from training (default 0..49): reconstruction, colour and shape word swaps
 * against ground truth, and cost. With --json: {vae_psnr}, then one object per method.
 */

import { argValue, printTable, wantsJson } from "../bench/common.js";
import { DEFAULT_MODEL } from "../src/cli/main.js";
import { evaluateMethods } from "../src/eval/methods.js";
import { METHODS } from "../src/inversion/registry.js";
import { NullTextPipeline } from "../src/pipeline.js";
import { seedsArg, wordSwapArgs } from "./eval-args.js";

const seeds = seedsArg("0..49");
const methods = argValue("--methods")?.split(",");
for (const id of methods ?? [])
  if (!METHODS.has(id))
    throw new Error(`--methods: unknown method ${JSON.stringify(id)} (methods: ${[...METHODS.keys()].join(", ")})`);
const stepsArg = argValue("--steps");
const steps = stepsArg === undefined ? undefined : Number(stepsArg);
if (steps !== undefined && !(Number.isInteger(steps) && steps >= 1))
  throw new Error(`--steps ${stepsArg}: expected a positive integer`);
// --set ddpm.skip=2,direct.correctEdits=true
const settings: Record<string, Record<string, unknown>> = {};
for (const item of argValue("--set")?.split(",") ?? []) {
  const s = item.match(/^([\w-]+)\.(\w+)=(.+)$/);
  if (!s) throw new Error(`--set ${item}: expected method.setting=value`);
  const [, id, key, raw] = s as unknown as [string, string, string, string];
  if (!METHODS.has(id)) throw new Error(`--set ${item}: unknown method ${JSON.stringify(id)}`);
  const value = raw === "true" ? true : raw === "false" ? false : Number.isNaN(Number(raw)) ? raw : Number(raw);
  settings[id] = { ...settings[id], [key]: value };
}
const { crossReplaceSteps, selfReplaceSteps, nullSteps } = wordSwapArgs();

const pipe = await NullTextPipeline.load(argValue("--model") ?? DEFAULT_MODEL);
const r = await evaluateMethods(pipe, {
  seeds,
  methods,
  steps,
  settings,
  crossReplaceSteps,
  selfReplaceSteps,
  nullSteps,
  log: (l) => process.stderr.write(`${l}\n`),
});
if (wantsJson()) {
  console.log(JSON.stringify({ vae_psnr: r.vae_psnr }));
  for (const row of r.rows) console.log(JSON.stringify(row));
} else {
  const p2p = `Prompt-to-Prompt cross ${crossReplaceSteps}, self ${selfReplaceSteps}, edited prompts' ∅_t for ${nullSteps} of the steps`;
  console.log(
    `eval:methods — seeds ${r.seeds[0]}..${r.seeds[1]}, each method's defaults, ${p2p}, ${r.seconds.toFixed(0)} s\n`,
  );
  console.log(`VAE reconstruction PSNR ${r.vae_psnr.toFixed(2)} dB\n`);
  printTable(
    r.rows.map((x) => {
      const d = r.details[x.method];
      return {
        method: x.method,
        "recon PSNR": x.recon_psnr.toFixed(2),
        "recon SSIM": x.recon_ssim.toFixed(4),
        "edit %": (100 * x.edit_success).toFixed(1),
        "colour %": (100 * (d?.success_color ?? Number.NaN)).toFixed(0),
        "shape %": (100 * (d?.success_shape ?? Number.NaN)).toFixed(0),
        "PSNR out": x.psnr_outside.toFixed(2),
        "SSIM out": (d?.ssim_outside ?? Number.NaN).toFixed(4),
        "MSE out ×1e3": (1000 * (d?.mse_outside ?? Number.NaN)).toFixed(3),
        "PSNR truth": x.psnr_truth.toFixed(2),
        "invert s": x.invert_seconds.toFixed(2),
        "edit s": x.edit_seconds.toFixed(2),
        "UNet evals": x.unet_evals.toFixed(0),
        VJPs: x.vjps.toFixed(0),
      };
    }),
  );
  console.log(
    "\nper image means; PSNR/SSIM/MSE out: against the input outside the true edit region (2 px dilated); PSNR truth: against the true edited scene; UNet evals and VJPs: the inversion's",
  );
}
await pipe.release();
