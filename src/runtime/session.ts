/**
 * ONNX Runtime sessions for compiled graphs: created once per graph and reused, with feeds
 * checked against the graph's declared inputs and ORT failures reported with the node's meaning.
 */
import type { CompiledGraph, CompileOptions, ValueSpec } from "../graph/compile.js";
import { type AnyTypedArray, DTYPES, type DType, dtypeFromOrt } from "../graph/dtype.js";
import { getPlatform, type OrtSession, type OrtSessionOptions, type OrtTensor } from "../platform/platform.js";

/** Runs of every session in this process and the wall time spent inside ONNX Runtime's run (for benchmarks). */
const RUN_STATS = { runs: 0, seconds: 0 };

/** A copy of the run counters (see RUN_STATS); `reset` starts them again from zero. */
export function sessionRunStats(reset = false): { runs: number; seconds: number } {
  const copy = { ...RUN_STATS };
  if (reset) Object.assign(RUN_STATS, { runs: 0, seconds: 0 });
  return copy;
}

/** A tensor in host memory. */
export interface HostTensor {
  data: AnyTypedArray;
  shape: number[];
  dtype: DType;
}

export interface SessionOptions {
  /**
   * Intra-op threads (default: every CPU the process may use; ORT's own default picks fewer on
   * these VMs and measured 1.7× slower).
   */
  threads?: number;
  /** Execution providers in order of preference; CPU is always the last resort. */
  executionProviders?: string[];
  /** ORT log level, 0 (verbose) to 4 (fatal); default 3. */
  logLevel?: 0 | 1 | 2 | 3 | 4;
  /**
   * ORT's memory pattern: one block planned for all intermediates (default true). Off, tensors
   * come from the arena one by one: measured 4 GB less peak memory for SD's forward + VJP at 64×64.
   */
  memoryPattern?: boolean;
  /** Extra ORT session config entries ("session.xxx": "value"). */
  config?: Record<string, string>;
  /** Options for compiling graphs that this session runs (external data folder for big models). */
  compile?: { externalDir?: string; inlineLimitBytes?: number };
  /**
   * How UNet sessions hold the weights. "shared": one host copy, fed to every session (inversion's
   * gradient graph and the editing graphs), which ORT reads in place: least memory and the shortest
   * setup, but ORT cannot prepack fed weights into its blocked-layout convolution kernels, and a
   * gradient graph adds one flipped copy of each convolution kernel, made on the host once per process
   * (1.5 GB for SD 1.5, 2.2× faster than flipping it in the graph every run). "per-session": each
   * session holds them as initializers in ORT's reordered, prepacked layouts, a copy per session.
   * "auto" (default): per-session for the inversion's gradient graph, whose hundreds of runs pay for
   * it (SD 1.5 forward + VJP at 64×64, bench:unet 2026-12-03: 11.60 s and 9.53 GB peak against
   * 15.66 s and 8.55 GB shared); for forward graphs shared when the weights exceed 1 GiB (Stable
   * Diffusion: fwd64 5.10 s per-session, 6.50 s shared, but every session would hold another 3.4 GB
   * copy), per-session below — except the editing denoiser and the inversion's forward step, which
   * keep their own when the machine has room for them (roomForOwnWeights).
   */
  unetWeights?: "auto" | "shared" | "per-session";
}

/**
 * Compile options for a UNet graph under `options.unetWeights`; `use`: a forward graph, one run at every
 * step of a call ("steps": the editing denoiser, the inversion's forward-only step), or one with a backward.
 */
