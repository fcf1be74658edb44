/**
 * Training-free merge by unit selection (beyond the paper): pool the k·d_ff hidden units of the window's k
 * layers, keep the d_ff of them whose activations best reproduce every position's original FF output, and
 * solve the shared W_out (and b_out where the model has one) by ridge least squares over all positions.
 *
 * A unit is one row of W_in with its bias (SwiGLU: the (gate, up) row pair — gates and ups of different units
 * are never mixed, so every kept unit computes exactly what it computed in its own layer). Nothing is
 * averaged, so no alignment is needed. The choice is forward stepwise regression on the pooled activations
 * H = [H_l(X_p)] of all positions p (core/select.h: a pivoted Cholesky on the accumulated Gram), with the
 * intercept taken first when the model has b_out. The merged FF has the original shape: the paper's
 * parameter count.
 *
 * Memory: the normal equations of P pooled units take (P+1)² doubles, 1.2 GB at GPT-2-small width with k = 4,
 * and the selection holds a working copy of their lower triangle while it runs (core/select.cc). Where that
 * exceeds the budget (ctx.selectMemory, default DEFAULT_SELECT_GRAM_BYTES), a first pass keeps the P units
 * that fit (see prescreen), and the selection runs on those.
 */
import { CorrelationAccumulator } from '../../native/correlation';
import { DEFAULT_RIDGE, RidgeAccumulator } from '../../native/ridge';
import type { JobOptions } from '../../native/job';
import type { Activation } from '../../model/activation';
import type { FFWeights } from '../../model/ff-weights';
import type { Model, StackName } from '../../model/model';
import { windowLayers } from '../../merge/windows';
import { anchorOf, modelFF, stackSpecOf } from '../align';
import { forEachFFInput, hiddenOf } from '../ff-inputs';
import type { MergeMethod } from '../plugins';

/**
 * The window's FFs side by side as one FF of k·d_ff units (W_out is not needed: only activations are), read
 * one layer at a time, so that only the pooled rows are held, never k whole float32 FFs (at 7B width with
 * k = 9 those were another 4.9 GB). withBias: whether the FFs have b_out.
 */
async function poolWindow(model: Model, layers: number[], stack: StackName, opts: JobOptions): Promise<{ pooled: FFWeights; withBias: boolean }> {
  let pooled: FFWeights | undefined;
  let withBias = false;
  for (const [i, l] of layers.entries()) {
    const ff = await modelFF(model, l, stack, opts);
    if (!pooled) {
      withBias = Boolean(ff.bOut);
      pooled = { d: ff.d, dFF: ff.dFF * layers.length, wIn: new Float32Array(ff.wIn.length * layers.length), wOut: new Float32Array(0) };
      for (const key of ['bIn', 'wGate', 'bGate'] as const) if (ff[key]) pooled[key] = new Float32Array(ff[key]!.length * layers.length);
    }
    for (const key of ['wIn', 'bIn', 'wGate', 'bGate'] as const) if (ff[key]) pooled[key]!.set(ff[key]!, i * ff[key]!.length);
  }
  return { pooled: pooled!, withBias };
}

/** Rows `units` of a pooled FF as a d_ff-unit FF (W_out left to the caller). */
export function pick(pooled: FFWeights, units: ArrayLike<number>): FFWeights {
  const { d } = pooled;
  const n = units.length;
  const rows = (m: Float32Array, width: number) => {
    const out = new Float32Array(n * width);
    for (let i = 0; i < n; i++) out.set(m.subarray(units[i]! * width, units[i]! * width + width), i * width);
    return out;
  };
  const ff: FFWeights = { d, dFF: n, wIn: rows(pooled.wIn, d), wOut: new Float32Array(d * n) };
  if (pooled.bIn) ff.bIn = rows(pooled.bIn, 1);
  if (pooled.wGate) ff.wGate = rows(pooled.wGate, d);
  if (pooled.bGate) ff.bGate = rows(pooled.bGate, 1);
  return ff;
}

/**
 * The d_ff units of a pooled FF whose activations (accumulated in `acc` against the targets) fit best, with
 * W_out (b_out when `withBias`) solved on them: the merged FF.
 */
export async function selectUnits(acc: RidgeAccumulator, pooled: FFWeights, dFF: number, withBias: boolean, opts: JobOptions): Promise<FFWeights> {
  const signal = opts.signal ? { signal: opts.signal } : {};
  const taken = await acc.select(dFF + (withBias ? 1 : 0), { ...signal, forced: withBias ? [pooled.dFF] : [] });
  // unit order does not matter to the model; sorted keeps each source layer's units together
  const units = Array.from(taken).filter((u) => u < pooled.dFF).sort((a, b) => a - b);
  if (units.length < dFF) {
    // every remaining pooled unit is (numerically) in the span of the taken ones: any of them fills the slot,
    // and the ridge fit gives it what weight it deserves
    const used = new Set(units);
    for (let u = 0; u < pooled.dFF && units.length < dFF; u++) if (!used.has(u)) units.push(u);
  }
  const merged = pick(pooled, units);
  const sol = await acc.solve(DEFAULT_RIDGE, { ...signal, bias: withBias, columns: units });
  merged.wOut = sol.w;
  if (withBias) merged.bOut = sol.b;
  return merged;
}

/**
 * The default memory budget of select's normal equations: 128 MiB, about 4,100 pooled units (half as much
 * again while the selection runs, for its working copy). No fixture comes
 * near it (the widest pool, gpt2-sotu's 4 × 512 units, takes 34 MB); GPT-2-small with k = 4 (12,288 units)
 * does, and stays within issue 9's 1.5 GB compress bound only with it.
 */
export const DEFAULT_SELECT_GRAM_BYTES = 128 * 2 ** 20;

