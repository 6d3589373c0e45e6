/**
 * Per-layer precision of the VAE and the UNet on the parity model: each layer's output from ONNX
 * Runtime (float32, our emission) and from a plain float32 host evaluation (NumPy-like: host.ts),
 * both against a float64 host evaluation of the same graph and weights. Used by precision.test.ts
 * and printed by `npx tsx test/fidelity/print.ts`.
 */
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import * as G from "../../src/graph/index.js";
import { loadStableDiffusion, type StableDiffusion } from "../../src/models/loader.js";
import { Session } from "../../src/runtime/session.js";
import { HostEvaluator } from "./host.js";

export const PARITY = fileURLToPath(new URL("../../../shared/parity/", import.meta.url));
export const PARITY_MODEL = `${PARITY}model`;

export interface Golden {
  shape: number[];
  data: Float32Array;
}

/** The golden tensors (F32 only): 8-byte header length, JSON header, raw little-endian data. */
export function readGoldens(): Map<string, Golden> {
  const bytes = readFileSync(`${PARITY}golden.safetensors`);
  const headerLength = Number(bytes.readBigUInt64LE(0));
  const header = JSON.parse(bytes.subarray(8, 8 + headerLength).toString("utf8")) as Record<
    string,
    { dtype: string; shape: number[]; data_offsets: [number, number] }
  >;
  const out = new Map<string, Golden>();
  for (const [name, e] of Object.entries(header)) {
    if (name === "__metadata__" || e.dtype !== "F32") continue;
    const [begin, end] = e.data_offsets;
    const raw = bytes.subarray(8 + headerLength + begin, 8 + headerLength + end);
    const data = new Float32Array(raw.byteLength / 4);
    for (let i = 0; i < data.length; i++) data[i] = raw.readFloatLE(4 * i);
    out.set(name, { shape: e.shape, data });
  }
  return out;
}

export interface LayerRow {
  layer: string;
  /** max |float64| of the layer's output */
  scale: number;
  /** Through the whole chain so far: max |ORT − float64| and max |plain float32 − float64|. */
  ort: number;
  plain: number;
  /** This layer alone, from the float64 chain's input rounded to float32: the same two errors. */
  ortLocal: number;
  plainLocal: number;
}

/** A layer of a chain: its name and the function from its input to its output. */
export type Layer = [string, (x: G.Tensor) => G.Tensor];

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs((a[i] as number) - (b[i] as number)));
  return m;
}

async function runOrt(outputs: Record<string, G.Tensor>, feeds: Record<string, Float32Array>, threads: number) {
  const session = await Session.create(G.compile(outputs), { threads });
  try {
    return await session.run(feeds);
  } finally {
    await session.release();
  }
}

/**
 * Runs a chain of layers from `input` through ORT and both host evaluations, as a whole (each
 * layer's output a graph output of one session) and layer by layer.
 */
export async function study(layers: Layer[], input: Golden, { threads = 2, local = true } = {}): Promise<LayerRow[]> {
  const x = G.input("x", input.shape);
  const taps: G.Tensor[] = [];
  let h = x;
  for (const [, f] of layers) {
    h = f(h);
    taps.push(h);
  }
  const whole = await runOrt(Object.fromEntries(taps.map((t, i) => [`l${i}`, t])), { x: input.data }, threads);
  const f64 = new HostEvaluator("float64", { x: input });
  const f32 = new HostEvaluator("float32", { x: input });
  const rows: LayerRow[] = [];
  let layerInput = input;
  for (const [i, [layer, f]] of layers.entries()) {
    const t = taps[i] as G.Tensor;
    const ref = (await f64.evaluate(t)).data;
    const plain = (await f32.evaluate(t)).data;
    const ort = whole[`l${i}`]?.data as Float32Array;
    let ortLocal = Number.NaN;
    let plainLocal = Number.NaN;
    if (local) {
      // the layer alone, on the float64 chain's input rounded to float32
      const xi = G.input("x", layerInput.shape);
      const yi = f(xi);
      const local64 = new HostEvaluator("float64", { x: layerInput });
      const local32 = new HostEvaluator("float32", { x: layerInput });
      const refLocal = (await local64.evaluate(yi)).data;
      plainLocal = maxAbsDiff((await local32.evaluate(yi)).data, refLocal);
      local64.close();
      local32.close();
      ortLocal = maxAbsDiff(
        (await runOrt({ y: yi }, { x: layerInput.data }, threads)).y?.data as Float32Array,
        refLocal,
      );
    }
    rows.push({
      layer,
      scale: maxAbsDiff(ref, new Float64Array(ref.length)),
      ort: maxAbsDiff(ort, ref),
      plain: maxAbsDiff(plain, ref),
      ortLocal,
      plainLocal,
    });
    layerInput = { shape: [...t.shape], data: Float32Array.from(ref) };
  }
  f64.close();
  f32.close();
  return rows;
}

