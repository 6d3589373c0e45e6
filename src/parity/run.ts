/**
 * The parity check against golden tensors from the reference implementation (diffusers and
 * transformers; see the parity README): every entry of `golden.json` is recomputed from the
 * model folder and compared, with the README's tolerances. An entry this runner does not know is a
 * failure, never a skip.
 */
import fs from "node:fs";
import path from "node:path";
import * as G from "../graph/index.js";
import { GuidedStep } from "../inversion/guided_step.js";
import { loadStableDiffusion, type StableDiffusion } from "../models/loader.js";
import { SafetensorsFile } from "../models/safetensors.js";
import { Session, type SessionOptions } from "../runtime/session.js";
import { ddimInvertStep, ddimSchedule, ddimStep, ddimStepCoefficients } from "../schedulers/ddim.js";

export interface ParityLine {
  name: string;
  /** max |ours − reference| (token ids: number of mismatching ids). */
  maxDiff: number;
  allowed: number;
  ok: boolean;
  note?: string;
}

interface Entry {
  shape: number[];
  description?: string;
  timestep?: number;
}

interface Golden {
  entries: Record<string, Entry>;
  tokenizer?: { cases: { text: string; ids: number[]; ids_alt_text_cleaning?: number[] }[] };
  text_encoder?: { prompts: string[]; input_ids: number[][] };
  scheduler?: { num_inference_steps: number; timesteps_50?: number[] };
  nulltext?: { timestep: number; guidance_scale: number; num_inference_steps: number };
}

const MODEL_TOLERANCE = 1e-4; // relative to max |ref|
const SCHEDULER_TOLERANCE = 1e-6; // absolute

function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] as number));
  return m;
}

function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) return Number.POSITIVE_INFINITY;
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs((a[i] as number) - (b[i] as number));
    if (!(d <= m)) m = Number.isNaN(d) ? Number.POSITIVE_INFINITY : d;
  }
  return m;
}

export interface ParityOptions {
  /** The model to check (default `<dir>/model`): a diffusers folder or a single-file checkpoint. */
  model?: string;
  /** Configs for a single-file checkpoint (see `loadStableDiffusion`). */
  configFrom?: string;
  threads?: number;
  /** How the null-text step's UNet holds its weights (see SessionOptions.unetWeights; default "auto"). */
  unetWeights?: SessionOptions["unetWeights"];
  onLine?: (l: ParityLine) => void;
}

/** Runs every check; `onLine` sees each result as it is computed. */
export async function runParity(dir: string, options: ParityOptions = {}): Promise<ParityLine[]> {
  const { threads, unetWeights, onLine = () => {} } = options;
  const golden = JSON.parse(fs.readFileSync(path.join(dir, "golden.json"), "utf8")) as Golden;
  const tensors = SafetensorsFile.open(path.join(dir, "golden.safetensors"));
  const model = await loadStableDiffusion(options.model ?? path.join(dir, "model"), { configFrom: options.configFrom });
  const lines: ParityLine[] = [];
  const emit = (l: ParityLine) => {
    lines.push(l);
    onLine(l);
  };
  const ref = (name: string) => {
    if (!tensors.entries.has(name)) throw new Error(`golden.safetensors has no tensor '${name}'`);
    return tensors.readFloat32(name);
  };
  const compare = (name: string, got: ArrayLike<number>, tolerance: "model" | "scheduler", note?: string) => {
    const expected = ref(name);
    const allowed = tolerance === "model" ? MODEL_TOLERANCE * maxAbs(expected) : SCHEDULER_TOLERANCE;
    const d = maxDiff(got, expected);
    emit({ name, maxDiff: d, allowed, ok: d <= allowed, note });
  };

  // Tokenizer cases: exact ids (either text-cleaning path of the reference).
  golden.tokenizer?.cases.forEach((c, i) => {
    const ids = model.tokenizer.encode(c.text).ids;
    const mismatches = (want: number[]) =>
      want.reduce((n, id, k) => n + (ids[k] === id ? 0 : 1), Math.abs(want.length - ids.length));
    const d = Math.min(
      mismatches(c.ids),
      c.ids_alt_text_cleaning ? mismatches(c.ids_alt_text_cleaning) : Number.POSITIVE_INFINITY,
    );
    emit({ name: `tokenizer.case${i} ${JSON.stringify(c.text).slice(0, 40)}`, maxDiff: d, allowed: 0, ok: d === 0 });
  });

  const checkers = new Checkers(model, golden, ref, compare, emit, { threads, unetWeights });
  for (const name of Object.keys(golden.entries)) {
    try {
      await checkers.check(name, golden.entries[name] as Entry);
    } catch (err) {
      emit({ name, maxDiff: Number.NaN, allowed: 0, ok: false, note: (err as Error).message });
    }
  }
  await checkers.release();
  tensors.close();
  return lines;
}

