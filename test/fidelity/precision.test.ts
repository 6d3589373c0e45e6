/**
 * Issue 24, point 1: the precision of our ONNX Runtime graphs against a float64 evaluation of the same
 * graphs and weights (host.ts), next to a plain float32 evaluation that computes op by op as NumPy
 * with OpenBLAS does (host.ts's "plain float32": pairwise sums, sgemm's K-panels), on the goldens'
 * inputs of the parity model. Errors are max |· − float64|; the per-layer tables are BENCHMARKS.md's
 * "Precision against float64 (issue 24)" (`npx tsx test/fidelity/print.ts`).
 *
 * Target (issue 24): the encoder's image latent within 2× the plain float32 error. Met: ORT 1.23e-6
 * against 1.67e-6 (ratio 0.74; NumPy 2.4 itself, im2col + OpenBLAS 0.3.31 sgemm on this machine,
 * 1.58e-6 to 1.71e-6 depending on how SiLU is written). Against a stricter plain reference, dot
 * products read as NumPy's `(a * b).sum()` (products rounded, then summed pairwise; host.ts's
 * `dots: "pairwise"`, too slow to run here), the plain error is 6.11e-7 and the ratio 2.02: by that
 * reading the target is missed by 1%. No graph change within the 10% speed bound moved the latent's
 * error beyond noise (BENCHMARKS.md lists those tried). The decoder's and the UNet's ratios are
 * recorded with bounds about 1.4× the measured ones (ORT 1.30, the 2-core AVX-512 Xeon), so that a
 * change that loses precision fails here:
 *   decoder output 6.30e-6 / 7.17e-6 = 0.88;  UNet output at t = 981 (batch 2) 1.33e-6 / 1.53e-6 = 0.87;
 *   its VJP with respect to the context (what null-text optimisation uses) 1.01e-7 / 1.75e-7 = 0.58.
 */
import { beforeAll, describe, expect, it } from "vitest";
import * as G from "../../src/graph/index.js";
import type { StableDiffusion } from "../../src/models/loader.js";
import {
  type Golden,
  type LayerRow,
  loadParityModel,
  readGoldens,
  studyTaps,
  unetFeeds,
  unetOutputAndVjp,
} from "./study.js";

const BOUNDS = { encoder: 2, decoder: 1.25, unet: 1.25, unetVjp: 0.85 };

let sd: StableDiffusion;
let goldens: Map<string, Golden>;
const golden = (name: string): Golden => {
  const g = goldens.get(name);
  if (!g) throw new Error(`goldens: ${name} missing`);
  return g;
};
const describeRow = (r: LayerRow) =>
  `${r.layer}: ORT ${r.ort.toExponential(2)}, plain float32 ${r.plain.toExponential(2)}, ratio ${(r.ort / r.plain).toFixed(2)} (max |ref| ${r.scale.toFixed(2)})`;

beforeAll(async () => {
  sd = await loadParityModel();
  goldens = readGoldens();
});

describe("precision against float64 on the parity model (issue 24)", () => {
  it("VAE encoder: the image latent's error is within 2× a NumPy-like float32 evaluation's", async () => {
    const image = golden("vae.encoder.image");
    const [row] = await studyTaps([["posterior mean", sd.vae.encode(G.input("image", image.shape)).mean]], {
      image,
    });
    const r = row as LayerRow;
    console.log(describeRow(r));
    expect(r.ort).toBeLessThanOrEqual(BOUNDS.encoder * r.plain);
  }, 120_000);

  it("VAE decoder: output error ratio as measured", async () => {
    const latent = golden("vae.decoder.latent");
    const [row] = await studyTaps([["decoder output", sd.vae.decode(G.input("latent", latent.shape))]], { latent });
    const r = row as LayerRow;
    console.log(describeRow(r));
    expect(r.ort).toBeLessThanOrEqual(BOUNDS.decoder * r.plain);
  }, 120_000);

  it("UNet: output and context VJP error ratios as measured", async () => {
    const feeds = unetFeeds(goldens, 981);
    const [out, vjp] = (await studyTaps(unetOutputAndVjp(sd, feeds, golden("unet.vjp_cotangent")), feeds)) as [
      LayerRow,
      LayerRow,
    ];
    console.log(describeRow(out));
    console.log(describeRow(vjp));
    expect(out.ort).toBeLessThanOrEqual(BOUNDS.unet * out.plain);
    expect(vjp.ort).toBeLessThanOrEqual(BOUNDS.unetVjp * vjp.plain);
  }, 120_000);
});