/**
 * Tensors of one graph (named taps, all computed from `feeds`) through ORT and both host
 * evaluations: the chain errors only (a tap's inputs are not one tensor, so no "alone" columns).
 */
export async function studyTaps(
  taps: [string, G.Tensor][],
  feeds: Record<string, Golden>,
  { threads = 2 } = {},
): Promise<LayerRow[]> {
  const ort = await runOrt(
    Object.fromEntries(taps.map(([, t], i) => [`l${i}`, t])),
    Object.fromEntries(Object.entries(feeds).map(([k, v]) => [k, v.data])),
    threads,
  );
  const f64 = new HostEvaluator("float64", feeds);
  const f32 = new HostEvaluator("float32", feeds);
  const rows: LayerRow[] = [];
  for (const [i, [layer, t]] of taps.entries()) {
    const ref = (await f64.evaluate(t)).data;
    rows.push({
      layer,
      scale: maxAbsDiff(ref, new Float64Array(ref.length)),
      ort: maxAbsDiff(ort[`l${i}`]?.data as Float32Array, ref),
      plain: maxAbsDiff((await f32.evaluate(t)).data, ref),
      ortLocal: Number.NaN,
      plainLocal: Number.NaN,
    });
  }
  f64.close();
  f32.close();
  return rows;
}

/** The UNet's inputs from the goldens (unet.sample, unet.encoder_hidden_states) at timestep `t`, batch 2. */
export function unetFeeds(goldens: Map<string, Golden>, t: number): Record<string, Golden> {
  const sample = goldens.get("unet.sample");
  const context = goldens.get("unet.encoder_hidden_states");
  if (!sample || !context) throw new Error("goldens: unet.sample or unet.encoder_hidden_states missing");
  const b = sample.shape[0] as number;
  return { sample, context, timestep: { shape: [b], data: new Float32Array(b).fill(t) } };
}

/**
 * The UNet's blocks as taps of one forward graph, in diffusers' order: each resnet and transformer
 * (the last tensor computed in its scope), each down- and upsampler (its convolution, found by its
 * weight: the samplers have no scope of their own), then conv_out (the output).
 */
export function unetTaps(sd: StableDiffusion, feeds: Record<string, Golden>): [string, G.Tensor][] {
  const input = (name: string) => G.input(name, (feeds[name] as Golden).shape);
  const unet = sd.unet;
  const out = unet.forward(input("sample"), input("timestep"), input("context"));
  const block = /^((down|up)_blocks\.\d+\.(resnets|attentions)\.\d+|mid_block\.mid_block\.(resnets|attentions)\.\d+)$/;
  const samplers = new Map<G.Tensor, string>();
  unet.down_blocks.forEach((b, i) => {
    const conv = b.downsamplers?.[0]?.conv;
    if (conv) samplers.set(conv.weight, `down_blocks.${i}.downsamplers.0`);
  });
  unet.up_blocks.forEach((b, i) => {
    const conv = b.upsamplers?.[0]?.conv;
    if (conv) samplers.set(conv.weight, `up_blocks.${i}.upsamplers.0`);
  });
  const last = new Map<string, G.Tensor>();
  const seen = new Set<number>();
  const stack = [out];
  while (stack.length) {
    const t = stack.pop() as G.Tensor;
    if (seen.has(t.id)) continue;
    seen.add(t.id);
    const m = block.exec(t.scope);
    const sampler = t.op?.name === "Conv" ? samplers.get(t.inputs[1] as G.Tensor) : undefined;
    const name = sampler ?? (m ? (m[1] as string).replace("mid_block.mid_block", "mid_block") : undefined);
    if (name && (last.get(name)?.id ?? -1) < t.id) last.set(name, t);
    stack.push(...t.inputs);
  }
  const taps = [...last].sort((a, b) => a[1].id - b[1].id);
  return [...taps, ["conv_out (output)", out]];
}

