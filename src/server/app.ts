/**
 * `nulltext serve`: the web app's HTTP server (fastify), a thin front end over the jobs layer. It
 * serves the page (web/), a JSON API described by /api/openapi.json, and runs one heavy job at a
 * time (runner.ts). Security: loopback by default (any other host needs a token: a bearer header,
 * or a cookie set from the one-time URL printed at start-up); on loopback the Host header must be
 * a loopback name (no DNS rebinding); state-changing requests from another origin are refused; uploads
 * are bounded in bytes and pixels; ids are generated and checked, never paths from a request.
 */
import fs from "node:fs";
import path from "node:path";
import multipart from "@fastify/multipart";
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from "fastify";
import { type FitMode, fitToSquare } from "../image/index.js";
import { encodePng } from "../image/io.js";
import { decodeInversion, encodeInversion } from "../inversion/file.js";
import { METHODS, resolveSettings } from "../inversion/registry.js";
import type { NullTextPipeline } from "../pipeline.js";
import { getPlatform } from "../platform/platform.js";
import { EDIT_BODY, openApiDocument } from "./openapi.js";
import { isTerminal, JobRunner, type JobView } from "./runner.js";
import { type EditRequest, ID, newId, Store } from "./store.js";
import { decodeUpload, HttpError } from "./upload.js";

export interface ServerOptions {
  pipe: NullTextPipeline;
  /** Folder of jobs, inversions and edits (created if missing). */
  data: string;
  host?: string;
  /** 0: an ephemeral port. */
  port?: number;
  /** Required for any host other than loopback. */
  token?: string;
  maxUploadBytes?: number;
  maxPixels?: number;
  /** Measure the UNet's cost at start for the methods' time estimates (default true). */
  measure?: boolean;
}

export interface RunningServer {
  url: string;
  /** The URL that sets the token cookie (same as url without a token). */
  openUrl: string;
  app: FastifyInstance;
  runner: JobRunner;
  close(): Promise<void>;
}

const LOOPBACK = new Set(["127.0.0.1", "localhost", "::1", "[::1]"]);
const WEB = path.resolve(path.dirname(new URL(import.meta.url).pathname), "..", "..", "web");
const STATIC: Record<string, string> = {
  "/": "index.html",
  "/app.js": "app.js",
  "/style.css": "style.css",
};
const TYPES: Record<string, string> = { html: "text/html; charset=utf-8", js: "text/javascript", css: "text/css" };
const FITS = ["center-crop", "pad", "stretch"];

export function isLoopback(host: string): boolean {
  return LOOPBACK.has(host) || /^127\.\d+\.\d+\.\d+$/.test(host);
}

