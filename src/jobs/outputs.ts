/**
 * Every file a job writes goes through here: written whole to a temporary file beside it and
 * renamed over the target (the platform's atomic write), so a crash or a cancellation leaves either
 * the old file or the complete new one. Output naming lives here too.
 */
import { encodePng, type RgbImage } from "../image/index.js";
import { getPlatform } from "../platform/platform.js";

export function writeOutput(path: string, data: Uint8Array | string): void {
  getPlatform().writeFileAtomic(path, data);
}

export function writeJsonOutput(path: string, value: unknown): void {
  writeOutput(path, `${JSON.stringify(value, null, 2)}\n`);
}

export async function writePngOutput(path: string, image: RgbImage): Promise<void> {
  writeOutput(path, await encodePng(image));
}

/** The files an inversion writes beside `out`: its report, its side-by-side grid and its resume state. */
export function inversionSidecars(out: string): { report: string; grid: string; resume: string } {
  return { report: `${out}.json`, grid: `${out}.grid.png`, resume: `${out}.resume` };
}

/**
 * The edited images of `count` prompts written for `out`: `out` itself for one edit, else
 * `out-1.png`, `out-2.png`, ...; the grid `out.grid.png`, the report `out.json`.
 */
export function editOutputs(out: string, count: number): { images: string[]; grid: string; report: string } {
  const stem = out.replace(/\.png$/i, "");
  return {
    images: count === 1 ? [out] : Array.from({ length: count }, (_, i) => `${stem}-${i + 1}.png`),
    grid: `${stem}.grid.png`,
    report: `${out}.json`,
  };
}
