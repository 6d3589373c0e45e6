/**
 * The `nulltext` command line: invert, edit, reconstruct, generate, info and demo.
 * Run `nulltext help` for usage.
 */
import fs from "node:fs";
import path from "node:path";
import { parseArgs } from "node:util";
import type { EditPrompt, PromptToPromptOptions } from "../editing/prompt_to_prompt.js";
import {
  type FitMode,
  fitToSquare,
  grid,
  mse,
  psnr,
  type RgbImage,
  readImage,
  ssim,
  writePng,
} from "../image/index.js";
import { type Inversion, type InversionMethod, readInversion, writeInversion } from "../inversion/file.js";
import type { NullTextState } from "../inversion/null_text.js";
import { SafetensorsFile, writeSafetensors } from "../models/safetensors.js";
import { DEFAULT_SETTINGS, EDIT_NULL_STEPS, NullTextPipeline, type NullTextResume } from "../pipeline.js";
import { runDemo } from "./demo.js";
import { Progress } from "./progress.js";

export const DEFAULT_MODEL = path.resolve(
  path.dirname(new URL(import.meta.url).pathname),
  "..",
  "..",
  "models",
  "nulltext-shapes",
);

const USAGE = `nulltext — null-text inversion and Prompt-to-Prompt editing of real images (Stable Diffusion on ONNX Runtime)

usage:
  nulltext demo [--out DIR]                                  draw a scene, invert it, make two edits (built-in model)
  nulltext invert IMAGE --prompt TEXT --out FILE [options]    invert an image (writes FILE and FILE.json)
  nulltext edit INVERSION --prompt TEXT [--prompt TEXT ...] --out PNG [options]
  nulltext reconstruct INVERSION --out PNG
  nulltext generate --prompt TEXT --out PNG [--seed N]
  nulltext info [MODEL]

common options:
  --model PATH        diffusers folder or single .safetensors checkpoint (default: the built-in model)
  --config-from DIR   configs and tokenizer for a single-file checkpoint
  --steps N           DDIM steps (default 50)         --guidance W     guidance scale (default 7.5)
  --threads N         ONNX Runtime threads (default: all CPUs)
  --unet-weights M    auto (default: shared for models over 1 GiB of weights, else per-session)
                      | shared (one copy fed to all UNet sessions: least memory)
                      | per-session (ORT's own reordered copies: faster for small models, ~1.5× the memory)

invert:
  --method M          nti (default) | npi | ddim | nti-global | nti-conditional
  --inner-steps N     Adam iterations per step (default 10)   --lr X   (default 0.01, decayed by 1 − i/100)
  --early-stop X      (default 1e-5, plus 2e-5 per step)       --fp16   store the embeddings as float16
  --fit MODE          center-crop (default) | pad | stretch: how the image is brought to the model's square size
  --grid              also write FILE.grid.png: input | reconstruction
  An interrupted inversion resumes from its last finished step when run again with the same arguments.

edit:
  --prompt TEXT       edited prompt (repeat for several edits; same word count → word swap, else refinement)
  --mode M            replace | refine (default: by word count)
  --reweight W=S      scale the attention of word W in the edited prompts by S (repeatable)
  --blend SRC:DST     local blend: words of the source and of the edited prompt (e.g. "cat:dog"); pixels elsewhere stay
  --cross-steps F     fraction of steps with cross-attention injection (default 0.8)
  --self-steps F      fraction of steps with self-attention injection (default 0.5)
  --null-steps F      fraction of steps in which the edited prompts use the inverted null embeddings
                      (default 0.2; the source always does; 1 = the paper's editing)
  --grid              also write a side-by-side image: reconstruction | edits
`;

interface Parsed {
  values: Record<string, string | string[] | boolean | undefined>;
  positionals: string[];
}

