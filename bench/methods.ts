/**
 * bench:methods — every registered inversion method on the SD 1.5 configuration with random weights
 * (bench/sd15.ts): per method, one inversion of a 256×256 image ("a photo of a cat") and one
 * two-prompt edit (source + "a photo of a dog", Prompt-to-Prompt word swap, the pipeline's
 * defaults), then the methods that used no gradient again at 512×512. Per row: inversion seconds
 * (without compiling the graph), UNet evaluations and VJPs of the inversion, edit seconds (without
 * compiling: the first step's time is replaced by the median step's) and the edit's UNet
 * evaluations (batch-1 equivalents: each denoiser call evaluates 2N latents, 2N − 1 when the method
 * needs no guided ε of the source: direct pins it to its trajectory, npi's ∅ is its prompt), the
 * row's wall time from loading the model to the decoded edit (everything a user waits for), the
 * median DDIM-inversion step and edit step (seconds per step, to scale from), and peak RSS. Each row
 * runs in its own process, so its peak RSS is its own. The methods come from the registry, so a
 * newly registered one appears without changes here.
 *
 * Usage: npm run bench:methods [-- --methods a,b] [-- --sizes 256,512] [-- --steps N]
 *        [-- --inner-steps N] [-- --unet-weights auto|shared|per-session] [-- --json]
 * --steps sets every method's DDIM steps (default: each method's own, 50); --inner-steps sets the
 * optimising methods' inner iterations (innerSteps, default 10); --unet-weights the pipeline's
 * unetWeights (default auto). Without --sizes, 512 runs only the
 * methods whose 256 row needed no VJP.
 */
import { spawnSync } from "node:child_process";
import { METHODS } from "../src/inversion/registry.js";
import { editJob } from "../src/jobs/index.js";
import { NullTextPipeline } from "../src/pipeline.js";
import { argValue, median, peakRssGb, printTable, wantsJson } from "./common.js";
import { randomSD15 } from "./sd15.js";

const SOURCE = "a photo of a cat";
const EDIT = "a photo of a dog";

interface RowResult {
  method: string;
  size: number;
  settings: Record<string, unknown>;
  invert_seconds: number;
  invert_unet_evals: number;
  invert_vjps: number;
  /** Median DDIM-inversion step (one batch-1 UNet forward), null without a trajectory. */
  ddim_step_seconds: number | null;
  edit_seconds: number;
  /** Median edit step (one denoiser call, two for EDICT). */
  edit_step_seconds: number;
  edit_unet_evals: number;
  compile_seconds: number;
  total_seconds: number;
  peak_rss_gb: number;
}

function positiveInteger(name: string): number | undefined {
  const v = argValue(name);
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!(Number.isInteger(n) && n >= 1)) throw new Error(`${name} ${v}: expected an integer ≥ 1`);
  return n;
}

async function runRow(method: string, size: number): Promise<RowResult> {
  const start = performance.now();
  const weights = argValue("--unet-weights");
  if (weights !== undefined && !["auto", "shared", "per-session"].includes(weights))
    throw new Error(`--unet-weights ${weights}: expected auto, shared or per-session`);
  const pipe = await NullTextPipeline.load(randomSD15(), {
    resolution: size,
    unetWeights: weights as "auto" | "shared" | "per-session" | undefined,
  });
  const image = { width: size, height: size, data: new Uint8Array(size * size * 3) };
  for (let y = 0; y < size; y++)
    for (let x = 0; x < size; x++)
      for (let c = 0; c < 3; c++)
        image.data[(y * size + x) * 3 + c] = Math.round(127.5 + 100 * Math.sin((x + 2 * y) / (17 + 5 * c)));
  const overrides: Record<string, number> = {};
  const steps = positiveInteger("--steps");
  const inner = positiveInteger("--inner-steps");
  const defaults = METHODS.get(method)?.defaults as Record<string, unknown>;
  if (steps !== undefined) overrides.steps = steps;
  if (inner !== undefined && "innerSteps" in defaults) overrides.innerSteps = inner;
  // a method with a step-count setting of its own (ddpm's skip) keeps its fraction of the steps
  if (steps !== undefined && typeof defaults.skip === "number")
    overrides.skip = Math.round(((defaults.skip as number) * steps) / (defaults.steps as number));
  const log = (line: string) => {
    if (!wantsJson()) process.stderr.write(`${method} ${size}: ${line}\n`);
  };
  // the DDIM trajectory's steps, each one batch-1 UNet evaluation (the first also encodes the image)
  const ddimEnds: number[] = [];
  const { inversion, stats } = await pipe.invert(image, SOURCE, {
    method,
    ...overrides,
    onProgress: (p) => {
      if (p.phase === "ddim") ddimEnds.push(performance.now());
      if (p.phase !== "encode") log(`${p.phase} ${p.step}/${p.total}`);
    },
  });
  const ddimSteps = ddimEnds.slice(1).map((t, i) => (t - (ddimEnds[i] as number)) / 1000);
  const compile = stats.seconds.compile ?? 0;
  const invertSeconds = Object.values(stats.seconds).reduce((a, b) => a + b, 0) - compile;

  const stepEnds: number[] = [];
  const t0 = performance.now();
  // as `nulltext edit` runs it without --grid: the edited image decoded, not the source's reconstruction
  const { report } = await editJob(pipe, {
    inversion,
    edits: [{ prompt: EDIT }],
    reconstruction: false,
    onProgress: (p) => {
      stepEnds.push(performance.now());
      log(`edit ${p.step}/${p.total}`);
    },
  });
  const t1 = performance.now();
  const durations = stepEnds.map((t, i) => (t - (i === 0 ? t0 : (stepEnds[i - 1] as number))) / 1000);
  const typical = durations.length > 1 ? median(durations.slice(1)) : (durations[0] ?? 0);
  // without the denoiser's compilation, which falls in the first step
  const editSeconds = (t1 - t0) / 1000 - (durations[0] ?? 0) + typical;
  const result: RowResult = {
    method,
    size,
    settings: inversion.settings,
    invert_seconds: invertSeconds,
    invert_unet_evals: stats.unetEvals,
    invert_vjps: stats.vjps,
    ddim_step_seconds: ddimSteps.length ? median(ddimSteps) : null,
    edit_seconds: editSeconds,
    edit_step_seconds: typical,
    edit_unet_evals: report.unet_evals,
    compile_seconds: compile + (durations[0] ?? 0) - typical,
    total_seconds: (performance.now() - start) / 1000,
    peak_rss_gb: peakRssGb(),
  };
  await pipe.release();
  return result;
}

