/**
 * bench:unet — the full SD 1.5 UNet (random weights from scripts/make-random-sd15.ts) on ONNX
 * Runtime: forward at 64×64 and 32×32 latents, and forward + gradient with respect to the context
 * (the VJP null-text inversion needs), each in its own process so its peak RSS is its own.
 * Prints FLOPs, seconds (median), GFLOP/s and peak RSS; with `--torch FILE`, also the reference
 * implementation's seconds and peak RSS from ../shared/reference/torch-unet/unet_bench.py's JSON lines
 * (run on this machine; see bench/torch.ts) and the ratio PyTorch / nulltext. Without it, no ratio.
 * Rows run with the UNet weights as the pipeline holds them by default, one host copy fed to the
 * session ("shared"); the "-own" rows with the weights inside the session as initializers, which
 * ORT reorders and prepacks per kernel ("per-session": a second copy in a gradient session).
 * Usage: npm run bench:unet [-- --json] [-- --runs N] [-- --rows fwd64,grad64] [-- --torch torch.jsonl]
 *        [-- --no-prepack] [-- --mem-pattern | --no-mem-pattern] (ORT memory/speed trade-offs)
 */
import { spawnSync } from "node:child_process";
import * as G from "../src/graph/index.js";
import { loadStableDiffusion } from "../src/models/loader.js";
import { Session } from "../src/runtime/session.js";
import { argValue, median, peakRssGb, printTable, randomArray, wantsJson } from "./common.js";
import { randomSD15, SD15_MODEL, unetGraph } from "./sd15.js";
import { readTorchJsonl, type TorchCase } from "./torch.js";

const ROWS = {
  fwd64: { latent: 64, grad: false, weights: "shared", torchCase: "fwd64" },
  fwd32: { latent: 32, grad: false, weights: "shared", torchCase: "fwd32" },
  grad64: { latent: 64, grad: true, weights: "shared", torchCase: "grad64" },
  grad32: { latent: 32, grad: true, weights: "shared", torchCase: "grad32" },
  "fwd64-own": { latent: 64, grad: false, weights: "per-session", torchCase: "fwd64" },
  "grad64-own": { latent: 64, grad: true, weights: "per-session", torchCase: "grad64" },
} as const satisfies Record<string, { latent: number; grad: boolean; weights: string; torchCase: TorchCase }>;
type RowName = keyof typeof ROWS;

interface RowResult {
  name: string;
  weights: string;
  gflop: number;
  seconds: number;
  gflops: number;
  peak_rss_gb: number;
  compile_seconds: number;
  /** Only with --torch, and only for rows whose case the file has. */
  torch_seconds?: number;
  torch_peak_rss_gb?: number;
  speedup_vs_torch?: number;
}

async function runRow(name: RowName, runs: number): Promise<RowResult> {
  const row = ROWS[name];
  const t0 = performance.now();
  const model = await loadStableDiffusion(SD15_MODEL);
  const s = row.latent;
  const outputs = unetGraph(model.unet, s, row.grad);
  const compiled = G.compile(outputs, {
    name: `unet_${name}`,
    frozenWeights: row.weights === "shared" ? "inputs" : "initializers",
  });
  // Gradient graphs run without ORT's memory pattern, as the pipeline's inversion step does (it
  // costs 3.4 GB of planned-but-idle memory at 64×64 for 7% speed).
  const session = await Session.create(compiled, {
    config: process.argv.includes("--no-prepack") ? { "session.disable_prepacking": "1" } : {},
    memoryPattern: row.grad ? process.argv.includes("--mem-pattern") : !process.argv.includes("--no-mem-pattern"),
  });
  const compileSeconds = (performance.now() - t0) / 1000;
  if (process.env.NULLTEXT_BENCH_DEBUG) console.error(`peak RSS after setup: ${(peakRssGb()).toFixed(2)} GB`);
  const feeds: Record<string, Float32Array> = {
    sample: randomArray(4 * s * s, 1),
    timestep: Float32Array.of(500),
    context: randomArray(77 * 768, 2),
  };
  if (row.grad) feeds.cotangent = randomArray(4 * s * s, 3);
  await session.run(feeds); // warm-up
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t = performance.now();
    await session.run(feeds);
    times.push((performance.now() - t) / 1000);
    if (process.env.NULLTEXT_BENCH_DEBUG)
      console.error(`run ${i}: ${times[i]?.toFixed(2)} s, peak RSS ${peakRssGb().toFixed(2)} GB`);
  }
  const seconds = median(times);
  const gflop = compiled.flops / 1e9;
  return {
    name,
    weights: row.weights,
    gflop,
    seconds,
    gflops: gflop / seconds,
    peak_rss_gb: peakRssGb(),
    compile_seconds: compileSeconds,
  };
}