function parse(argv: string[]): Parsed {
  return parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      prompt: { type: "string", multiple: true },
      out: { type: "string" },
      model: { type: "string" },
      "config-from": { type: "string" },
      method: { type: "string" },
      steps: { type: "string" },
      guidance: { type: "string" },
      "inner-steps": { type: "string" },
      lr: { type: "string" },
      "early-stop": { type: "string" },
      seed: { type: "string" },
      threads: { type: "string" },
      "unet-weights": { type: "string" },
      fit: { type: "string" },
      fp16: { type: "boolean" },
      grid: { type: "boolean" },
      mode: { type: "string" },
      reweight: { type: "string", multiple: true },
      blend: { type: "string" },
      "cross-steps": { type: "string" },
      "self-steps": { type: "string" },
      "null-steps": { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  }) as Parsed;
}

function num(v: unknown, name: string, check: (n: number) => boolean = Number.isFinite): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!check(n)) throw new UsageError(`--${name} ${v} is not valid`);
  return n;
}

class UsageError extends Error {}

function str(v: unknown): string | undefined {
  return typeof v === "string" ? v : undefined;
}

async function pipelineFor(values: Parsed["values"]): Promise<NullTextPipeline> {
  const model = str(values.model) ?? DEFAULT_MODEL;
  return NullTextPipeline.load(model, {
    configFrom: str(values["config-from"]),
    threads: num(values.threads, "threads", (n) => Number.isInteger(n) && n > 0),
    unetWeights: unetWeights(values),
  });
}

function unetWeights(values: Parsed["values"]): "auto" | "shared" | "per-session" | undefined {
  const v = str(values["unet-weights"]);
  if (v !== undefined && v !== "auto" && v !== "shared" && v !== "per-session") {
    throw new UsageError(`--unet-weights ${v}: expected auto, shared or per-session`);
  }
  return v;
}

function requireOut(values: Parsed["values"], ext: string): string {
  const out = str(values.out);
  if (!out) throw new UsageError(`--out is required (a ${ext} path)`);
  const dir = path.dirname(path.resolve(out));
  if (!fs.existsSync(dir)) throw new UsageError(`--out: folder ${dir} does not exist`);
  return out;
}

function writeJsonAtomic(file: string, data: unknown): void {
  fs.writeFileSync(`${file}.partial`, `${JSON.stringify(data, null, 2)}\n`);
  fs.renameSync(`${file}.partial`, file);
}

export function quality(reference: RgbImage, image: RgbImage): { psnr: number; ssim: number; mse: number } {
  return { psnr: psnr(reference, image), ssim: ssim(reference, image), mse: mse(reference, image) };
}

