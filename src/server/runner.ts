/**
 * One heavy job at a time: a queue over the jobs layer (invertJob, editJob) with positions, progress
 * fanned out to listeners (the server-sent events), cancellation by aborting the job's signal, and
 * every state change saved under the data folder. At start-up, jobs that were queued or running
 * when the server stopped are queued again (an inversion continues from its resume state) or marked
 * failed with the reason they cannot run.
 */
import fs from "node:fs";
import path from "node:path";
import sharp from "sharp";
import { encodePng, type RgbImage } from "../image/index.js";
import { decodeInversion, encodeInversion, type Inversion } from "../inversion/file.js";
import { editJob, fileResumeStore, invertJob, type JobProgress } from "../jobs/index.js";
import type { NullTextPipeline } from "../pipeline.js";
import { AttentionAccumulator } from "./attention.js";
import { type EditMeta, type InversionMeta, type JobRecord, newId, type Store } from "./store.js";

export interface JobView extends JobRecord {
  /** Place in the queue (1 = next); 0 while running; absent when finished. */
  position?: number;
  progress?: JobProgress;
}

type Listener = (job: JobView) => void;

const TERMINAL = new Set(["done", "failed", "cancelled"]);

export class JobRunner {
  private readonly jobs = new Map<string, JobRecord>();
  private readonly pending: string[] = [];
  private readonly progress = new Map<string, JobProgress>();
  private readonly listeners = new Map<string, Set<Listener>>();
  private running?: { id: string; abort: AbortController };
  private idle: Promise<void> = Promise.resolve();
  /** Seconds of each phase of the last finished job of each method, for the estimates. */
  readonly measured = new Map<string, number>();

  constructor(
    private readonly pipe: NullTextPipeline,
    private readonly store: Store,
  ) {
    for (const job of store.jobs().sort((a, b) => a.created.localeCompare(b.created))) {
      this.jobs.set(job.id, job);
      if (job.state !== "queued" && job.state !== "running") continue;
      const missing = this.missingInput(job);
      if (missing) {
        this.update(job, { state: "failed", error: `the server stopped during this job, and ${missing}` });
      } else {
        this.update(job, { state: "queued" });
        this.pending.push(job.id);
      }
    }
    this.pump();
  }

  private missingInput(job: JobRecord): string | undefined {
    if (job.kind === "invert" && !fs.existsSync(this.store.uploadFile(job.id))) return "its uploaded image is gone";
    if (job.kind !== "invert" && !fs.existsSync(path.join(this.store.inversionDir(job.inversion), "inversion.nti")))
      return "its inversion is gone";
    return undefined;
  }

  get(id: string): JobView | undefined {
    const job = this.jobs.get(id);
    if (!job) return undefined;
    const view: JobView = { ...job, progress: this.progress.get(id) };
    if (this.running?.id === id) view.position = 0;
    else if (job.state === "queued") view.position = this.pending.indexOf(id) + 1;
    return view;
  }

  /** Queues a job; it runs when the jobs before it are done. */
  submit(job: Omit<JobRecord, "id" | "state" | "created">): JobView {
    return this.submitWith(job, () => {});
  }

  /** Queues a job after `prepare` has written what it needs under its id (e.g. its upload). */
  submitWith(job: Omit<JobRecord, "id" | "state" | "created">, prepare: (id: string) => void): JobView {
    const record: JobRecord = { ...job, id: newId(), state: "queued", created: new Date().toISOString() };
    prepare(record.id);
    this.jobs.set(record.id, record);
    this.store.saveJob(record);
    this.pending.push(record.id);
    this.pump();
    return this.get(record.id) as JobView;
  }

  /** Stops a running job (its inversion keeps its resume state) or takes a queued one out of the queue. */
  cancel(id: string): JobView | undefined {
    const job = this.jobs.get(id);
    if (!job) return undefined;
    if (this.running?.id === id) {
      this.running.abort.abort(new Error("cancelled"));
    } else if (job.state === "queued") {
      this.pending.splice(this.pending.indexOf(id), 1);
      this.update(job, { state: "cancelled", resumable: job.kind === "invert" });
      this.broadcastPositions();
    }
    return this.get(id);
  }

