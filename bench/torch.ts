/**
 * PyTorch reference figures for bench:unet's side-by-side ratios: the JSON lines that
 * ../shared/reference/torch-unet/unet_bench.py prints, one per case, e.g.
 *   {"name": "fwd32", "seconds": 4.73, "peak_rss_gb": 3.65, "torch": "1.13.0a0", "blas": "openblas", ...}
 * A ratio holds only when both sides ran on the same machine in the same sitting, so the file is
 * always given by the person running the benchmark, never built in.
 */
import { readFileSync } from "node:fs";

/** The cases unet_bench.py times; bench:unet's "-own" rows compare against the same case. */
export const TORCH_CASES = ["fwd32", "fwd64", "grad32", "grad64"] as const;
export type TorchCase = (typeof TORCH_CASES)[number];

export interface TorchFigures {
  name: TorchCase;
  seconds: number;
  peak_rss_gb: number;
  /** What unet_bench.py recorded about its setup, shown beside the ratios when present. */
  torch?: string;
  blas?: string;
}

/** Parses unet_bench.py's output; `file` names the source in errors, with the 1-based line number. */
export function parseTorchJsonl(text: string, file: string): Map<TorchCase, TorchFigures> {
  const rows = new Map<TorchCase, TorchFigures>();
  text.split("\n").forEach((raw, i) => {
    const line = raw.trim();
    if (line === "") return;
    const where = `${file}:${i + 1}`;
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch (e) {
      throw new Error(`${where}: not a JSON line from unet_bench.py (${(e as Error).message}): ${line.slice(0, 80)}`);
    }
    const r = value as Partial<Record<keyof TorchFigures, unknown>>;
    if (typeof r !== "object" || r === null || !TORCH_CASES.includes(r.name as TorchCase)) {
      throw new Error(`${where}: "name" must be one of ${TORCH_CASES.join(", ")}, got ${JSON.stringify(r?.name)}`);
    }
    for (const key of ["seconds", "peak_rss_gb"] as const) {
      if (typeof r[key] !== "number" || !(r[key] > 0)) {
        throw new Error(`${where}: "${key}" must be a positive number, got ${JSON.stringify(r[key])}`);
      }
    }
    const name = r.name as TorchCase;
    if (rows.has(name)) throw new Error(`${where}: a second row for ${name}; give one run's output per file`);
    rows.set(name, {
      name,
      seconds: r.seconds as number,
      peak_rss_gb: r.peak_rss_gb as number,
      torch: typeof r.torch === "string" ? r.torch : undefined,
      blas: typeof r.blas === "string" ? r.blas : undefined,
    });
  });
  if (rows.size === 0) throw new Error(`${file}: no rows; expected unet_bench.py's JSON lines`);
  return rows;
}

export function readTorchJsonl(file: string): Map<TorchCase, TorchFigures> {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (e) {
    throw new Error(`cannot read PyTorch figures ${file}: ${(e as Error).message}`);
  }
  return parseTorchJsonl(text, file);
}
