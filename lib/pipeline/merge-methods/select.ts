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
 */
import { DEFAULT_RIDGE, greedySelect, RidgeAccumulator, subAccumulator } from '../../native/ridge';
import type { JobOptions } from '../../native/job';
import type { Activation } from '../../model/activation';
import type { FFWeights } from '../../model/ff-weights';
import { windowLayers } from '../../merge/windows';
import { anchorOf, modelFFs, stackSpecOf } from '../align';
import { forEachFFInput, hiddenOf, outputOf } from '../ff-inputs';
import type { MergeMethod } from '../plugins';

/** The window's FFs side by side as one FF of k·d_ff units (W_out is not needed: only activations are). */
export function pool(ffs: FFWeights[]): FFWeights {
  const { d, dFF } = ffs[0]!;
  const cat = (key: 'wIn' | 'bIn' | 'wGate' | 'bGate'): Float32Array | undefined => {
    if (!ffs[0]![key]) return undefined;
    const size = ffs[0]![key]!.length;
    const out = new Float32Array(size * ffs.length);
    ffs.forEach((f, i) => out.set(f[key]!, i * size));
    return out;
  };
  const p: FFWeights = { d, dFF: dFF * ffs.length, wIn: cat('wIn')!, wOut: new Float32Array(0) };
  for (const key of ['bIn', 'wGate', 'bGate'] as const) {
    const t = cat(key);
    if (t) p[key] = t;
  }
  return p;
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
  const taken = await greedySelect(acc, dFF + (withBias ? 1 : 0), { ...signal, forced: withBias ? [pooled.dFF] : [] });
  // unit order does not matter to the model; sorted keeps each source layer's units together
  const units = Array.from(taken).filter((u) => u < pooled.dFF).sort((a, b) => a - b);
  if (units.length < dFF) {
    // every remaining pooled unit is (numerically) in the span of the taken ones: any of them fills the slot,
    // and the ridge fit gives it what weight it deserves
    const used = new Set(units);
    for (let u = 0; u < pooled.dFF && units.length < dFF; u++) if (!used.has(u)) units.push(u);
  }
  const merged = pick(pooled, units);
  const sol = await subAccumulator(acc, units).solve(DEFAULT_RIDGE, { ...signal, bias: withBias });
  merged.wOut = sol.w;
  if (withBias) merged.bOut = sol.b;
  return merged;
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
    const originals = await modelFFs(model, layers, stack, opts);
    const pooled = pool(layers.map((l) => originals.get(l)!));
    const withBias = Boolean(originals.get(layers[0]!)!.bOut);
    const acc = new RidgeAccumulator(pooled.dFF, spec.dModel);
    const signal = opts.signal ? { signal: opts.signal } : {};
    await forEachFFInput(model, stack, layers, (l) => originals.get(l)!, ctx.calibration, async (l, X, n) => {
      const H = await hiddenOf(pooled, X, n, act, opts);
      await acc.add(H, await outputOf(originals.get(l)!, X, n, act, opts), n, signal);
    }, opts);
    const merged = await selectUnits(acc, pooled, spec.dFF, withBias, opts);
    return { stack, window, anchor: anchorOf(window, ctx.anchor), merged, perms: new Map() };
  },
};
