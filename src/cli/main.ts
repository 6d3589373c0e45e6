/**
 * The `nulltext` command line: invert, edit, reconstruct, generate, info and demo.
 * Run `nulltext help` for usage.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import type { EditPrompt, PromptToPromptOptions } from "../editing/prompt_to_prompt/index.js";
import { type FitMode, fitToSquare, readImage } from "../image/index.js";
import { type Inversion, ModelMismatchError, readInversion } from "../inversion/file.js";
import { DEFAULT_METHOD, METHODS, resolveSettings } from "../inversion/registry.js";
import {
  checkOutputs,
  editJob,
  generateJob,
  invertJob,
  OutputBusyError,
  OutputError,
  reconstructJob,
} from "../jobs/index.js";
import { EDIT_NULL_STEPS, NullTextPipeline } from "../pipeline.js";
import { serve } from "../server/cli.js";
import { runDemo } from "./demo.js";
import { progressPrinter } from "./progress.js";

export const DEFAULT_MODEL = path.resolve(
  path.dirname(new URL(import.meta.url).pathname),
  "..",
  "..",
  "models",
  "nulltext-shapes",
);

const usage =
  () => `nulltext — null-text inversion and Prompt-to-Prompt editing of real images (Stable Diffusion on ONNX Runtime)

usage:
  nulltext demo [--out DIR]                                  draw a scene, invert it, make two edits (built-in model)
  nulltext invert IMAGE --prompt TEXT --out FILE [options]    invert an image (writes FILE and FILE.json)
  nulltext edit INVERSION --prompt TEXT [--prompt TEXT ...] --out PNG [options]
  nulltext reconstruct INVERSION --out PNG
  nulltext generate --prompt TEXT --out PNG [--seed N]
  nulltext info [MODEL]
  nulltext serve [--port 7860] [--host 127.0.0.1] [--data DIR] [--token T]
                      the web app (invert, edit, attention maps, a library of inversions);
                      --data: where jobs and inversions are kept (default ./nulltext-data);
                      a host other than loopback needs --token (a bearer token, or the printed URL)

common options:
  --model PATH        diffusers folder or single .safetensors checkpoint (default: the built-in model)
  --config-from DIR   configs and tokenizer for a single-file checkpoint
  --steps-offset N    run the scheduler with steps_offset N (default 1: diffusers' pipelines run any
                      other value of a scheduler config as 1, with a warning; give it to run it as written)
  --steps N           DDIM steps (default 50)         --guidance W     guidance scale (default 7.5)
  --threads N         ONNX Runtime threads, 1..4× the CPUs (default: all CPUs)
  --unet-weights M    auto (default: per-session for the inversion's gradient graph; for the others
                      shared for models over 1 GiB of weights, else per-session)
                      | shared (one copy fed to all UNet sessions: least memory)
                      | per-session (ORT's own reordered copies: faster for small models, ~1.5× the memory)

invert:
${methodUsage()}
  --fit MODE          center-crop (default) | pad | stretch: how the image is brought to the model's square size
  --fp16              store the method's tensors (e.g. the null embeddings) as float16
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

/** The command-line flags of the methods' own settings: `innerSteps` → `--inner-steps`, from the registry. */
function methodFlags(): { key: string; flag: string; kind: string; methods: string[]; help: string }[] {
  const flags = new Map<string, { key: string; flag: string; kind: string; methods: string[]; help: string }>();
  for (const m of METHODS.values()) {
    for (const [key, value] of Object.entries(m.defaults)) {
      if (key === "steps" || key === "guidance") continue;
      const flag = key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
      const f = flags.get(key) ?? { key, flag, kind: typeof value, methods: [], help: m.help?.[key] ?? "" };
      f.methods.push(m.id);
      flags.set(key, f);
    }
  }
  return [...flags.values()];
}

function methodUsage(): string {
  const methods = [...METHODS.values()].map(
    (m) => `                        ${m.id.padEnd(16)} ${m.summary}${m.id === DEFAULT_METHOD ? " (default)" : ""}`,
  );
  const flags = methodFlags().map(
    (f) => `  --${`${f.flag} ${f.kind === "boolean" ? "" : "X"}`.padEnd(18)}${f.help} [${f.methods.join(", ")}]`,
  );
  return [`  --method M          the inversion method:`, ...methods, ...flags].join("\n");
}

interface Parsed {
  values: Record<string, string | string[] | boolean | undefined>;
  positionals: string[];
  /** Stops the command's job (a signal, the parent process gone). */
  signal?: AbortSignal;
}

/** The positional arguments each command takes, by name (more is an error). */
const POSITIONALS: Record<string, string[]> = {
  invert: ["IMAGE"],
  edit: ["INVERSION"],
  reconstruct: ["INVERSION"],
  generate: [],
  info: ["MODEL"],
  demo: [],
};

