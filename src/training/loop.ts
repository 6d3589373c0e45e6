/**
 * A training loop on the graph layer: one ORT run per step returns the loss and every parameter's
 * gradient; Adam (with warm-up, cosine decay and global-norm clipping) updates the arrays the
 * session feeds; an EMA of the weights is kept for export (and, on request, further EMAs to compare).
 * Progress with loss and ETA; checkpoints every few minutes and at the end.
 */

import type { Tensor } from "../graph/index.js";
import * as G from "../graph/index.js";
import { Adam } from "../optim/adam.js";
import { float32Output, type HostTensor, Session } from "../runtime/session.js";
import { checkCheckpointFits, saveCheckpoint, savedEma, type TrainingState } from "./checkpoint.js";

export interface LoopOptions {
  phase: string;
  loss: Tensor;
  /** Extra scalar outputs to log (e.g. reconstruction MSE). */
  metrics?: Record<string, Tensor>;
  params: Map<string, Tensor>;
  arrays: Map<string, Float32Array>;
  steps: number;
  lr: number;
  warmup: number;
  /** Final learning rate as a fraction of `lr` (cosine decay). */
  finalLrFraction?: number;
  clipNorm?: number;
  /** EMA decay, 0.999 by default, ramped up as min(decay, (1 + step)/(10 + step)) from the first step. */
  emaDecay?: number;
  /** Further EMA decays to keep beside `emaDecay` (TrainingState.emaTracks), for comparing averaging windows. */
  emaTracks?: number[];
  batch: (step: number) => Record<string, HostTensor | Float32Array | BigInt64Array>;
  checkpointFile: string;
  resume?: TrainingState | null;
  /** Seconds between checkpoints (0: after every step); 300 by default. A checkpoint is always written at the end. */
  checkpointSeconds?: number;
  extra?: Record<string, unknown>;
  threads?: number;
  log?: (line: string) => void;
}