  subscribe(id: string, listener: Listener): () => void {
    const set = this.listeners.get(id) ?? new Set<Listener>();
    this.listeners.set(id, set);
    set.add(listener);
    return () => set.delete(listener);
  }

  /** Resolves when the queue is empty and nothing runs. */
  async drain(): Promise<void> {
    while (this.running || this.pending.length) await this.idle;
  }

  /** Stops the running job (it is queued again at the next start) and waits for it. */
  async close(): Promise<void> {
    this.pending.length = 0;
    this.running?.abort.abort(new Error("server stopping"));
    await this.idle;
  }

  private update(job: JobRecord, change: Partial<JobRecord>): void {
    Object.assign(job, change);
    this.store.saveJob(job);
    this.emit(job.id);
  }

  private emit(id: string): void {
    const view = this.get(id);
    if (!view) return;
    for (const l of this.listeners.get(id) ?? []) l(view);
  }

  private broadcastPositions(): void {
    for (const id of this.pending) this.emit(id);
  }

  private pump(): void {
    if (this.running) return;
    const id = this.pending.shift();
    if (!id) return;
    const job = this.jobs.get(id) as JobRecord;
    const abort = new AbortController();
    this.running = { id, abort };
    this.update(job, { state: "running", error: undefined });
    this.broadcastPositions();
    this.idle = this.execute(job, abort.signal).then(
      () => {
        this.running = undefined;
        this.update(job, { state: "done" });
        this.pump();
      },
      (err: Error) => {
        this.running = undefined;
        const stopping = abort.signal.aborted && (abort.signal.reason as Error)?.message === "server stopping";
        if (stopping) {
          // queued again when the server starts next
          Object.assign(job, { state: "queued" });
          this.store.saveJob(job);
        } else if (abort.signal.aborted) {
          this.update(job, { state: "cancelled", resumable: job.kind === "invert" });
        } else {
          this.update(job, { state: "failed", error: err.message, resumable: job.kind === "invert" });
        }
        this.pump();
      },
    );
  }

  private onProgress(id: string, phase?: string) {
    return (p: JobProgress) => {
      this.progress.set(id, phase ? { ...p, phase } : p);
      this.emit(id);
    };
  }

  private async execute(job: JobRecord, signal: AbortSignal): Promise<void> {
    if (job.kind === "invert") await this.invert(job, signal);
    else if (job.kind === "edit") await this.edit(job, signal);
    else await this.import(job, signal);
  }

  private async readUpload(id: string): Promise<RgbImage> {
    const { data, info } = await sharp(fs.readFileSync(this.store.uploadFile(id)))
      .raw()
      .toBuffer({ resolveWithObject: true });
    return { width: info.width, height: info.height, data: new Uint8Array(data.buffer, data.byteOffset, data.length) };
  }

  private async invert(job: JobRecord, signal: AbortSignal): Promise<void> {
    const request = job.invert;
    if (!request) throw new Error("invert job without its request");
    const image = await this.readUpload(job.id);
    const resume = fileResumeStore(this.store.resumeFile(request.resumeKey));
    const t0 = performance.now();
    const { inversion, reconstruction, report } = await invertJob(this.pipe, {
      image,
      prompt: request.prompt,
      settings: request.settings,
      source: request.filename,
      resume,
      signal,
      onProgress: this.onProgress(job.id),
    });
    const dir = this.store.inversionDir(job.inversion);
    this.store.writeBytes(path.join(dir, "inversion.nti"), encodeInversion(inversion));
    this.store.writeBytes(path.join(dir, "input.png"), await encodePng(image));
    this.store.writeBytes(path.join(dir, "reconstruction.png"), await encodePng(reconstruction));
    await this.attention(job, inversion, dir, signal);
    if (!report.resumed) this.measured.set(inversion.settings.method, (performance.now() - t0) / 1000);
    const meta: InversionMeta = {
      id: job.inversion,
      prompt: inversion.prompt,
      method: inversion.settings.method,
      settings: inversion.settings,
      created: new Date().toISOString(),
      fit: request.fit,
      filename: request.filename,
      psnr: report.reconstruction.psnr,
      ssim: report.reconstruction.ssim,
      report,
    };
    this.store.writeJson(path.join(dir, "meta.json"), meta);
    resume.clear();
    fs.rmSync(this.store.uploadFile(job.id), { force: true });
  }

