/** The inversion file: round trip, float16 storage, and clear errors for other models and corrupt files. */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { type Inversion, readInversion, writeInversion } from "../../src/inversion/file.js";

function sample(): Inversion {
  const L = 77;
  const D = 8;
  return {
    prompt: "a red circle on a white background",
    settings: {
      method: "nti",
      steps: 3,
      guidance: 7.5,
      innerSteps: 10,
      lr: 0.01,
      earlyStop: 1e-5,
      earlyStopSlope: 2e-5,
    },
    model: "abc123",
    imageHash: "f00d",
    width: 64,
    height: 64,
    latentShape: [4, 16, 16],
    zT: Float32Array.from({ length: 4 * 16 * 16 }, (_, i) => Math.sin(i)),
    embeddings: [0, 1, 2].map((s) => Float32Array.from({ length: L * D }, (_, i) => Math.cos(i + s) / 3)),
    embeddingShape: [L, D],
    stats: { psnr: 31.5 },
  };
}

const tmp = () => path.join(fs.mkdtempSync(path.join(os.tmpdir(), "nulltext-inv-")), "x.nti");

describe("inversion file", () => {
  it("round-trips every field exactly in float32", () => {
    const file = tmp();
    const inv = sample();
    writeInversion(file, inv);
    const back = readInversion(file, "abc123");
    expect(back.prompt).toBe(inv.prompt);
    expect(back.settings).toEqual(inv.settings);
    expect(back.latentShape).toEqual([4, 16, 16]);
    expect(Array.from(back.zT)).toEqual(Array.from(inv.zT));
    expect(back.embeddings.map((e) => Array.from(e))).toEqual(inv.embeddings.map((e) => Array.from(e)));
    expect(back.stats).toEqual({ psnr: 31.5 });
  });

  it("stores embeddings as float16 on request (half the size, values within half precision)", () => {
    const a = tmp();
    const b = tmp();
    writeInversion(a, sample());
    writeInversion(b, sample(), { float16: true });
    const back = readInversion(b);
    const orig = sample().embeddings;
    for (let s = 0; s < 3; s++) {
      for (let i = 0; i < 77 * 8; i++) {
        const v = orig[s]?.[i] as number;
        expect(Math.abs((back.embeddings[s]?.[i] as number) - v)).toBeLessThanOrEqual(
          Math.abs(v) * 2 ** -11 + 2 ** -25,
        );
      }
    }
    expect(fs.statSync(b).size).toBeLessThan(fs.statSync(a).size - 77 * 8 * 3 * 2 + 200);
  });

  it("refuses a file made with another model, naming both fingerprints", () => {
    const file = tmp();
    writeInversion(file, sample());
    expect(() => readInversion(file, "other")).toThrow(
      /another model \(fingerprint abc123\); the loaded model is other/,
    );
  });

  it("reports truncated, non-inversion, tampered and NaN-holding files clearly", () => {
    const file = tmp();
    writeInversion(file, sample());
    const bytes = fs.readFileSync(file);
    fs.writeFileSync(file, bytes.subarray(0, bytes.length - 100));
    expect(() => readInversion(file)).toThrow(new RegExp(path.basename(file)));

    const other = tmp();
    fs.writeFileSync(other, "not a safetensors file at all");
    expect(() => readInversion(other)).toThrow(/x\.nti/);

    // A NaN in z_T (same size, so the container stays valid)
    const nan = tmp();
    const inv = sample();
    inv.zT[5] = Number.NaN;
    writeInversion(nan, inv);
    expect(() => readInversion(nan)).toThrow(/'z_T' holds NaN at index 5/);

    // Embedding count inconsistent with the method
    const wrong = tmp();
    writeInversion(wrong, { ...sample(), embeddings: sample().embeddings.slice(0, 2) });
    expect(() => readInversion(wrong)).toThrow(/2 embeddings for method nti with 3 steps \(expected 3\)/);
  });

  it("writes atomically: a failed write leaves the previous file intact", () => {
    const file = tmp();
    writeInversion(file, sample());
    const before = fs.readFileSync(file);
    const bad = sample();
    bad.latentShape = [4, 16, 15]; // the container refuses shape × dtype ≠ byte length
    expect(() => writeInversion(file, bad)).toThrow();
    expect(fs.readFileSync(file).equals(before)).toBe(true);
  });
});
