/** The inversion file: round trip, float16 storage, and clear errors for other models and corrupt files. */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import {
  decodeInversion,
  encodeInversion,
  type Inversion,
  readInversion,
  writeInversion,
} from "../../src/inversion/file.js";
import { stack, unstack } from "../../src/inversion/method.js";
import { writeSafetensors } from "../../src/models/safetensors.js";

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
    tensors: {
      embeddings: stack(
        [0, 1, 2].map((s) => Float32Array.from({ length: L * D }, (_, i) => Math.cos(i + s) / 3)),
        [L, D],
      ),
    },
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
    expect(back.tensors.embeddings?.shape).toEqual([3, 77, 8]);
    expect(Array.from(back.tensors.embeddings?.data ?? [])).toEqual(Array.from(inv.tensors.embeddings?.data ?? [1]));
    expect(back.stats).toEqual({ psnr: 31.5 });
  });

  it("round-trips through bytes in memory, equal to the file's bytes but for the creation time", () => {
    const file = tmp();
    const inv = sample();
    writeInversion(file, inv);
    const bytes = encodeInversion(inv);
    expect(bytes.length).toBe(fs.statSync(file).size);
    const back = decodeInversion(bytes, "upload.nti", "abc123");
    expect(back.settings).toEqual(inv.settings);
    expect(Array.from(back.zT)).toEqual(Array.from(inv.zT));
    expect(Array.from(back.tensors.embeddings?.data ?? [])).toEqual(Array.from(inv.tensors.embeddings?.data ?? [1]));
    expect(() => decodeInversion(bytes.subarray(0, 100), "upload.nti")).toThrow(/upload\.nti/);
    expect(() => decodeInversion(bytes, "upload.nti", "other")).toThrow(
      /upload\.nti: this inversion was made with another model/,
    );
  });

  it("stores embeddings as float16 on request (half the size, values within half precision)", () => {
    const a = tmp();
    const b = tmp();
    writeInversion(a, sample());
    writeInversion(b, sample(), { float16: true });
    const back = readInversion(b);
    const orig = unstack(sample().tensors.embeddings as { shape: number[]; data: Float32Array });
    const half = unstack(back.tensors.embeddings as { shape: number[]; data: Float32Array });
    for (let s = 0; s < 3; s++) {
      for (let i = 0; i < 77 * 8; i++) {
        const v = orig[s]?.[i] as number;
        expect(Math.abs((half[s]?.[i] as number) - v)).toBeLessThanOrEqual(Math.abs(v) * 2 ** -11 + 2 ** -25);
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
    const two = sample().tensors.embeddings as { shape: number[]; data: Float32Array };
    writeInversion(wrong, {
      ...sample(),
      tensors: { embeddings: { shape: [2, 77, 8], data: two.data.slice(0, 2 * 77 * 8) } },
    });
    expect(() => readInversion(wrong)).toThrow(/method nti: 'embeddings' has shape \[2,77,8\], expected \[3,77,8\]/);

    // A header that parses but is not an inversion's, and one without settings
    for (const [header, why] of [
      ["null", /corrupt inversion header \(not an object\)/],
      [JSON.stringify({ ...v1Header(), version: 2, settings: undefined, tensors: [] }), /'settings' is undefined/],
      [
        JSON.stringify({ ...v1Header(), version: 2, tensors: [], settings: { ...sample().settings, method: "magic" } }),
        /unknown inversion method "magic"/,
      ],
    ] as const) {
      const bad = tmp();
      writeSafetensors(bad, { z_T: { dtype: "F32", shape: [4, 16, 16], data: sample().zT } }, { nulltext: header });
      expect(() => readInversion(bad)).toThrow(why);
    }
  });

  it("reads files of format version 1 (embeddings stored as 'embeddings')", () => {
    const file = tmp();
    const inv = sample();
    const embeddings = inv.tensors.embeddings as { shape: number[]; data: Float32Array };
    writeSafetensors(
      file,
      {
        z_T: { dtype: "F32", shape: [4, 16, 16], data: inv.zT },
        embeddings: { dtype: "F32", shape: embeddings.shape, data: embeddings.data },
      },
      { nulltext: JSON.stringify(v1Header()) },
    );
    const back = readInversion(file, "abc123");
    expect(back.settings).toEqual(inv.settings);
    expect(back.tensors.embeddings?.shape).toEqual([3, 77, 8]);
    expect(Array.from(back.tensors.embeddings?.data ?? [])).toEqual(Array.from(embeddings.data));

    // version 1 files of methods without embeddings (npi, ddim) stored none
    const npi = tmp();
    writeSafetensors(
      npi,
      { z_T: { dtype: "F32", shape: [4, 16, 16], data: inv.zT } },
      { nulltext: JSON.stringify({ ...v1Header(), settings: { ...inv.settings, method: "npi" }, embeddingCount: 0 }) },
    );
    expect(readInversion(npi).tensors).toEqual({});
  });

  it("round-trips a method without tensors of its own, and refuses tensors a method does not store the right way", () => {
    const file = tmp();
    writeInversion(file, { ...sample(), settings: { method: "ddim", steps: 3, guidance: 7.5 }, tensors: {} });
    const back = readInversion(file);
    expect(back.settings).toEqual({ method: "ddim", steps: 3, guidance: 7.5 });
    expect(back.tensors).toEqual({});
    const missing = tmp();
    writeInversion(missing, { ...sample(), tensors: {} });
    expect(() => readInversion(missing)).toThrow(/method nti stores 'embeddings', which is missing/);
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

/** The header nulltext 0.1 wrote (format version 1). */
function v1Header() {
  const inv = sample();
  return {
    format: "nulltext-inversion",
    version: 1,
    prompt: inv.prompt,
    settings: inv.settings,
    model: inv.model,
    imageHash: inv.imageHash,
    width: 64,
    height: 64,
    latentShape: [4, 16, 16],
    embeddingShape: [77, 8],
    embeddingCount: 3,
    created: "2026-11-25T00:00:00.000Z",
  };
}
