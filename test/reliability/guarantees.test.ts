/**
 * The guarantees behind the CLI, at the library level where every front end gets them: output
 * locks (a live holder refused by pid, a dead one taken over and said so, two jobs of one process
 * refused), outputs that are inputs under another name, the model fingerprint over every tensor's
 * bytes (and its cache), the resume mismatch in words, file-system errors in words, the threads
 * bound, and the inversion file's model hint and older versions.
 */
import { spawn, spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import {
  decodeInversion,
  encodeInversion,
  type Inversion,
  ModelMismatchError,
  readInversion,
  writeInversion,
} from "../../src/inversion/file.js";
import { checkOutputs, lockOutput, resumeMismatch, withOutputs, writeOutput } from "../../src/jobs/index.js";
import { loadStableDiffusion } from "../../src/models/loader.js";
import type { InversionResume, NullTextPipeline } from "../../src/pipeline.js";
import { NullTextPipeline as Pipeline } from "../../src/pipeline.js";
import { fileError, type Platform, setPlatform } from "../../src/platform/platform.js";
import { createWebPlatform } from "../../src/platform/web.js";
import { copyModel, perturbTensors, withHeader } from "./corpus.js";

const PARITY = fileURLToPath(new URL("../../../shared/parity/model", import.meta.url));
const root = fs.mkdtempSync(path.join(os.tmpdir(), "nulltext-guarantees-"));
const cache = path.join(root, ".cache");
process.env.NULLTEXT_CACHE_DIR = cache;
const at = (name: string) => path.join(root, name);
const sleeper = spawn("sleep", ["120"], { stdio: "ignore" });

afterAll(() => {
  sleeper.kill();
});

describe("output locks", () => {
  it("refuses a lock held by a running process, naming its pid, and leaves it as it was", () => {
    const out = at("held.nti");
    const record = JSON.stringify({ pid: sleeper.pid });
    fs.writeFileSync(`${out}.lock`, record);
    expect(() => lockOutput(out)).toThrow(
      `${out} is being written by another nulltext run (pid ${sleeper.pid}, lock ${out}.lock); wait for it to finish or stop it`,
    );
    expect(fs.readFileSync(`${out}.lock`, "utf8")).toBe(record);
  });

  it("takes over a lock whose process is gone, and says so", () => {
    const out = at("stale.nti");
    const dead = spawnSync("true").pid;
    fs.writeFileSync(`${out}.lock`, JSON.stringify({ pid: dead }));
    const notes: string[] = [];
    const lock = lockOutput(out, (n) => notes.push(n));
    expect(notes).toEqual([`taking over the lock ${out}.lock of pid ${dead}, which is no longer running`]);
    expect(JSON.parse(fs.readFileSync(`${out}.lock`, "utf8")).pid).toBe(process.pid);
    lock.release();
    expect(fs.existsSync(`${out}.lock`)).toBe(false);
  });

  it("refuses a second job of this process on the same output; the first keeps its lock", async () => {
    const out = at("twice.png");
    let release: () => void = () => {};
    const first = withOutputs([out], [], undefined, () => new Promise<void>((r) => (release = r)));
    await expect(withOutputs([out], [], undefined, async () => {})).rejects.toThrow(
      `${out} is being written by another job of this process (pid ${process.pid}); wait for it to finish`,
    );
    expect(fs.existsSync(`${out}.lock`)).toBe(true);
    release();
    await first;
    expect(fs.existsSync(`${out}.lock`)).toBe(false);
  });

  it("does not remove a lock another run took over meanwhile", () => {
    const out = at("taken.nti");
    const lock = lockOutput(out);
    fs.writeFileSync(`${out}.lock`, JSON.stringify({ pid: sleeper.pid }));
    lock.release();
    expect(JSON.parse(fs.readFileSync(`${out}.lock`, "utf8")).pid).toBe(sleeper.pid);
  });
});

describe("on the browser platform (in-memory files, one process)", () => {
  it("checks outputs and takes locks the same way", () => {
    const web = createWebPlatform({ ort: {} as never, files: { "/in/photo.png": new Uint8Array([1, 2, 3]) } });
    const previous = setPlatform(web);
    try {
      expect(() => checkOutputs(["/in/photo.png"], ["/in/photo.png"])).toThrow(/is the input \/in\/photo\.png/);
      expect(() => checkOutputs(["/in"], [])).toThrow("output /in is a folder; refusing to replace it");
      expect(() => checkOutputs(["/nowhere/x.png"], [])).toThrow(
        "output /nowhere/x.png: its folder /nowhere does not exist",
      );
      const lock = lockOutput("/in/out.png");
      expect(() => lockOutput("/in/out.png")).toThrow(/another job of this process \(pid 1\)/);
      lock.release();
      lockOutput("/in/out.png").release();
      expect(web.stat("/in/out.png.lock")).toBeUndefined();
    } finally {
      setPlatform(previous as Platform);
    }
  });
});

describe("atomic writes", () => {
  it("replace a link left at the temporary name instead of writing through it", () => {
    fs.writeFileSync(at("victim"), "keep");
    fs.symlinkSync(at("victim"), at("out.png.partial"));
    writeOutput(at("out.png"), "new");
    expect(fs.readFileSync(at("victim"), "utf8")).toBe("keep");
    expect(fs.readFileSync(at("out.png"), "utf8")).toBe("new");
    expect(fs.existsSync(at("out.png.partial"))).toBe(false);
  });

  it("refuse at write time an output that became a link after the checks", () => {
    fs.writeFileSync(at("real.png"), "real");
    fs.symlinkSync(at("real.png"), at("late.png"));
    expect(() => writeOutput(at("late.png"), "new")).toThrow(
      `output ${at("late.png")} is a symbolic link (nulltext neither writes through links nor replaces them; give the real path); refusing to replace it`,
    );
    expect(fs.readFileSync(at("real.png"), "utf8")).toBe("real");
  });
});

describe("outputs that are inputs", () => {
  it("recognises an input under another spelling or through a symlink", () => {
    fs.writeFileSync(at("in.png"), "image");
    fs.symlinkSync(at("in.png"), at("alias.png"));
    expect(() => checkOutputs([at("in.png")], [at("alias.png")])).toThrow(
      `output ${at("in.png")} is the input ${at("alias.png")} (the same file); writing it would destroy the input: choose another output path`,
    );
    expect(() => checkOutputs([`${root}/./in.png`], [at("in.png")])).toThrow(/is the input/);
    fs.mkdirSync(at("model/unet"), { recursive: true });
    fs.symlinkSync(at("model"), at("model-link"));
    expect(() => checkOutputs([at("model-link/unet/new.png")], [at("model")])).toThrow(
      `output ${at("model-link/unet/new.png")} is inside the input folder ${fs.realpathSync(at("model"))}; writing there could replace its files: choose another output path`,
    );
    expect(fs.readFileSync(at("in.png"), "utf8")).toBe("image");
  });
});

describe("the model fingerprint", () => {
  it("covers every tensor's bytes: a fine-tuned copy differs, an identical copy does not; its inversions are refused naming the model", async () => {
    const original = await loadStableDiffusion(PARITY);
    const same = await loadStableDiffusion(copyModel(PARITY, at("same")));
    expect(same.fingerprint).toBe(original.fingerprint);
    const tunedDir = copyModel(PARITY, at("tuned"));
    const changed = perturbTensors(path.join(tunedDir, "unet", "diffusion_pytorch_model.safetensors"), /^down_blocks/);
    expect(changed).toBeGreaterThan(10);
    const tuned = await loadStableDiffusion(tunedDir);
    expect(tuned.fingerprint).not.toBe(original.fingerprint);
    expect(tuned.fingerprint).toMatch(/^[0-9a-f]{32}$/);

    const file = at("made-with-original.nti");
    writeInversion(file, sample(original.fingerprint, PARITY));
    expect(() => readInversion(file, tuned.fingerprint)).toThrow(ModelMismatchError);
    expect(() => readInversion(file, tuned.fingerprint)).toThrow(
      `${file}: this inversion was made with another model (fingerprint ${original.fingerprint}, loaded from '${PARITY}'); the loaded model is ${tuned.fingerprint}. Load '${PARITY}', or invert the image again with this one.`,
    );
  });

  it("is cached by path, size, mtime and inode: a second load reads the cached digest, a touched file is hashed again", async () => {
    const dir = copyModel(PARITY, at("cached"));
    const first = (await loadStableDiffusion(dir)).fingerprint;
    const entries = fs.readdirSync(path.join(cache, "fingerprints"));
    const unetEntry = entries
      .map((e) => path.join(cache, "fingerprints", e))
      .find((e) => fs.readFileSync(e, "utf8").includes(`${dir}/unet/`)) as string;
    const stored = JSON.parse(fs.readFileSync(unetEntry, "utf8"));
    expect(stored.key).toMatch(/size=\d+ mtime=[\d.]+ dev=\d+ ino=\d+$/);
    // A digest planted under the right key is used as is: the weights were not read again.
    fs.writeFileSync(unetEntry, JSON.stringify({ ...stored, digest: "planted" }));
    expect((await loadStableDiffusion(dir)).fingerprint).not.toBe(first);
    // A new mtime is another key: hashed again, the true fingerprint back.
    const unet = path.join(dir, "unet", "diffusion_pytorch_model.safetensors");
    const later = new Date(Date.now() + 5000);
    fs.utimesSync(unet, later, later);
    expect((await loadStableDiffusion(dir)).fingerprint).toBe(first);
  });
});

describe("resume state of another run", () => {
  it("names which of image, prompt, settings and model changed", async () => {
    const pipe = { model: { fingerprint: "model-b" } } as unknown as NullTextPipeline;
    const image = { width: 2, height: 1, data: new Uint8Array(6).fill(7) };
    const job = { image, prompt: "a cat", settings: { method: "nti", steps: 4, lr: 0.02 } };
    const saved: InversionResume = {
      settings: {
        method: "nti",
        steps: 4,
        guidance: 7.5,
        innerSteps: 10,
        lr: 0.01,
        earlyStop: 1e-5,
        earlyStopSlope: 2e-5,
      },
      prompt: "a dog",
      imageHash: "not this image",
      model: "model-a",
    };
    expect(await resumeMismatch(pipe, job, saved)).toEqual([
      "image",
      'prompt ("a dog")',
      "settings (lr 0.01 → 0.02)",
      "model (fingerprint model-a)",
    ]);
  });
});

describe("messages and bounds", () => {
  it("says what a file-system error means, at which path, and what was expected there", () => {
    const eacces = Object.assign(new Error("EACCES: permission denied, open 'x'"), { code: "EACCES" });
    expect(fileError(eacces, "/m/unet/w.safetensors", "a safetensors file").message).toBe(
      "/m/unet/w.safetensors: permission denied (EACCES); expected a safetensors file there",
    );
    const plain = new Error("not a file-system error");
    expect(fileError(plain, "/x", "y")).toBe(plain);
  });

  it("refuses threads outside 1..4× the CPUs before loading the model", async () => {
    const cpus = os.availableParallelism();
    await expect(Pipeline.load("/no/such/model", { threads: 100000 })).rejects.toThrow(
      `threads 100000: expected an integer in 1..${4 * cpus} (4× the ${cpus} CPUs)`,
    );
    await expect(Pipeline.load("/no/such/model", { threads: 0 })).rejects.toThrow(/threads 0: expected an integer/);
  });

  it("keeps the model's source in the inversion file, and still reads version 2 files (no checksum)", () => {
    const inv = sample("f".repeat(32), "/models/sd");
    expect(decodeInversion(encodeInversion(inv)).modelSource).toBe("/models/sd");
    const back = decodeInversion(withHeader(inv, JSON.stringify(v2Header(inv))), "v2.nti");
    expect(back.prompt).toBe(inv.prompt);
    expect(back.modelSource).toBeUndefined();
  });
});

function sample(model: string, modelSource: string): Inversion {
  return {
    prompt: "a photo of a cat",
    settings: { method: "ddim", steps: 2, guidance: 7.5 },
    model,
    modelSource,
    imageHash: "00",
    width: 128,
    height: 128,
    latentShape: [4, 16, 16],
    zT: Float32Array.from({ length: 4 * 16 * 16 }, (_, i) => Math.cos(i)),
    tensors: {},
    embeddingShape: [77, 32],
  };
}

/** The header nulltext wrote in format version 2: no model hint, no checksum. */
function v2Header(inv: Inversion): Record<string, unknown> {
  return {
    format: "nulltext-inversion",
    version: 2,
    prompt: inv.prompt,
    settings: inv.settings,
    model: inv.model,
    imageHash: inv.imageHash,
    width: inv.width,
    height: inv.height,
    latentShape: inv.latentShape,
    embeddingShape: inv.embeddingShape,
    tensors: [],
  };
}
