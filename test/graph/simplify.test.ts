/** The peephole pass compile runs before emission: values unchanged, fewer nodes. */
import { describe, expect, it } from "vitest";
import * as G from "../../src/graph/index.js";
import { simplify } from "../../src/graph/simplify.js";
import { evaluate } from "./harness.js";

const values = (n: number) => Float32Array.from({ length: n }, (_, i) => Math.sin(i * 1.3));

describe("simplify", () => {
  it("collapses Reshape of Reshape, and drops one back to the original shape", async () => {
    const x = G.input("x", [2, 3, 4]);
    const y = G.reshape(G.reshape(x, [6, 4]), [2, 12]);
    const back = G.mul(G.reshape(G.reshape(x, [24]), [2, 3, 4]), 2);
    expect(G.compile({ y }).nodeCount).toBe(1);
    expect(G.compile({ back }).nodeCount).toBe(1);
    const out = await evaluate({ y, back }, { x: values(24) });
    expect(Array.from(out.y!.data as Float32Array)).toEqual(Array.from(values(24)));
    expect(out.y!.shape).toEqual([2, 12]);
    expect(Array.from(out.back!.data as Float32Array)).toEqual(Array.from(values(24), (v) => Math.fround(v * 2)));
  });

  it("composes a Transpose of a Transpose, or removes the pair where they cancel", async () => {
    const x = G.input("x", [2, 3, 4]);
    const y = G.transpose(G.transpose(x, [1, 0, 2]), [2, 0, 1]);
    const cancel = G.add(G.transpose(G.transpose(x, [0, 2, 1]), [0, 2, 1]), 1);
    expect(G.compile({ y }).nodeCount).toBe(1);
    expect(G.compile({ cancel }).nodeCount).toBe(1);
    const out = await evaluate({ y, cancel }, { x: values(24) });
    // y[k, i, j] = x[j, i, k]
    const v = values(24);
    const expected: number[] = [];
    for (let k = 0; k < 4; k++)
      for (let i = 0; i < 3; i++) for (let j = 0; j < 2; j++) expected.push(v[j * 12 + i * 4 + k]!);
    expect(out.y!.shape).toEqual([4, 3, 2]);
    expect(Array.from(out.y!.data as Float32Array)).toEqual(expected);
    expect(Array.from(out.cancel!.data as Float32Array)).toEqual(Array.from(v, (a) => Math.fround(a + 1)));
  });

  it("keeps a Transpose another node also reads (ORT fuses one of the last two axes into a MatMul)", () => {
    const x = G.input("x", [2, 3, 4]);
    const t = G.transpose(x, [1, 0, 2]);
    const both = G.compile({ a: G.transpose(t, [0, 2, 1]), b: G.mul(t, 2) });
    expect(both.nodeCount).toBe(3);
  });

  it("drops multiplications by a constant 1 that do not broadcast", async () => {
    const x = G.input("x", [3]);
    const y = G.add(G.mul(G.mul(x, 1), G.constant(Float32Array.of(1, 1, 1), [3])), 1);
    const widened = G.mul(x, G.constant(Float32Array.of(1, 1, 1, 1, 1, 1), [2, 3]));
    expect(G.compile({ y }).nodeCount).toBe(1);
    expect(G.compile({ widened }).nodeCount).toBe(1);
    const out = await evaluate({ y, widened }, { x: Float32Array.of(1, 2, 3) });
    expect(Array.from(out.y!.data as Float32Array)).toEqual([2, 3, 4]);
    expect(out.widened!.shape).toEqual([2, 3]);
  });

  it("leaves tensors whose inputs did not change as they are", () => {
    const x = G.input("x", [4]);
    const y = G.sqrt(G.reshape(G.reshape(x, [2, 2]), [1, 4]));
    const z = G.exp(x);
    const map = simplify([y, z]);
    expect(map.get(z.id)).toBe(z);
    expect(map.get(y.id)).not.toBe(y);
    expect(map.get(y.id)?.inputs[0]?.inputs[0]).toBe(x);
  });
});
