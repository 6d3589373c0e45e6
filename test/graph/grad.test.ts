/** The grad API's contract, NaN/Inf behaviour, compilation paths and runtime errors. */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import * as G from "../../src/graph/index.js";
import { Session, unetCompileOptions } from "../../src/runtime/session.js";
import { evaluate } from "./harness.js";

/**
 * Weights read from a raw little-endian file in `dir`: w, the float32 matrix [[1, 2, 3], [4, 5, 6]] at
 * byte `f32At`, and b, the float16 vector [0.5, −2, 0.25] at `f16At`, upcast to float32.
 */
function fileWeights(dir: string, f32At: number, f16At: number): { w: G.Tensor; b: G.Tensor } {
  const file = path.join(dir, "weights.bin");
  const buf = Buffer.alloc(Math.max(f32At + 24, f16At + 6));
  Float32Array.of(1, 2, 3, 4, 5, 6).forEach((v, i) => buf.writeFloatLE(v, f32At + 4 * i));
  G.float32ArrayToHalf(Float32Array.of(0.5, -2, 0.25)).forEach((v, i) => buf.writeUInt16LE(v, f16At + 2 * i));
  fs.writeFileSync(file, buf);
  return {
    w: G.weight("w", [2, 3], { kind: "file", path: file, offset: f32At, byteLength: 24, dtype: "float32" }),
    b: G.weight(
      "b",
      [3],
      { kind: "file", path: file, offset: f16At, byteLength: 6, dtype: "float16" },
      { dtype: "float32" },
    ),
  };
}

describe("grad", () => {
  it("refuses to differentiate with respect to an integer input", () => {
    const ids = G.input("ids", [3], "int64");
    const table = G.weight("table", [4, 2], new Float32Array(8));
    const y = G.reduceSum(G.gather(table, ids));
    expect(() => G.grad(y, [ids])).toThrow(/cannot differentiate with respect to 'ids': int64/);
  });

  it("refuses a wrt tensor the loss does not depend on, unless allowUnused", async () => {
    const x = G.input("x", [2], "float32");
    const unused = G.input("unused", [3], "float32");
    const loss = G.reduceSum(G.mul(x, x));
    expect(() => G.grad(loss, [x, unused])).toThrow(/do not depend on 'unused'/);
    const [gx, gu] = G.grad(loss, [x, unused], { allowUnused: true });
    const out = await evaluate({ gx: gx!, gu: gu! }, { x: Float32Array.of(1, -2) });
    expect(Array.from(out.gx!.data as Float32Array)).toEqual([2, -4]);
    expect(Array.from(out.gu!.data as Float32Array)).toEqual([0, 0, 0]);
  });

  it("emits only what the requested gradients need (an input's gradient emits no weight gradients)", () => {
    const x = G.input("x", [8, 16], "float32");
    const w1 = G.weight("w1", [32, 16], new Float32Array(512));
    const w2 = G.weight("w2", [4, 32], new Float32Array(128));
    const loss = G.reduceSum(G.linear(G.silu(G.linear(x, w1)), w2));
    const [gx] = G.grad(loss, [x]);
    const [gxAll, gw1, gw2] = G.grad(loss, [x, w1, w2]);
    const onlyX = G.compile({ loss, gx: gx! });
    const all = G.compile({ loss, gx: gxAll!, gw1: gw1!, gw2: gw2! });
    // The forward is 2·8·16·32 + 2·8·32·4 FLOPs of matmul; the x-gradient the same again.
    const matmulForward = 2 * 8 * 16 * 32 + 2 * 8 * 32 * 4;
    const elementwise = onlyX.flops - 2 * matmulForward;
    expect(elementwise).toBeGreaterThan(0);
    expect(elementwise).toBeLessThan(8 * 32 * 12);
    // Weight gradients add exactly their two GEMMs.
    expect(all.flops - onlyX.flops).toBe(2 * 8 * 16 * 32 + 2 * 8 * 32 * 4);
  });

  it("leaves wrt tensors upstream of others out of the backward pass (gradient to an intermediate)", async () => {
    const x = G.input("x", [3], "float64");
    const h = G.mul(x, 3);
    const y = G.reduceSum(G.mul(h, h));
    const [gh] = G.grad(y, [h]);
    const out = await evaluate({ gh: gh! }, { x: Float64Array.of(1, 2, 3) });
    expect(Array.from(out.gh!.data as Float64Array)).toEqual([6, 12, 18]);
  });

  it("sends cotangents through Cast between float types, and none to integer casts", async () => {
    const x = G.input("x", [2], "float64");
    const y = G.reduceSum(G.mul(G.cast(x, "float32"), G.cast(G.cast(x, "int64"), "float32")));
    const [gx] = G.grad(G.cast(y, "float64"), [x]);
    const out = await evaluate({ gx: gx! }, { x: Float64Array.of(2.5, -1.5) });
    // d/dx [x · trunc(x)] with trunc treated as a constant = trunc(x)
    expect(Array.from(out.gx!.data as Float64Array)).toEqual([2, -1]);
  });

  it("refuses the gradient of a strided slice clearly", () => {
    const x = G.input("x", [6], "float32");
    const y = G.reduceSum(G.slice(x, [0], [6], [0], [2]));
    expect(() => G.grad(y, [x])).toThrow(/strided slice/);
  });
});

