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

function form(fields: Record<string, string>, image: Uint8Array | null = png, type = "image/png"): FormData {
  const f = new FormData();
  if (image) f.set("image", new Blob([image as Uint8Array<ArrayBuffer>], { type }), "scene.png");
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

describe("cancel, resume and restart", () => {
  const nti = { prompt: demo.prompt, method: "nti", steps: "10", innerSteps: "2" };
  let ntiId: string;

  it("cancels an nti inversion mid-way; resubmitting it resumes from the saved state", async () => {
    const res = await post("api/inversions", form(nti));
    const { id, job } = await res.json();
    let cancelled = false;
    const run = await followJob(base, job, (e) => {
      if (!cancelled && e.progress?.phase === "nti" && e.progress.step === 4) {
        cancelled = true;
        void fetch(`${base}api/jobs/${job}`, { method: "DELETE" });
      }
    });
    expect(run.state).toBe("cancelled");
    expect((await getJson(`api/jobs/${job}`)).body).toMatchObject({ state: "cancelled", resumable: true });
    expect((await getJson(`api/inversions/${id}`)).status).toBe(404);
    expect(fs.readdirSync(path.join(data, "resume")).filter((f) => f.endsWith(".resume"))).toHaveLength(1);

    const again = await (await post("api/inversions", form(nti))).json();
    const resumed = await followJob(base, again.job);
    expect(resumed.state).toBe("done");
    const ntiSteps = resumed.events.filter((e) => e.progress?.phase === "nti").map((e) => e.progress?.step);
    expect(ntiSteps[0]).toBeGreaterThanOrEqual(5);
    expect(resumed.events.some((e) => e.progress?.phase === "ddim")).toBe(false);
    ntiId = again.id;
    const { body } = await getJson(`api/inversions/${ntiId}`);
    expect(body).toMatchObject({ method: "nti", settings: { steps: 10, innerSteps: 2 } });
    expect(fs.readdirSync(path.join(data, "resume"))).toEqual([]);
  }, 90_000);

  it("queues a second job behind the first and shows its position", async () => {
    const first = await (
      await post(`api/inversions/${npiId}/edits`, JSON.stringify({ prompts: [demo.edited] }))
    ).json();
    const second = await (
      await post(`api/inversions/${npiId}/edits`, JSON.stringify({ prompts: [demo.prompt] }))
    ).json();
    expect(second.position).toBe(1);
    expect((await getJson(`api/jobs/${second.job}`)).body).toMatchObject({ state: "queued", position: 1 });
    const cancel = await fetch(`${base}api/jobs/${second.job}`, { method: "DELETE" });
    expect((await cancel.json()).state).toBe("cancelled");
    expect((await followJob(base, first.job)).state).toBe("done");
    const again = await fetch(`${base}api/jobs/${second.job}`, { method: "DELETE" });
    await expectError(again, 409, /already cancelled/);
  }, 60_000);

  it("finds the inversions after a restart, and fails an interrupted job whose input is gone, with the reason", async () => {
    await server.close();
    const orphan = "0123456789abcdef";
    fs.writeFileSync(
      path.join(data, "jobs", `${orphan}.json`),
      JSON.stringify({
        id: orphan,
        kind: "invert",
        state: "running",
        created: new Date().toISOString(),
        inversion: "fedcba9876543210",
      }),
    );
    server = await start();
    base = server.url;
    const { body } = await getJson("api/inversions");
    expect(body.inversions.map((i: { id: string }) => i.id).sort()).toEqual([npiId, ntiId].sort());
    const file = await fetch(`${base}api/inversions/${ntiId}/file`);
    expect(file.headers.get("content-type")).toBe("application/octet-stream");
    expect((await file.arrayBuffer()).byteLength).toBeGreaterThan(10 * 77 * 64 * 4);
    expect((await getJson(`api/jobs/${orphan}`)).body).toMatchObject({
      state: "failed",
      error: expect.stringMatching(/server stopped.*uploaded image is gone/),
    });
  }, 60_000);

  it("imports an .nti file and deletes an inversion", async () => {
    const bytes = new Uint8Array(await (await fetch(`${base}api/inversions/${ntiId}/file`)).arrayBuffer());
    const f = new FormData();
    f.set("file", new Blob([bytes]), "x.nti");
    const res = await post("api/inversions/import", f);
    expect(res.status).toBe(202);
    const { id, job } = await res.json();
    expect((await followJob(base, job)).state).toBe("done");
    expect((await getJson(`api/inversions/${id}`)).body).toMatchObject({ imported: true, prompt: demo.prompt });
    const del = await fetch(`${base}api/inversions/${id}`, { method: "DELETE" });
    expect(del.status).toBe(204);
    expect((await getJson(`api/inversions/${id}`)).status).toBe(404);
    const bad = new FormData();
    bad.set("file", new Blob([new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8, 9])]), "bad.nti");
    await expectError(await post("api/inversions/import", bad), 400, /^file: /);
  }, 60_000);
});

