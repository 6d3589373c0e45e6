/**
 * Prints the per-layer precision tables of the parity model against float64 (ORT and a NumPy-like
 * plain float32 evaluation): `npx tsx test/fidelity/print.ts [encoder|decoder|unet|all]` (default all).
 */
import {
  decoderLayers,
  encoderLayers,
  type LayerRow,
  loadParityModel,
  readGoldens,
  study,
  studyTaps,
  unetFeeds,
  unetOutputAndVjp,
  unetTaps,
} from "./study.js";

function print(title: string, rows: LayerRow[]): void {
  const h = (s: string) => s.padStart(9);
  console.log(
    `\n${title}\n${"layer".padEnd(30)} ${h("max|ref|")} ${h("ORT")} ${h("plain f32")} ratio ${h("ORT alone")} ${h("plain")} ratio`,
  );
  const e = (x: number) => (Number.isNaN(x) ? "-" : x.toExponential(2)).padStart(9);
  const ratio = (a: number, b: number) => (Number.isNaN(a) || b === 0 ? "-" : (a / b).toFixed(2)).padStart(5);
  for (const r of rows) {
    console.log(
      `${r.layer.padEnd(30)} ${e(r.scale)} ${e(r.ort)} ${e(r.plain)} ${ratio(r.ort, r.plain)} ${e(r.ortLocal)} ${e(r.plainLocal)} ${ratio(r.ortLocal, r.plainLocal)}`,
    );
  }
}

const which = process.argv[2] ?? "all";
if (!["encoder", "decoder", "unet", "all"].includes(which))
  throw new Error(`print.ts: '${which}' is not one of encoder, decoder, unet, all`);
const sd = await loadParityModel();
const goldens = readGoldens();
const golden = (name: string) => {
  const g = goldens.get(name);
  if (!g) throw new Error(`goldens: ${name} missing`);
  return g;
};
const all = which === "all";
if (all || which === "encoder")
  print("VAE encoder (max abs error against float64)", await study(encoderLayers(sd), golden("vae.encoder.image")));
if (all || which === "decoder")
  print("VAE decoder (max abs error against float64)", await study(decoderLayers(sd), golden("vae.decoder.latent")));
if (all || which === "unet") {
  const feeds = unetFeeds(goldens, 981);
  print(
    "UNet at t = 981, batch 2 (max abs error against float64; blocks tapped in one forward)",
    await studyTaps(unetTaps(sd, feeds), feeds),
  );
  for (const t of [1, 500, 981])
    print(
      `UNet at t = ${t}: output and VJP with respect to the context (cotangent unet.vjp_cotangent)`,
      await studyTaps(unetOutputAndVjp(sd, unetFeeds(goldens, t), golden("unet.vjp_cotangent")), unetFeeds(goldens, t)),
    );
}
