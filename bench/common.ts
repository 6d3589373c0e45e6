import { readFileSync } from "node:fs";
/** Shared helpers for the benchmarks: timing, table and JSON output. */

export interface TimingOptions {
  warmup: number;
  runs: number;
}

export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] as number;
}

/**
 * Median wall time in seconds after `warmup` calls, over `runs` calls or as many as fill
 * `minSeconds` (short ops need many samples to get past timer and scheduling noise).
 */
export async function medianSeconds(
  fn: () => Promise<unknown>,
  o: TimingOptions & { minSeconds?: number },
): Promise<number> {
  for (let i = 0; i < o.warmup; i++) await fn();
  const times: number[] = [];
  let total = 0;
  while (times.length < o.runs || total < (o.minSeconds ?? 0)) {
    const t0 = process.hrtime.bigint();
    await fn();
    const dt = Number(process.hrtime.bigint() - t0) / 1e9;
    times.push(dt);
    total += dt;
  }
  return median(times);
}

export function wantsJson(): boolean {
  return process.argv.includes("--json");
}

export function argValue(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

/** Prints rows as an aligned table. */
export function printTable(rows: Record<string, string | number>[]): void {
  if (rows.length === 0) return;
  const keys = Object.keys(rows[0] as object);
  const cells = rows.map((r) => keys.map((k) => String(r[k])));
  const widths = keys.map((k, i) => Math.max(k.length, ...cells.map((c) => (c[i] as string).length)));
  const line = (vals: string[]) => vals.map((v, i) => v.padStart(widths[i] as number)).join("  ");
  console.log(line(keys));
  for (const c of cells) console.log(line(c));
}

export function randomArray(n: number, seed: number, scale = 1): Float32Array {
  let a = seed >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    out[i] = scale * ((((t ^ (t >>> 14)) >>> 0) / 4294967296) * 2 - 1);
  }
  return out;
}

/**
 * Peak resident set size of this process in GB, from /proc/self/status VmHWM (getrusage's maxrss
 * survives exec on Linux and can report a parent's peak).
 */
export function peakRssGb(): number {
  try {
    const status = readFileSync("/proc/self/status", "utf8");
    const m = status.match(/VmHWM:\s+(\d+) kB/);
    if (m) return Number(m[1]) / 2 ** 20;
  } catch {
    // not Linux
  }
  return process.resourceUsage().maxRSS / 2 ** 20;
}