class Checkers {
  private sessions: Session[] = [];
  private textOut?: Float32Array;
  private guided?: GuidedStep;

  constructor(
    private readonly model: StableDiffusion,
    private readonly golden: Golden,
    private readonly ref: (name: string) => Float32Array,
    private readonly compare: (
      name: string,
      got: ArrayLike<number>,
      tolerance: "model" | "scheduler",
      note?: string,
    ) => void,
    private readonly emit: (l: ParityLine) => void,
    private readonly options: Pick<SessionOptions, "threads" | "unetWeights">,
  ) {}

  private async session(outputs: Record<string, G.Tensor>, name: string): Promise<Session> {
    const s = await Session.create(G.compile(outputs, { name }), { threads: this.options.threads });
    this.sessions.push(s);
    return s;
  }

  private schedule() {
    const steps = this.golden.scheduler?.num_inference_steps ?? this.golden.nulltext?.num_inference_steps ?? 50;
    return ddimSchedule(this.model.scheduler, steps);
  }

  /** The text encoder on the golden prompts, tokenized by our tokenizer (ids checked against the reference's). */
  private async text(): Promise<Float32Array> {
    if (this.textOut) return this.textOut;
    const te = this.golden.text_encoder;
    if (!te) throw new Error("golden.json has no text_encoder prompts");
    const ids = te.prompts.map((p) => this.model.tokenizer.encode(p).ids);
    const wrong = ids.flat().filter((id, k) => id !== te.input_ids.flat()[k]).length;
    if (wrong) throw new Error(`our token ids differ from the reference's in ${wrong} places`);
    const input = G.input("input_ids", [ids.length, (ids[0] as number[]).length], "int64");
    const s = await this.session({ h: this.model.textEncoder.forward(input) }, "text_encoder");
    const out = await s.run({ input_ids: BigInt64Array.from(ids.flat().map(BigInt)) });
    this.textOut = out.h?.data as Float32Array;
    return this.textOut;
  }

  async check(name: string, e: Entry): Promise<void> {
    const inputs = new Set([
      "unet.sample",
      "unet.encoder_hidden_states",
      "unet.vjp_cotangent",
      "vae.encoder.image",
      "vae.decoder.latent",
      "ddim.model_output",
      "ddim.sample",
      "nulltext.latent_cur",
      "nulltext.latent_prev",
    ]);
    if (inputs.has(name)) {
      const data = this.ref(name);
      const finite = data.every(Number.isFinite);
      this.emit({
        name,
        maxDiff: 0,
        allowed: 0,
        ok: finite && data.length === e.shape.reduce((a, b) => a * b, 1),
        note: "input",
      });
      return;
    }
    let m: RegExpMatchArray | null = null;
    if (name === "text_encoder.last_hidden_state") return this.compare(name, await this.text(), "model");
    if (name === "nulltext.cond_embeddings" || name === "nulltext.uncond_embeddings") {
      return this.compare(name, await this.embedding(name === "nulltext.cond_embeddings" ? 0 : -1), "model");
    }
    m = name.match(/^unet\.t(\d+)\.(out|vjp_context)$/);
    if (m) return this.unet(name, Number(m[1]), m[2] as string);
    if (name.startsWith("vae.")) return this.vae(name);
    if (name.startsWith("scheduler.")) return this.scheduler(name);
    m = name.match(/^ddim\.(step|invert)\.t(\d+)\.(prev_sample|pred_original_sample|next_sample)$/);
    if (m) {
      const t = Number(m[2]);
      const s = this.schedule();
      const eps = this.ref("ddim.model_output");
      const x = this.ref("ddim.sample");
      if (m[1] === "step") {
        const r = ddimStep(s, eps, t, x);
        return this.compare(name, m[3] === "prev_sample" ? r.prevSample : r.predOriginalSample, "scheduler");
      }
      const r = ddimInvertStep(s, eps, t, x);
      return this.compare(name, m[3] === "next_sample" ? r.nextSample : r.predOriginalSample, "scheduler");
    }
    if (name.startsWith("nulltext.")) return this.nulltext(name);
    throw new Error("unknown entry: this runner does not know how to recompute it");
  }

  /** Row `index` of the text encoder output (−1: the last prompt, the empty one). */
  private async embedding(index: number): Promise<Float32Array> {
    const out = await this.text();
    const prompts = this.golden.text_encoder?.prompts.length ?? 1;
    const row = out.length / prompts;
    const i = index < 0 ? prompts + index : index;
    return out.subarray(i * row, (i + 1) * row);
  }

