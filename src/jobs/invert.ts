/**
 * The invert job: invert an image with a method, reconstruct it, measure the reconstruction, and
 * write the inversion file with its report (and optionally a grid) — resumable after an abort or a
 * crash from the state saved beside the output.
 */
import { grid, mse, psnr, type RgbImage, ssim } from "../image/index.js";
import { type Inversion, writeInversion } from "../inversion/file.js";
import type { InversionSettings } from "../inversion/method.js";
import type { NullTextPipeline } from "../pipeline.js";
import { inversionSidecars, writeJsonOutput, writePngOutput } from "./outputs.js";
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
  /** Where the image came from, for the report. */
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
  seconds: Record<string, number>;
  output?: string;
}

export function quality(reference: RgbImage, image: RgbImage): ReconstructionQuality {
  return { psnr: psnr(reference, image), ssim: ssim(reference, image), mse: mse(reference, image) };
}

export async function invertJob(
  pipe: NullTextPipeline,
  job: InvertJob,
): Promise<{ inversion: Inversion; reconstruction: RgbImage; report: InvertReport }> {
  const t0 = performance.now();
  const clock = new ProgressClock("invert", job.onProgress);
  const files = job.out ? inversionSidecars(job.out) : undefined;
  const store = job.resume ?? (files ? fileResumeStore(files.resume, job.onNote) : undefined);
  const { inversion, stats } = await pipe.invert(job.image, job.prompt, {
    ...job.settings,
    signal: job.signal,
    onProgress: (e) =>
      clock.report(e.phase === "method" ? String(job.settings?.method ?? "nti") : e.phase, e.step, e.total, {
        loss: e.loss,
        iterations: e.iterations,
      }),
    checkpoint: store && { load: () => store.load(), save: (s) => store.save(s) },
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
    seconds: { ...stats.seconds, total: (performance.now() - t0) / 1000 },
    output: job.out,
  };
  if (job.out && files) {
    writeInversion(job.out, inversion, { float16: job.float16 });
    writeJsonOutput(files.report, report);
    if (job.grid) await writePngOutput(files.grid, grid([job.image, reconstruction], 2, 2));
    store?.clear();
  }
  return { inversion, reconstruction, report };
}