function checkPositionals(command: string, positionals: string[]): void {
  const names = POSITIONALS[command] ?? [];
  if (positionals.length <= names.length) return;
  const extra = positionals.slice(names.length).map((a) => JSON.stringify(a));
  throw new UsageError(
    `${command} takes ${names.length ? names.join(" ") : "no positional argument"}; unexpected ${extra.join(", ")} (quote a prompt with spaces: --prompt "a cat")`,
  );
}

/** --threads: an integer in 1..4× the CPUs (more only costs memory: every thread has its buffers). */
function stepsOffset(values: Parsed["values"]): number | undefined {
  const check = (n: number) => Number.isInteger(n) && n >= 0;
  return num(values["steps-offset"], "steps-offset", check, "an integer ≥ 0");
}

function threads(values: Parsed["values"]): number | undefined {
  const cpus = os.availableParallelism();
  return num(
    values.threads,
    "threads",
    (n) => Number.isInteger(n) && n >= 1 && n <= 4 * cpus,
    `an integer in 1..${4 * cpus} (4× the ${cpus} CPUs)`,
  );
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
      "steps-offset": { type: "string" },
      method: { type: "string" },
      steps: { type: "string" },
      guidance: { type: "string" },
      ...Object.fromEntries(
        methodFlags().map((f) => [f.flag, { type: f.kind === "boolean" ? ("boolean" as const) : ("string" as const) }]),
      ),
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
      port: { type: "string" },
      host: { type: "string" },
      data: { type: "string" },
      token: { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  }) as Parsed;
}

function num(
  v: unknown,
  name: string,
  check: (n: number) => boolean = Number.isFinite,
  expected = "a number",
): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (typeof v !== "string" || v.trim() === "" || !check(n))
    throw new UsageError(`--${name} ${v} is not valid: expected ${expected}`);
  return n;
}

class UsageError extends Error {}

function str(v: unknown): string | undefined {
  return typeof v === "string" ? v : undefined;
}

