/**
 * bench:edit — a Prompt-to-Prompt word swap with local blend (source and one edit, guidance 7.5,
 * 50 DDIM steps) on the SD 1.5 configuration with random weights at 512×512 (64×64 latents), the
 * pipeline's way: one denoiser of batch 4 ([∅, ∅, source, edit]) with the controller compiled in.
 * The reference row runs the same batch-4 guided UNet without attention control (two guided
 * forwards per step), so the edit's per-step cost prints as a ratio to it, measured in one run.
 * Each row runs in its own process, so its peak RSS is its own. Seconds per step are the median
 * over the steps after the first (which includes ORT's first-run allocations).
 * Usage: npm run bench:edit [-- --steps N] [-- --rows guided,p2p] [-- --json]
 *        [-- --mem-pattern | --no-mem-pattern] (ORT's memory pattern; the denoiser's default is off)
 */
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { Denoiser } from "../src/editing/denoiser.js";
import { buildAttentionEdit } from "../src/editing/prompt_to_prompt/index.js";
import { sample } from "../src/editing/sample.js";
import { loadStableDiffusion } from "../src/models/loader.js";
import { ddimSchedule } from "../src/schedulers/ddim.js";
import { argValue, median, peakRssGb, printTable, randomArray, wantsJson } from "./common.js";
import { SD15_MODEL } from "./sd15.js";

const LATENT = 64;
const SOURCE = "a photo of a cat";
const EDIT = "a photo of a dog";

const ROWS = {
  guided: "two guided UNet forwards per step (batch 4, no hook)",
  p2p: `Prompt-to-Prompt word swap "${SOURCE}" → "${EDIT}" with local blend`,
} as const;
type RowName = keyof typeof ROWS;

interface RowResult {
  name: RowName;
  steps: number;
  seconds: number;
  seconds_per_step: number;
  setup_seconds: number;
  peak_rss_gb: number;
  ratio_to_guided?: number;
}

async function runRow(name: RowName, steps: number): Promise<RowResult> {
  const t0 = performance.now();
  const model = await loadStableDiffusion(SD15_MODEL);
  const control = name === "p2p";
  const memoryPattern = process.argv.includes("--mem-pattern")
    ? true
    : process.argv.includes("--no-mem-pattern")
      ? false
      : undefined;
  const denoiser = await Denoiser.create(model, 2, [LATENT, LATENT], { attentionControl: control, memoryPattern });
  const setup = (performance.now() - t0) / 1000;
  const embedding = 77 * model.unet.crossAttentionDim;
  const edit = control
    ? buildAttentionEdit(SOURCE, [{ prompt: EDIT }], steps, model.tokenizer, {
        localBlend: { words: [["cat"], ["dog"]] },
      })
    : undefined;
  const stepSeconds: number[] = [];
  let last = performance.now();
  const t1 = last;
  await sample({
    denoiser,
    schedule: ddimSchedule(model.scheduler, steps),
    zT: randomArray(4 * LATENT * LATENT, 1),
    nullEmbeddings: randomArray(embedding, 2),
    promptEmbeddings: [randomArray(embedding, 3), randomArray(embedding, 4)],
    guidance: 7.5,
    edit,
    onStep: (step, total) => {
      const now = performance.now();
      stepSeconds.push((now - last) / 1000);
      last = now;
      if (!wantsJson()) process.stderr.write(`${name}: step ${step}/${total} ${stepSeconds.at(-1)?.toFixed(2)} s\n`);
    },
  });
  const seconds = (performance.now() - t1) / 1000;
  await denoiser.release();
  return {
    name,
    steps,
    seconds,
    seconds_per_step: median(stepSeconds.length > 1 ? stepSeconds.slice(1) : stepSeconds),
    setup_seconds: setup,
    peak_rss_gb: peakRssGb(),
  };
}

const steps = Number(argValue("--steps") ?? 50);
if (!(Number.isInteger(steps) && steps >= 1))
  throw new Error(`--steps ${argValue("--steps")}: expected an integer ≥ 1`);
const single = argValue("--row") as RowName | undefined;
if (single) {
  console.log(JSON.stringify(await runRow(single, steps)));
} else {
  if (!fs.existsSync(path.join(SD15_MODEL, "unet", "diffusion_pytorch_model.safetensors"))) {
    console.error(`bench:edit needs the random SD 1.5 model in ${SD15_MODEL}: make it with npm run make:sd15-random`);
    process.exit(1);
  }
  const names = (argValue("--rows")?.split(",") ?? Object.keys(ROWS)) as RowName[];
  for (const name of names)
    if (!(name in ROWS)) throw new Error(`unknown row ${name} (rows: ${Object.keys(ROWS).join(", ")})`);
  const results: RowResult[] = [];
  for (const name of names) {
    const child = spawnSync(
      process.execPath,
      [
        ...process.execArgv,
        import.meta.filename,
        "--row",
        name,
        "--steps",
        String(steps),
        ...["--mem-pattern", "--no-mem-pattern"].filter((f) => process.argv.includes(f)),
      ],
      { encoding: "utf8", stdio: ["ignore", "pipe", wantsJson() ? "pipe" : "inherit"], maxBuffer: 1 << 24 },
    );
    const line = child.stdout.trim().split("\n").pop() ?? "";
    if (child.status !== 0 || !line.startsWith("{")) throw new Error(`bench:edit row ${name} failed:\n${child.stderr}`);
    const r = JSON.parse(line) as RowResult;
    const guided = results.find((x) => x.name === "guided");
    if (name === "p2p" && guided) r.ratio_to_guided = r.seconds_per_step / guided.seconds_per_step;
    results.push(r);
    if (wantsJson()) console.log(JSON.stringify(r));
  }
  if (!wantsJson()) {
    console.log(
      `\nbench:edit — SD 1.5 configuration, random weights, 512×512 (64×64 latents), ${steps} steps, guidance 7.5, one process per row\n`,
    );
    printTable(
      results.map((r) => ({
        row: r.name,
        "s/step": r.seconds_per_step.toFixed(2),
        "× guided": r.ratio_to_guided === undefined ? "" : `${r.ratio_to_guided.toFixed(3)}×`,
        "total s": r.seconds.toFixed(1),
        "setup s": r.setup_seconds.toFixed(1),
        "peak RSS GB": r.peak_rss_gb.toFixed(2),
      })),
    );
    for (const name of names) console.log(`${name}: ${ROWS[name]}`);
  }
}
