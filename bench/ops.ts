/**
 * bench:ops — GFLOP/s of the core ops and their input gradients built through the graph layer,
 * next to the same computation as hand-built ONNX nodes run directly on ORT, in one run.
 * Usage: npm run bench:ops [-- --json] [-- --runs N]
 */
import * as ort from "onnxruntime-node";
import type { Tensor } from "../src/graph/index.js";
import * as G from "../src/graph/index.js";
import { encodeModel, type NodeProtoSpec, type TensorProtoSpec } from "../src/graph/onnx_proto.js";
import { attentionCore as attentionCoreOp } from "../src/graph/ops/attention.js";
import { Session } from "../src/runtime/session.js";
import { argValue, median, printTable, randomArray, wantsJson } from "./common.js";

const THREADS = Number(argValue("--threads") ?? 2);
const RUNS = Number(argValue("--runs") ?? 7);
const timing = { warmup: 2, runs: RUNS, minSeconds: 0.75 };

interface Input {
  name: string;
  shape: number[];
}

interface Row {
  name: string;
  /** Builds the computation with the graph layer; returns its output. */
  graph: (inputs: Tensor[], weight?: Tensor) => Tensor;
  inputs: Input[];
  weight?: { shape: number[] };
  /** The same computation as hand-written ONNX nodes over inputs named as above ("w" for the weight). */
  raw: NodeProtoSpec[];
}

const f32 = (name: string, shape: number[]) => ({ name, elemType: 1, dims: shape });
const ints = (v: number[]) => ({ type: "ints" as const, value: v });
const int = (v: number) => ({ type: "int" as const, value: v });

function rawModel(row: Row, weight: Float32Array | undefined, outShape: number[], scale?: number): Uint8Array {
  const initializers: TensorProtoSpec[] = [];
  if (row.weight && weight) {
    initializers.push({ name: "w", dims: row.weight.shape, dataType: 1, rawData: new Uint8Array(weight.buffer) });
  }
  if (scale !== undefined && row.raw.some((n) => n.inputs.includes("scale")))
    initializers.push({ name: "scale", dims: [], dataType: 1, rawData: new Uint8Array(Float32Array.of(scale).buffer) });
  const chunks = encodeModel({
    irVersion: 10,
    opsets: [
      { domain: "", version: 18 },
      { domain: "com.microsoft", version: 1 },
    ],
    producer: "bench",
    graph: {
      name: row.name,
      nodes: row.raw,
      initializers,
      inputs: row.inputs.map((i) => f32(i.name, i.shape)),
      outputs: [f32("out", outShape)],
    },
  });
  return Buffer.concat(chunks);
}

const conv = (c: number, s: number): Row[] => {
  const x = { name: "x", shape: [1, c, s, s] };
  const pads = [1, 1, 1, 1];
  return [
    {
      name: `conv3x3 ${c}→${c} @${s}×${s}`,
      inputs: [x],
      weight: { shape: [c, c, 3, 3] },
      graph: ([xi], w) => G.conv2d(xi!, w!, undefined, { pads: [1, 1, 1, 1] }),
      raw: [{ name: "conv", opType: "Conv", inputs: ["x", "w"], outputs: ["out"], attributes: { pads: ints(pads) } }],
    },
    {
      name: `  input gradient`,
      inputs: [x, { name: "g", shape: [1, c, s, s] }],
      weight: { shape: [c, c, 3, 3] },
      graph: ([xi, g], w) => G.vjp([G.conv2d(xi!, w!, undefined, { pads: [1, 1, 1, 1] })], [g!], [xi!])[0]!,
      raw: [
        {
          name: "convT",
          opType: "ConvTranspose",
          inputs: ["g", "w"],
          outputs: ["out"],
          attributes: { pads: ints(pads), output_padding: ints([0, 0]) },
        },
      ],
    },
  ];
};

const rows: Row[] = [
  ...conv(320, 64),
  ...conv(640, 32),
  {
    name: "matmul 4096×320×320",
    inputs: [{ name: "x", shape: [4096, 320] }],
    weight: { shape: [320, 320] },
    graph: ([x], w) => G.matmul(x!, w!),
    raw: [{ name: "mm", opType: "MatMul", inputs: ["x", "w"], outputs: ["out"] }],
  },
  {
    name: "  input gradient",
    inputs: [
      { name: "x", shape: [4096, 320] },
      { name: "g", shape: [4096, 320] },
    ],
    weight: { shape: [320, 320] },
    graph: ([x, g], w) => G.vjp([G.matmul(x!, w!)], [g!], [x!])[0]!,
    raw: [{ name: "gemm", opType: "Gemm", inputs: ["g", "w"], outputs: ["out"], attributes: { transB: int(1) } }],
  },
];