describe("fused normalisation cores against their composites", () => {
  it("give the same values and gradients as the primitive-op GroupNorm and LayerNorm", async () => {
    const x = G.input("x", [2, 8, 5, 5]);
    const w = G.input("w", [8]);
    const b = G.input("b", [8]);
    const g = G.input("g", [2, 8, 5, 5]);
    const fused = G.groupNorm(x, 4, w, b, 1e-6);
    const composite = G.groupNormComposite(x, 4, w, b, 1e-6);
    const [fx, fw] = G.vjp([fused], [g], [x, w]);
    const [cx, cw] = G.vjp([composite], [g], [x, w]);
    const tokens = G.input("t", [3, 7, 16]);
    const lw = G.input("lw", [16]);
    const lb = G.input("lb", [16]);
    const lg = G.input("lg", [3, 7, 16]);
    const [lfx] = G.vjp([G.layerNorm(tokens, lw, lb)], [lg], [tokens]);
    const [lcx] = G.vjp([G.layerNormComposite(tokens, lw, lb)], [lg], [tokens]);
    const rnd = (n: number, seed: number) =>
      Float32Array.from({ length: n }, (_, i) => Math.sin(seed * 1000 + i * 1.7) * (1 + (i % 5)));
    const out = await evaluate(
      {
        fused,
        composite,
        fx: fx!,
        fw: fw!,
        cx: cx!,
        cw: cw!,
        lf: G.layerNorm(tokens, lw, lb),
        lc: G.layerNormComposite(tokens, lw, lb),
        lfx: lfx!,
        lcx: lcx!,
      },
      {
        x: rnd(400, 1),
        w: rnd(8, 2),
        b: rnd(8, 3),
        g: rnd(400, 4),
        t: rnd(336, 5),
        lw: rnd(16, 6),
        lb: rnd(16, 7),
        lg: rnd(336, 8),
      },
    );
    const close = (a: string, c: string) => {
      const p = out[a]?.data as Float32Array;
      const q = out[c]?.data as Float32Array;
      let worst = 0;
      let scale = 0;
      for (let i = 0; i < p.length; i++) {
        worst = Math.max(worst, Math.abs((p[i] as number) - (q[i] as number)));
        scale = Math.max(scale, Math.abs(q[i] as number));
      }
      expect(scale).toBeGreaterThan(0.1);
      expect(worst, `${a} vs ${c}`).toBeLessThan(1e-5 * scale);
    };
    close("fused", "composite");
    close("fx", "cx");
    close("fw", "cw");
    close("lf", "lc");
    close("lfx", "lcx");
  });
});

