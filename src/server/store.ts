/**
 * The server's state under its data folder, every file written whole through the platform's atomic
 * write (a crash leaves the old file or the new one, never half of one):
 *
 *   jobs/<job>.json                     a job: kind, state, its request, error
 *   uploads/<job>.png                   the image of a pending inversion, fitted to the model's square
 *   resume/<key>.resume                 the resume state of an interrupted inversion (jobs' fileResumeStore),
 *                                       keyed by a hash of image, prompt and settings
 *   inversions/<id>/inversion.nti       the inversion file, with meta.json, input.png, reconstruction.png,
 *                                       attention.json
 *   edits/<id>/meta.json                an edit, with source.png, edit-<n>.png, attention.json
 *
 * Ids are generated here (16 hex digits) and checked by ID before any path is made from one: no
 * text from a request ever becomes a path.
 */
import { randomBytes } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { getPlatform } from "../platform/platform.js";

export const ID = /^[0-9a-f]{16}$/;

export function newId(): string {
  return randomBytes(8).toString("hex");
}

export type JobState = "queued" | "running" | "done" | "failed" | "cancelled";

export interface InvertRequest {
  prompt: string;
  settings: Record<string, unknown>;
  fit: string;
  filename?: string;
  /** The resume store's key (hash of image, prompt and settings). */
  resumeKey: string;
}

export interface EditRequest {
  prompts: string[];
  mode?: "replace" | "refine";
  reweight: { word: string; scale: number }[];
  blend: string[];
  crossSteps?: number;
  selfSteps?: number;
  nullSteps?: number;
}

export interface JobRecord {
  id: string;
  kind: "invert" | "edit" | "import";
  state: JobState;
  created: string;
  /** The inversion this job makes or edits. */
  inversion: string;
  /** The edit it makes (edit jobs). */
  edit?: string;
  invert?: InvertRequest;
  editRequest?: EditRequest;
  error?: string;
  /** Whether saved state lets a new identical request continue this inversion (cancelled or failed inversions). */
  resumable?: boolean;
}

export interface InversionMeta {
  id: string;
  prompt: string;
  method: string;
  settings: Record<string, unknown>;
  created: string;
  fit?: string;
  filename?: string;
  /** PSNR and SSIM of the reconstruction against the input (none for an imported file). */
  psnr?: number;
  ssim?: number;
  imported?: boolean;
  report?: unknown;
}

export interface EditMeta {
  id: string;
  inversion: string;
  request: EditRequest;
  created: string;
  report?: unknown;
}

export class Store {
  constructor(readonly root: string) {
    for (const d of ["jobs", "uploads", "resume", "inversions", "edits"])
      fs.mkdirSync(path.join(root, d), { recursive: true });
  }

  private checked(id: string): string {
    if (!ID.test(id)) throw new Error(`invalid id ${JSON.stringify(id)}`);
    return id;
  }

  jobFile(id: string): string {
    return path.join(this.root, "jobs", `${this.checked(id)}.json`);
  }
  uploadFile(job: string): string {
    return path.join(this.root, "uploads", `${this.checked(job)}.png`);
  }
  resumeFile(key: string): string {
    if (!/^[0-9a-f]{64}$/.test(key)) throw new Error(`invalid resume key ${JSON.stringify(key)}`);
    return path.join(this.root, "resume", `${key}.resume`);
  }
  inversionDir(id: string): string {
    return path.join(this.root, "inversions", this.checked(id));
  }
  editDir(id: string): string {
    return path.join(this.root, "edits", this.checked(id));
  }

  writeJson(file: string, value: unknown): void {
    fs.mkdirSync(path.dirname(file), { recursive: true });
    getPlatform().writeFileAtomic(file, `${JSON.stringify(value, null, 2)}\n`);
  }
  writeBytes(file: string, data: Uint8Array): void {
    fs.mkdirSync(path.dirname(file), { recursive: true });
    getPlatform().writeFileAtomic(file, data);
  }
  readJson<T>(file: string): T | undefined {
    try {
      return JSON.parse(fs.readFileSync(file, "utf8")) as T;
    } catch {
      return undefined;
    }
  }

  saveJob(job: JobRecord): void {
    this.writeJson(this.jobFile(job.id), job);
  }
  jobs(): JobRecord[] {
    return this.list("jobs", ".json")
      .map((id) => this.readJson<JobRecord>(this.jobFile(id)))
      .filter((j): j is JobRecord => j !== undefined);
  }

  /** Inversions whose meta.json is written (written last, so the inversion file is complete). */
  inversions(): InversionMeta[] {
    return this.list("inversions", "")
      .map((id) => this.inversion(id))
      .filter((m): m is InversionMeta => m !== undefined)
      .sort((a, b) => b.created.localeCompare(a.created));
  }
  inversion(id: string): InversionMeta | undefined {
    if (!ID.test(id)) return undefined;
    return this.readJson<InversionMeta>(path.join(this.inversionDir(id), "meta.json"));
  }
  deleteInversion(id: string): void {
    fs.rmSync(this.inversionDir(id), { recursive: true, force: true });
  }
  edit(id: string): EditMeta | undefined {
    if (!ID.test(id)) return undefined;
    return this.readJson<EditMeta>(path.join(this.editDir(id), "meta.json"));
  }

  private list(folder: string, ext: string): string[] {
    return fs
      .readdirSync(path.join(this.root, folder))
      .filter((n) => n.endsWith(ext))
      .map((n) => n.slice(0, n.length - ext.length))
      .filter((id) => ID.test(id));
  }
}