// Attention core: 8 heads × 4096 tokens × head size 40, inputs already split into heads.
const H = 8;
const N = 4096;
const D = 40;
const scale = 1 / Math.sqrt(D);
const qkv = ["q", "k", "v"].map((name) => ({ name, shape: [H, N, D] }));
function attentionCore(q: Tensor, k: Tensor, v: Tensor): Tensor {
  return G.matmul(G.softmax(G.matmul(G.mul(q, scale), G.transpose(k, [0, 2, 1])), -1), v);
}
rows.push(
  {
    name: "attention 8×4096×40",
    inputs: qkv,
    graph: ([q, k, v]) => attentionCore(q!, k!, v!),
    raw: [
      { name: "qs", opType: "Mul", inputs: ["q", "scale"], outputs: ["qs"] },
      { name: "kt", opType: "Transpose", inputs: ["k"], outputs: ["kt"], attributes: { perm: ints([0, 2, 1]) } },
      { name: "s", opType: "MatMul", inputs: ["qs", "kt"], outputs: ["s"] },
      { name: "p", opType: "Softmax", inputs: ["s"], outputs: ["p"], attributes: { axis: int(-1) } },
      { name: "o", opType: "MatMul", inputs: ["p", "v"], outputs: ["out"] },
    ],
  },
  {
    // Gradient with respect to q, k and v together; the raw graph is the textbook backward:
    // dV = Pᵀ·dO, dP = dO·Vᵀ, dS = P ⊙ (dP − rowsum(dP ⊙ P)), dQ = dS·K·scale, dK = dSᵀ·Q·scale.
    name: "  input gradient (q, k, v)",
    inputs: [...qkv, { name: "g", shape: [H, N, D] }],
    graph: ([q, k, v, g]) => {
      const [dq, dk, dv] = G.vjp([attentionCore(q!, k!, v!)], [g!], [q!, k!, v!]);
      return G.concat([dq!, dk!, dv!], 0);
    },
    raw: [
      { name: "qs", opType: "Mul", inputs: ["q", "scale"], outputs: ["qs"] },
      { name: "kt", opType: "Transpose", inputs: ["k"], outputs: ["kt"], attributes: { perm: ints([0, 2, 1]) } },
      { name: "s", opType: "MatMul", inputs: ["qs", "kt"], outputs: ["s"] },
      { name: "p", opType: "Softmax", inputs: ["s"], outputs: ["p"], attributes: { axis: int(-1) } },
      { name: "pt", opType: "Transpose", inputs: ["p"], outputs: ["pt"], attributes: { perm: ints([0, 2, 1]) } },
      { name: "dv", opType: "MatMul", inputs: ["pt", "g"], outputs: ["dv"] },
      { name: "vt", opType: "Transpose", inputs: ["v"], outputs: ["vt"], attributes: { perm: ints([0, 2, 1]) } },
      { name: "dp", opType: "MatMul", inputs: ["g", "vt"], outputs: ["dp"] },
      { name: "dpp", opType: "Mul", inputs: ["dp", "p"], outputs: ["dpp"] },
      { name: "axes", opType: "Constant", inputs: [], outputs: ["axes"], attributes: { value_ints: ints([-1]) } },
      { name: "rs", opType: "ReduceSum", inputs: ["dpp", "axes"], outputs: ["rs"], attributes: { keepdims: int(1) } },
      { name: "d", opType: "Sub", inputs: ["dp", "rs"], outputs: ["d"] },
      { name: "ds", opType: "Mul", inputs: ["p", "d"], outputs: ["ds"] },
      { name: "dqs", opType: "MatMul", inputs: ["ds", "k"], outputs: ["dqs"] },
      { name: "dq", opType: "Mul", inputs: ["dqs", "scale"], outputs: ["dq"] },
      { name: "dst", opType: "Transpose", inputs: ["ds"], outputs: ["dst"], attributes: { perm: ints([0, 2, 1]) } },
      { name: "dk", opType: "MatMul", inputs: ["dst", "qs"], outputs: ["dk"] },
      { name: "cat", opType: "Concat", inputs: ["dq", "dk", "dv"], outputs: ["out"], attributes: { axis: int(0) } },
    ],
  },
);