export function unetCompileOptions(
  options: SessionOptions,
  use: "forward" | "steps" | "gradient" = "forward",
): CompileOptions {
  const weights = options.unetWeights ?? "auto";
  const autoMode: CompileOptions["frozenWeights"] =
    use === "gradient"
      ? "initializers"
      : use === "steps"
        ? (bytes) => (roomForOwnWeights(bytes) ? "initializers" : "auto")
        : "auto";
  const modes = {
    auto: autoMode,
    shared: "inputs",
    "per-session": "initializers",
  } as const;
  if (!(weights in modes)) {
    throw new Error(`unetWeights must be "auto", "shared" or "per-session", got ${JSON.stringify(weights)}`);
  }
  return { frozenWeights: modes[weights], ...options.compile };
}

/** Room asked for above twice the weights (the session's prepacked copy and its build) to keep them per session. */
const KEEP_WEIGHTS_MARGIN = 2 * 2 ** 30;

/**
 * Whether a forward graph run at every step of a call (unetCompileOptions' "steps") keeps `bytes` of
 * weights of its own rather than sharing the host copy: prepacked into ORT's blocked convolution
 * layout, the denoiser's step at 64×64 latents takes about 30% less time (bench:methods, direct at
 * 512², 5 steps: edit and decode 105 s against 149 s) for one more copy of the weights per session (peak
 * 12.95 against 9.93 GB with both sessions' own), so it does when the platform reports room for twice
 * the weights and a margin.
 */
export function roomForOwnWeights(bytes: number): boolean {
  const free = getPlatform().availableMemory();
  return free !== undefined && free >= 2 * bytes + KEEP_WEIGHTS_MARGIN;
}

export function availableExecutionProviders(): string[] {
  return getPlatform().ort().backends();
}

export class Session {
  /** Weight inputs wrapped once: ORT reads their arrays at every run, so in-place updates take effect. */
  private readonly weightFeeds: Map<string, OrtTensor>;

  private constructor(
    readonly graph: CompiledGraph,
    private readonly session: OrtSession,
  ) {
    this.weightFeeds = new Map(graph.weightInputs.map((w) => [w.name, toOrt(graph.name, w, w.data)]));
  }

  static async create(graph: CompiledGraph, options: SessionOptions = {}): Promise<Session> {
    const platform = getPlatform();
    const ort = platform.ort();
    const providers = [...(options.executionProviders ?? []).filter((p) => p !== "cpu"), "cpu"];
    const available = ort.backends();
    for (const p of providers) {
      if (!available.includes(p)) {
        throw new Error(
          `execution provider '${p}' is not available in this ${ort.name} build (available: ${available.join(", ")})`,
        );
      }
    }
    const sessionOptions: OrtSessionOptions = {
      executionProviders: providers,
      graphOptimizationLevel: "all",
      enableCpuMemArena: true,
      enableMemPattern: options.memoryPattern ?? true,
      logSeverityLevel: options.logLevel ?? 3,
      extra: { session: {}, ...nest(options.config ?? {}) },
      intraOpNumThreads: options.threads ?? platform.defaultThreads(),
      interOpNumThreads: 1,
    };
    try {
      const session = await ort.createSession(
        graph.model.kind === "file" ? graph.model.path : graph.model.bytes,
        sessionOptions,
      );
      return new Session(graph, session);
    } catch (err) {
      throw explain(graph, err, "creating the session for");
    }
  }

