/** A progress line on stderr: phase, bar, count, rate, ETA and extra fields (e.g. the loss). */

export class Progress {
  private start = performance.now();
  private lastDraw = 0;
  private readonly tty = process.stderr.isTTY === true;
  private lastLogged = -1;

  constructor(
    private readonly label: string,
    private readonly total: number,
  ) {}

  update(done: number, extra = ""): void {
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
    const eta = done > 0 ? (elapsed * (this.total - done)) / done : Number.NaN;
    const bar = `${"█".repeat(filled)}${"·".repeat(width - filled)}`;
    return `${this.label.padEnd(12)} ${bar} ${String(done).padStart(String(this.total).length)}/${this.total}  ${formatTime(elapsed)} elapsed, ETA ${formatTime(eta)}${extra ? `  ${extra}` : ""}`;
  }
}

export function formatTime(s: number): string {
  if (!Number.isFinite(s)) return "--:--";
  const m = Math.floor(s / 60);
  return `${m}:${String(Math.floor(s % 60)).padStart(2, "0")}`;
}
