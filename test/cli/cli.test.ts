/**
 * The command line on the parity model: a full invert → edit → reconstruct round, and every kind of
 * bad input answered with a clear error that names the offending value, without touching outputs
 * that already exist.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { main } from "../../src/cli/main.js";
import { readImage, writePng } from "../../src/image/index.js";
import { readInversion, writeInversion } from "../../src/inversion/file.js";
import { NullTextPipeline } from "../../src/pipeline.js";

const PARITY = fileURLToPath(new URL("../../../shared/parity/model", import.meta.url));
const dir = fs.mkdtempSync(path.join(os.tmpdir(), "nulltext-cli-"));
const at = (name: string) => path.join(dir, name);
const common = ["--model", PARITY, "--threads", "2"];

async function run(...args: string[]): Promise<{ rc: number; err: string; out: string }> {
  const err: string[] = [];
  const out: string[] = [];
  const e = vi.spyOn(console, "error").mockImplementation((...a) => {
    err.push(a.join(" "));
  });
  const o = vi.spyOn(console, "log").mockImplementation((...a) => {
    out.push(a.join(" "));
  });
  const stderr = vi.spyOn(process.stderr, "write").mockImplementation(() => true);
  try {
    return { rc: await main(args), err: err.join("\n"), out: out.join("\n") };
  } finally {
    e.mockRestore();
    o.mockRestore();
    stderr.mockRestore();
  }
}

beforeAll(async () => {
  const size = 100;
  const data = new Uint8Array(size * size * 3).map((_, i) => (i * 31) % 256);
  await writePng(at("photo.png"), { width: size, height: size, data });
});

afterEach(() => vi.restoreAllMocks());

describe("nulltext CLI", () => {
  it("inverts, reports, edits and reconstructs", async () => {
    const inv = at("photo.nti");
    const r = await run(
      "invert",
      at("photo.png"),
      "--prompt",
      "a photo of a cat",
      "--out",
      inv,
      "--steps",
      "4",
      "--inner-steps",
      "2",
      "--grid",
      ...common,
    );
    expect(r.err).toBe("");
    expect(r.rc).toBe(0);
    const report = JSON.parse(fs.readFileSync(`${inv}.json`, "utf8"));
    for (const k of ["psnr", "ssim", "mse"]) expect(Number.isFinite(report.reconstruction[k])).toBe(true);
    expect(report.unet_evals).toBeGreaterThanOrEqual(4 + 4 * 2 + 4);
    expect(Object.keys(report.seconds)).toEqual(
      expect.arrayContaining(["ddim_inversion", "nti", "reconstruct", "total"]),
    );
    expect(fs.existsSync(`${inv}.grid.png`)).toBe(true);
    // the optimisation trace: one entry per step with the iterations run (2 at most here) and the losses
    expect(report.trace.map((t: { step: number }) => t.step)).toEqual([1, 2, 3, 4]);
    for (const [i, t] of report.trace.entries()) {
      expect(t.iterations === 2 || (t.iterations === 1 && t.early_stop)).toBe(true);
      expect(t.early_stop).toBe(t.last_loss < 1e-5 + 2e-5 * i);
      expect(t.last_loss).toBeGreaterThan(0);
    }
    expect(fs.existsSync(`${inv}.resume`)).toBe(false);
    expect(readInversion(inv).tensors.embeddings?.shape).toEqual([4, 77, 32]);

    const e = await run(
      "edit",
      inv,
      "--prompt",
      "a photo of a dog",
      "--blend",
      "cat:dog",
      "--reweight",
      "dog=2",
      "--null-steps",
      "0.5",
      "--out",
      at("dog.png"),
      "--grid",
      ...common,
    );
    expect(e.rc).toBe(0);
    expect(fs.existsSync(at("dog.png"))).toBe(true);
    expect(JSON.parse(fs.readFileSync(at("dog.png.json"), "utf8")).options.null_steps).toBe(0.5);
    expect(fs.existsSync(at("dog.grid.png"))).toBe(true);
    const rec = await run("reconstruct", inv, "--out", at("rec.png"), ...common);
    expect(rec.rc).toBe(0);
    expect(fs.existsSync(at("rec.png"))).toBe(true);
    // The UNet weights fed from one shared copy give the same picture as the default for this small
    // model (held per session in ORT's own layouts).
    const own = await run("reconstruct", inv, "--out", at("rec-own.png"), "--unet-weights", "shared", ...common);
    expect(own.rc).toBe(0);
    const [a, b] = [await readImage(at("rec.png")), await readImage(at("rec-own.png"))];
    expect(a.data.length).toBe(b.data.length);
    expect(a.data.reduce((m, v, i) => Math.max(m, Math.abs(v - (b.data[i] as number))), 0)).toBeLessThanOrEqual(1);
  });

  it("names unreadable, empty and non-image files", async () => {
    fs.writeFileSync(at("empty.png"), "");
    fs.writeFileSync(at("text.png"), "hello, not an image");
    fs.writeFileSync(at("truncated.png"), fs.readFileSync(at("photo.png")).subarray(0, 60));
    for (const [file, why] of [
      ["missing.png", /missing\.png/],
      ["empty.png", /empty\.png.*empty/i],
      ["text.png", /text\.png/],
      ["truncated.png", /truncated\.png/],
    ] as const) {
      const r = await run("invert", at(file), "--prompt", "x", "--out", at("never.nti"), ...common);
      expect(r.rc).toBe(1);
      expect(r.err).toMatch(why);
    }
    expect(fs.existsSync(at("never.nti"))).toBe(false);
  });

  it("refuses an oversized prompt instead of truncating it, leaving an existing output intact", async () => {
    fs.writeFileSync(at("keep.nti"), "previous");
    const long = Array.from({ length: 90 }, (_, i) => `word${i}`).join(" ");
    const r = await run("invert", at("photo.png"), "--prompt", long, "--out", at("keep.nti"), ...common);
    expect(r.rc).toBe(1);
    expect(r.err).toMatch(/prompt has \d+ tokens; the text encoder takes at most 75/);
    expect(fs.readFileSync(at("keep.nti"), "utf8")).toBe("previous");
  });

  it("explains missing model parts, bad options and usage", async () => {
    const broken = at("broken-model");
    fs.cpSync(PARITY, broken, { recursive: true });
    fs.rmSync(path.join(broken, "unet", "diffusion_pytorch_model.safetensors"));
    const r = await run("invert", at("photo.png"), "--prompt", "x", "--out", at("x.nti"), "--model", broken);
    expect(r.rc).toBe(1);
    expect(r.err).toMatch(/no diffusion_pytorch_model\.safetensors in .*broken-model\/unet/);

    expect((await run("invert", at("photo.png"), "--out", at("x.nti"), ...common)).err).toMatch(/needs --prompt/);
    expect(
      (await run("invert", at("photo.png"), "--prompt", "x", "--out", at("x.nti"), "--method", "magic", ...common)).err,
    ).toMatch(/unknown inversion method "magic" \(methods: nti, npi, ddim, nti-global, nti-conditional(, [\w-]+)*\)/);
    // A setting of another method is named as such, before the model is loaded.
    const lr = await run(
      "invert",
      at("photo.png"),
      "--prompt",
      "x",
      "--out",
      at("x.nti"),
      "--method",
      "npi",
      "--lr",
      "0.1",
    );
    expect(lr.rc).toBe(2);
    expect(lr.err).toMatch(/setting 'lr' applies to nti, nti-global, nti-conditional, not to npi/);
    expect(
      (await run("invert", at("photo.png"), "--prompt", "x", "--out", at("x.nti"), "--inner-steps", "0", ...common))
        .err,
    ).toMatch(/innerSteps 0 is invalid \(an integer in 1\.\.1000\)/);
    expect(
      (await run("invert", at("photo.png"), "--prompt", "x", "--out", "/no/such/dir/x.nti", ...common)).err,
    ).toMatch(/does not exist/);
    expect((await run("frobnicate")).rc).toBe(2);
    expect((await run("reconstruct", at("photo.nti"), "--out", at("z.png"), "--unet-weights", "fast")).err).toMatch(
      /--unet-weights fast: expected auto, shared or per-session/,
    );
    const editError = async (...flags: string[]) =>
      (await run("edit", at("photo.nti"), "--prompt", "a photo of a dog", ...flags, "--out", at("y.png"), ...common))
        .err;
    expect(await editError("--reweight", "dog:2")).toMatch(/expected WORD=SCALE/);
    expect(await editError("--null-steps", "2")).toMatch(/--null-steps 2 is not valid/);
    expect(fs.existsSync(at("y.png"))).toBe(false);
  });

  it("refuses corrupt inversion files and inversions made with another model", async () => {
    const inv = at("photo.nti");
    const bytes = fs.readFileSync(inv);
    fs.writeFileSync(at("cut.nti"), bytes.subarray(0, bytes.length - 50));
    const r = await run("edit", at("cut.nti"), "--prompt", "a photo of a dog", "--out", at("z.png"), ...common);
    expect(r.rc).toBe(1);
    expect(r.err).toMatch(/cut\.nti/);
    const other = { ...readInversion(inv), model: "0123456789abcdef" };
    writeInversion(at("other.nti"), other);
    const o = await run("reconstruct", at("other.nti"), "--out", at("z.png"), ...common);
    expect(o.rc).toBe(1);
    expect(o.err).toMatch(/another model/);
    expect(fs.existsSync(at("z.png"))).toBe(false);
  });

  it("refuses images of the wrong size at the API", async () => {
    const pipe = await NullTextPipeline.load(PARITY, { threads: 1 });
    await expect(pipe.invert({ width: 100, height: 100, data: new Uint8Array(30000) }, "x")).rejects.toThrow(
      /image is 100×100; this model works at 128×128/,
    );
    await pipe.release();
  });
});