/**
 * How many of `pooled` units select may keep resident: those whose (P+1)² doubles fit `bytes`, but never
 * fewer than 1.25 × d_ff (the selection needs a choice beyond d_ff; at 7B width with k = 2 this floor, 13,760
 * units, takes 1.5 GB whatever the budget, and 2.3 GB while the selection runs), and never more than the pool.
 */
export function poolCap(pooled: number, dFF: number, bytes: number): number {
  const fit = Math.floor(Math.sqrt(bytes / 8)) - 1;
  return Math.min(pooled, Math.max(fit, Math.ceil(1.25 * dFF)));
}

/**
 * The `keep` pooled units most worth the selection's time, from one pass over the calibration inputs: each
 * unit's gain alone after the intercept (the first step of the forward regression, Σ_o corr(h, y_o)² ·
 * var(y_o)), the best ⌊keep / k⌋ or ⌈keep / k⌉ of each source layer. A quota per layer, because the layers
 * of a window share many near-duplicate units: ranked together, the duplicates of the strongest units would
 * crowd out what only one layer computes. Memory: the p × d_model correlation sums, not p².
 */
export function prescreen(gains: Float64Array, layers: number, keep: number): number[] {
  const per = gains.length / layers;
  const out: number[] = [];
  for (let j = 0; j < layers; j++) {
    const quota = Math.floor(keep / layers) + (j < keep % layers ? 1 : 0);
    const units = Array.from({ length: per }, (_, i) => j * per + i);
    units.sort((a, b) => gains[b]! - gains[a]! || a - b);
    out.push(...units.slice(0, quota));
  }
  return out.sort((a, b) => a - b);
}

/** Each pooled unit's gain alone (see prescreen), from one pass of the window's calibration inputs. */
async function unitGains(
  each: (visit: (H: Float32Array, Y: Float32Array, n: number) => Promise<void>) => Promise<void>,
  p: number,
  m: number,
  opts: JobOptions,
): Promise<Float64Array> {
  const signal = opts.signal ? { signal: opts.signal } : {};
  const corr = new CorrelationAccumulator([p, m], [[0, 1]]);
  const sum = new Float64Array(m);
  const sq = new Float64Array(m);
  let rows = 0;
  await each(async (H, Y, n) => {
    for (let r = 0; r < n; r++) {
      for (let o = 0; o < m; o++) {
        const y = Y[r * m + o]!;
        sum[o]! += y;
        sq[o]! += y * y;
      }
    }
    rows += n;
    await corr.add([H, Y], n, signal);
  });
  const C = await corr.finalize(0, { ...signal, release: true });
  const variance = Float64Array.from({ length: m }, (_, o) => Math.max(0, sq[o]! / rows - (sum[o]! / rows) ** 2));
  const gains = new Float64Array(p);
  // p × m terms (9.4 M at GPT-2-small, k = 4): in slices, so the host's event loop gets turns in between
  for (let u0 = 0; u0 < p; u0 += 256) {
    for (let u = u0; u < Math.min(p, u0 + 256); u++) {
      let g = 0;
      for (let o = 0; o < m; o++) g += C[u * m + o]! * C[u * m + o]! * variance[o]!;
      gains[u] = g;
    }
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
  return gains;
}

export const select: MergeMethod = {
  name: 'select',
  description: 'keep the d_ff pooled units of the window that best reproduce every layer (least squares), refit W_out',
  needsCorrelations: false,
  async merge(ctx, stack, window, opts) {
    const { model } = ctx;
    const spec = stackSpecOf(model, stack);
    const act = spec.activation as Activation;
    const layers = windowLayers(window);
    // one variable for the pool: once it is cut below, nothing holds the whole pool any more
    let { pooled, withBias } = await poolWindow(model, layers, stack, opts);
    const signal = opts.signal ? { signal: opts.signal } : {};
    // the targets: each position's original FF output, as the base model's own pass computes it
    const pass = { ...opts, outputs: true };
    const cap = poolCap(pooled.dFF, spec.dFF, ctx.selectMemory ?? DEFAULT_SELECT_GRAM_BYTES);
    if (cap < pooled.dFF) {
      // Every position's inputs through the whole pool against its original output. H passes through JS
      // here, so in row chunks of ≤ 8 MB: each copy into the correlation job stays short for the host.
      const all = pooled;
      const d = spec.dModel;
      const chunk = Math.max(1, Math.floor((2 << 20) / all.dFF));
      const visit = (fn: (H: Float32Array, Y: Float32Array, n: number) => Promise<void>) =>
        forEachFFInput(model, stack, layers, ctx.calibration, async (_l, X, n, Y) => {
          for (let r = 0; r < n; r += chunk) {
            const rows = Math.min(chunk, n - r);
            await fn(await hiddenOf(all, X.subarray(r * d, (r + rows) * d), rows, act, opts), Y!.subarray(r * d, (r + rows) * d), rows);
          }
        }, pass, ctx.entry);
      const gains = await unitGains(visit, pooled.dFF, spec.dModel, opts);
      pooled = pick(pooled, prescreen(gains, layers.length, cap));
    }
    // the pooled hidden units (n × P per batch) are computed inside the accumulating job, never in JS
    const acc = new RidgeAccumulator(pooled.dFF, spec.dModel);
    const units = pooled;
    await forEachFFInput(model, stack, layers, ctx.calibration, async (_l, X, n, Y) => {
      await acc.addFF(X, n, units, act, Y!, signal);
    }, pass, ctx.entry);
    const merged = await selectUnits(acc, pooled, spec.dFF, withBias, opts);
    return { stack, window, anchor: anchorOf(window, ctx.anchor), merged, perms: new Map() };
  },
};