/** The UNet's output and its VJP with respect to the context (the goldens' unet.vjp_cotangent), as null-text optimisation uses it. */
export function unetOutputAndVjp(
  sd: StableDiffusion,
  feeds: Record<string, Golden>,
  cotangent: Golden,
): [string, G.Tensor][] {
  const input = (name: string) => G.input(name, (feeds[name] as Golden).shape);
  const context = input("context");
  const out = sd.unet.forward(input("sample"), input("timestep"), context);
  const [vjp] = G.grad(G.reduceSum(G.mul(out, G.constant(cotangent.data, cotangent.shape))), [context]);
  return [
    ["output", out],
    ["vjp (d/d context)", vjp as G.Tensor],
  ];
}

/** The encoder's layers as diffusers' Encoder.forward runs them, then quant_conv (the posterior's mean and logvar). */
export function encoderLayers(sd: StableDiffusion): Layer[] {
  const vae = sd.vae;
  const enc = vae.encoder;
  const layers: Layer[] = [["conv_in", (x) => enc.conv_in.forward(x)]];
  enc.down_blocks.forEach((block, i) => {
    block.resnets.forEach((r, j) => {
      layers.push([`down_blocks.${i}.resnets.${j}`, (x) => r.forward(x)]);
    });
    const down = block.downsamplers?.[0].conv;
    if (down) layers.push([`down_blocks.${i}.downsamplers.0`, (x) => down.forward(x, [0, 0, 1, 1])]);
  });
  const mid = enc.mid_block;
  layers.push(
    ["mid_block.resnets.0", (x) => mid.resnets[0].forward(x)],
    ["mid_block.attentions.0", (x) => mid.attentions[0].forward(x)],
    ["mid_block.resnets.1", (x) => mid.resnets[1].forward(x)],
    ["conv_norm_out", (x) => enc.conv_norm_out.forward(x)],
    ["conv_act + conv_out", (x) => enc.conv_out.forward(G.silu(x))],
    ["quant_conv (mean, logvar)", (x) => vae.quant_conv.forward(x)],
    [
      "posterior mean (the latent)",
      (x) => G.split(x, [(x.shape[1] as number) / 2, (x.shape[1] as number) / 2], 1)[0] as G.Tensor,
    ],
  );
  return layers;
}

/** The decoder's layers, post_quant_conv first. */
export function decoderLayers(sd: StableDiffusion): Layer[] {
  const vae = sd.vae;
  const dec = vae.decoder;
  const mid = dec.mid_block;
  const layers: Layer[] = [
    ["post_quant_conv", (x) => vae.post_quant_conv.forward(x)],
    ["conv_in", (x) => dec.conv_in.forward(x)],
    ["mid_block.resnets.0", (x) => mid.resnets[0].forward(x)],
    ["mid_block.attentions.0", (x) => mid.attentions[0].forward(x)],
    ["mid_block.resnets.1", (x) => mid.resnets[1].forward(x)],
  ];
  dec.up_blocks.forEach((block, i) => {
    block.resnets.forEach((r, j) => {
      layers.push([`up_blocks.${i}.resnets.${j}`, (x) => r.forward(x)]);
    });
    const up = block.upsamplers?.[0].conv;
    if (up) layers.push([`up_blocks.${i}.upsamplers.0`, (x) => up.forward(G.upsampleNearest(x, 2))]);
  });
  layers.push(
    ["conv_norm_out", (x) => dec.conv_norm_out.forward(x)],
    ["conv_act + conv_out", (x) => dec.conv_out.forward(G.silu(x))],
  );
  return layers;
}

export async function loadParityModel(): Promise<StableDiffusion> {
  return loadStableDiffusion(PARITY_MODEL);
}
