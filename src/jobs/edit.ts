/**
 * The edit and reconstruct jobs: Prompt-to-Prompt edits of a saved inversion (the source's
 * reconstruction first, then one image per edited prompt) and the plain reconstruction, written as
 * PNGs with a report.
 */
import type { EditPrompt, PromptToPromptOptions } from "../editing/prompt_to_prompt/index.js";
import { grid, type RgbImage } from "../image/index.js";
import type { Inversion } from "../inversion/file.js";
import { EDIT_NULL_STEPS, type NullTextPipeline } from "../pipeline.js";
import { getPlatform } from "../platform/platform.js";
import { editOutputs, withOutputs, writeJsonOutput, writePngOutput } from "./outputs.js";
import { ProgressClock, type ProgressListener } from "./progress.js";

export interface EditJob {
  inversion: Inversion;
  edits: EditPrompt[];
  /** Prompt-to-Prompt's injection schedules and local blend. */
  promptToPrompt?: PromptToPromptOptions;
  /** Fraction of the steps in which the edited prompts use the inversion's ∅ (default EDIT_NULL_STEPS). */
  nullSteps?: number;
  guidance?: number;
  /** The PNG to write (`out-1.png`, ... for several edits) with `out.json`; none: nothing is written. */
  out?: string;
  /** Also write the reconstruction | edits grid. */
  grid?: boolean;
  /**
   * Decode the source's reconstruction too (default true; always with `grid`). Without it the
   * result's `source` is undefined and one VAE decode fewer is run (13 s at 512² on 2 cores).
   */
  reconstruction?: boolean;
  /** The file the inversion was read from: never overwritten by an output. */
  inversionFile?: string;
  signal?: AbortSignal;
  onProgress?: ProgressListener;
  /** Messages for the user (a stale lock taken over). */
  onNote?: (message: string) => void;
  /** Receives the cross-attention maps of every step (see SampleOptions.onAttentionMaps). */
  onAttentionMaps?: (step: number, maps: Float32Array) => void;
}

export interface EditReport {
  command: "edit";
  source_prompt: string;
  edits: EditPrompt[];
  options: PromptToPromptOptions & { null_steps: number; guidance: number };
  method: string;
  outputs: string[];
  /** Latents the UNet evaluated (a step of N prompts evaluates 2N, fewer where the method allows). */
  unet_evals: number;
  seconds: number;
}

/** The files a job reads that its outputs must not replace: the inversion file and the model (file or folder). */
function jobInputs(pipe: NullTextPipeline, inversionFile: string | undefined): string[] {
  const model = pipe.model.source;
  const local = getPlatform().identify(model, { followLinks: true }) !== undefined;
  return [inversionFile, local ? model : undefined].filter((p): p is string => p !== undefined);
}

/** Edits and writes; the outputs are checked and locked before any compute (see withOutputs). */
export function editJob(
  pipe: NullTextPipeline,
  job: EditJob & { reconstruction?: true },
): Promise<EditResult & { source: RgbImage }>;
export function editJob(pipe: NullTextPipeline, job: EditJob): Promise<EditResult>;
export async function editJob(pipe: NullTextPipeline, job: EditJob): Promise<EditResult> {
  const files = job.out ? editOutputs(job.out, job.edits.length) : undefined;
  const outputs = files ? [...files.images, files.report, ...(job.grid ? [files.grid] : [])] : [];
  return withOutputs(outputs, jobInputs(pipe, job.inversionFile), job.onNote, () => runEdit(pipe, job));
}

export interface EditResult {
  /** The source's reconstruction, unless the job asked for none. */
  source: RgbImage | undefined;
  images: RgbImage[];
  report: EditReport;
}