async function pipelineFor(values: Parsed["values"]): Promise<NullTextPipeline> {
  // Absolute, so that the inversion's model hint names it from any folder.
  const model = path.resolve(str(values.model) ?? DEFAULT_MODEL);
  return NullTextPipeline.load(model, {
    configFrom: str(values["config-from"]),
    stepsOffset: stepsOffset(values),
    threads: threads(values),
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

/**
 * `--out`, checked before anything is loaded (the jobs check every output again, with its sidecars,
 * and lock it): not an input (nor inside the model's folder), not a folder, link or device, in an
 * existing writable folder.
 */
function requireOut(values: Parsed["values"], ext: string, inputs: string[] = []): string {
  const out = str(values.out);
  if (!out) throw new UsageError(`--out is required (a ${ext} path)`);
  try {
    checkOutputs([out], [...inputs, str(values.model) ?? DEFAULT_MODEL]);
  } catch (err) {
    // Another run writing the same output is no usage error (exit 1); the rest is (exit 2).
    if (err instanceof OutputError && !(err instanceof OutputBusyError)) throw new UsageError(`--out: ${err.message}`);
    throw err;
  }
  return out;
}

const note = (message: string) => process.stderr.write(`${message}\n`);

/** `method` and the settings given on the command line, checked before anything is loaded. */
function invertSettings(values: Parsed["values"]): Record<string, unknown> {
  const settings: Record<string, unknown> = {
    method: str(values.method) ?? DEFAULT_METHOD,
    steps: num(values.steps, "steps"),
    guidance: num(values.guidance, "guidance"),
  };
  for (const f of methodFlags()) {
    const v = values[f.flag];
    if (v === undefined) continue;
    settings[f.key] = f.kind === "number" ? num(v, f.flag) : v;
  }
  try {
    resolveSettings(settings);
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  return settings;
}

/** Runs `f` with a loaded pipeline and releases its sessions on every path. */
async function withPipeline<T>(values: Parsed["values"], f: (pipe: NullTextPipeline) => Promise<T>): Promise<T> {
  const pipe = await pipelineFor(values);
  try {
    return await f(pipe);
  } finally {
    await pipe.release();
  }
}

async function invert(p: Parsed): Promise<void> {
  const [imagePath] = p.positionals;
  if (!imagePath) throw new UsageError("invert needs an IMAGE");
  const prompt = (p.values.prompt as string[] | undefined)?.[0];
  if (prompt === undefined) throw new UsageError("invert needs --prompt (a description of the image)");
  const out = requireOut(p.values, "inversion file", [imagePath]);
  const fit = (str(p.values.fit) ?? "center-crop") as FitMode;
  if (!["center-crop", "pad", "stretch"].includes(fit))
    throw new UsageError(`--fit ${fit}: use center-crop, pad or stretch`);
  const settings = invertSettings(p.values);
  const source = await readImage(imagePath);
  await withPipeline(p.values, async (pipe) => {
    const { report } = await invertJob(pipe, {
      image: fitToSquare(source, pipe.resolution, fit),
      prompt,
      settings,
      out,
      float16: p.values.fp16 === true,
      grid: p.values.grid === true,
      source: path.resolve(imagePath),
      signal: p.signal,
      onProgress: progressPrinter({ ddim: "DDIM invert", nti: "null-text" }),
      onNote: note,
    });
    const q = report.reconstruction;
    console.log(
      `wrote ${out} (${report.settings.method}); reconstruction PSNR ${q.psnr.toFixed(2)} dB, SSIM ${q.ssim.toFixed(4)}; report ${out}.json`,
    );
  });
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
    crossReplaceSteps: num(values["cross-steps"], "cross-steps", (n) => n >= 0 && n <= 1, "a fraction in 0..1"),
    selfReplaceSteps: num(values["self-steps"], "self-steps", (n) => n >= 0 && n <= 1, "a fraction in 0..1"),
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

/** The INVERSION argument (read with the loaded model, see readInversionFor). */
function inversionArg(p: Parsed): string {
  const [file] = p.positionals;
  if (!file) throw new UsageError("needs an INVERSION file (written by nulltext invert)");
  const kind = fs.statSync(file, { throwIfNoEntry: false });
  if (!kind) throw new UsageError(`${file} does not exist (expected an inversion file written by nulltext invert)`);
  if (!kind.isFile())
    throw new UsageError(`${file} is not a file (expected an inversion file written by nulltext invert)`);
  return file;
}

/** The inversion, refused when made with another model: the message says which model to pass. */
function readInversionFor(file: string, pipe: NullTextPipeline, values: Parsed["values"]): Inversion {
  try {
    return readInversion(file, pipe.model.fingerprint);
  } catch (err) {
    if (!(err instanceof ModelMismatchError)) throw err;
    const given = str(values.model) !== undefined;
    const than = `than ${given ? `--model ${str(values.model)}` : "the built-in model (no --model given)"} (fingerprint ${err.loaded})`;
    if (!err.modelSource) {
      // Files before format 3 carry the older fingerprint (sizes and a few MiB of each file), which no model has now.
      throw new Error(
        `${file} was made with another model (fingerprint ${err.madeWith}) ${than}; it was written by an older nulltext, whose fingerprints no model matches now: invert the image again`,
      );
    }
    throw new Error(
      `${file} was made with another model (fingerprint ${err.madeWith}) ${than}: run again with --model '${err.modelSource}', or invert the image again with this model`,
    );
  }
}

async function edit(p: Parsed): Promise<void> {
  const prompts = (p.values.prompt as string[] | undefined) ?? [];
  if (prompts.length === 0) throw new UsageError("edit needs at least one --prompt (the edited prompt)");
  const file = inversionArg(p);
  const out = requireOut(p.values, "PNG", [file]);
  const nullSteps =
    num(p.values["null-steps"], "null-steps", (n) => n >= 0 && n <= 1, "a fraction in 0..1") ?? EDIT_NULL_STEPS;
  const guidance = num(p.values.guidance, "guidance");
  await withPipeline(p.values, async (pipe) => {
    const inversion: Inversion = readInversionFor(file, pipe, p.values);
    const { edits, p2p } = editOptions(p.values, inversion.prompt, prompts);
    const { report } = await editJob(pipe, {
      inversion,
      edits,
      promptToPrompt: p2p,
      nullSteps,
      guidance,
      out,
      grid: p.values.grid === true,
      // the reconstruction only goes into the grid
      reconstruction: p.values.grid === true,
      inversionFile: file,
      signal: p.signal,
      onNote: note,
      onProgress: progressPrinter({ sample: "edit" }),
    });
    console.log(`wrote ${report.outputs.join(", ")}`);
  });
}

async function reconstruct(p: Parsed): Promise<void> {
  const file = inversionArg(p);
  const out = requireOut(p.values, "PNG", [file]);
  const guidance = num(p.values.guidance, "guidance");
  await withPipeline(p.values, async (pipe) => {
    await reconstructJob(pipe, {
      inversion: readInversionFor(file, pipe, p.values),
      guidance,
      out,
      inversionFile: file,
      signal: p.signal,
      onNote: note,
      onProgress: progressPrinter({ sample: "reconstruct" }),
    });
    console.log(`wrote ${out}`);
  });
}

async function generate(p: Parsed): Promise<void> {
  const prompt = (p.values.prompt as string[] | undefined)?.[0];
  if (prompt === undefined) throw new UsageError("generate needs --prompt");
  const out = requireOut(p.values, "PNG");
  const seed = num(p.values.seed, "seed", Number.isInteger, "an integer") ?? 0;
  const steps =
    num(p.values.steps, "steps", (n) => Number.isInteger(n) && n >= 1 && n <= 1000, "an integer in 1..1000") ?? 50;
  const guidance = num(p.values.guidance, "guidance");
  await withPipeline(p.values, async (pipe) => {
    await generateJob(pipe, {
      prompt,
      seed,
      steps,
      guidance,
      out,
      signal: p.signal,
      onNote: note,
      onProgress: progressPrinter({ sample: "generate" }),
    });
    console.log(`wrote ${out}`);
  });
}

async function info(p: Parsed): Promise<void> {
  const source = p.positionals[0] ?? str(p.values.model) ?? DEFAULT_MODEL;
  const pipe = await NullTextPipeline.load(source, {
    configFrom: str(p.values["config-from"]),
    stepsOffset: stepsOffset(p.values),
    threads: threads(p.values),
  });
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

/** Exit codes of a run stopped by a signal: 128 + the signal's number, as shells report it. */
const SIGNAL_EXIT: Record<string, number> = { SIGHUP: 129, SIGINT: 130, SIGTERM: 143 };

/** Why a run was stopped: the signal's name, or the parent process gone. */
export class StopRequest extends Error {
  constructor(
    readonly signalName: string | undefined,
    message: string,
  ) {
    super(message);
    this.name = "StopRequest";
  }
}

/**
 * The command as a process runs it (bin/nulltext.js): SIGINT, SIGTERM and SIGHUP stop the job after
 * it saved its resume state (a second signal a second later stops at once), and when the process
 * was started by bin/nulltext.js with an IPC channel, the channel closing (its parent died, even by
 * kill -9) stops it too, so an orphaned worker writes nothing.
 */
export async function cli(argv: string[]): Promise<number> {
  const controller = new AbortController();
  let firstStop = 0;
  const onSignal = (signal: NodeJS.Signals) => {
    if (!controller.signal.aborted) {
      firstStop = Date.now();
      note(`nulltext: ${signal}: stopping after the current step (an inversion saves its resume state)`);
      controller.abort(new StopRequest(signal, `stopped by ${signal}`));
    } else if (Date.now() - firstStop > 1000) {
      note(`nulltext: ${signal} again: stopping now`);
      process.exit(SIGNAL_EXIT[signal] ?? 1);
    }
  };
  const signals: NodeJS.Signals[] = ["SIGINT", "SIGTERM", "SIGHUP"];
  for (const s of signals) process.on(s, onSignal);
  const onDisconnect = () => {
    controller.abort(new StopRequest(undefined, "the nulltext process that started this worker is gone"));
    // Atomic writes make a hard stop safe; an orphan must not keep computing for long.
    setTimeout(() => process.exit(1), 10_000).unref();
  };
  if (process.channel) {
    process.channel.unref();
    process.on("disconnect", onDisconnect);
  }
  try {
    return await main(argv, { signal: controller.signal });
  } finally {
    for (const s of signals) process.off(s, onSignal);
    process.off("disconnect", onDisconnect);
  }
}

export async function main(argv: string[], options: { signal?: AbortSignal } = {}): Promise<number> {
  const [command, ...rest] = argv;
  try {
    if (!command || command === "help" || command === "--help" || command === "-h") {
      console.log(usage());
      return command ? 0 : 2;
    }
    const parsed: Parsed = { ...parse(rest), signal: options.signal };
    if (parsed.values.help) {
      console.log(usage());
      return 0;
    }
    if (command in POSITIONALS) checkPositionals(command, parsed.positionals);
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
          threads: threads(parsed.values),
          unetWeights: unetWeights(parsed.values),
        });
        break;
      case "serve":
        await serve({
          model: str(parsed.values.model) ?? DEFAULT_MODEL,
          pipeline: {
            configFrom: str(parsed.values["config-from"]),
            threads: num(parsed.values.threads, "threads", (n) => Number.isInteger(n) && n > 0),
            unetWeights: unetWeights(parsed.values),
          },
          port: num(parsed.values.port, "port", (n) => Number.isInteger(n) && n >= 0 && n < 65536),
          host: str(parsed.values.host),
          data: str(parsed.values.data),
          token: str(parsed.values.token),
        });
        break;
      default:
        throw new UsageError(
          `unknown command '${command}' (commands: demo, invert, edit, reconstruct, generate, info, serve)`,
        );
    }
    return 0;
  } catch (err) {
    const stop = options.signal?.aborted ? options.signal.reason : undefined;
    if (stop instanceof StopRequest) {
      console.error(
        `nulltext: ${stop.message}; outputs were not written${command === "invert" ? " (an interrupted inversion resumes when the same command is run again)" : ""}`,
      );
      return SIGNAL_EXIT[stop.signalName ?? ""] ?? 1;
    }
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
