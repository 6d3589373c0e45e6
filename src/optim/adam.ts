/**
 * Adam (Kingma & Ba 2015, Algorithm 1) with PyTorch's defaults and update order
 * (torch.optim.Adam), and optional decoupled weight decay (AdamW, Loshchilov & Hutter 2019).
 * Parameters are updated in place; the arrays are the ones the graph runtime feeds.
 */
export interface AdamOptions {
  lr: number;
  beta1?: number;
  beta2?: number;
  eps?: number;
  /** Decoupled weight decay (AdamW); 0 gives plain Adam. */
  weightDecay?: number;
}

export class Adam {
  private readonly m: Float32Array[];
  private readonly v: Float32Array[];
  step = 0;
  lr: number;
  private readonly beta1: number;
  private readonly beta2: number;
  private readonly eps: number;
  private readonly weightDecay: number;

  constructor(
    readonly params: Float32Array[],
    options: AdamOptions,
  ) {
    this.lr = options.lr;
    this.beta1 = options.beta1 ?? 0.9;
    this.beta2 = options.beta2 ?? 0.999;
    this.eps = options.eps ?? 1e-8;
    this.weightDecay = options.weightDecay ?? 0;
    this.m = params.map((p) => new Float32Array(p.length));
    this.v = params.map((p) => new Float32Array(p.length));
  }

  /** One update with the gradients of every parameter, in the constructor's order. */
  update(grads: readonly Float32Array[]): void {
    if (grads.length !== this.params.length) {
      throw new Error(`Adam: ${grads.length} gradients for ${this.params.length} parameters`);
    }
    this.step++;
    const { beta1, beta2, eps, lr } = this;
    const c1 = 1 - beta1 ** this.step;
    const c2 = 1 - beta2 ** this.step;
    const stepSize = lr / c1;
    const sqrtC2 = Math.sqrt(c2);
    const decay = 1 - lr * this.weightDecay;
    this.params.forEach((p, k) => {
      const g = grads[k] as Float32Array;
      const m = this.m[k] as Float32Array;
      const v = this.v[k] as Float32Array;
      if (g.length !== p.length)
        throw new Error(`Adam: gradient ${k} has ${g.length} values for ${p.length} parameters`);
      for (let i = 0; i < p.length; i++) {
        const gi = g[i] as number;
        const mi = beta1 * (m[i] as number) + (1 - beta1) * gi;
        const vi = beta2 * (v[i] as number) + (1 - beta2) * gi * gi;
        m[i] = mi;
        v[i] = vi;
        // PyTorch: p -= lr/c1 · m / (sqrt(v)/sqrt(c2) + eps)
        p[i] = (p[i] as number) * decay - (stepSize * mi) / (Math.sqrt(vi) / sqrtC2 + eps);
      }
    });
  }

  /** Moments and step count, for checkpoints. */
  state(): { step: number; m: Float32Array[]; v: Float32Array[] } {
    return { step: this.step, m: this.m, v: this.v };
  }

  loadState(state: { step: number; m: Float32Array[]; v: Float32Array[] }): void {
    if (state.m.length !== this.m.length) throw new Error("Adam: checkpoint state does not match the parameters");
    state.m.forEach((a, k) => (this.m[k] as Float32Array).set(a));
    state.v.forEach((a, k) => (this.v[k] as Float32Array).set(a));
    this.step = state.step;
  }
}
