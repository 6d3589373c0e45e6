/**
 * The jobs on the parity model: an aborted inversion leaves no output, only its resume state, and a
 * rerun resumes it to the uninterrupted result; progress events are typed with an ETA; edits and
 * reconstructions write their files atomically, and a cancelled edit writes nothing.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readImage } from "../../src/image/index.js";
import { readInversion } from "../../src/inversion/file.js";
import { editJob, invertJob, type JobProgress, reconstructJob } from "../../src/jobs/index.js";
import { NullTextPipeline } from "../../src/pipeline.js";

const MODEL = fileURLToPath(new URL("../../../shared/parity/model", import.meta.url));
const dir = fs.mkdtempSync(path.join(os.tmpdir(), "nulltext-jobs-"));
const at = (name: string) => path.join(dir, name);
const settings = { method: "nti", steps: 6, innerSteps: 2 };
const prompt = "a photo of a cat";
let pipe: NullTextPipeline;
let image: { width: number; height: number; data: Uint8Array };

beforeAll(async () => {
  pipe = await NullTextPipeline.load(MODEL, { threads: 2 });
  const r = pipe.resolution;
  image = { width: r, height: r, data: new Uint8Array(r * r * 3).map((_, i) => (i * 7919) % 251) };
});
afterAll(async () => pipe.release());

describe("invert job", () => {
  it("stops on abort with only the resume state written, and resumes to the uninterrupted result", async () => {
    const full = await invertJob(pipe, { image, prompt, settings });
    const out = at("cat.nti");
    const abort = new AbortController();
    const events: JobProgress[] = [];
    await expect(
      invertJob(pipe, {
        image,
        prompt,
        settings,
        out,
        signal: abort.signal,
        onProgress: (e) => {
          events.push(e);
          if (e.phase === "nti" && e.step === 3) abort.abort();
        },
      }),
    ).rejects.toThrow(/aborted|cancel/i);
    expect(fs.existsSync(out)).toBe(false);
    expect(fs.existsSync(`${out}.json`)).toBe(false);
    expect(fs.existsSync(`${out}.resume`)).toBe(true);
    expect(events.map((e) => `${e.phase} ${e.step}`)).toEqual([
      "encode 1",
      ...[1, 2, 3, 4, 5, 6].map((s) => `ddim ${s}`),
      "nti 1",
      "nti 2",
      "nti 3",
    ]);
    for (const e of events) {
      expect(e.job).toBe("invert");
      expect(e.elapsed).toBeGreaterThanOrEqual(0);
      // the phase's average step so far times the steps left
      expect(e.eta).toBeCloseTo((e.elapsed / e.step) * (e.total - e.step), 6);
    }

    const notes: string[] = [];
    const resumed: JobProgress[] = [];
    const { report } = await invertJob(pipe, {
      image,
      prompt,
      settings,
      out,
      onNote: (n) => notes.push(n),
      onProgress: (e) => resumed.push(e),
    });
    expect(notes).toEqual([
      expect.stringMatching(/resuming an interrupted inversion from .*cat\.nti\.resume: 3 steps of nti done/),
    ]);
    expect(report.resumed).toBe(true);
    // no DDIM inversion again, the optimisation from step 4, then the reconstruction
    expect(resumed.filter((e) => e.phase !== "reconstruct").map((e) => `${e.phase} ${e.step}`)).toEqual([
      "nti 4",
      "nti 5",
      "nti 6",
    ]);
    expect(fs.existsSync(`${out}.resume`)).toBe(false);
    const written = readInversion(out, pipe.model.fingerprint);
    expect(Array.from(written.tensors.embeddings?.data ?? [])).toEqual(
      Array.from(full.inversion.tensors.embeddings?.data ?? [1]),
    );
    expect(Array.from(written.zT)).toEqual(Array.from(full.inversion.zT));
    const json = JSON.parse(fs.readFileSync(`${out}.json`, "utf8"));
    expect(json.settings).toEqual({ ...settings, guidance: 7.5, lr: 0.01, earlyStop: 1e-5, earlyStopSlope: 2e-5 });
    expect(json.reconstruction.psnr).toBeCloseTo(full.report.reconstruction.psnr, 6);
  });

  it("starts over, saying which setting changed, when the saved state is of other settings", async () => {
    const out = at("other.nti");
    const abort = new AbortController();
    await expect(
      invertJob(pipe, {
        image,
        prompt,
        settings,
        out,
        signal: abort.signal,
        onProgress: (e) => e.phase === "nti" && e.step === 2 && abort.abort(),
      }),
    ).rejects.toThrow();
    const notes: string[] = [];
    const { report } = await invertJob(pipe, {
      image,
      prompt,
      settings: { ...settings, lr: 0.02 },
      out,
      onNote: (n) => notes.push(n),
    });
    expect(notes).toEqual([
      `not resuming from ${out}.resume: the interrupted inversion differs in settings (lr 0.01 → 0.02); starting over`,
    ]);
    expect(report.resumed).toBe(false);
    expect(report.unet_evals).toBeGreaterThanOrEqual(6 + 6 * 2 + 6);
  });

  it("refuses bad settings before any work, and the pipeline stays usable", async () => {
    await expect(invertJob(pipe, { image, prompt, settings: { method: "npi", innerSteps: 3 } })).rejects.toThrow(
      /setting 'innerSteps' applies to nti, nti-global, nti-conditional, not to npi/,
    );
    await expect(invertJob(pipe, { image, prompt, settings: { steps: 0 } })).rejects.toThrow(
      /steps 0 is invalid \(an integer in 1\.\.1000\)/,
    );
    const { report } = await invertJob(pipe, { image, prompt, settings: { method: "ddim", steps: 4 } });
    expect(report.settings).toEqual({ method: "ddim", steps: 4, guidance: 7.5 });
    expect(report.vjps).toBe(0);
  });
});

describe("edit and reconstruct jobs", () => {
  it("write the edited images, the grid and the report; a cancelled edit writes nothing", async () => {
    const { inversion } = await invertJob(pipe, { image, prompt, settings: { method: "npi", steps: 4 } });
    const abort = new AbortController();
    abort.abort();
    await expect(
      editJob(pipe, { inversion, edits: [{ prompt: "a photo of a dog" }], out: at("never.png"), signal: abort.signal }),
    ).rejects.toThrow();
    expect(fs.readdirSync(dir).filter((f) => f.startsWith("never"))).toEqual([]);

    const events: JobProgress[] = [];
    const { images, report } = await editJob(pipe, {
      inversion,
      edits: [{ prompt: "a photo of a dog" }, { prompt: "a photo of a tiger" }],
      out: at("pets.png"),
      grid: true,
      onProgress: (e) => events.push(e),
    });
    expect(images).toHaveLength(2);
    expect(report.outputs).toEqual([at("pets-1.png"), at("pets-2.png")]);
    for (const [i, f] of report.outputs.entries()) {
      const png = await readImage(f);
      expect(Buffer.from(png.data).equals(Buffer.from(images[i]?.data ?? []))).toBe(true);
    }
    expect(fs.existsSync(at("pets.grid.png"))).toBe(true);
    expect(JSON.parse(fs.readFileSync(at("pets.png.json"), "utf8")).method).toBe("npi");
    // npi's ∅ is its prompt, so the source needs no ∅ row: [∅ ×2 edits, source, 2 edits] at each of 4 steps
    expect(report.unet_evals).toBe(4 * 5);
    expect(events.map((e) => e.step)).toEqual([1, 2, 3, 4]);
    expect(events.every((e) => e.job === "edit" && e.phase === "sample" && e.total === 4)).toBe(true);

    // the grid's left column is the source's reconstruction, decoded only when asked for
    const { source, images: same } = await editJob(pipe, { inversion, edits: [{ prompt: "a photo of a dog" }] });
    const { source: none, images: alone } = await editJob(pipe, {
      inversion,
      edits: [{ prompt: "a photo of a dog" }],
      reconstruction: false,
    });
    expect(none).toBeUndefined();
    expect(Buffer.from(alone[0]?.data ?? []).equals(Buffer.from(same[0]?.data ?? []))).toBe(true);
    expect(Buffer.from(alone[0]?.data ?? []).equals(Buffer.from(images[0]?.data ?? []))).toBe(true);
    const { image: rec } = await reconstructJob(pipe, { inversion, out: at("rec.png") });
    // npi's source branch is its reconstruction
    expect(Buffer.from(rec.data).equals(Buffer.from(source.data))).toBe(true);
    const png = await readImage(at("rec.png"));
    expect(Buffer.from(png.data).equals(Buffer.from(rec.data))).toBe(true);
    // nothing but the outputs is left in the folder (no temporary files)
    expect(fs.readdirSync(dir).filter((f) => f.includes("partial") || f.startsWith("."))).toEqual([]);
  });
});
