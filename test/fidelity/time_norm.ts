/**
 * Times the parity model's VAE encoder, a GroupNorm alone and the parity UNet forward: process CPU
 * time per run (one ORT thread, so that other processes on a shared machine disturb it less), min and median: `npx tsx test/fidelity/time_norm.ts`. Compare emissions by alternating runs.
 */
import * as G from "../../src/graph/index.js";
import { Session } from "../../src/runtime/session.js";
import { loadParityModel } from "./study.js";

const sd = await loadParityModel();

async function time(name: string, outputs: Record<string, G.Tensor>, feeds: Record<string, Float32Array>, runs = 9) {
  const s = await Session.create(G.compile(outputs), { threads: 1 });
  for (let i = 0; i < 2; i++) await s.run(feeds);
  const ms: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = process.cpuUsage();
    await s.run(feeds);
    const d = process.cpuUsage(t0);
    ms.push((d.user + d.system) / 1000);
  }
  await s.release();
  ms.sort((a, b) => a - b);
  console.log(
    `${name.padEnd(40)} median ${(ms[runs >> 1] as number).toFixed(2)} ms  min ${(ms[0] as number).toFixed(2)} ms`,
  );
}

const rand = (n: number) => Float32Array.from({ length: n }, (_, i) => Math.sin(i * 12.9898) * 0.9);
for (const size of [128, 256]) {
  const image = G.input("image", [1, 3, size, size]);
  await time(`VAE encoder ${size}×${size}`, { mean: sd.vae.encode(image).mean }, { image: rand(3 * size * size) });
}
const x = G.input("x", [1, 128, 128, 128]);
const w = G.constant(new Float32Array(128).fill(1.5), [128]);
const bias = G.constant(new Float32Array(128).fill(0.1), [128]);
await time("GroupNorm [1,128,128,128] / 32", { y: G.groupNorm(x, 32, w, bias, 1e-6) }, { x: rand(128 * 128 * 128) });
const sample = G.input("sample", [1, 4, 32, 32]);
const t = G.input("t", [1]);
const ctx = G.input("ctx", [1, 77, 32]);
await time(
  "UNet forward [1,4,32,32]",
  { eps: sd.unet.forward(sample, t, ctx) },
  {
    sample: rand(4 * 32 * 32),
    t: Float32Array.of(500),
    ctx: rand(77 * 32),
  },
);
