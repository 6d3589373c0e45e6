/**
 * bench:nti-small — null-text inversion with the official settings (50 steps, N = 10, guidance 7.5) on
 * the public parity model at 128×128 (../shared/parity/model, or --model DIR), with every one of the
 * 500 inner iterations run (early stop 0), as the official notebook runs a model that never reaches
 * its early stop. Prints each phase's seconds and the milliseconds per inner iteration, split into
 * time inside ONNX Runtime's run and time in JavaScript (feeds, Adam, copies).
 * Usage: npm run bench:nti-small [-- --model DIR] [-- --threads N] [-- --json]
 */
import path from "node:path";
import { fileURLToPath } from "node:url";
import { NullTextPipeline } from "../src/pipeline.js";
import { sessionRunStats } from "../src/runtime/session.js";
import { argValue, peakRssGb, printTable, wantsJson } from "./common.js";

const MODEL =
  argValue("--model") ?? path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../shared/parity/model");
const threads = argValue("--threads") ? Number(argValue("--threads")) : undefined;

const t0 = performance.now();
const pipe = await NullTextPipeline.load(MODEL, { threads });
const size = pipe.resolution;
const image = { width: size, height: size, data: new Uint8Array(size * size * 3) };
for (let i = 0; i < image.data.length; i++) image.data[i] = (i * 7919) % 251;
// compile the sessions outside the timed phases
await pipe.invert(image, "a photo of a cat", { method: "nti", steps: 1, innerSteps: 1 });
await pipe.reconstruct((await pipe.invert(image, "a photo of a cat", { method: "ddim", steps: 1 })).inversion);
const setup = (performance.now() - t0) / 1000;

let ortAtPhase = 0;
let ortNullText = 0;
sessionRunStats(true);
const { inversion, stats } = await pipe.invert(image, "a photo of a cat", {
  method: "nti",
  earlyStop: 0,
  earlyStopSlope: 0,
  onProgress: (e) => {
    // the null-text phase starts after the DDIM pivot's last step
    if (e.phase === "ddim" && e.step === e.total) ortAtPhase = sessionRunStats().seconds;
    if (e.phase === "method" && e.step === e.total) ortNullText = sessionRunStats().seconds - ortAtPhase;
  },
});
const tRec = performance.now();
await pipe.reconstruct(inversion);
const reconstruction = (performance.now() - tRec) / 1000;
await pipe.release();

const nullText = stats.seconds.nti ?? 0;
const iterations = stats.vjps;
// null-text phase: one conditional ε and one final guided step per timestep besides the iterations
const result = {
  name: `nti parity ${size}x${size}`,
  setup_seconds: setup,
  ddim_seconds: stats.seconds.ddim_inversion ?? 0,
  null_text_seconds: nullText,
  reconstruction_seconds: reconstruction,
  iterations,
  unet_evals: stats.unetEvals,
  ms_per_iteration: (1000 * nullText) / iterations,
  ort_ms_per_iteration: (1000 * ortNullText) / iterations,
  js_ms_per_iteration: (1000 * (nullText - ortNullText)) / iterations,
  peak_rss_gb: peakRssGb(),
};
if (wantsJson()) console.log(JSON.stringify(result));
else {
  console.log(`\nbench:nti-small — ${MODEL}, ${size}×${size}, 50 steps, N = 10 forced (early stop 0)\n`);
  printTable([
    {
      run: result.name,
      "DDIM s": result.ddim_seconds.toFixed(2),
      "null-text s": result.null_text_seconds.toFixed(2),
      "recon s": result.reconstruction_seconds.toFixed(2),
      iterations,
      "ms/it": result.ms_per_iteration.toFixed(1),
      "ORT ms/it": result.ort_ms_per_iteration.toFixed(1),
      "JS ms/it": result.js_ms_per_iteration.toFixed(1),
      "peak RSS GB": result.peak_rss_gb.toFixed(2),
    },
  ]);
}