// The same two rows through AttentionCore as the UNet runs it at 64×64: blocks of 512 query rows in an ONNX
// Loop, probabilities recomputed in the backward. The raw side stays the whole, unblocked textbook graph, so
// the ratio says what blocking costs or gains. (The gradient's GFLOP include the recomputed scores.)
const raws = rows.slice(-2) as [Row, Row];
rows.push(
  {
    name: "attention, blocks of 512 rows",
    inputs: qkv,
    graph: ([q, k, v]) => blockedAttention(q!, k!, v!),
    raw: raws[0].raw,
  },
  {
    name: "  input gradient (q, k, v)",
    inputs: [...qkv, { name: "g", shape: [H, N, D] }],
    graph: ([q, k, v, g]) => {
      const [dq, dk, dv] = G.vjp([blockedAttention(q!, k!, v!)], [g!], [q!, k!, v!]);
      return G.concat([dq!, dk!, dv!], 0);
    },
    raw: raws[1].raw,
  },
);
function blockedAttention(q: Tensor, k: Tensor, v: Tensor): Tensor {
  return attentionCoreOp(q, G.transpose(k, [0, 2, 1]), v, scale, undefined, 512);
}

// The same attention on q, k, v [1, 4096, 320] as attention() runs it by default: ORT's com.microsoft
// MultiHeadAttention (heads split inside the kernel) and a backward that recomputes the probabilities
// in blocks of 512 rows. Raw: one MultiHeadAttention node; for the gradient, the heads split and merged
// around the whole, unblocked textbook backward above.
const tokens = ["q", "k", "v"].map((name) => ({ name, shape: [1, N, H * D] }));
const toHeads = (x: string): NodeProtoSpec[] => [
  { name: `${x}r`, opType: "Reshape", inputs: [x, "head_shape"], outputs: [`${x}r`] },
  {
    name: `${x}h`,
    opType: "Transpose",
    inputs: [`${x}r`],
    outputs: [`${x}h`],
    attributes: { perm: ints([0, 2, 1, 3]) },
  },
];
/** The textbook backward on heads [1, H, N, D]: its q, k, v, g read the split ones, its transposes swap the last axes. */
const headed = (n: NodeProtoSpec): NodeProtoSpec => ({
  ...n,
  inputs: n.inputs.map((x) => (["q", "k", "v", "g"].includes(x) ? `${x}h` : x)),
  attributes: n.opType === "Transpose" ? { perm: ints([0, 1, 3, 2]) } : n.attributes,
});
const fromHeads = (x: string, out: string): NodeProtoSpec[] => [
  { name: `${x}m`, opType: "Transpose", inputs: [x], outputs: [`${x}m`], attributes: { perm: ints([0, 2, 1, 3]) } },
  { name: out, opType: "Reshape", inputs: [`${x}m`, "token_shape"], outputs: [out] },
];
rows.push(
  {
    name: "attention, fused (MultiHeadAttention)",
    inputs: tokens,
    graph: ([q, k, v]) => G.attention(q!, k!, v!, { heads: H }),
    raw: [
      {
        name: "mha",
        opType: "MultiHeadAttention",
        domain: "com.microsoft",
        inputs: ["q", "k", "v"],
        outputs: ["out"],
        attributes: { num_heads: int(H), scale: { type: "float", value: scale } },
      },
    ],
  },
  {
    name: "  input gradient (q, k, v)",
    inputs: [...tokens, { name: "g", shape: [1, N, H * D] }],
    graph: ([q, k, v, g]) => {
      const [dq, dk, dv] = G.vjp([G.attention(q!, k!, v!, { heads: H })], [g!], [q!, k!, v!]);
      return G.concat([dq!, dk!, dv!], 0);
    },
    raw: [
      {
        name: "hs",
        opType: "Constant",
        inputs: [],
        outputs: ["head_shape"],
        attributes: { value_ints: ints([1, N, H, D]) },
      },
      {
        name: "ts",
        opType: "Constant",
        inputs: [],
        outputs: ["token_shape"],
        attributes: { value_ints: ints([1, N, H * D]) },
      },
      ...["q", "k", "v", "g"].flatMap((x) => toHeads(x)),
      ...raws[1].raw.filter((n) => n.opType !== "Concat").map(headed),
      ...fromHeads("dq", "dq_tokens"),
      ...fromHeads("dk", "dk_tokens"),
      ...fromHeads("dv", "dv_tokens"),
      {
        name: "cat",
        opType: "Concat",
        inputs: ["dq_tokens", "dk_tokens", "dv_tokens"],
        outputs: ["out"],
        attributes: { axis: int(0) },
      },
    ],
  },
);