  private unetSessions = new Map<string, Session>();

  private async unet(name: string, t: number, what: string): Promise<void> {
    const sample = this.ref("unet.sample");
    const context = this.ref("unet.encoder_hidden_states");
    const sampleShape = this.golden.entries["unet.sample"]?.shape as number[];
    const contextShape = this.golden.entries["unet.encoder_hidden_states"]?.shape as number[];
    const key = `${sampleShape}|${contextShape}`;
    let s = this.unetSessions.get(key);
    if (!s) {
      const x = G.input("sample", sampleShape);
      const ts = G.input("timestep", [sampleShape[0] as number]);
      const c = G.input("context", contextShape);
      const cot = G.input("cotangent", sampleShape);
      const out = this.model.unet.forward(x, ts, c);
      const [vjp] = G.vjp([out], [cot], [c]);
      s = await this.session({ out, vjp: vjp as G.Tensor }, "unet");
      this.unetSessions.set(key, s);
    }
    const r = await s.run({
      sample,
      timestep: new Float32Array(sampleShape[0] as number).fill(t),
      context,
      cotangent: this.ref("unet.vjp_cotangent"),
    });
    this.compare(name, (what === "out" ? r.out : r.vjp)?.data as Float32Array, "model");
  }

  private vaeOut?: Record<string, Float32Array>;

  private async vae(name: string): Promise<void> {
    if (!this.vaeOut) {
      const image = G.input("image", this.golden.entries["vae.encoder.image"]?.shape as number[]);
      const latent = G.input("latent", this.golden.entries["vae.decoder.latent"]?.shape as number[]);
      const { mean, logvar } = this.model.vae.encode(image);
      const s = await this.session({ mean, logvar, decoded: this.model.vae.decode(latent) }, "vae");
      const r = await s.run({ image: this.ref("vae.encoder.image"), latent: this.ref("vae.decoder.latent") });
      this.vaeOut = {
        "vae.encoder.posterior_mean": r.mean?.data as Float32Array,
        "vae.encoder.posterior_logvar": r.logvar?.data as Float32Array,
        "vae.decoder.out": r.decoded?.data as Float32Array,
      };
    }
    const got = this.vaeOut[name];
    if (!got) throw new Error("unknown VAE entry");
    this.compare(name, got, "model");
  }

  private scheduler(name: string): void {
    const s = this.schedule();
    const m = name.match(/^scheduler\.timesteps_(\d+)$/);
    let got: ArrayLike<number>;
    if (name === "scheduler.alphas_cumprod") got = s.alphasCumprod;
    else if (name === "scheduler.final_alpha_cumprod") got = [s.finalAlphaCumprod];
    else if (m) got = ddimSchedule(this.model.scheduler, Number(m[1])).timesteps;
    else throw new Error("unknown scheduler entry");
    this.compare(name, got, "scheduler");
  }

  private nulltextOut?: Record<string, ArrayLike<number>>;

  private async nulltext(name: string): Promise<void> {
    if (!this.nulltextOut) {
      const nt = this.golden.nulltext;
      if (!nt) throw new Error("golden.json has no nulltext settings");
      const shape = this.golden.entries["nulltext.latent_cur"]?.shape as number[];
      this.guided = await GuidedStep.create(this.model, [shape[2] as number, shape[3] as number], this.options);
      const latent = this.ref("nulltext.latent_cur");
      const cond = this.ref("nulltext.cond_embeddings");
      const uncond = this.ref("nulltext.uncond_embeddings");
      const condEps = await this.guided.eps(latent, nt.timestep, cond);
      const coef = ddimStepCoefficients(
        ddimSchedule(this.model.scheduler, nt.num_inference_steps),
        nt.timestep,
        "denoise",
      );
      const w = nt.guidance_scale;
      const r = await this.guided.lossAndGrad({
        latent,
        timestep: nt.timestep,
        context: uncond,
        fixedEps: condEps,
        target: this.ref("nulltext.latent_prev"),
        guidance: w,
        variableIsNull: true,
        sampleCoef: coef.sample,
        epsCoef: coef.modelOutput,
      });
      this.nulltextOut = {
        "nulltext.noise_pred_cond": condEps,
        "nulltext.noise_pred_uncond": r.eps,
        "nulltext.latents_prev_rec": r.prev,
        "nulltext.loss": [r.loss],
        "nulltext.grad_uncond": r.grad,
      };
    }
    const got = this.nulltextOut[name];
    if (!got) throw new Error("unknown nulltext entry");
    this.compare(name, got, "model");
  }

  async release(): Promise<void> {
    for (const s of this.sessions) await s.release();
    await this.guided?.release();
  }
}