async function invert(p: Parsed): Promise<void> {
  const [imagePath] = p.positionals;
  if (!imagePath) throw new UsageError("invert needs an IMAGE");
  const prompt = (p.values.prompt as string[] | undefined)?.[0];
  if (prompt === undefined) throw new UsageError("invert needs --prompt (a description of the image)");
  const out = requireOut(p.values, "inversion file");
  const fit = (str(p.values.fit) ?? "center-crop") as FitMode;
  if (!["center-crop", "pad", "stretch"].includes(fit))
    throw new UsageError(`--fit ${fit}: use center-crop, pad or stretch`);
  const method = (str(p.values.method) ?? "nti") as InversionMethod;
  const source = await readImage(imagePath);
  const pipe = await pipelineFor(p.values);
  const image = fitToSquare(source, pipe.resolution, fit);
  const settings = {
    method,
    steps: num(p.values.steps, "steps"),
    guidance: num(p.values.guidance, "guidance"),
    innerSteps: num(p.values["inner-steps"], "inner-steps"),
    lr: num(p.values.lr, "lr"),
    earlyStop: num(p.values["early-stop"], "early-stop"),
  };
  const steps = settings.steps ?? DEFAULT_SETTINGS.steps;
  const bars: Record<string, Progress> = {};
  const t0 = performance.now();
  const checkpointFile = `${out}.resume`;
  const { inversion, stats } = await pipe.invert(image, prompt, {
    ...settings,
    onProgress: (e) => {
      if (e.phase === "encode") return;
      const label = e.phase === "ddim" ? "DDIM invert" : "null-text";
      bars[e.phase] ??= new Progress(label, e.total);
      bars[e.phase]?.update(e.step, e.loss !== undefined ? `loss ${e.loss.toExponential(2)} (${e.iterations} it)` : "");
    },
    checkpoint: {
      load: () => loadResume(checkpointFile),
      save: (s) => saveResume(checkpointFile, s),
    },
  });
  const rbar = new Progress("reconstruct", steps);
  const tRec = performance.now();
  const reconstruction = await pipe.reconstruct(inversion, { onStep: (s) => rbar.update(s) });
  stats.seconds.reconstruct = (performance.now() - tRec) / 1000;
  stats.unetEvals += steps;
  const q = quality(image, reconstruction);
  inversion.stats = q;
  writeInversion(out, inversion, { float16: p.values.fp16 === true });
  fs.rmSync(checkpointFile, { force: true });
  const report = {
    command: "invert",
    image: path.resolve(imagePath),
    prompt,
    model: pipe.model.source,
    settings: inversion.settings,
    resolution: pipe.resolution,
    reconstruction: q,
    unet_evals: stats.unetEvals,
    vjps: stats.vjps,
    seconds: { ...stats.seconds, total: (performance.now() - t0) / 1000 },
    output: path.resolve(out),
  };
  writeJsonAtomic(`${out}.json`, report);
  if (p.values.grid) await writePng(`${out}.grid.png`, grid([image, reconstruction], 2, 2));
  console.log(
    `wrote ${out} (${inversion.settings.method}); reconstruction PSNR ${q.psnr.toFixed(2)} dB, SSIM ${q.ssim.toFixed(4)}; report ${out}.json`,
  );
  await pipe.release();
}

/** The resume state: pivots, finished embeddings and the carried latent, as safetensors. */
function saveResume(file: string, r: NullTextResume): void {
  const f32 = (data: Float32Array) => ({ dtype: "F32" as const, shape: [data.length], data });
  const tensors: Record<string, ReturnType<typeof f32>> = {
    latent: f32(r.state.latent),
    current: f32(r.state.current),
  };
  r.pivots.forEach((z, i) => {
    tensors[`pivot.${i}`] = f32(z);
  });
  r.state.embeddings.forEach((e, i) => {
    tensors[`embedding.${i}`] = f32(e);
  });
  const meta = {
    settings: r.settings,
    prompt: r.prompt,
    imageHash: r.imageHash,
    completed: r.state.completed,
    unetEvals: r.state.unetEvals,
    vjps: r.state.vjps,
    losses: r.state.losses,
    pivots: r.pivots.length,
  };
  writeSafetensors(file, tensors, { resume: JSON.stringify(meta) });
}

function loadResume(file: string): NullTextResume | null {
  if (!fs.existsSync(file)) return null;
  try {
    const st = SafetensorsFile.open(file);
    try {
      const m = JSON.parse(st.metadata.resume ?? "");
      const state: NullTextState = {
        completed: m.completed,
        embeddings: Array.from({ length: m.completed }, (_, i) => st.readFloat32(`embedding.${i}`)),
        latent: st.readFloat32("latent"),
        current: st.readFloat32("current"),
        unetEvals: m.unetEvals,
        vjps: m.vjps,
        losses: m.losses,
      };
      const pivots = Array.from({ length: m.pivots }, (_, i) => st.readFloat32(`pivot.${i}`));
      process.stderr.write(`resuming from ${file}: ${m.completed} steps done\n`);
      return { settings: m.settings, prompt: m.prompt, imageHash: m.imageHash, pivots, state };
    } finally {
      st.close();
    }
  } catch (err) {
    process.stderr.write(`ignoring unreadable resume file ${file}: ${(err as Error).message}\n`);
    return null;
  }
}

