/**
 * bench:invert — a full null-text inversion (50 DDIM steps, N = 10, guidance 7.5) with the full
 * SD 1.5 configuration (random weights) at 256×256 (32×32 latents; --size 512 for 64×64): wall time
 * per phase, UNet evaluations and VJPs, GFLOP/s, peak RSS; with `--torch FILE` (unet_bench.py's JSON
 * lines from this machine, see bench/torch.ts) also what the reference implementation's per-call costs
 * (forward; forward + VJP to the context) sum to for the same calls, and the ratio. Without it, no ratio.
 * Usage: npm run bench:invert [-- --size 256|512] [-- --torch torch.jsonl] [-- --json]
 */
import { NullTextPipeline } from "../src/pipeline.js";
import { argValue, peakRssGb, printTable, wantsJson } from "./common.js";
import { randomSD15 } from "./sd15.js";
import { readTorchJsonl } from "./torch.js";

const size = Number(argValue("--size") ?? 256);
if (size !== 256 && size !== 512) throw new Error(`--size ${argValue("--size")}: expected 256 or 512`);
const torchFile = argValue("--torch");
const torch = torchFile === undefined ? undefined : readTorchJsonl(torchFile);
const latent = size / 8;
const perCall = torch && {
  forward: torch.get(`fwd${latent}` as "fwd32" | "fwd64")?.seconds,
  vjp: torch.get(`grad${latent}` as "grad32" | "grad64")?.seconds,
};
if (perCall && (perCall.forward === undefined || perCall.vjp === undefined)) {
  throw new Error(`--torch ${torchFile}: needs the fwd${latent} and grad${latent} rows for ${size}×${size}`);
}
const MODEL = randomSD15();

const t0 = performance.now();
const pipe = await NullTextPipeline.load(MODEL, { resolution: size });
const cost = await pipe.inversionCost();
const setup = (performance.now() - t0) / 1000;
const image = { width: size, height: size, data: new Uint8Array(size * size * 3) };
for (let y = 0; y < size; y++)
  for (let x = 0; x < size; x++)
    for (let c = 0; c < 3; c++)
      image.data[(y * size + x) * 3 + c] = Math.round(127.5 + 100 * Math.sin((x + 2 * y) / (17 + 5 * c)));

let last = performance.now();
const log = (line: string) => {
  if (!wantsJson()) process.stderr.write(`${line}\n`);
};
const { inversion, stats } = await pipe.invert(image, "a photo of a cat", {
  onProgress: (e) => {
    if (e.phase !== "method") return;
    const now = performance.now();
    log(
      `step ${e.step}/${e.total}: loss ${e.loss?.toExponential(3)} after ${e.iterations} iterations (${((now - last) / 1000).toFixed(1)} s)`,
    );
    last = now;
  },
});
const forwards = stats.unetEvals - stats.vjps;
const total = Object.values(stats.seconds).reduce((a, b) => a + b, 0);
const flops = forwards * cost.forward + stats.vjps * (cost.forward + cost.gradient);
const torchSeconds = perCall
  ? forwards * (perCall.forward as number) + stats.vjps * (perCall.vjp as number)
  : undefined;
const result = {
  name: `nti ${size}x${size}`,
  seconds: total,
  seconds_per_phase: stats.seconds,
  setup_seconds: setup,
  unet_evals: stats.unetEvals,
  vjps: stats.vjps,
  gflop: flops / 1e9,
  gflops: flops / 1e9 / total,
  peak_rss_gb: peakRssGb(),
  ...(torchSeconds === undefined
    ? {}
    : { torch_estimate_seconds: torchSeconds, speedup_vs_torch: torchSeconds / total }),
  embeddings: inversion.tensors.embeddings?.shape[0] ?? 0,
};
if (wantsJson()) console.log(JSON.stringify(result));
else {
  console.log(`\nbench:invert — SD 1.5 configuration, random weights, ${size}×${size}, 50 steps, N = 10\n`);
  printTable([
    {
      run: result.name,
      "total s": total.toFixed(1),
      "DDIM inv s": (stats.seconds.ddim_inversion ?? 0).toFixed(1),
      "null-text s": (stats.seconds.nti ?? 0).toFixed(1),
      "UNet evals": stats.unetEvals,
      VJPs: stats.vjps,
      "GFLOP/s": result.gflops.toFixed(0),
      "peak RSS GB": result.peak_rss_gb.toFixed(2),
      ...(torchSeconds === undefined
        ? {}
        : { "PyTorch est. s": torchSeconds.toFixed(0), "PyTorch / nulltext": `${(torchSeconds / total).toFixed(2)}×` }),
    },
  ]);
}
await pipe.release();