export async function startServer(o: ServerOptions): Promise<RunningServer> {
  const host = o.host ?? "127.0.0.1";
  if (!isLoopback(host) && !o.token)
    throw new Error(`--host ${host} is not loopback: give --token so that only you can use the server`);
  if (o.token !== undefined && o.token.length < 8) throw new Error("--token must have at least 8 characters");
  const maxUploadBytes = o.maxUploadBytes ?? 25 * 1024 * 1024;
  const maxPixels = o.maxPixels ?? 40_000_000;
  const { pipe } = o;
  const store = new Store(path.resolve(o.data));
  const runner = new JobRunner(pipe, store);
  // The UNet's cost on this machine, measured before the first job so that nothing competes with it.
  const estimate = { secondsPerEval: o.measure === false ? undefined : await measureUnet(pipe) };

  // Bodies are validated as sent: an unknown or mistyped field is an error, not dropped or coerced.
  const app = Fastify({
    logger: false,
    bodyLimit: 1024 * 1024,
    ajv: { customOptions: { removeAdditional: false, coerceTypes: false, allErrors: false } },
  });
  await app.register(multipart, {
    limits: { fileSize: maxUploadBytes, files: 1, fields: 40, fieldSize: 4096, parts: 42 },
  });

  app.setErrorHandler((err: Error & { statusCode?: number; code?: string }, _req, reply) => {
    const status = err instanceof HttpError ? err.status : (err.statusCode ?? 500);
    let message = err.message;
    if (err.code === "FST_REQ_FILE_TOO_LARGE") message = `image: larger than ${maxUploadBytes} bytes`;
    if (err.code === "FST_ERR_CTP_BODY_TOO_LARGE") message = "body: larger than 1 MiB";
    reply.status(status >= 400 ? status : 500).send({ error: message });
  });
  app.setNotFoundHandler((req, reply) => {
    reply.status(404).send({ error: `no such resource: ${req.method} ${req.url.split("?")[0]}` });
  });

  app.addHook("onRequest", async (req, reply) => {
    const hostHeader = req.headers.host ?? "";
    const hostname = hostHeader.replace(/:\d+$/, "");
    if (isLoopback(host) && !isLoopback(hostname))
      return reply.status(403).send({ error: `Host: ${hostHeader} is not this server (loopback only)` });
    if (req.method !== "GET" && req.method !== "HEAD") {
      const origin = req.headers.origin;
      if (origin !== undefined && origin !== `http://${hostHeader}`)
        return reply.status(403).send({ error: `Origin: ${origin} may not change this server's state` });
      if (req.headers["sec-fetch-site"] === "cross-site")
        return reply.status(403).send({ error: "Sec-Fetch-Site: cross-site requests may not change state" });
    }
    if (o.token && req.url.startsWith("/api/") && !authorised(req, o.token))
      return reply
        .status(401)
        .send({ error: "Authorization: a bearer token (or the cookie of the start-up URL) is required" });
  });

  for (const [route, file] of Object.entries(STATIC)) {
    app.get(route, async (req, reply) => {
      const query = req.query as { token?: string };
      if (route === "/" && o.token && query.token !== undefined) {
        if (query.token !== o.token) return reply.status(401).send({ error: "token: wrong token" });
        reply.header("set-cookie", `nulltext_token=${o.token}; HttpOnly; SameSite=Strict; Path=/`);
        return reply.redirect("/");
      }
      const ext = file.split(".").pop() as string;
      reply.type(TYPES[ext] ?? "application/octet-stream").header("cache-control", "no-cache");
      return fs.readFileSync(path.join(WEB, file));
    });
  }

  app.get("/api/openapi.json", async () => openApiDocument());

  app.get("/api/health", async () => ({
    model: pipe.model.source,
    fingerprint: pipe.model.fingerprint,
    resolution: pipe.resolution,
    fits: FITS,
    limits: { upload_bytes: maxUploadBytes, pixels: maxPixels },
    seconds_per_unet_eval: estimate.secondsPerEval ?? null,
    methods: [...METHODS.values()].map((m) => {
      const evals = unetEvals(m.defaults);
      return {
        id: m.id,
        summary: m.summary,
        defaults: m.defaults,
        help: m.help ?? {},
        unet_evals: evals,
        estimate_seconds: estimate.secondsPerEval === undefined ? null : evals * estimate.secondsPerEval,
        last_seconds: runner.measured.get(m.id) ?? null,
      };
    }),
  }));

  // ---- inversions
  app.post("/api/inversions", async (req, reply) => {
    if (!req.isMultipart()) throw new HttpError(415, "body: send multipart/form-data with an image field");
    const fields: Record<string, string> = {};
    let bytes: Uint8Array | undefined;
    let filename: string | undefined;
    for await (const part of req.parts()) {
      if (part.type === "file") {
        if (part.fieldname !== "image")
          throw new HttpError(400, `${part.fieldname}: unexpected file (send it as image)`);
        bytes = new Uint8Array(await part.toBuffer());
        filename = path.basename(part.filename ?? "").slice(0, 200) || undefined;
      } else {
        if (typeof part.value !== "string") throw new HttpError(400, `${part.fieldname}: expected text`);
        fields[part.fieldname] = part.value;
      }
    }
    if (!bytes) throw new HttpError(400, "image: missing (a PNG, JPEG or WebP file)");
    const { prompt, fit = "center-crop", ...rest } = fields;
    checkPrompt(pipe, prompt, "prompt");
    if (!FITS.includes(fit)) throw new HttpError(400, `fit: ${JSON.stringify(fit)} is not one of ${FITS.join(", ")}`);
    const settings = parseSettings(rest);
    const image = fitToSquare(await decodeUpload(bytes, maxPixels), pipe.resolution, fit as FitMode);
    const resolved = resolveSettings(settings);
    const keyText = new TextEncoder().encode(`\0${prompt}\0${JSON.stringify(resolved)}`);
    const keyBytes = new Uint8Array(image.data.length + keyText.length);
    keyBytes.set(image.data);
    keyBytes.set(keyText, image.data.length);
    const resumeKey = await getPlatform().sha256(keyBytes);
    const inversion = newId();
    const upload = await encodePng(image);
    const job = runner.submitWith(
      { kind: "invert", inversion, invert: { prompt: prompt as string, settings, fit, filename, resumeKey } },
      (id) => store.writeBytes(store.uploadFile(id), upload),
    );
    reply.status(202);
    return { id: inversion, job: job.id, position: job.position };
  });

  app.post("/api/inversions/import", async (req, reply) => {
    if (!req.isMultipart()) throw new HttpError(415, "body: send multipart/form-data with a file field");
    let bytes: Uint8Array | undefined;
    for await (const part of req.parts()) {
      if (part.type === "file" && part.fieldname === "file") bytes = new Uint8Array(await part.toBuffer());
      else if (part.type === "file") throw new HttpError(400, `${part.fieldname}: unexpected file (send it as file)`);
    }
    if (!bytes) throw new HttpError(400, "file: missing (an .nti file written by nulltext invert)");
    let inv: ReturnType<typeof decodeInversion>;
    try {
      inv = decodeInversion(bytes, "upload", pipe.model.fingerprint);
    } catch (err) {
      const another = /another model|made with/.test((err as Error).message);
      throw new HttpError(another ? 409 : 400, `file: ${(err as Error).message}`);
    }
    const id = newId();
    store.writeBytes(path.join(store.inversionDir(id), "inversion.nti"), encodeInversion(inv));
    const job = runner.submit({ kind: "import", inversion: id });
    reply.status(202);
    return { id, job: job.id, position: job.position };
  });

  app.get("/api/inversions", async () => ({ inversions: store.inversions().map((m) => inversionView(m.id)) }));

  const inversionView = (id: string) => {
    const meta = store.inversion(id);
    if (!meta) return undefined;
    const { report: _report, ...rest } = meta;
    const base = `/api/inversions/${id}`;
    const dir = store.inversionDir(id);
    return {
      ...rest,
      urls: {
        file: `${base}/file`,
        input: fs.existsSync(path.join(dir, "input.png")) ? `${base}/input.png` : null,
        reconstruction: `${base}/reconstruction.png`,
        attention: `${base}/attention`,
      },
    };
  };

  const needInversion = (id: string) => {
    const view = inversionView(id);
    if (view) return view;
    const pending = [...runnerJobs()].find((j) => j.inversion === id && !isTerminal(j.state));
    if (pending) throw new HttpError(409, `inversion ${id} is not finished (job ${pending.id} is ${pending.state})`);
    throw new HttpError(404, `no inversion ${JSON.stringify(id)}`);
  };
  const runnerJobs = () => store.jobs();

  app.get("/api/inversions/:id", async (req) => needInversion((req.params as { id: string }).id));

  const inversionFile = (name: string, type: string) => async (req: FastifyRequest, reply: FastifyReply) => {
    const { id } = req.params as { id: string };
    needInversion(id);
    const file = path.join(store.inversionDir(id), name);
    if (!fs.existsSync(file)) throw new HttpError(404, `inversion ${id} has no ${name}`);
    reply.type(type);
    if (name === "inversion.nti") reply.header("content-disposition", `attachment; filename="${id}.nti"`);
    return fs.readFileSync(file);
  };
  app.get("/api/inversions/:id/file", inversionFile("inversion.nti", "application/octet-stream"));
  app.get("/api/inversions/:id/input.png", inversionFile("input.png", "image/png"));
  app.get("/api/inversions/:id/reconstruction.png", inversionFile("reconstruction.png", "image/png"));
  app.get("/api/inversions/:id/attention", inversionFile("attention.json", "application/json"));

  app.delete("/api/inversions/:id", async (req, reply) => {
    const { id } = req.params as { id: string };
    needInversion(id);
    const busy = store.jobs().find((j) => j.inversion === id && !isTerminal(j.state));
    if (busy) throw new HttpError(409, `inversion ${id} is in use by job ${busy.id} (${busy.state})`);
    store.deleteInversion(id);
    reply.status(204);
  });

  // ---- edits
  app.post("/api/inversions/:id/edits", { schema: { body: EDIT_BODY } }, async (req, reply) => {
    const { id } = req.params as { id: string };
    const inv = needInversion(id);
    const body = req.body as EditRequest & { reweight?: EditRequest["reweight"]; blend?: string[] };
    body.prompts.forEach((p, i) => checkPrompt(pipe, p, `prompts[${i}]`));
    const words = (p: string) => p.split(" ");
    for (const [i, r] of (body.reweight ?? []).entries()) {
      if (!body.prompts.some((p) => words(p).includes(r.word)))
        throw new HttpError(400, `reweight[${i}].word: "${r.word}" is in no edited prompt`);
    }
    for (const [i, w] of (body.blend ?? []).entries()) {
      if (![inv.prompt, ...body.prompts].some((p) => words(p).includes(w)))
        throw new HttpError(400, `blend[${i}]: "${w}" is a word of neither the source nor an edited prompt`);
    }
    const request: EditRequest = {
      prompts: body.prompts,
      mode: body.mode,
      reweight: body.reweight ?? [],
      blend: body.blend ?? [],
      crossSteps: body.crossSteps,
      selfSteps: body.selfSteps,
      nullSteps: body.nullSteps,
    };
    const edit = newId();
    const job = runner.submit({ kind: "edit", inversion: id, edit, editRequest: request });
    reply.status(202);
    return { id: edit, job: job.id, position: job.position };
  });

  app.get("/api/edits/:id", async (req) => {
    const { id } = req.params as { id: string };
    const meta = store.edit(id);
    if (!meta) {
      const pending = store.jobs().find((j) => j.edit === id);
      if (pending) throw new HttpError(409, `edit ${id} is not finished (job ${pending.id} is ${pending.state})`);
      throw new HttpError(404, `no edit ${JSON.stringify(id)}`);
    }
    const base = `/api/edits/${id}`;
    return {
      id,
      inversion: meta.inversion,
      created: meta.created,
      request: meta.request,
      seconds: (meta.report as { seconds?: number } | undefined)?.seconds,
      source: `${base}/images/source.png`,
      images: meta.request.prompts.map((prompt, i) => ({ prompt, url: `${base}/images/edit-${i + 1}.png` })),
      attention: `${base}/attention`,
    };
  });

  app.get("/api/edits/:id/images/:name", async (req, reply) => {
    const { id, name } = req.params as { id: string; name: string };
    const meta = store.edit(id);
    if (!meta) throw new HttpError(404, `no edit ${JSON.stringify(id)}`);
    const m = /^(source|edit-(\d{1,2}))\.png$/.exec(name);
    if (!m || (m[2] !== undefined && (Number(m[2]) < 1 || Number(m[2]) > meta.request.prompts.length)))
      throw new HttpError(404, `edit ${id} has no image ${JSON.stringify(name)}`);
    reply.type("image/png").header("content-disposition", `inline; filename="${id}-${name}"`);
    return fs.readFileSync(path.join(store.editDir(id), name));
  });

  app.get("/api/edits/:id/attention", async (req, reply) => {
    const { id } = req.params as { id: string };
    if (!store.edit(id)) throw new HttpError(404, `no edit ${JSON.stringify(id)}`);
    reply.type("application/json");
    return fs.readFileSync(path.join(store.editDir(id), "attention.json"));
  });

  // ---- jobs
  const needJob = (id: string): JobView => {
    const job = ID.test(id) ? runner.get(id) : undefined;
    if (!job) throw new HttpError(404, `no job ${JSON.stringify(id)}`);
    return job;
  };
  app.get("/api/jobs/:id", async (req) => needJob((req.params as { id: string }).id));
  app.delete("/api/jobs/:id", async (req) => {
    const job = needJob((req.params as { id: string }).id);
    if (isTerminal(job.state)) throw new HttpError(409, `job ${job.id} is already ${job.state}`);
    return runner.cancel(job.id);
  });
  app.get("/api/jobs/:id/events", async (req, reply) => {
    const job = needJob((req.params as { id: string }).id);
    reply.hijack();
    const res = reply.raw;
    res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache", connection: "keep-alive" });
    const send = (view: JobView) => {
      res.write(`data: ${JSON.stringify(view)}\n\n`);
      if (isTerminal(view.state)) {
        stop();
        res.end();
      }
    };
    const stop = runner.subscribe(job.id, send);
    req.raw.on("close", stop);
    send(job);
  });

  await app.listen({ host, port: o.port ?? 7860 });
  const address = app.server.address();
  const port = typeof address === "object" && address ? address.port : o.port;
  const shown = host.includes(":") ? `[${host}]` : host;
  const url = `http://${shown}:${port}/`;
  return {
    url,
    openUrl: o.token ? `${url}?token=${encodeURIComponent(o.token)}` : url,
    app,
    runner,
    async close() {
      await runner.close();
      await app.close();
    },
  };
}

