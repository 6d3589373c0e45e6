/**
 * Null-text inversion (Mokady et al. 2023, arXiv 2211.09794, Algorithm 1) and the paper's two
 * ablations (§4, Fig. 4): one global ∅ for all timesteps, and the prompt embedding optimised instead
 * of ∅ ("textual inversion with a pivot"). The optimisation itself is null_text.ts; this module says
 * what the methods store (the optimised embeddings, [steps or 1, L, D]) and how they condition the
 * sampler.
 */
import {
  expectTensor,
  type InversionMethodModule,
  type InversionRun,
  type InversionSettings,
  invalidSetting,
  type MethodState,
  type StoredTensor,
  stack,
  throwIfAborted,
  unstack,
  validateCommon,
} from "../method.js";
import { type NullTextMode, type NullTextState, nullTextOptimization } from "../null_text.js";

export interface NullTextSettings extends InversionSettings {
  /** N: Adam iterations per timestep (passes over the trajectory for nti-global). */
  innerSteps: number;
  /** Base learning rate, decayed as lr·(1 − i/100). */
  lr: number;
  /** ε of the early stop; the threshold at step i is ε + earlyStopSlope·i. */
  earlyStop: number;
  earlyStopSlope: number;
}

const HELP = {
  innerSteps: "Adam iterations per step (N, default 10)",
  lr: "learning rate, decayed as lr·(1 − i/100) (default 0.01)",
  earlyStop: "early stop ε: stop a step's iterations when the loss < ε + slope·i (default 1e-5)",
  earlyStopSlope: "the early stop's slope per step (default 2e-5)",
};

function validate(s: NullTextSettings): void {
  validateCommon(s);
  if (!Number.isInteger(s.innerSteps) || s.innerSteps < 1 || s.innerSteps > 1000)
    throw invalidSetting(s.method, "innerSteps", s.innerSteps, "an integer in 1..1000");
  if (!(typeof s.lr === "number" && s.lr > 0 && s.lr < 10))
    throw invalidSetting(s.method, "lr", s.lr, "a number in (0, 10)");
  for (const k of ["earlyStop", "earlyStopSlope"] as const) {
    if (k in s && !(typeof s[k] === "number" && s[k] >= 0 && s[k] < 1))
      throw invalidSetting(s.method, k, s[k], "a number in [0, 1)");
  }
}

function toState(s: NullTextState): MethodState {
  const tensors: Record<string, Float32Array> = { latent: s.latent, current: s.current };
  s.embeddings.forEach((e, i) => {
    tensors[`embedding.${i}`] = e;
  });
  return {
    completed: s.completed,
    meta: { unetEvals: s.unetEvals, vjps: s.vjps, trace: s.trace },
    tensors,
  };
}

function fromState(m: MethodState): NullTextState {
  const completed = m.completed;
  const tensor = (name: string) => {
    const t = m.tensors[name];
    if (!t) throw new Error(`null-text resume state: '${name}' is missing`);
    return t;
  };
  return {
    completed,
    embeddings: Array.from({ length: completed }, (_, i) => tensor(`embedding.${i}`)),
    latent: tensor("latent"),
    current: tensor("current"),
    unetEvals: m.meta.unetEvals as number,
    vjps: m.meta.vjps as number,
    trace: m.meta.trace as NullTextState["trace"],
  };
}

async function optimise(
  run: InversionRun<NullTextSettings>,
  mode: NullTextMode,
): Promise<Record<string, StoredTensor>> {
  const pivots = await run.pivots();
  const { settings: s } = run;
  const state = await nullTextOptimization(
    run.step,
    run.schedule,
    pivots,
    run.cond,
    run.uncond,
    { ...s, mode },
    {
      resume: run.resume ? fromState(run.resume) : undefined,
      onProgress: (p) => run.progress(p),
      onTimestep: async (st) => {
        await run.checkpoint(toState(st));
        throwIfAborted(run.signal);
      },
      signal: run.signal,
    },
  );
  run.counters.unetEvals += state.unetEvals;
  run.counters.vjps += state.vjps;
  run.trace.push(
    ...state.trace.map((t, i) => ({
      step: i + 1,
      iterations: t.iterations,
      first_loss: t.firstLoss,
      last_loss: t.lastLoss,
      early_stop: t.earlyStop,
    })),
  );
  return { embeddings: stack(state.embeddings, run.embeddingShape) };
}

function checkEmbeddings(count: (s: NullTextSettings) => number, method: string) {
  return (tensors: Record<string, StoredTensor>, s: NullTextSettings, [L, D]: [number, number]) => {
    expectTensor(tensors, "embeddings", [count(s), L, D], method);
  };
}

/** Null-text inversion: ∅_t optimised per step so that guided DDIM steps follow the pivot. */
export const nti: InversionMethodModule<NullTextSettings> = {
  id: "nti",
  optimises: true,
  summary: "null-text inversion: ∅_t optimised per step along the DDIM pivot (Mokady et al. 2023)",
  defaults: { steps: 50, guidance: 7.5, innerSteps: 10, lr: 1e-2, earlyStop: 1e-5, earlyStopSlope: 2e-5 },
  help: HELP,
  validate,
  invert: (run) => optimise(run, "per-step"),
  checkStored: checkEmbeddings((s) => s.steps, "nti"),
  conditioning: (tensors) => ({ nulls: unstack(tensors.embeddings as StoredTensor) }),
};

/** The paper's ablation with one ∅ for all timesteps (N passes over the trajectory, no early stop). */
export const ntiGlobal: InversionMethodModule<NullTextSettings> = {
  id: "nti-global",
  optimises: true,
  summary: "ablation: one global ∅ optimised for all steps (Mokady et al. 2023, §4)",
  defaults: { steps: 50, guidance: 7.5, innerSteps: 10, lr: 1e-2 },
  help: { innerSteps: "passes over the trajectory (default 10)", lr: HELP.lr },
  validate,
  invert: (run) => optimise(run, "global"),
  checkStored: checkEmbeddings(() => 1, "nti-global"),
  conditioning: (tensors) => ({ nulls: unstack(tensors.embeddings as StoredTensor)[0] as Float32Array }),
};

/** The paper's textual-inversion ablation: the prompt embedding C_t optimised per step, ∅ the empty prompt's. */
export const ntiConditional: InversionMethodModule<NullTextSettings> = {
  id: "nti-conditional",
  optimises: true,
  summary: "ablation: the prompt embedding optimised per step instead of ∅ (Mokady et al. 2023, §4)",
  defaults: nti.defaults,
  help: HELP,
  validate,
  invert: (run) => optimise(run, "conditional"),
  checkStored: checkEmbeddings((s) => s.steps, "nti-conditional"),
  conditioning: (tensors, _s, { empty }) => ({ nulls: empty, source: unstack(tensors.embeddings as StoredTensor) }),
};