function editOptions(
  values: Parsed["values"],
  source: string,
  prompts: string[],
): { edits: EditPrompt[]; p2p: PromptToPromptOptions } {
  const mode = str(values.mode) as EditPrompt["mode"];
  if (mode && mode !== "replace" && mode !== "refine") throw new UsageError(`--mode ${mode}: use replace or refine`);
  const reweight = ((values.reweight as string[] | undefined) ?? []).map((r) => {
    const m = r.match(/^(.+)=(-?[\d.]+(?:e-?\d+)?)$/);
    if (!m) throw new UsageError(`--reweight ${r}: expected WORD=SCALE, e.g. tiger=2`);
    return { word: m[1] as string, scale: Number(m[2]) };
  });
  const edits = prompts.map((prompt) => ({
    prompt,
    mode,
    reweight: reweight.filter((r) => prompt.split(" ").includes(r.word)),
  }));
  for (const r of reweight) {
    if (!prompts.some((q) => q.split(" ").includes(r.word)))
      throw new UsageError(`--reweight: "${r.word}" is in no edited prompt`);
  }
  const p2p: PromptToPromptOptions = {
    crossReplaceSteps: num(values["cross-steps"], "cross-steps", (n) => n >= 0 && n <= 1),
    selfReplaceSteps: num(values["self-steps"], "self-steps", (n) => n >= 0 && n <= 1),
  };
  const blend = str(values.blend);
  if (blend) {
    const [src, dst] = blend.split(":");
    if (!src || !dst) throw new UsageError(`--blend ${blend}: expected SOURCE_WORDS:EDIT_WORDS, e.g. "cat:dog"`);
    const srcWords = src.split(",");
    const dstWords = dst.split(",");
    for (const w of srcWords) {
      if (!source.split(" ").includes(w))
        throw new UsageError(`--blend: "${w}" is not a word of the source prompt "${source}"`);
    }
    p2p.localBlend = { words: [srcWords, ...prompts.map((q) => dstWords.filter((w) => q.split(" ").includes(w)))] };
  }
  return { edits, p2p };
}

async function loadInversionFor(p: Parsed): Promise<{ pipe: NullTextPipeline; inv: Inversion }> {
  const [file] = p.positionals;
  if (!file) throw new UsageError("needs an INVERSION file (written by nulltext invert)");
  if (!fs.existsSync(file)) throw new UsageError(`${file} does not exist`);
  const pipe = await pipelineFor(p.values);
  return { pipe, inv: readInversion(file, pipe.model.fingerprint) };
}

async function edit(p: Parsed): Promise<void> {
  const prompts = (p.values.prompt as string[] | undefined) ?? [];
  if (prompts.length === 0) throw new UsageError("edit needs at least one --prompt (the edited prompt)");
  const out = requireOut(p.values, "PNG");
  const nullSteps = num(p.values["null-steps"], "null-steps", (n) => n >= 0 && n <= 1) ?? EDIT_NULL_STEPS;
  const { pipe, inv } = await loadInversionFor(p);
  const { edits, p2p } = editOptions(p.values, inv.prompt, prompts);
  const bar = new Progress("edit", inv.settings.steps);
  const t0 = performance.now();
  const images = await pipe.edit(inv, edits, {
    ...p2p,
    nullSteps,
    guidance: num(p.values.guidance, "guidance"),
    onStep: (s) => bar.update(s),
  });
  const outputs = prompts.length === 1 ? [out] : prompts.map((_, i) => out.replace(/(\.png)?$/i, `-${i + 1}.png`));
  for (const [i, o] of outputs.entries()) await writePng(o, images[i + 1] as RgbImage);
  if (p.values.grid) await writePng(out.replace(/(\.png)?$/i, ".grid.png"), grid(images, images.length, 2));
  writeJsonAtomic(`${out}.json`, {
    command: "edit",
    source_prompt: inv.prompt,
    edits,
    options: { ...p2p, null_steps: nullSteps },
    method: inv.settings.method,
    outputs: outputs.map((o) => path.resolve(o)),
    unet_evals: inv.settings.steps,
    seconds: (performance.now() - t0) / 1000,
  });
  console.log(`wrote ${outputs.join(", ")}`);
  await pipe.release();
}