const sessionOptions: ort.InferenceSession.SessionOptions = {
  executionProviders: ["cpu"],
  graphOptimizationLevel: "all",
  intraOpNumThreads: THREADS,
  interOpNumThreads: 1,
};

const results: { name: string; gflops: number; raw_gflops: number; ratio: number; gflop: number; seconds: number }[] =
  [];
for (const [i, row] of rows.entries()) {
  const weightData = row.weight
    ? randomArray(
        row.weight.shape.reduce((a, b) => a * b, 1),
        7 + i,
        0.05,
      )
    : undefined;
  const inputs = row.inputs.map((inp) => G.input(inp.name, inp.shape));
  const w = row.weight && weightData ? G.weight("w", row.weight.shape, weightData) : undefined;
  const out = row.graph(inputs, w);
  const compiled = G.compile({ out }, { name: row.name, inputs });
  const feeds: Record<string, Float32Array> = {};
  row.inputs.forEach((inp, k) => {
    feeds[inp.name] = randomArray(
      inp.shape.reduce((a, b) => a * b, 1),
      100 + k,
    );
  });
  const session = await Session.create(compiled, { threads: THREADS });
  const raw = await ort.InferenceSession.create(rawModel(row, weightData, [...out.shape], scale), sessionOptions);
  const rawFeeds: Record<string, ort.Tensor> = {};
  row.inputs.forEach((inp) => {
    rawFeeds[inp.name] = new ort.Tensor("float32", feeds[inp.name] as Float32Array, inp.shape);
  });
  // Alternate blocks of runs (4 rounds) so that neither is favoured by the machine's state, and take
  // each one's median. Blocks, not single runs: ORT's worker threads spin for a while after a run,
  // and two sessions interleaved run by run would compete with each other's spinning threads.
  const graphTimes: number[] = [];
  const rawTimes: number[] = [];
  const block = async (f: () => Promise<unknown>, into: number[]) => {
    for (let i = 0; i < timing.warmup; i++) await f();
    let spent = 0;
    for (let n = 0; n < timing.runs || spent < timing.minSeconds; n++) {
      const t = process.hrtime.bigint();
      await f();
      const dt = Number(process.hrtime.bigint() - t) / 1e9;
      into.push(dt);
      spent += dt;
    }
  };
  for (let round = 0; round < 4; round++) {
    await block(() => session.run(feeds), graphTimes);
    await block(() => raw.run(rawFeeds), rawTimes);
  }
  const graphSeconds = median(graphTimes);
  const rawSeconds = median(rawTimes);
  await session.release();
  await raw.release();

  const gflop = compiled.flops / 1e9;
  const r = {
    name: row.name,
    gflops: gflop / graphSeconds,
    raw_gflops: gflop / rawSeconds,
    ratio: rawSeconds / graphSeconds,
    gflop,
    seconds: graphSeconds,
  };
  results.push(r);
  if (wantsJson()) console.log(JSON.stringify(r));
}

if (!wantsJson()) {
  console.log(
    `bench:ops — ${THREADS} threads, graph and raw in 4 alternating blocks of ≥ ${RUNS} runs and ≥ 0.75 s (2 warm-ups each), medians; ratio = raw time / graph-layer time\n`,
  );
  printTable(
    results.map((r) => ({
      op: r.name,
      GFLOP: r.gflop.toFixed(2),
      "graph ms": (r.seconds * 1e3).toFixed(1),
      "graph GFLOP/s": r.gflops.toFixed(0),
      "raw GFLOP/s": r.raw_gflops.toFixed(0),
      ratio: r.ratio.toFixed(3),
    })),
  );
}