const single = argValue("--row") as RowName | undefined;
const runs = Number(argValue("--runs") ?? 3);
if (single) {
  console.log(JSON.stringify(await runRow(single, runs)));
} else {
  const names = (argValue("--rows")?.split(",") ?? Object.keys(ROWS)) as RowName[];
  for (const name of names) {
    if (!(name in ROWS)) throw new Error(`unknown row ${name} (rows: ${Object.keys(ROWS).join(", ")})`);
  }
  // Read before the first row runs, so a bad file fails in a second rather than after minutes.
  const torchFile = argValue("--torch");
  if (process.argv.includes("--torch") && !torchFile) throw new Error("--torch needs a file (unet_bench.py's output)");
  const torch = torchFile ? readTorchJsonl(torchFile) : undefined;
  if (torch && !names.some((n) => torch.has(ROWS[n].torchCase))) {
    throw new Error(`${torchFile} has no row for ${names.join(", ")} (it has ${[...torch.keys()].join(", ")})`);
  }
  randomSD15();
  const results: RowResult[] = [];
  for (const name of names) {
    const child = spawnSync(
      process.execPath,
      [
        ...process.execArgv,
        import.meta.filename,
        "--row",
        name,
        "--runs",
        String(runs),
        ...["--no-prepack", "--no-mem-pattern", "--mem-pattern"].filter((f) => process.argv.includes(f)),
      ],
      {
        encoding: "utf8",
        env: { ...process.env, MALLOC_MMAP_THRESHOLD_: "33554432", MALLOC_TRIM_THRESHOLD_: "17179869184" },
        maxBuffer: 1 << 24,
      },
    );
    const line = child.stdout.trim().split("\n").pop() ?? "";
    if (child.status !== 0 || !line.startsWith("{")) throw new Error(`bench:unet row ${name} failed:\n${child.stderr}`);
    const r = JSON.parse(line) as RowResult;
    const ref = torch?.get(ROWS[name].torchCase);
    if (ref) {
      r.torch_seconds = ref.seconds;
      r.torch_peak_rss_gb = ref.peak_rss_gb;
      r.speedup_vs_torch = ref.seconds / r.seconds;
    }
    results.push(r);
    if (wantsJson()) console.log(JSON.stringify(r));
  }
  if (!wantsJson()) {
    console.log(
      `bench:unet — SD 1.5 UNet, random weights, ${runs} timed runs after 1 warm-up (median), one process per row`,
    );
    if (torch) {
      const ref = [...torch.values()][0];
      console.log(`PyTorch figures from ${torchFile} (torch ${ref?.torch ?? "?"}, BLAS ${ref?.blas ?? "?"})`);
    }
    console.log();
    printTable(
      results.map((r) => ({
        row: r.name,
        weights: r.weights,
        GFLOP: r.gflop.toFixed(0),
        seconds: r.seconds.toFixed(2),
        "GFLOP/s": r.gflops.toFixed(0),
        "peak RSS GB": r.peak_rss_gb.toFixed(2),
        "setup s": r.compile_seconds.toFixed(1),
        ...(torch && {
          "PyTorch s": r.torch_seconds?.toFixed(2) ?? "–",
          "PyTorch RSS GB": r.torch_peak_rss_gb?.toFixed(2) ?? "–",
          "PyTorch / nulltext": r.speedup_vs_torch ? `${r.speedup_vs_torch.toFixed(2)}×` : "–",
        }),
      })),
    );
  }
}