  /** The inversion's cross-attention maps from a sampling of the source prompt with itself as the edit. */
  private async attention(job: JobRecord, inversion: Inversion, dir: string, signal: AbortSignal): Promise<RgbImage> {
    const maps = new AttentionAccumulator();
    const { source } = await editJob(this.pipe, {
      inversion,
      edits: [{ prompt: inversion.prompt }],
      signal,
      onProgress: this.onProgress(job.id, "attention"),
      onAttentionMaps: maps.add,
    });
    // rows: the source (the reconstruction's attention) and its copy as the edit
    const result = maps.result([inversion.prompt, inversion.prompt], this.pipe.model.tokenizer);
    this.store.writeJson(path.join(dir, "attention.json"), { ...result, prompts: result.prompts.slice(0, 1) });
    return source;
  }

  private async import(job: JobRecord, signal: AbortSignal): Promise<void> {
    const dir = this.store.inversionDir(job.inversion);
    const inversion = this.loadInversion(job.inversion);
    const reconstruction = await this.attention(job, inversion, dir, signal);
    this.store.writeBytes(path.join(dir, "reconstruction.png"), await encodePng(reconstruction));
    const meta: InversionMeta = {
      id: job.inversion,
      prompt: inversion.prompt,
      method: inversion.settings.method,
      settings: inversion.settings,
      created: new Date().toISOString(),
      imported: true,
      psnr: inversion.stats?.psnr,
      ssim: inversion.stats?.ssim,
    };
    this.store.writeJson(path.join(dir, "meta.json"), meta);
  }

  loadInversion(id: string): Inversion {
    const file = path.join(this.store.inversionDir(id), "inversion.nti");
    return decodeInversion(new Uint8Array(fs.readFileSync(file)), "inversion", this.pipe.model.fingerprint);
  }

  private async edit(job: JobRecord, signal: AbortSignal): Promise<void> {
    const r = job.editRequest;
    if (!r || !job.edit) throw new Error("edit job without its request");
    const inversion = this.loadInversion(job.inversion);
    const prompts = [inversion.prompt, ...r.prompts];
    const maps = new AttentionAccumulator();
    const { source, images, report } = await editJob(this.pipe, {
      inversion,
      edits: r.prompts.map((prompt) => ({
        prompt,
        mode: r.mode,
        reweight: r.reweight.filter((w) => prompt.split(" ").includes(w.word)),
      })),
      promptToPrompt: {
        crossReplaceSteps: r.crossSteps,
        selfReplaceSteps: r.selfSteps,
        localBlend: r.blend.length
          ? { words: prompts.map((p) => r.blend.filter((w) => p.split(" ").includes(w))) }
          : undefined,
      },
      nullSteps: r.nullSteps,
      signal,
      onProgress: this.onProgress(job.id),
      onAttentionMaps: maps.add,
    });
    const dir = this.store.editDir(job.edit);
    this.store.writeBytes(path.join(dir, "source.png"), await encodePng(source));
    for (const [i, img] of images.entries())
      this.store.writeBytes(path.join(dir, `edit-${i + 1}.png`), await encodePng(img));
    this.store.writeJson(path.join(dir, "attention.json"), maps.result(prompts, this.pipe.model.tokenizer));
    const meta: EditMeta = {
      id: job.edit,
      inversion: job.inversion,
      request: r,
      created: new Date().toISOString(),
      report,
    };
    this.store.writeJson(path.join(dir, "meta.json"), meta);
  }
}

export function isTerminal(state: string): boolean {
  return TERMINAL.has(state);
}