export async function trainLoop(o: LoopOptions): Promise<TrainingState> {
  const log = o.log ?? ((l: string) => process.stderr.write(`${l}\n`));
  const keys = [...o.params.keys()];
  const tensors = keys.map((k) => o.params.get(k) as Tensor);
  const grads = G.grad(o.loss, tensors);
  const outputs: Record<string, Tensor> = { loss: o.loss, ...o.metrics };
  grads.forEach((g, i) => {
    outputs[`grad/${keys[i]}`] = g;
  });
  const session = await Session.create(G.compile(outputs, { name: `train_${o.phase}` }), { threads: o.threads });
  const arrays = keys.map((k) => o.arrays.get(k) as Float32Array);
  const adam = new Adam(arrays, { lr: o.lr });
  const copy = () => new Map(keys.map((k) => [k, Float32Array.from(o.arrays.get(k) as Float32Array)]));
  const decay = o.emaDecay ?? 0.999;
  // every EMA copy by decay: the exported one (`decay`) and the further tracks
  const emas = new Map([decay, ...(o.emaTracks ?? [])].map((d) => [d, copy()]));
  let start = 0;
  if (o.resume && o.resume.phase === o.phase) {
    checkCheckpointFits(o.checkpointFile, o.resume, keys, o.arrays);
    for (const k of keys) {
      (o.arrays.get(k) as Float32Array).set(o.resume.params.get(k) as Float32Array);
    }
    for (const [d, copies] of emas) {
      const saved = savedEma(o.resume, d, decay);
      if (!saved)
        log(`${o.phase}: the checkpoint has no EMA with decay ${d}; it starts from the checkpoint's main EMA`);
      for (const k of keys) (copies.get(k) as Float32Array).set((saved ?? o.resume.ema).get(k) as Float32Array);
    }
    adam.loadState({
      step: o.resume.step,
      m: keys.map((k) => o.resume?.adamM.get(k) as Float32Array),
      v: keys.map((k) => o.resume?.adamV.get(k) as Float32Array),
    });
    start = o.resume.step;
    log(`${o.phase}: resuming at step ${start}/${o.steps}`);
  }
  const state = (): TrainingState => {
    const { m, v } = adam.state();
    return {
      phase: o.phase,
      step: adam.step,
      params: new Map(keys.map((k) => [k, o.arrays.get(k) as Float32Array])),
      adamM: new Map(keys.map((k, i) => [k, m[i] as Float32Array])),
      adamV: new Map(keys.map((k, i) => [k, v[i] as Float32Array])),
      ema: emas.get(decay) as Map<string, Float32Array>,
      emaTracks: new Map([...emas].filter(([d]) => d !== decay)),
      extra: { ...o.extra, emaDecay: decay },
    };
  };

  // a decay above the warm-up's value at the last step never takes effect
  const lastRamp = emaDecayAt(1, o.steps - 1);
  for (const d of emas.keys())
    if (d > lastRamp)
      log(
        `${o.phase}: EMA decay ${d} is never reached in ${o.steps} steps (the warm-up ends at ${lastRamp.toFixed(5)}); that copy is the warm-up's average`,
      );
  const t0 = Date.now();
  let lastSave = Date.now();
  let smoothed = Number.NaN;
  const metricSums: Record<string, number> = {};
  let windowSteps = 0;
  for (let step = start; step < o.steps; step++) {
    const out = await session.run(o.batch(step));
    const loss = float32Output(out, "loss")[0] as number;
    if (!Number.isFinite(loss))
      throw new Error(`${o.phase}: loss became ${loss} at step ${step}; last checkpoint kept`);
    smoothed = Number.isNaN(smoothed) ? loss : 0.98 * smoothed + 0.02 * loss;
    for (const name of Object.keys(o.metrics ?? {}))
      metricSums[name] = (metricSums[name] ?? 0) + (float32Output(out, name)[0] as number);
    windowSteps++;
    const g = keys.map((k) => float32Output(out, `grad/${k}`));
    if (o.clipNorm) clipGlobalNorm(g, o.clipNorm);
    adam.lr = learningRate(o, step);
    adam.update(g);
    for (const [d, copies] of emas) {
      const warm = emaDecayAt(d, step);
      for (const k of keys) {
        const e = copies.get(k) as Float32Array;
        const p = o.arrays.get(k) as Float32Array;
        for (let i = 0; i < p.length; i++) e[i] = warm * (e[i] as number) + (1 - warm) * (p[i] as number);
      }
    }
    const done = step + 1;
    if (done % 50 === 0 || done === o.steps) {
      const rate = (done - start) / ((Date.now() - t0) / 1000);
      const eta = (o.steps - done) / rate;
      const metrics = Object.entries(metricSums)
        .map(([n, s]) => `${n} ${(s / windowSteps).toExponential(3)}`)
        .join("  ");
      for (const n of Object.keys(metricSums)) metricSums[n] = 0;
      windowSteps = 0;
      log(
        `${o.phase} step ${done}/${o.steps}  loss ${smoothed.toExponential(3)}  ${metrics}  lr ${adam.lr.toExponential(2)}  ${rate.toFixed(2)} step/s  ETA ${formatSeconds(eta)}`,
      );
    }
    if (Date.now() - lastSave >= (o.checkpointSeconds ?? 300) * 1000 || done === o.steps) {
      saveCheckpoint(o.checkpointFile, state());
      lastSave = Date.now();
    }
  }
  await session.release();
  return state();
}

/** The EMA's decay at step `step` (0-based): `decay`, capped during warm-up at (1 + step)/(10 + step). */
function emaDecayAt(decay: number, step: number): number {
  return Math.min(decay, (1 + step) / (10 + step));
}

/**
 * Learning rate of step `step` (0-based): linear warm-up to `lr` over `warmup` steps (Goyal et al. 2017), then
 * half a cosine (Loshchilov & Hutter 2017, SGDR without restarts) from `lr` down to `finalLrFraction`·lr,
 * reached after the last step.
 */
export function learningRate(
  o: Pick<LoopOptions, "lr" | "warmup" | "steps" | "finalLrFraction">,
  step: number,
): number {
  if (step < o.warmup) return (o.lr * (step + 1)) / o.warmup;
  const progress = (step - o.warmup) / Math.max(1, o.steps - o.warmup);
  const floor = o.finalLrFraction ?? 0.1;
  return o.lr * (floor + (1 - floor) * 0.5 * (1 + Math.cos(Math.PI * progress)));
}

function clipGlobalNorm(grads: Float32Array[], maxNorm: number): void {
  let sum = 0;
  for (const g of grads) for (let i = 0; i < g.length; i++) sum += (g[i] as number) ** 2;
  const norm = Math.sqrt(sum);
  if (norm <= maxNorm) return;
  const scale = maxNorm / norm;
  for (const g of grads) for (let i = 0; i < g.length; i++) g[i] = (g[i] as number) * scale;
}

export function formatSeconds(s: number): string {
  if (!Number.isFinite(s)) return "?";
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = Math.floor(s % 60);
  return h ? `${h}h${String(m).padStart(2, "0")}m` : `${m}m${String(sec).padStart(2, "0")}s`;
}