function authorised(req: FastifyRequest, token: string): boolean {
  if (req.headers.authorization === `Bearer ${token}`) return true;
  const cookies = (req.headers.cookie ?? "").split(";").map((c) => c.trim());
  return cookies.includes(`nulltext_token=${token}`);
}

function checkPrompt(pipe: NullTextPipeline, prompt: unknown, field: string): asserts prompt is string {
  if (typeof prompt !== "string" || prompt.trim() === "")
    throw new HttpError(400, `${field}: required (a description of the image)`);
  try {
    pipe.tokenize(prompt);
  } catch (err) {
    throw new HttpError(400, `${field}: ${(err as Error).message}`);
  }
}

/** `method` and the methods' settings from form fields, typed by the method's defaults (as the CLI's flags). */
function parseSettings(fields: Record<string, string>): Record<string, unknown> {
  const settings: Record<string, unknown> = {};
  const method = METHODS.get(fields.method ?? "nti");
  if (fields.method !== undefined && !method)
    throw new HttpError(
      400,
      `method: ${JSON.stringify(fields.method)} is not one of ${[...METHODS.keys()].join(", ")}`,
    );
  for (const [key, value] of Object.entries(fields)) {
    if (key === "method") {
      settings.method = value;
      continue;
    }
    const kind = typeof (method?.defaults as Record<string, unknown> | undefined)?.[key];
    if (kind === "number") {
      const n = value.trim() === "" ? Number.NaN : Number(value);
      if (!Number.isFinite(n)) throw new HttpError(400, `${key}: ${JSON.stringify(value)} is not a number`);
      settings[key] = n;
    } else if (kind === "boolean") {
      if (value !== "true" && value !== "false") throw new HttpError(400, `${key}: expected true or false`);
      settings[key] = value === "true";
    } else settings[key] = value;
  }
  try {
    resolveSettings(settings);
  } catch (err) {
    throw new HttpError(400, (err as Error).message);
  }
  return settings;
}

/**
 * UNet evaluations of an inversion with these settings, as forward-equivalents: the DDIM pivot,
 * the method's optimisation where it has inner steps (a forward and a VJP, about three forwards,
 * per iteration, plus the conditional noise per step), the reconstruction and the attention maps'
 * two-prompt sampling. An upper bound for early-stopping methods.
 */
export function unetEvals(settings: Record<string, unknown>): number {
  const steps = Number(settings.steps ?? 50);
  const inner = typeof settings.innerSteps === "number" ? settings.innerSteps : 0;
  return steps + (inner ? steps * (3 * inner + 1) : 0) + steps + 2 * steps;
}

/** Seconds of one UNet evaluation on this machine: a short DDIM inversion, after one to compile. */
async function measureUnet(pipe: NullTextPipeline): Promise<number> {
  const r = pipe.resolution;
  const image = { width: r, height: r, data: new Uint8Array(r * r * 3).fill(128) };
  await pipe.ddimPivots(image, "", 1);
  const t0 = performance.now();
  await pipe.ddimPivots(image, "", 4);
  return (performance.now() - t0) / 1000 / 4;
}
