/** A progress line on stderr: phase, bar, count, rate, ETA and extra fields (e.g. the loss). */
import type { JobProgress } from "../jobs/index.js";

export class Progress {
  private start = performance.now();
  private lastDraw = 0;
  private readonly tty = process.stderr.isTTY === true;
  private lastLogged = -1;
  private eta: number | undefined;

  constructor(
    private readonly label: string,
    private readonly total: number,
  ) {}

  /** `eta`: seconds still expected, where the caller knows better than the average step so far. */
  update(done: number, extra = "", eta?: number): void {
    this.eta = eta;
    const now = performance.now();
    const finished = done >= this.total;
    if (this.tty) {
      if (!finished && now - this.lastDraw < 100) return;
      this.lastDraw = now;
      process.stderr.write(`\r${this.line(done, extra)}\x1b[K${finished ? "\n" : ""}`);
      return;
    }
    // Not a terminal (CI, logs): one line per 10% and at the end.
    const decile = Math.floor((10 * done) / this.total);
    if (decile > this.lastLogged || finished) {
      this.lastLogged = decile;
      process.stderr.write(`${this.line(done, extra)}\n`);
    }
  }

  private line(done: number, extra: string): string {
    const elapsed = (performance.now() - this.start) / 1000;
    const width = 24;
    const filled = Math.round((width * done) / this.total);
    const eta = this.eta ?? (done > 0 ? (elapsed * (this.total - done)) / done : Number.NaN);
    const bar = `${"█".repeat(filled)}${"·".repeat(width - filled)}`;
    return `${this.label.padEnd(12)} ${bar} ${String(done).padStart(String(this.total).length)}/${this.total}  ${formatTime(elapsed)} elapsed, ETA ${formatTime(eta)}${extra ? `  ${extra}` : ""}`;
  }
}

export function formatTime(s: number): string {
  if (!Number.isFinite(s)) return "--:--";
  const m = Math.floor(s / 60);
  return `${m}:${String(Math.floor(s % 60)).padStart(2, "0")}`;
}

/** Progress bars on stderr, one per phase, from the jobs' progress events. */
export function progressPrinter(labels: Record<string, string> = {}): (e: JobProgress) => void {
  const bars = new Map<string, Progress>();
  return (e) => {
    if (e.phase === "encode") return;
    let bar = bars.get(e.phase);
    if (!bar) {
      bar = new Progress(labels[e.phase] ?? e.phase, e.total);
      bars.set(e.phase, bar);
    }
    const loss =
      e.loss !== undefined ? `loss ${e.loss.toExponential(2)}${e.iterations ? ` (${e.iterations} it)` : ""}` : "";
    bar.update(e.step, loss, e.eta);
  };
}
