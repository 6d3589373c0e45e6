/**
 * The paper's reconstruction comparison (Mokady et al. 2023, Fig. 4/§4): for each image and prompt,
 * DDIM inversion reconstructed at w = 1 and at w = 7.5, negative-prompt inversion, null-text
 * inversion and the global-∅ ablation — PSNR and SSIM against the input, UNet evaluations and
 * seconds per method. All methods share one DDIM pivot per image.
 */
import { psnr, type RgbImage, ssim } from "../image/index.js";
import type { Inversion } from "../inversion/file.js";
import type { NullTextPipeline } from "../pipeline.js";

export const RECON_METHODS = [
  { name: "ddim_w1", method: "ddim", guidance: 1 },
  { name: "ddim_w7_5", method: "ddim", guidance: 7.5 },
  { name: "npi", method: "npi", guidance: 7.5 },
  { name: "nti", method: "nti", guidance: 7.5 },
  { name: "nti_global", method: "nti-global", guidance: 7.5 },
] as const satisfies readonly { name: string; method: string; guidance: number }[];

export type ReconMethodName = (typeof RECON_METHODS)[number]["name"];

export interface ReconRow {
  method: ReconMethodName;
  psnr: number;
  ssim: number;
  /** UNet evaluations per image (the shared DDIM inversion included), and VJPs among them. */
  unet_evals: number;
  vjps: number;
  seconds: number;
  images: number;
}

export async function reconstructionComparison(
  pipe: NullTextPipeline,
  items: readonly { image: RgbImage; prompt: string }[],
  o: {
    steps?: number;
    methods?: readonly ReconMethodName[];
    onItem?: (i: number, n: number) => void;
    /** Sees each item's inversions by method (to reuse them, e.g. for edits). */
    onInversions?: (index: number, inversions: Map<ReconMethodName, Inversion>) => Promise<void>;
  } = {},
): Promise<ReconRow[]> {
  const steps = o.steps ?? 50;
  const methods = RECON_METHODS.filter((m) => !o.methods || o.methods.includes(m.name));
  const rows = new Map(
    methods.map((m) => [
      m.name,
      { method: m.name, psnr: 0, ssim: 0, unet_evals: 0, vjps: 0, seconds: 0, images: 0 } as ReconRow,
    ]),
  );
  for (const [i, item] of items.entries()) {
    const t0 = performance.now();
    const pivots = await pipe.ddimPivots(item.image, item.prompt, steps);
    const pivotSeconds = (performance.now() - t0) / 1000;
    const inversions = new Map<ReconMethodName, Inversion>();
    for (const m of methods) {
      const t1 = performance.now();
      const { inversion, stats } = await pipe.invert(item.image, item.prompt, {
        method: m.method,
        steps,
        guidance: m.guidance,
        pivots,
      });
      inversions.set(m.name, inversion);
      const rec = await pipe.reconstruct(inversion);
      const row = rows.get(m.name) as ReconRow;
      row.psnr += psnr(item.image, rec);
      row.ssim += ssim(item.image, rec);
      row.unet_evals += steps + stats.unetEvals + steps;
      row.vjps += stats.vjps;
      row.seconds += pivotSeconds + (performance.now() - t1) / 1000;
      row.images++;
    }
    await o.onInversions?.(i, inversions);
    o.onItem?.(i + 1, items.length);
  }
  return [...rows.values()].map((r) => ({
    ...r,
    psnr: r.psnr / r.images,
    ssim: r.ssim / r.images,
    unet_evals: r.unet_evals / r.images,
    vjps: r.vjps / r.images,
    seconds: r.seconds / r.images,
  }));
}
