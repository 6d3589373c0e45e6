/**
 * Typed progress of a job: which job, which phase, the step within it, the loss where there is one,
 * and the time spent and still expected in the phase. Every front end shows these the same way.
 */

export type JobKind = "invert" | "edit" | "reconstruct" | "generate";

export interface JobProgress {
  job: JobKind;
  /** "encode", "ddim", the inversion method's id (e.g. "nti"), "reconstruct", "sample", "decode". */
  phase: string;
  step: number;
  total: number;
  loss?: number;
  /** Inner iterations of this step (optimising methods). */
  iterations?: number;
  /** Seconds since the phase started. */
  elapsed: number;
  /** Seconds the phase is expected to take still, from its average step so far (undefined before a step). */
  eta?: number;
}

export type ProgressListener = (p: JobProgress) => void;

/** Turns (phase, step, total) reports into JobProgress events with elapsed time and ETA per phase. */
export class ProgressClock {
  private phase = "";
  private phaseStart = 0;
  private firstStep = 0;

  constructor(
    private readonly job: JobKind,
    private readonly listener: ProgressListener | undefined,
  ) {}

  report(phase: string, step: number, total: number, extra: { loss?: number; iterations?: number } = {}): void {
    if (!this.listener) return;
    const now = performance.now();
    if (phase !== this.phase) {
      this.phase = phase;
      this.phaseStart = now;
      // A resumed phase starts at a later step: the ETA counts the steps done in this run only.
      this.firstStep = step - 1;
    }
    const elapsed = (now - this.phaseStart) / 1000;
    const done = step - this.firstStep;
    const eta = done > 0 ? (elapsed / done) * (total - step) : undefined;
    this.listener({ job: this.job, phase, step, total, ...extra, elapsed, eta });
  }
}