describe("NaN and Inf", () => {
  it("propagate through elementwise ops, reductions and their gradients", async () => {
    const x = G.input("x", [4], "float32");
    const y = G.sqrt(x);
    const s = G.reduceSum(y);
    const [gx] = G.grad(s, [x]);
    const out = await evaluate({ y, s, gx: gx! }, { x: Float32Array.of(4, -1, Number.NaN, Number.POSITIVE_INFINITY) });
    const yv = Array.from(out.y!.data as Float32Array);
    expect(yv[0]).toBe(2);
    expect(yv[1]).toBeNaN();
    expect(yv[2]).toBeNaN();
    expect(yv[3]).toBe(Number.POSITIVE_INFINITY);
    expect((out.s!.data as Float32Array)[0]).toBeNaN();
    const g = Array.from(out.gx!.data as Float32Array);
    expect(g[0]).toBeCloseTo(0.25, 7);
    expect(g[1]).toBeNaN();
    expect(g[3]).toBe(0); // 1/(2·√∞)
  });

  it("overflow to Inf in float32 is kept, and softmax of −∞ scores gives exact zeros with finite gradients", async () => {
    const x = G.input("x", [3], "float32");
    const e = G.exp(x);
    const p = G.softmax(G.add(x, G.constant(Float32Array.of(0, Number.NEGATIVE_INFINITY, 0), [3])));
    const [gx] = G.grad(G.reduceSum(G.mul(p, G.constant(Float32Array.of(1, 2, 3), [3]))), [x]);
    const out = await evaluate({ e, p, gx: gx! }, { x: Float32Array.of(100, 0, 0) });
    expect((out.e!.data as Float32Array)[0]).toBe(Number.POSITIVE_INFINITY);
    const pv = Array.from(out.p!.data as Float32Array);
    expect(pv[1]).toBe(0);
    expect(pv[0]! + pv[2]!).toBeCloseTo(1, 6);
    for (const v of out.gx!.data as Float32Array) expect(Number.isFinite(v)).toBe(true);
    expect((out.gx!.data as Float32Array)[1]).toBe(0);
  });

  it("underflow: exp of very negative values is 0 and log of 0 is −∞", async () => {
    const x = G.input("x", [2], "float32");
    const out = await evaluate({ y: G.log(G.exp(x)) }, { x: Float32Array.of(-200, 1) });
    const y = out.y!.data as Float32Array;
    expect(y[0]).toBe(Number.NEGATIVE_INFINITY);
    expect(y[1]).toBeCloseTo(1, 6);
  });
});

