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
import type { FFWeights } from '../../model/ff-weights';
import type { Model, StackName } from '../../model/model';
import { windowLabel, windowLayers } from '../../merge/windows';
import { modelFF, stackSpecOf } from '../align';
import { NativeFF } from '../../native/native-ff';
import { addFFSums } from '../ff-inputs';
import type { MergeContext, MergeMethod } from '../plugins';

/**
 * The window's FFs side by side as one FF of k·d_ff units, in native memory (W_out is not needed: only
 * activations are). Read one layer at a time, so only the pooled rows are held, never k whole float32 FFs;
 * and held natively, so the passes below feed it to their jobs without copying it each time (3.2 GB at 7B
 * width with k = 9). withBias: whether the FFs have b_out.
 */
async function poolWindow(model: Model, layers: number[], stack: StackName, opts: JobOptions): Promise<{ pool: NativeFF; withBias: boolean }> {
  let pool: NativeFF | undefined;
  let withBias = false;
  try {
    for (const [i, l] of layers.entries()) {
      const ff = await modelFF(model, l, stack, opts);
      if (!pool) {
        withBias = Boolean(ff.bOut);
        pool = new NativeFF(ff.dFF * layers.length, ff.d, { bIn: Boolean(ff.bIn), gate: Boolean(ff.wGate), bGate: Boolean(ff.bGate) });
      }
      await pool.set(i * ff.dFF, ff, opts);
    }
  } catch (e) {
    pool?.dispose();
    throw e;
  }
  return { pool: pool!, withBias };
}

/**
 * The d_ff units of a pooled FF whose activations (accumulated in `acc` against the targets) fit best, with
 * W_out (b_out when `withBias`) solved on them: the merged FF.
 */
async function selectUnits(acc: RidgeAccumulator, pooled: NativeFF, dFF: number, withBias: boolean, opts: JobOptions): Promise<FFWeights> {
  const taken = await acc.select(dFF + (withBias ? 1 : 0), { signal: opts.signal, forced: withBias ? [pooled.dFF] : [] });
  // unit order does not matter to the model; sorted keeps each source layer's units together
  const units = Array.from(taken).filter((u) => u < pooled.dFF).sort((a, b) => a - b);
  if (units.length < dFF) {
    // every remaining pooled unit is (numerically) in the span of the taken ones: any of them fills the slot,
    // and the ridge fit gives it what weight it deserves
    const used = new Set(units);
    for (let u = 0; u < pooled.dFF && units.length < dFF; u++) if (!used.has(u)) units.push(u);
  }
  const merged = await pooled.rows(units, opts);
  const sol = await acc.solve(DEFAULT_RIDGE, { signal: opts.signal, bias: withBias, columns: units });
  merged.wOut = sol.w;
  if (withBias) merged.bOut = sol.b;
  return merged;
}

/**
 * The default memory budget of select's normal equations: 128 MiB, about 4,100 pooled units (half as much
 * again while the selection runs, for its working copy). No fixture comes near it; GPT-2-small with k = 4
 * (12,288 units) stays within issue 9's 1.5 GB compress bound only with it.
 */
export const DEFAULT_SELECT_GRAM_BYTES = 128 * 2 ** 20;

/** A byte count as people read it: 1 B, 364.5 KiB, 128 MiB. */
const mb = (b: number) => (b < 1024 ? `${b} B` : b < 2 ** 20 ? `${(b / 1024).toFixed(1)} KiB` : `${(b / 2 ** 20).toFixed(b < 10 * 2 ** 20 ? 1 : 0)} MiB`);

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

/**
 * Each pooled unit's gain alone (see prescreen), from one pass of the window's calibration inputs: every
 * position's inputs through the whole pool against its original output. The hidden units are computed in the
 * accumulating job and never pass through JS; the sums are p × d_model doubles, not p².
 */
async function unitGains(ctx: MergeContext, stack: StackName, layers: number[], pool: NativeFF, opts: JobOptions): Promise<Float64Array> {
  const corr = new CorrelationAccumulator([pool.dFF, pool.d], [[0, 1]]);
  await addFFSums(ctx, ctx.model, stack, layers, corr, pool, undefined, opts);
  return corr.explained(0, { signal: opts.signal, release: true });
}

export const select: MergeMethod = {
  name: 'select',
  description: 'keep the d_ff pooled units of the window that best reproduce every layer (least squares), refit W_out',
  needsCorrelations: false,
  async merge(ctx, stack, window, opts) {
    const { model } = ctx;
    const spec = stackSpecOf(model, stack);
    const layers = windowLayers(window);
    let { pool, withBias } = await poolWindow(model, layers, stack, opts);
    try {
      const budget = ctx.selectMemory ?? DEFAULT_SELECT_GRAM_BYTES;
      const cap = poolCap(pool.dFF, spec.dFF, budget);
      // the floor of 1.25 × d_ff units can need more than the budget: said, not done silently
      const gram = 8 * (cap + 1) ** 2;
      const note = gram > budget ? `select at ${stack} ${windowLabel(window)} kept ${cap} pooled units resident, whose sums take ${mb(gram)}, more than the select memory budget of ${mb(budget)} (--select-memory): the selection needs at least 1.25 × d_ff (${spec.dFF}) units to choose from` : undefined;
      if (cap < pool.dFF) {
        const gains = await unitGains(ctx, stack, layers, pool, opts);
        const cut = await NativeFF.of(await pool.rows(prescreen(gains, layers.length, cap), opts), opts);
        pool.dispose();
        pool = cut;
      }
      // the pooled hidden units (n × P per batch) are computed inside the accumulating job, never in JS; the
      // targets are each position's original FF output, as the base model's own pass computes it
      const acc = new RidgeAccumulator(pool.dFF, spec.dModel);
      await addFFSums(ctx, model, stack, layers, acc, pool, undefined, opts);
      const merged = await selectUnits(acc, pool, spec.dFF, withBias, opts);
      return { stack, window, merged, perms: new Map(), ...(note ? { note } : {}) };
    } finally {
      pool.dispose();
    }
  },
};