async function runEdit(pipe: NullTextPipeline, job: EditJob): Promise<EditResult> {
  const t0 = performance.now();
  const clock = new ProgressClock("edit", job.onProgress);
  const nullSteps = job.nullSteps ?? EDIT_NULL_STEPS;
  const guidance = job.guidance ?? job.inversion.settings.guidance;
  const counters = { unetEvals: 0 };
  const latents = await pipe.editLatents(job.inversion, job.edits, {
    counters,
    ...job.promptToPrompt,
    nullSteps,
    guidance,
    signal: job.signal,
    onStep: (s, total) => clock.report("sample", s, total),
    onAttentionMaps: job.onAttentionMaps,
  });
  const size = latents.length / (job.edits.length + 1);
  const images = await pipe.decodeLatents(latents.subarray(size));
  const source =
    job.reconstruction !== false || job.grid
      ? ((await pipe.decodeLatents(latents.subarray(0, size)))[0] as RgbImage)
      : undefined;
  const files = job.out ? editOutputs(job.out, images.length) : undefined;
  const report: EditReport = {
    command: "edit",
    source_prompt: job.inversion.prompt,
    edits: job.edits,
    options: { ...job.promptToPrompt, null_steps: nullSteps, guidance },
    method: job.inversion.settings.method,
    outputs: files?.images ?? [],
    unet_evals: counters.unetEvals,
    seconds: (performance.now() - t0) / 1000,
  };
  if (files) {
    job.signal?.throwIfAborted();
    for (const [i, path] of files.images.entries()) await writePngOutput(path, images[i] as RgbImage);
    if (job.grid && source) await writePngOutput(files.grid, grid([source, ...images], images.length + 1, 2));
    writeJsonOutput(files.report, report);
  }
  return { source, images, report };
}

export interface ReconstructJob {
  inversion: Inversion;
  guidance?: number;
  out?: string;
  /** The file the inversion was read from: never overwritten by `out`. */
  inversionFile?: string;
  signal?: AbortSignal;
  onProgress?: ProgressListener;
  onNote?: (message: string) => void;
}

export async function reconstructJob(pipe: NullTextPipeline, job: ReconstructJob): Promise<{ image: RgbImage }> {
  const outputs = job.out ? [job.out] : [];
  return withOutputs(outputs, jobInputs(pipe, job.inversionFile), job.onNote, () => runReconstruct(pipe, job));
}

async function runReconstruct(pipe: NullTextPipeline, job: ReconstructJob): Promise<{ image: RgbImage }> {
  const clock = new ProgressClock("reconstruct", job.onProgress);
  const image = await pipe.reconstruct(job.inversion, {
    guidance: job.guidance,
    signal: job.signal,
    onStep: (s, total) => clock.report("sample", s, total),
  });
  await writeImageOutput(job, image);
  return { image };
}

export interface GenerateJob {
  prompt: string;
  negativePrompt?: string;
  seed?: number;
  steps?: number;
  guidance?: number;
  out?: string;
  signal?: AbortSignal;
  onProgress?: ProgressListener;
  onNote?: (message: string) => void;
}

export async function generateJob(pipe: NullTextPipeline, job: GenerateJob): Promise<{ image: RgbImage }> {
  const outputs = job.out ? [job.out] : [];
  return withOutputs(outputs, jobInputs(pipe, undefined), job.onNote, () => runGenerate(pipe, job));
}

async function runGenerate(pipe: NullTextPipeline, job: GenerateJob): Promise<{ image: RgbImage }> {
  const clock = new ProgressClock("generate", job.onProgress);
  const image = await pipe.generate(job.prompt, {
    seed: job.seed,
    steps: job.steps,
    guidance: job.guidance,
    negativePrompt: job.negativePrompt,
    signal: job.signal,
    onStep: (s, total) => clock.report("sample", s, total),
  });
  await writeImageOutput(job, image);
  return { image };
}

/** A single-image job's PNG, unless the job was cancelled while it sampled. */
async function writeImageOutput(job: { out?: string; signal?: AbortSignal }, image: RgbImage): Promise<void> {
  if (!job.out) return;
  job.signal?.throwIfAborted();
  await writePngOutput(job.out, image);
}