  /** Runs the graph. Weight inputs are fed from their own arrays unless given in `feeds`. */
  async run(
    feeds: Record<string, HostTensor | AnyTypedArray>,
    outputs?: readonly string[],
  ): Promise<Record<string, HostTensor>> {
    const ortFeeds: Record<string, OrtTensor> = {};
    const known = new Set([...this.graph.inputs.map((i) => i.name), ...this.graph.weightInputs.map((w) => w.name)]);
    for (const name of Object.keys(feeds)) {
      if (!known.has(name)) {
        throw new Error(
          `${this.graph.name}: unknown input '${name}' (inputs: ${this.graph.inputs.map((i) => i.name).join(", ")})`,
        );
      }
    }
    for (const spec of this.graph.inputs) {
      const feed = feeds[spec.name];
      if (feed === undefined) throw new Error(`${this.graph.name}: missing input '${spec.name}' ${describeSpec(spec)}`);
      ortFeeds[spec.name] = toOrt(this.graph.name, spec, feed);
    }
    for (const w of this.graph.weightInputs) {
      const feed = feeds[w.name];
      if (feed && this.graph.weightInputs.some((d) => d.name.startsWith(`${w.name}::`))) {
        throw new Error(
          `${this.graph.name}: weight '${w.name}' cannot be fed per run: the graph holds copies derived from it once (${w.name}::…)`,
        );
      }
      ortFeeds[w.name] = feed ? toOrt(this.graph.name, w, feed) : (this.weightFeeds.get(w.name) as OrtTensor);
    }
    let result: Record<string, OrtTensor>;
    const t0 = performance.now();
    try {
      result = outputs ? await this.session.run(ortFeeds, [...outputs]) : await this.session.run(ortFeeds);
    } catch (err) {
      throw explain(this.graph, err, "running");
    } finally {
      RUN_STATS.runs++;
      RUN_STATS.seconds += (performance.now() - t0) / 1000;
    }
    const out: Record<string, HostTensor> = {};
    for (const [name, t] of Object.entries(result)) {
      out[name] = { data: t.data as AnyTypedArray, shape: [...t.dims], dtype: dtypeFromOrt(t.type) };
    }
    return out;
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}

/** A float32 output by name, or an error naming what the graph returned instead. */
export function float32Output(out: Record<string, HostTensor>, name: string): Float32Array {
  const t = out[name];
  if (!t) throw new Error(`no output '${name}' (got ${Object.keys(out).join(", ")})`);
  if (!(t.data instanceof Float32Array)) throw new Error(`output '${name}' is ${t.dtype}, expected float32`);
  return t.data;
}

function describeSpec(s: ValueSpec): string {
  return `${s.dtype}[${s.shape.join(", ")}]`;
}

function toOrt(graphName: string, spec: ValueSpec, feed: HostTensor | AnyTypedArray): OrtTensor {
  const host: HostTensor =
    "data" in feed && "shape" in feed
      ? (feed as HostTensor)
      : { data: feed as AnyTypedArray, shape: spec.shape, dtype: spec.dtype };
  const expected = spec.shape.reduce((a, b) => a * b, 1);
  if (host.dtype !== spec.dtype) {
    throw new Error(
      `${graphName}: input '${spec.name}' must be ${describeSpec(spec)}, got ${host.dtype}[${host.shape.join(", ")}]`,
    );
  }
  if (
    host.shape.length !== spec.shape.length ||
    host.shape.some((d, i) => d !== spec.shape[i]) ||
    host.data.length !== expected
  ) {
    throw new Error(
      `${graphName}: input '${spec.name}' must be ${describeSpec(spec)}, got shape [${host.shape.join(", ")}] with ${host.data.length} values`,
    );
  }
  return getPlatform().ort().tensor(DTYPES[spec.dtype].ort, host.data, spec.shape);
}

function nest(config: Record<string, string>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(config)) {
    const parts = key.split(".");
    let at = out;
    for (const p of parts.slice(0, -1)) {
      at[p] ??= {};
      at = at[p] as Record<string, unknown>;
    }
    at[parts[parts.length - 1] as string] = value;
  }
  return out;
}

/** ORT names the failing node; add what that node computes, with shapes. */
function explain(graph: CompiledGraph, err: unknown, doing: string): Error {
  const message = err instanceof Error ? err.message : String(err);
  const match = /Name:'([^']+)'/.exec(message) ?? /node ([^\s]+)/i.exec(message);
  const info = match ? graph.nodeInfo.get(match[1] as string) : undefined;
  const where = info ? `\n  at node '${match?.[1]}': ${info}` : "";
  return new Error(`ONNX Runtime failed ${doing} graph '${graph.name}': ${message}${where}`, { cause: err });
}