describe("bad input", () => {
  it("refuses oversize uploads (413), pixel bombs before decoding (413) and unsupported types (415)", async () => {
    const big = new Uint8Array(LIMIT + 1000);
    big.set(png);
    await expectError(await post("api/inversions", form({ prompt: "x" }, big)), 413, /^image: larger than/);
    const bomb = await sharp({ create: { width: 3000, height: 3000, channels: 3, background: "#fff" } })
      .png()
      .toBuffer();
    expect(bomb.length).toBeLessThan(LIMIT);
    await expectError(
      await post("api/inversions", form({ prompt: "x" }, new Uint8Array(bomb))),
      413,
      /3000×3000 is 9000000 pixels/,
    );
    const text = new TextEncoder().encode("hello, not an image");
    await expectError(
      await post("api/inversions", form({ prompt: "x" }, text, "text/plain")),
      415,
      /^image: not a PNG/,
    );
    await expectError(await post("api/inversions", JSON.stringify({ prompt: "x" })), 415, /multipart/);
    const gif = new TextEncoder().encode("GIF89a....");
    await expectError(await post("api/inversions", form({ prompt: "x" }, gif)), 415, /^image: /);
  });

  it("names the bad field of an inversion request", async () => {
    await expectError(await post("api/inversions", form({ prompt: demo.prompt }, null)), 400, /^image: missing/);
    await expectError(await post("api/inversions", form({})), 400, /^prompt: required/);
    await expectError(await post("api/inversions", form({ prompt: "a ".repeat(100) })), 400, /^prompt: .*tokens/);
    await expectError(await post("api/inversions", form({ prompt: "x", method: "magic" })), 400, /^method: "magic"/);
    await expectError(await post("api/inversions", form({ prompt: "x", steps: "many" })), 400, /^steps: "many"/);
    await expectError(
      await post("api/inversions", form({ prompt: "x", method: "npi", innerSteps: "3" })),
      400,
      /innerSteps/,
    );
    await expectError(await post("api/inversions", form({ prompt: "x", fit: "zoom" })), 400, /^fit: "zoom"/);
    await expectError(await post("api/inversions", form({ prompt: "x", bogus: "1" })), 400, /'bogus'/);
  });

  it("names the bad field of an edit request", async () => {
    const edit = (body: unknown) => post(`api/inversions/${npiId}/edits`, JSON.stringify(body));
    await expectError(await edit({}), 400, /prompts/);
    await expectError(await edit({ prompts: [] }), 400, /prompts/);
    await expectError(await edit({ prompts: [demo.edited], crossSteps: 2 }), 400, /crossSteps/);
    await expectError(await edit({ prompts: [demo.edited], colour: 1 }), 400, /additional/);
    await expectError(await edit({ prompts: [demo.edited], blend: ["zebra"] }), 400, /^blend\[0\]: "zebra"/);
    await expectError(
      await edit({ prompts: [demo.edited], reweight: [{ word: "zebra", scale: 2 }] }),
      400,
      /^reweight\[0\]\.word/,
    );
    await expectError(await edit({ prompts: ["a ".repeat(100)] }), 400, /^prompts\[0\]: .*tokens/);
    await expectError(await post(`api/inversions/${npiId}/edits`, "{not json"), 400, /JSON|Unexpected|body/i);
    await expectError(
      await post("api/inversions/0000000000000000/edits", JSON.stringify({ prompts: ["x"] })),
      404,
      /no inversion/,
    );
  });

  it("never takes a path from a request: ../ and encoded variants are 404 on every route", async () => {
    const ids = [
      "..",
      "../../etc/passwd",
      "..%2F..%2Fetc%2Fpasswd",
      "%2e%2e",
      "%2e%2e%2f%2e%2e%2fjobs",
      "..%5c..%5cjobs",
      "%252e%252e",
    ];
    const routes = [
      ["GET", "/api/inversions/ID"],
      ["GET", "/api/inversions/ID/file"],
      ["GET", "/api/inversions/ID/input.png"],
      ["GET", "/api/inversions/ID/reconstruction.png"],
      ["GET", "/api/inversions/ID/attention"],
      ["DELETE", "/api/inversions/ID"],
      ["POST", "/api/inversions/ID/edits"],
      ["GET", "/api/edits/ID"],
      ["GET", "/api/edits/ID/attention"],
      ["GET", "/api/edits/ID/images/source.png"],
      ["GET", "/api/jobs/ID"],
      ["GET", "/api/jobs/ID/events"],
      ["DELETE", "/api/jobs/ID"],
    ];
    for (const [method, route] of routes) {
      for (const id of ids) {
        const res = await rawRequest(
          base,
          method as string,
          (route as string).replace("ID", id),
          method === "POST" ? { "content-type": "application/json" } : {},
          method === "POST" ? JSON.stringify({ prompts: [demo.edited] }) : undefined,
        );
        expect([method, route, id, res.status]).toEqual([method, route, id, 404]);
        expect(res.body).not.toMatch(/root:|"state"|safetensors/);
      }
    }
    const edit = fs.readdirSync(path.join(data, "edits"))[0] as string;
    for (const name of ["..%2Fmeta.json", "../meta.json", "%2e%2e%2f%2e%2e%2fjobs", "meta.json", "source.png%00"]) {
      const res = await rawRequest(base, "GET", `/api/edits/${edit}/images/${name}`);
      expect([name, res.status]).toEqual([name, 404]);
    }
    expect(fs.existsSync(path.join(os.tmpdir(), "etc"))).toBe(false);
  });

  it("refuses cross-site state changes (Origin) and foreign Host headers", async () => {
    const body = JSON.stringify({ prompts: [demo.edited] });
    const res = await post(`api/inversions/${npiId}/edits`, body, { origin: "http://evil.example" });
    await expectError(res, 403, /^Origin: http:\/\/evil.example/);
    const del = await rawRequest(base, "DELETE", `/api/inversions/${npiId}`, { origin: "http://evil.example" });
    expect(del.status).toBe(403);
    const rebinding = await rawRequest(base, "GET", "/api/inversions", { host: "evil.example:7860" });
    expect(rebinding.status).toBe(403);
    expect((await getJson(`api/inversions/${npiId}`)).status).toBe(200);
  });

  it("needs a token on a non-loopback host, and checks it", async () => {
    await expect(startServer({ pipe, data, host: "0.0.0.0", port: 0, measure: false })).rejects.toThrow(/--token/);
    const secured = await startServer({ pipe, data, port: 0, token: "s3cret-token", measure: false });
    try {
      expect((await fetch(`${secured.url}api/inversions`)).status).toBe(401);
      const ok = await fetch(`${secured.url}api/inversions`, { headers: { authorization: "Bearer s3cret-token" } });
      expect(ok.status).toBe(200);
      expect((await fetch(`${secured.url}?token=wrong`)).status).toBe(401);
      const open = await fetch(secured.openUrl, { redirect: "manual" });
      expect(open.status).toBe(302);
      const cookie = (open.headers.get("set-cookie") ?? "").split(";")[0] as string;
      expect(cookie).toBe("nulltext_token=s3cret-token");
      expect((await fetch(`${secured.url}api/inversions`, { headers: { cookie } })).status).toBe(200);
    } finally {
      await secured.close();
    }
  });
});
