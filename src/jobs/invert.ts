/**
 * The invert job: invert an image with a method, reconstruct it, measure the reconstruction, and
 * write the inversion file with its report (and optionally a grid) — resumable after an abort or a
 * crash from the state saved beside the output.
 */
import { grid, mse, psnr, type RgbImage, ssim } from "../image/index.js";
import { type Inversion, writeInversion } from "../inversion/file.js";
import type { InversionSettings, StepTrace } from "../inversion/method.js";
import { resolveSettings } from "../inversion/registry.js";
import type { InversionResume, NullTextPipeline } from "../pipeline.js";
import { getPlatform } from "../platform/platform.js";
import { inversionSidecars, withOutputs, writeJsonOutput, writePngOutput } from "./outputs.js";
import { ProgressClock, type ProgressListener } from "./progress.js";
import { fileResumeStore, type ResumeStore } from "./resume.js";

export interface InvertJob {
  /** The image at the model's resolution (see fitToSquare). */
  image: RgbImage;
  prompt: string;
  /** `method` and its settings (defaults from the method; see inversion/registry.ts). */
  settings?: Record<string, unknown>;
  /** The inversion file to write, with `.json` (report), `.grid.png` and `.resume` beside it; none: nothing is written. */
  out?: string;
  /** Store the method's tensors as float16. */
  float16?: boolean;
  /** Also write the input | reconstruction grid. */
  grid?: boolean;
  /** Where the image came from, for the report; never overwritten by an output. */
  source?: string;
  /** Where the resume state is kept (default: `out.resume` when `out` is given). */
  resume?: ResumeStore;
  signal?: AbortSignal;
  onProgress?: ProgressListener;
  /** Messages for the user (resuming, ignored state). */
  onNote?: (message: string) => void;
}

export interface ReconstructionQuality {
  psnr: number;
  ssim: number;
  mse: number;
}

export interface InvertReport {
  command: "invert";
  image?: string;
  prompt: string;
  model: string;
  settings: InversionSettings;
  resolution: number;
  reconstruction: ReconstructionQuality;
  unet_evals: number;
  vjps: number;
  resumed: boolean;
  /** Per step of an optimising method: inner iterations, first and last loss, whether the early stop fired. */
  trace: StepTrace[];
  seconds: Record<string, number>;
  output?: string;
}

export function quality(reference: RgbImage, image: RgbImage): ReconstructionQuality {
  return { psnr: psnr(reference, image), ssim: ssim(reference, image), mse: mse(reference, image) };
}

/**
 * Inverts, reconstructs and writes; `out`, its report, grid and resume state are checked and locked
 * before any compute (see withOutputs), so a bad `out` or a concurrent run costs nothing.
 */
export async function invertJob(
  pipe: NullTextPipeline,
  job: InvertJob,
): Promise<{ inversion: Inversion; reconstruction: RgbImage; report: InvertReport }> {
  const files = job.out ? inversionSidecars(job.out) : undefined;
  const outputs = job.out && files ? [job.out, files.report, files.resume, ...(job.grid ? [files.grid] : [])] : [];
  const inputs = [job.source, modelPath(pipe)].filter((p): p is string => p !== undefined);
  return withOutputs(outputs, inputs, job.onNote, () => runInvert(pipe, job, files));
}

/** The model's path when it is on this platform's files (a checkpoint or a folder): outputs stay out of it. */
function modelPath(pipe: NullTextPipeline): string | undefined {
  const source = pipe.model.source;
  return getPlatform().identify(source, { followLinks: true }) ? source : undefined;
}

async function runInvert(
  pipe: NullTextPipeline,
  job: InvertJob,
  files: ReturnType<typeof inversionSidecars> | undefined,
): Promise<{ inversion: Inversion; reconstruction: RgbImage; report: InvertReport }> {
  const t0 = performance.now();
  const clock = new ProgressClock("invert", job.onProgress);
  const store = job.resume ?? (files ? fileResumeStore(files.resume, job.onNote) : undefined);
  // The stored state is read once: the pipeline resumes from it only when it matches; when it does
  // not, the user hears what changed.
  const saved = store?.load() ?? null;
  if (saved) {
    const changed = await resumeMismatch(pipe, job, saved);
    if (changed.length) {
      job.onNote?.(
        `not resuming${files ? ` from ${files.resume}` : ""}: the interrupted inversion differs in ${changed.join(", ")}; starting over`,
      );
    }
  }
  const { inversion, stats } = await pipe.invert(job.image, job.prompt, {
    ...job.settings,
    signal: job.signal,
    onProgress: (e) =>
      clock.report(e.phase === "method" ? String(job.settings?.method ?? "nti") : e.phase, e.step, e.total, {
        loss: e.loss,
        iterations: e.iterations,
      }),
    checkpoint: store && { load: () => saved, save: (s) => store.save(s) },
    onResume: (saved) =>
      job.onNote?.(
        `resuming an interrupted inversion${files ? ` from ${files.resume}` : ""}: ${saved.state ? `${saved.state.completed} steps of ${saved.settings.method} done` : "DDIM pivot done"}`,
      ),
  });
  const steps = inversion.settings.steps;
  const tRec = performance.now();
  const reconstruction = await pipe.reconstruct(inversion, {
    signal: job.signal,
    onStep: (s) => clock.report("reconstruct", s, steps),
  });
  stats.seconds.reconstruct = (performance.now() - tRec) / 1000;
  const q = quality(job.image, reconstruction);
  inversion.stats = { ...q };
  const report: InvertReport = {
    command: "invert",
    image: job.source,
    prompt: job.prompt,
    model: pipe.model.source,
    settings: inversion.settings,
    resolution: pipe.resolution,
    reconstruction: q,
    unet_evals: stats.unetEvals + steps,
    vjps: stats.vjps,
    resumed: stats.resumed,
    trace: stats.trace,
    seconds: { ...stats.seconds, total: (performance.now() - t0) / 1000 },
    output: job.out,
  };
  if (job.out && files) {
    // A run stopped (a signal, its parent gone) writes nothing after the stop.
    job.signal?.throwIfAborted();
    writeInversion(job.out, inversion, { float16: job.float16 });
    writeJsonOutput(files.report, report);
    if (job.grid) await writePngOutput(files.grid, grid([job.image, reconstruction], 2, 2));
    store?.clear();
  }
  return { inversion, reconstruction, report };
}

/**
 * Which of (image, prompt, settings, model) of a saved state differ from this job's: the same
 * comparison the pipeline makes before resuming, said in words (settings by name and value).
 */
export async function resumeMismatch(
  pipe: NullTextPipeline,
  job: InvertJob,
  saved: InversionResume,
): Promise<string[]> {
  const changed: string[] = [];
  if (saved.imageHash !== (await getPlatform().sha256(job.image.data))) changed.push("image");
  if (saved.prompt !== job.prompt) changed.push(`prompt ("${saved.prompt}")`);
  const settings = resolveSettings({ ...job.settings }) as unknown as Record<string, unknown>;
  const before = (saved.settings ?? {}) as unknown as Record<string, unknown>;
  const keys = [...new Set([...Object.keys(settings), ...Object.keys(before)])];
  const diff = keys.filter((k) => JSON.stringify(settings[k]) !== JSON.stringify(before[k]));
  if (diff.length) {
    changed.push(
      `settings (${diff.map((k) => `${k} ${JSON.stringify(before[k]) ?? "unset"} → ${JSON.stringify(settings[k]) ?? "unset"}`).join(", ")})`,
    );
  }
  if (saved.model !== pipe.model.fingerprint) changed.push(`model (fingerprint ${saved.model})`);
  return changed;
}
