/**
 * bench:unet-profile — where one forward + VJP of the SD 1.5 UNet spends its time, per ONNX op type,
 * from ORT's own profiler (the last of 4 runs), with the weights shared (fed as graph inputs) or
 * per session (initializers). Random weights from scripts/make-random-sd15.ts, or the UNet of a
 * diffusers folder given by --model (e.g. ../shared/parity/model at --latent 16: the graph behind
 * bench:nti-small's inner iterations).
 * Usage: npm run bench:unet-profile [-- --latent 32] [-- --weights shared|per-session] [-- --forward]
 *        [-- --model DIR] [-- --json]
 * (--forward: the forward alone, as sampling and the DDIM inversion run it)
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import * as ort from "onnxruntime-node";
import * as G from "../src/graph/index.js";
import { loadStableDiffusion } from "../src/models/loader.js";
import { argValue, printTable, randomArray, wantsJson } from "./common.js";
import { randomSD15, unetGraph } from "./sd15.js";

const latent = Number(argValue("--latent") ?? 32);
const weights = argValue("--weights") ?? "shared";
if (weights !== "shared" && weights !== "per-session") throw new Error(`--weights ${weights}: shared or per-session`);
const forwardOnly = process.argv.includes("--forward");

const modelDir = argValue("--model") ?? randomSD15();
const model = await loadStableDiffusion(modelDir);
const channels = model.unet.config.in_channels;
const compiled = G.compile(unetGraph(model.unet, latent, !forwardOnly), {
  name: "unet_profile",
  frozenWeights: weights === "shared" ? "inputs" : "initializers",
});
const dir = fs.mkdtempSync(path.join(os.tmpdir(), "nulltext-profile-"));
const options = {
  executionProviders: ["cpu"],
  graphOptimizationLevel: "all",
  enableMemPattern: false,
  enableProfiling: true,
  profileFilePrefix: path.join(dir, "profile"),
  intraOpNumThreads: os.availableParallelism(),
  interOpNumThreads: 1,
} as ort.InferenceSession.SessionOptions;
const session =
  compiled.model.kind === "bytes"
    ? await ort.InferenceSession.create(compiled.model.bytes, options)
    : await ort.InferenceSession.create(compiled.model.path, options);
const n = latent * latent * channels;
const D = model.unet.crossAttentionDim;
const feeds: Record<string, ort.Tensor> = {
  sample: new ort.Tensor("float32", randomArray(n, 1), [1, channels, latent, latent]),
  timestep: new ort.Tensor("float32", Float32Array.of(500), [1]),
  context: new ort.Tensor("float32", randomArray(77 * D, 2), [1, 77, D]),
};
if (!forwardOnly) feeds.cotangent = new ort.Tensor("float32", randomArray(n, 3), [1, channels, latent, latent]);
for (const w of compiled.weightInputs) {
  feeds[w.name] = new ort.Tensor("float32", w.data as Float32Array, [...w.shape]);
}
for (let i = 0; i < 4; i++) await session.run(feeds);
session.endProfiling();
const file = fs.readdirSync(dir).find((f) => f.endsWith(".json")) as string;
type Event = { ts: number; dur: number; cat: string; name: string; args?: { op_name?: string } };
const events = JSON.parse(fs.readFileSync(path.join(dir, file), "utf8")) as Event[];
if (process.env.NULLTEXT_PROFILE_KEEP) fs.copyFileSync(path.join(dir, file), process.env.NULLTEXT_PROFILE_KEEP);
fs.rmSync(dir, { recursive: true, force: true });
const runs = events.filter((e) => e.name === "model_run");
const last = runs[runs.length - 1] as Event;
const byOp = new Map<string, { seconds: number; nodes: number }>();
for (const e of events) {
  // Nodes inside Loop bodies are listed too; their time is also inside the Loop node's.
  if (e.ts < last.ts || e.cat !== "Node" || !e.name.endsWith("_kernel_time")) continue;
  const op = e.args?.op_name ?? "?";
  const entry = byOp.get(op) ?? { seconds: 0, nodes: 0 };
  entry.seconds += e.dur / 1e6;
  entry.nodes++;
  byOp.set(op, entry);
}
const rows = [...byOp].sort((a, b) => b[1].seconds - a[1].seconds);
const kernels = rows.reduce((sum, [, v]) => sum + v.nodes, 0);
// a Loop node's time already holds its body's kernels
const kernelSeconds = rows.reduce((sum, [op, v]) => (op === "Loop" ? sum : sum + v.seconds), 0);
if (wantsJson()) {
  console.log(
    JSON.stringify({
      model: modelDir,
      latent,
      weights,
      forward_only: forwardOnly,
      run_seconds: last.dur / 1e6,
      kernels,
      kernel_seconds: kernelSeconds,
      ops: Object.fromEntries(rows),
    }),
  );
} else {
  console.log(
    `bench:unet-profile — ${argValue("--model") ? `${modelDir}'s` : "SD 1.5"} UNet ${forwardOnly ? "forward" : "forward + VJP"} at ${latent}×${latent} latents, weights ${weights}, last of 4 runs: ${(last.dur / 1e6).toFixed(2)} s, ${kernels} kernels (Loop bodies' included, Loop nodes not) taking ${kernelSeconds.toFixed(3)} s\n`,
  );
  printTable(rows.slice(0, 16).map(([op, v]) => ({ op, nodes: v.nodes, seconds: v.seconds.toFixed(3) })));
}