function runChild(method: string, size: number): RowResult {
  const args = [...process.execArgv, import.meta.filename, "--row", method, "--size", String(size)];
  for (const flag of ["--steps", "--inner-steps", "--unet-weights"]) {
    const v = argValue(flag);
    if (v !== undefined) args.push(flag, v);
  }
  const child = spawnSync(process.execPath, args, {
    encoding: "utf8",
    stdio: ["ignore", "pipe", wantsJson() ? "pipe" : "inherit"],
    maxBuffer: 1 << 24,
  });
  const line = child.stdout.trim().split("\n").pop() ?? "";
  if (child.status !== 0 || !line.startsWith("{"))
    throw new Error(`bench:methods row ${method} ${size} failed:\n${child.stderr ?? ""}`);
  return JSON.parse(line) as RowResult;
}

const single = argValue("--row");
if (single) {
  console.log(JSON.stringify(await runRow(single, Number(argValue("--size")))));
} else {
  randomSD15();
  const methods = argValue("--methods")?.split(",") ?? [...METHODS.keys()];
  for (const m of methods)
    if (!METHODS.has(m)) throw new Error(`unknown method ${m} (methods: ${[...METHODS.keys()].join(", ")})`);
  const sizes = argValue("--sizes")?.split(",").map(Number);
  for (const s of sizes ?? []) if (![256, 512].includes(s)) throw new Error(`--sizes: ${s} is not 256 or 512`);
  const results: RowResult[] = [];
  const report = (r: RowResult) => {
    results.push(r);
    if (wantsJson()) console.log(JSON.stringify(r));
  };
  for (const size of sizes ?? [256]) for (const m of methods) report(runChild(m, size));
  if (!sizes) {
    const withoutGradients = results.filter((r) => r.invert_vjps === 0).map((r) => r.method);
    for (const m of withoutGradients) report(runChild(m, 512));
  }
  if (!wantsJson()) {
    console.log(
      `\nbench:methods — SD 1.5 configuration, random weights; inversion of "${SOURCE}" and one edit to "${EDIT}"; one process per row\n`,
    );
    printTable(
      results.map((r) => {
        const nti = results.find((x) => x.method === "nti" && x.size === r.size);
        return {
          method: r.method,
          size: r.size,
          steps: String(r.settings.steps),
          "invert s": r.invert_seconds.toFixed(1),
          "× nti": nti ? `${(r.invert_seconds / nti.invert_seconds).toFixed(3)}` : "",
          "UNet evals": r.invert_unet_evals,
          VJPs: r.invert_vjps,
          "s/DDIM step": r.ddim_step_seconds === null ? "" : r.ddim_step_seconds.toFixed(2),
          "edit s": r.edit_seconds.toFixed(1),
          "s/edit step": r.edit_step_seconds.toFixed(2),
          "edit evals": r.edit_unet_evals,
          "compile s": r.compile_seconds.toFixed(1),
          "total s": r.total_seconds.toFixed(1),
          "peak RSS GB": r.peak_rss_gb.toFixed(2),
        };
      }),
    );
  }
}
