/**
 * The web app's API on an ephemeral port against the built-in model: npi and nti inversions (the
 * reconstruction's PSNR recomputed from the served PNGs), a colour swap checked by the scene checker,
 * per-token attention maps, a cancelled inversion resumed by resubmitting it, a restart that finds
 * the inversions and recovers the jobs, and every bad input: sizes, pixels, types, fields, paths,
 * origins, hosts and tokens.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import sharp from "sharp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { psnr } from "../../src/image/index.js";
import { NullTextPipeline } from "../../src/pipeline.js";
import { checkPrompt } from "../../src/scenes/index.js";
import { type RunningServer, startServer } from "../../src/server/app.js";
import { decodePng, demoScene, followJob, MODEL, pngBytes, rawRequest } from "./helpers.js";

const data = fs.mkdtempSync(path.join(os.tmpdir(), "nulltext-serve-"));
const demo = demoScene();
let pipe: NullTextPipeline;
let server: RunningServer;
let base: string;
let png: Uint8Array;
const LIMIT = 300_000;

const start = () => startServer({ pipe, data, port: 0, maxUploadBytes: LIMIT, maxPixels: 4_000_000 });

beforeAll(async () => {
  pipe = await NullTextPipeline.load(MODEL, { threads: 2 });
  server = await start();
  base = server.url;
  png = await pngBytes(demo.image);
}, 60_000);
afterAll(async () => {
  await server?.close();
  await pipe?.release();
});

function form(fields: Record<string, string>, image: Uint8Array | undefined = png, type = "image/png"): FormData {
  const f = new FormData();
  if (image) f.set("image", new Blob([image], { type }), "scene.png");
  for (const [k, v] of Object.entries(fields)) f.set(k, v);
  return f;
}
const post = (route: string, body: FormData | string, headers: Record<string, string> = {}) =>
  fetch(`${base}${route}`, {
    method: "POST",
    body,
    headers: typeof body === "string" ? { "content-type": "application/json", ...headers } : headers,
  });
const getJson = async (route: string) => {
  const res = await fetch(`${base}${route}`);
  return { status: res.status, body: await res.json() };
};
async function expectError(res: Response, status: number, pattern: RegExp): Promise<void> {
  const body = await res.json();
  expect({ status: res.status, error: body.error }).toMatchObject({ status, error: expect.stringMatching(pattern) });
}

let npiId: string;

describe("inversions, edits and attention maps", () => {
  it("reports the model and each method with a time estimate from the measured UNet", async () => {
    const { body } = await getJson("api/health");
    expect(body.resolution).toBe(64);
    expect(body.seconds_per_unet_eval).toBeGreaterThan(0);
    const byId = Object.fromEntries(body.methods.map((m: { id: string }) => [m.id, m]));
    expect(Object.keys(byId)).toEqual(expect.arrayContaining(["nti", "npi", "ddim"]));
    // nti at 50 steps × 10 inner steps: 50 + 50·31 + 50 + 100 evaluations; npi 200
    expect(byId.nti.unet_evals).toBe(1750);
    expect(byId.npi.unet_evals).toBe(200);
    expect(byId.nti.estimate_seconds).toBeCloseTo(1750 * body.seconds_per_unet_eval, 9);
    const doc = (await getJson("api/openapi.json")).body;
    expect(doc.openapi).toBe("3.1.0");
    for (const p of ["/api/health", "/api/inversions", "/api/jobs/{id}", "/api/jobs/{id}/events", "/api/edits/{id}"])
      expect(doc.paths[p], p).toBeDefined();
  });

  it("inverts with npi: the stored PSNR is the served reconstruction's against the served input", async () => {
    const res = await post("api/inversions", form({ prompt: demo.prompt, method: "npi", steps: "10" }));
    expect(res.status).toBe(202);
    const { id, job } = await res.json();
    npiId = id;
    const run = await followJob(base, job);
    expect({ state: run.state, error: run.error }).toEqual({ state: "done", error: undefined });
    const phases = [...new Set(run.events.map((e) => e.progress?.phase).filter(Boolean))];
    expect(phases).toEqual(["encode", "ddim", "npi", "reconstruct", "attention"].filter((p) => phases.includes(p)));
    expect(phases).toContain("attention");
    const { body: inv } = await getJson(`api/inversions/${id}`);
    expect(inv).toMatchObject({ id, prompt: demo.prompt, method: "npi" });
    const input = await decodePng(
      new Uint8Array(await (await fetch(`${base}${inv.urls.input.slice(1)}`)).arrayBuffer()),
    );
    const rec = await decodePng(
      new Uint8Array(await (await fetch(`${base}${inv.urls.reconstruction.slice(1)}`)).arrayBuffer()),
    );
    expect(input.data).toEqual(demo.image.data);
    expect(inv.psnr).toBeCloseTo(psnr(input, rec), 6);
    expect(inv.psnr).toBeGreaterThan(20);
  }, 60_000);

  it("gives each token's cross-attention map; the shape word attends to the object more than to the background", async () => {
    const { body } = await getJson(`api/inversions/${npiId}/attention`);
    expect(body.resolution).toBe(8);
    expect(body.steps).toBe(10);
    const [source] = body.prompts;
    expect(source.prompt).toBe(demo.prompt);
    expect(source.tokens.map((t: { text: string }) => t.text).join(" ")).toBe(demo.prompt);
    const shape = source.tokens.find((t: { text: string }) => t.text === demo.shape);
    expect(shape.map).toHaveLength(64);
    expect(Math.max(...shape.map)).toBe(1);
    // mean of the map inside the object's 8×8 cells against outside, the object from the rendered scene
    const obj = demo.scene.objects[0] as { cx: number; cy: number; size: number };
    let inside = 0;
    let nIn = 0;
    let outside = 0;
    let nOut = 0;
    shape.map.forEach((v: number, p: number) => {
      const x = ((p % 8) + 0.5) / 8;
      const y = (Math.floor(p / 8) + 0.5) / 8;
      if (Math.hypot(x - obj.cx, y - obj.cy) < obj.size / 2) {
        inside += v;
        nIn++;
      } else {
        outside += v;
        nOut++;
      }
    });
    expect(nIn).toBeGreaterThan(0);
    expect(inside / nIn).toBeGreaterThan(1.5 * (outside / nOut));
  });

  it("makes a colour swap with local blend on the shape word; the scene checker reads the new colour", async () => {
    const res = await post(
      `api/inversions/${npiId}/edits`,
      JSON.stringify({ prompts: [demo.edited], blend: [demo.shape] }),
    );
    expect(res.status).toBe(202);
    const { id, job } = await res.json();
    expect((await followJob(base, job)).state).toBe("done");
    const { body: edit } = await getJson(`api/edits/${id}`);
    expect(edit.images).toHaveLength(1);
    const img = await decodePng(
      new Uint8Array(await (await fetch(`${base}${edit.images[0].url.slice(1)}`)).arrayBuffer()),
    );
    const check = checkPrompt(img, demo.truth);
    expect(check.reading.objects.map((o) => `${o.color} ${o.shape}`)).toEqual([
      `${demo.truth.objects[0]?.color} ${demo.shape}`,
    ]);
    expect(check.all).toBe(true);
    const maps = (await getJson(`api/edits/${id}/attention`)).body;
    expect(maps.prompts.map((p: { prompt: string }) => p.prompt)).toEqual([demo.prompt, demo.edited]);
  }, 60_000);
});