describe("compile and run", () => {
  it("counts convolution FLOPs as 2·B·Cout·Ho·Wo·Cin·kh·kw", () => {
    const x = G.input("x", [1, 320, 64, 64], "float32");
    const w = G.weight("w", [320, 320, 3, 3], new Float32Array(320 * 320 * 9));
    const c = G.compile({ y: G.conv2d(x, w, undefined, { pads: [1, 1, 1, 1] }) });
    expect(c.flops).toBe(2 * 320 * 64 * 64 * 320 * 9);
  });

  it("puts big weights in external data, referencing a file in place and converting float16 through a Cast", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "nulltext-ext-"));
    const { w, b } = fileWeights(dir, 16, 64);
    const x = G.input("x", [1, 2], "float32");
    const big = G.weight("big", [4], Float32Array.of(1, 1, 1, 1));
    const y = G.add(G.matmul(x, w), b);
    const compiled = G.compile({ y, z: G.reduceSum(big) }, { externalDir: dir, inlineLimitBytes: 0, name: "ext" });
    expect(compiled.model.kind).toBe("file");
    const session = await Session.create(compiled, { threads: 1 });
    const out = await session.run({ x: Float32Array.of(1, -1) });
    expect(Array.from(out.y!.data as Float32Array)).toEqual([1 - 4 + 0.5, 2 - 5 - 2, 3 - 6 + 0.25]);
    expect((out.z!.data as Float32Array)[0]).toBe(4);
    await session.release();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it("feeds frozen weights as graph inputs on request: same values, one host copy per source", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "nulltext-fed-"));
    const { w, b } = fileWeights(dir, 4, 40); // the float32 matrix not 8-aligned in the file, on purpose
    const x = G.input("x", [1, 2], "float32");
    const y = G.add(G.matmul(x, w), b);
    const fed = G.compile({ y }, { frozenWeights: "inputs" });
    const embedded = G.compile({ y });
    expect(fed.weightInputs.map((i) => i.name).sort()).toEqual(["b", "w"]);
    expect(embedded.weightInputs).toEqual([]);
    // "auto" feeds them only when they exceed the inline limit (30 bytes here; 24 + 6 are stored).
    expect(G.compile({ y }, { frozenWeights: "auto", inlineLimitBytes: 29 }).weightInputs).toHaveLength(2);
    expect(G.compile({ y }, { frozenWeights: "auto", inlineLimitBytes: 30 }).weightInputs).toHaveLength(0);
    expect(Array.from(fed.weightInputs.find((i) => i.name === "b")!.data as Float32Array)).toEqual([0.5, -2, 0.25]);
    // A second graph over the same weights reads the same host arrays, not new copies.
    const again = G.compile({ y2: G.mul(y, 2) }, { frozenWeights: "inputs" });
    for (const i of again.weightInputs) expect(i.data).toBe(fed.weightInputs.find((f) => f.name === i.name)!.data);
    const expected = [1 - 4 + 0.5, 2 - 5 - 2, 3 - 6 + 0.25];
    for (const compiled of [fed, embedded]) {
      const session = await Session.create(compiled, { threads: 1 });
      expect(Array.from((await session.run({ x: Float32Array.of(1, -1) })).y!.data as Float32Array)).toEqual(expected);
      await session.release();
    }
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it("emits a unit-stride conv input gradient as a Conv with the flipped kernel, constant, fed or trained, and matches the adjoint", async () => {
    const wData = Float32Array.from({ length: 4 * 3 * 9 }, (_, i) => Math.sin(i));
    const gData = Float32Array.from({ length: 100 }, (_, i) => Math.cos(i));
    const x = G.input("x", [1, 3, 5, 5]);
    const g = G.input("g", [1, 4, 5, 5]);
    const w = G.weight("w", [4, 3, 3, 3], wData);
    const [dx] = G.vjp([G.conv2d(x, w, undefined, { pads: [1, 1, 1, 1] })], [g], [x]);
    const xs = G.input("xs", [1, 3, 5, 5]);
    const gs = G.input("gs", [1, 4, 3, 3]);
    const [dxStrided] = G.vjp([G.conv2d(xs, w, undefined, { pads: [1, 1, 1, 1], strides: [2, 2] })], [gs], [xs]);
    // op_type is field 4 of NodeProto: tag 0x22, then the length.
    const hasOp = (bytes: Uint8Array, op: string) =>
      Buffer.from(bytes).includes(Buffer.concat([Buffer.of(0x22, op.length), Buffer.from(op)]));
    const embedded = G.compile({ dx: dx as G.Tensor });
    const fed = G.compile({ dx: dx as G.Tensor }, { frozenWeights: "inputs" });
    const strided = G.compile({ dx: dxStrided as G.Tensor }, { frozenWeights: "inputs" });
    const bytes = (c: G.CompiledGraph) => (c.model as { bytes: Uint8Array }).bytes;
    expect(hasOp(bytes(embedded), "ConvTranspose")).toBe(false);
    expect(hasOp(bytes(fed), "ConvTranspose")).toBe(false);
    expect(hasOp(bytes(strided), "ConvTranspose")).toBe(true);
    // A fed weight is flipped on the host once: a second fed input, shared by every graph over that weight.
    expect(hasOp(bytes(fed), "Slice")).toBe(false);
    const flipped = fed.weightInputs.find((i) => i.name === "w::flipped");
    expect(flipped?.shape).toEqual([3, 4, 3, 3]);
    // flipped[c, o, u, v] = w[o, c, 2 − u, 2 − v]
    expect(flipped?.data[((2 * 4 + 1) * 3 + 0) * 3 + 1]).toBe(wData[((1 * 3 + 2) * 3 + 2) * 3 + 1]);
    const again = G.compile({ dx2: G.mul(dx as G.Tensor, 2) }, { frozenWeights: "inputs" });
    expect(again.weightInputs.find((i) => i.name === "w::flipped")?.data).toBe(flipped?.data);
    // A trained weight changes between runs: it is flipped in the graph.
    const wt = G.weight("w", [4, 3, 3, 3], Float32Array.from(wData), { trainable: true });
    const [dxTrained] = G.vjp([G.conv2d(x, wt, undefined, { pads: [1, 1, 1, 1] })], [g], [x]);
    const trained = G.compile({ dx: dxTrained as G.Tensor });
    expect(hasOp(bytes(trained), "Slice")).toBe(true);
    expect(trained.weightInputs.map((i) => i.name)).toEqual(["w"]);
    // the adjoint in float64: y[o,p,q] = Σ x[c, p+u−1, q+v−1]·w[o,c,u,v], so dx[c,i,j] = Σ g[o, i−u+1, j−v+1]·w[o,c,u,v]
    const want = new Float64Array(3 * 25);
    for (let c = 0; c < 3; c++)
      for (let i = 0; i < 5; i++)
        for (let j = 0; j < 5; j++)
          for (let o = 0; o < 4; o++)
            for (let u = 0; u < 3; u++)
              for (let v = 0; v < 3; v++) {
                const p = i - u + 1;
                const q = j - v + 1;
                if (p < 0 || p >= 5 || q < 0 || q >= 5) continue;
                want[c * 25 + i * 5 + j]! +=
                  (gData[o * 25 + p * 5 + q] as number) * (wData[((o * 3 + c) * 3 + u) * 3 + v] as number);
              }
    // its derived copy would not follow a weight fed per run
    const fedSession = await Session.create(fed, { threads: 1 });
    await expect(fedSession.run({ g: gData, w: wData })).rejects.toThrow(/weight 'w' cannot be fed per run/);
    await fedSession.release();
    for (const c of [embedded, fed, trained]) {
      const session = await Session.create(c, { threads: 1 });
      const got = (await session.run({ g: gData })).dx!.data as Float32Array; // dx does not depend on x
      await session.release();
      expect(Math.max(...got.map((v, i) => Math.abs(v - (want[i] as number))))).toBeLessThan(1e-5);
    }
    expect(Math.max(...want.map(Math.abs))).toBeGreaterThan(0.5);
  });

  it("keeps a UNet's weights per session for a gradient graph unless told to share them", () => {
    // "auto": the gradient graph prepacked (initializers); forward graphs fed when over the inline limit
    expect(unetCompileOptions({}, "gradient").frozenWeights).toBe("initializers");
    expect(unetCompileOptions({}).frozenWeights).toBe("auto");
    expect(unetCompileOptions({ unetWeights: "shared" }, "gradient").frozenWeights).toBe("inputs");
    expect(unetCompileOptions({ unetWeights: "per-session" }).frozenWeights).toBe("initializers");
    expect(() => unetCompileOptions({ unetWeights: "both" as "auto" })).toThrow(/unetWeights must be .* got "both"/);
  });

  it("feeds trainable weights from their arrays, so in-place updates take effect", async () => {
    const data = Float32Array.of(1, 2);
    const w = G.weight("w", [2], data, { trainable: true });
    const x = G.input("x", [2], "float32");
    const session = await Session.create(G.compile({ y: G.reduceSum(G.mul(x, w)) }), { threads: 1 });
    expect(((await session.run({ x: Float32Array.of(1, 1) })).y!.data as Float32Array)[0]).toBe(3);
    data[0] = 10;
    expect(((await session.run({ x: Float32Array.of(1, 1) })).y!.data as Float32Array)[0]).toBe(12);
    await session.release();
  });

  it("reports missing, unknown and mis-shaped feeds with the expected shape", async () => {
    const x = G.input("x", [2, 3], "float32");
    const session = await Session.create(G.compile({ y: G.mul(x, 2) }, { name: "double" }), { threads: 1 });
    await expect(session.run({})).rejects.toThrow(/missing input 'x' float32\[2, 3\]/);
    await expect(session.run({ x: new Float32Array(6), z: new Float32Array(1) })).rejects.toThrow(/unknown input 'z'/);
    await expect(session.run({ x: { data: new Float32Array(5), shape: [5], dtype: "float32" } })).rejects.toThrow(
      /'x' must be float32\[2, 3\], got shape \[5\]/,
    );
    await expect(session.run({ x: new Float64Array(6) as unknown as Float32Array })).rejects.toThrow();
    await session.release();
  });

  it("names the failing node and what it computes when ORT fails", async () => {
    const table = G.weight("table", [4, 2], new Float32Array(8));
    const ids = G.input("ids", [2], "int64");
    const y = G.withScope("text_model.embeddings", () => G.gather(table, ids));
    const session = await Session.create(G.compile({ y }, { name: "lookup" }), { threads: 1 });
    await expect(session.run({ ids: BigInt64Array.of(1n, 99n) as unknown as Float32Array })).rejects.toThrow(
      /graph 'lookup'[\s\S]*Gather in 'text_model.embeddings'/,
    );
    await session.release();
  });

  it("computes gated outputs only when asked (one session for the forward alone and with its gradient)", async () => {
    const x = G.input("x", [3], "float64");
    const w = G.weight("w", [3], Float64Array.of(0.5, -1, 2));
    const y = G.reduceSum(G.mul(G.sin(x), w));
    const [gx] = G.grad(y, [x]);
    const compiled = G.compile({ y }, { gated: { when: "with_grad", outputs: { gx: gx! } } });
    expect(compiled.gatedFlops).toBeGreaterThan(0);
    const session = await Session.create(compiled, { threads: 1 });
    const x0 = Float64Array.of(0.1, 0.2, 0.3);
    const on = await session.run({ x: x0, with_grad: { data: Uint8Array.of(1), shape: [], dtype: "bool" } });
    const off = await session.run({ x: x0, with_grad: { data: Uint8Array.of(0), shape: [], dtype: "bool" } });
    const expectedY = 0.5 * Math.sin(0.1) - Math.sin(0.2) + 2 * Math.sin(0.3);
    expect((on.y!.data as Float64Array)[0]).toBeCloseTo(expectedY, 14);
    expect((off.y!.data as Float64Array)[0]).toBeCloseTo(expectedY, 14);
    const g = Array.from(on.gx!.data as Float64Array);
    [0.5 * Math.cos(0.1), -Math.cos(0.2), 2 * Math.cos(0.3)].forEach((v, i) => expect(g[i]).toBeCloseTo(v, 14));
    expect(Array.from(off.gx!.data as Float64Array)).toEqual([0, 0, 0]);
    await session.release();
  });

  it("refuses two different values with the same name", () => {
    const a = G.weight("w", [1], Float32Array.of(1));
    const b = G.weight("w", [1], Float32Array.of(2));
    expect(() => G.compile({ y: G.add(a, b) })).toThrow(/both named 'w'/);
  });
});
