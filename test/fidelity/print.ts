/** Prints the per-layer precision tables of the VAE encoder and decoder on the parity model: `npx tsx test/fidelity/print.ts`. */
import { decoderLayers, encoderLayers, type LayerRow, loadParityModel, readGoldens, study } from "./study.js";

function print(title: string, rows: LayerRow[]): void {
  const h = (s: string) => s.padStart(9);
  console.log(
    `\n${title}\n${"layer".padEnd(30)} ${h("max|ref|")} ${h("ORT")} ${h("plain f32")} ratio ${h("ORT alone")} ${h("plain")} ratio`,
  );
  for (const r of rows) {
    const e = (x: number) => x.toExponential(2).padStart(9);
    console.log(
      `${r.layer.padEnd(30)} ${e(r.scale)} ${e(r.ort)} ${e(r.plain)} ${(r.ort / r.plain).toFixed(2).padStart(5)} ${e(r.ortLocal)} ${e(r.plainLocal)} ${(r.ortLocal / r.plainLocal).toFixed(2)}`,
    );
  }
}

const sd = await loadParityModel();
const goldens = readGoldens();
const image = goldens.get("vae.encoder.image");
const latent = goldens.get("vae.decoder.latent");
if (!image || !latent) throw new Error("goldens missing");
const which = process.argv[2] ?? "both";
if (which !== "decoder") print("VAE encoder (max abs error against float64)", await study(encoderLayers(sd), image));
if (which !== "encoder") print("VAE decoder (max abs error against float64)", await study(decoderLayers(sd), latent));