async function reconstruct(p: Parsed): Promise<void> {
  const out = requireOut(p.values, "PNG");
  const { pipe, inv } = await loadInversionFor(p);
  const bar = new Progress("reconstruct", inv.settings.steps);
  const image = await pipe.reconstruct(inv, {
    guidance: num(p.values.guidance, "guidance"),
    onStep: (s) => bar.update(s),
  });
  await writePng(out, image);
  console.log(`wrote ${out}`);
  await pipe.release();
}

async function generate(p: Parsed): Promise<void> {
  const prompt = (p.values.prompt as string[] | undefined)?.[0];
  if (prompt === undefined) throw new UsageError("generate needs --prompt");
  const out = requireOut(p.values, "PNG");
  const pipe = await pipelineFor(p.values);
  const steps = num(p.values.steps, "steps") ?? 50;
  const bar = new Progress("generate", steps);
  const image = await pipe.generate(prompt, {
    seed: num(p.values.seed, "seed", Number.isInteger) ?? 0,
    steps,
    guidance: num(p.values.guidance, "guidance"),
    onStep: (s) => bar.update(s),
  });
  await writePng(out, image);
  console.log(`wrote ${out}`);
  await pipe.release();
}

async function info(p: Parsed): Promise<void> {
  const source = p.positionals[0] ?? str(p.values.model) ?? DEFAULT_MODEL;
  const pipe = await NullTextPipeline.load(source, { configFrom: str(p.values["config-from"]) });
  const m = pipe.model;
  console.log(
    JSON.stringify(
      {
        source: m.source,
        fingerprint: m.fingerprint,
        resolution: pipe.resolution,
        latent: pipe.latentShape,
        text_encoder: m.textEncoder.config,
        unet: m.unet.config,
        vae: m.vae.config,
        scheduler: m.scheduler,
        tokenizer: { vocab: m.tokenizer.vocabSize, pad: m.tokenizer.padTokenId },
      },
      null,
      2,
    ),
  );
}

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  try {
    if (!command || command === "help" || command === "--help" || command === "-h") {
      console.log(USAGE);
      return command ? 0 : 2;
    }
    const parsed = parse(rest);
    if (parsed.values.help) {
      console.log(USAGE);
      return 0;
    }
    switch (command) {
      case "invert":
        await invert(parsed);
        break;
      case "edit":
        await edit(parsed);
        break;
      case "reconstruct":
        await reconstruct(parsed);
        break;
      case "generate":
        await generate(parsed);
        break;
      case "info":
        await info(parsed);
        break;
      case "demo":
        await runDemo({
          out: str(parsed.values.out) ?? "demo-output",
          model: str(parsed.values.model) ?? DEFAULT_MODEL,
          threads: num(parsed.values.threads, "threads"),
          unetWeights: unetWeights(parsed.values),
        });
        break;
      default:
        throw new UsageError(
          `unknown command '${command}' (commands: demo, invert, edit, reconstruct, generate, info)`,
        );
    }
    return 0;
  } catch (err) {
    const e = err as Error;
    if (e instanceof UsageError || (e as NodeJS.ErrnoException).code === "ERR_PARSE_ARGS_UNKNOWN_OPTION") {
      console.error(`nulltext: ${e.message}\n(nulltext help for usage)`);
      return 2;
    }
    console.error(`nulltext: ${e.message}`);
    if (process.env.NULLTEXT_DEBUG) console.error(e.stack);
    return 1;
  }
}
