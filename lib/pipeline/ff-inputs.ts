/**
 * What the training-free fits (recover/refit, recover/refit-seq, merge-methods/select) share: each window
 * position's FF input X on the calibration data, recovered from the pre-activations the forward pass
 * captures, and FF hidden activations / outputs on such inputs.
 *
 * The forward pass exposes a layer's FF pre-activations U = X·W_inᵀ + b_in, not the FF input X itself;
 * since W_in [dFF, d] has full column rank (dFF > d), X is recovered exactly (to float rounding) as
 * X = (U − b_in)·W_in·(W_inᵀW_in)⁻¹.
 */
import { FfmergeError } from '../errors';
import type { JobOptions } from '../native/job';
import { throwIfAborted } from '../native/job';
import { DEFAULT_RIDGE, ffApply, matmulABt, RidgeAccumulator } from '../native/ridge';
import type { Activation } from '../model/activation';
import { transpose, type FFWeights } from '../model/ff-weights';
import type { Model, StackName } from '../model/model';
import type { FeatureBatch } from '../data/feature-batches';

/** What recovers an FF's input X [n, d] from its pre-activation U [n, dFF]: X = U·Pᵀ − shift. */
export interface InputRecovery {
  /** [d, dFF] */
  P: Float32Array;
  /** P·b_in [d] (absent without b_in): subtracting it per row is (U − b_in)·Pᵀ without touching U. */
  shift?: Float32Array;
}

/**
 * P [d, dFF] with X = (U − b)·Pᵀ: P = (W_inᵀW_in)⁻¹ W_inᵀ, computed by the
 * native Cholesky solver with no ridge: rows of W_in as features, the identity as targets.
 */
export async function inputRecovery(ff: FFWeights, opts: JobOptions): Promise<InputRecovery> {
  const { d, dFF } = ff;
  const identity = new Float32Array(dFF * dFF);
  for (let i = 0; i < dFF; i++) identity[i * dFF + i] = 1;
  const acc = new RidgeAccumulator(d, dFF);
  await acc.add(ff.wIn, identity, dFF, opts);
  let P: Float32Array;
  try {
    const { w } = await acc.solve(0, { ...opts, bias: false }); // w = Pᵀ [dFF, d]
    P = transpose(w, dFF, d);
  } catch (e) {
    if (e instanceof FfmergeError && e.code === 'SINGULAR_MATRIX') {
      throw new FfmergeError('SINGULAR_MATRIX', "refit: a layer's first FF matrix is rank-deficient, its FF input cannot be recovered");
    }
    throw e;
  }
  if (!ff.bIn) return { P };
  const shift = new Float32Array(d);
  for (let i = 0; i < d; i++) {
    let s = 0;
    for (let j = 0; j < dFF; j++) s += P[i * dFF + j]! * ff.bIn[j]!;
    shift[i] = s;
  }
  return { P, shift };
}

/** The FF input X [n, d] behind pre-activations U [n, dFF] (U is not modified; the product is native). */
export async function recoverInputs(U: Float32Array, n: number, ff: FFWeights, r: InputRecovery, opts: JobOptions): Promise<Float32Array> {
  const X = await matmulABt(U, r.P, n, ff.d, ff.dFF, opts);
  if (r.shift) {
    const { d } = ff;
    for (let i = 0; i < n; i++) for (let c = 0; c < d; c++) X[i * d + c]! -= r.shift[c]!;
  }
  return X;
}

/** FF hidden activations (after the nonlinearity) on inputs X [n, d]: one native job. */
export function hiddenOf(ff: FFWeights, X: Float32Array, n: number, act: Activation, opts: JobOptions): Promise<Float32Array> {
  return ffApply(ff, X, n, act, false, opts);
}

/** The FF's output on inputs X [n, d]: [n, d], one native job. */
export function outputOf(ff: FFWeights, X: Float32Array, n: number, act: Activation, opts: JobOptions): Promise<Float32Array> {
  return ffApply(ff, X, n, act, true, opts);
}

/**
 * The base model's states entering one layer of its main stack on every calibration batch, kept for the
 * latest layer asked: the search builds every method combination of a window in a row, and each of them
 * (select's passes, refit, refit-res) starts at the window's first layer. Held: one layer's states of the
 * calibration (tokens × d floats), as refit-res holds anyway. Encoder–decoder models are left out (their
 * decoder passes rerun the encoder whatever the start).
 */
export class EntryStates {
  private slot: { layer: number; states: Promise<(Float32Array | undefined)[]> } | undefined;

  constructor(
    readonly model: Model,
    private readonly calibration: FeatureBatch[],
  ) {}

  /** Whether the states serve passes of `model` over `stack` (the same base model, its main stack). */
  serves(model: Model, stack: StackName): boolean {
    return model === this.model && stack === model.mainStack && !model.encoderSpec;
  }

  /** States entering `layer`, per calibration batch (undefined at layer 0: the embeddings are the start). */
  get(layer: number, opts: JobOptions): Promise<(Float32Array | undefined)[]> {
    if (this.slot?.layer !== layer) {
      const states = this.compute(layer, opts);
      this.slot = { layer, states };
      // a failed or aborted computation is not kept
      states.catch(() => {
        if (this.slot?.states === states) this.slot = undefined;
      });
    }
    return this.slot.states;
  }

  private async compute(layer: number, opts: JobOptions): Promise<(Float32Array | undefined)[]> {
    const signal = opts.signal ? { signal: opts.signal } : {};
    const out: (Float32Array | undefined)[] = [];
    for (const b of this.calibration) {
      out.push(layer > 0 ? (await this.model.forward(b.input, { output: 'hidden', toLayer: layer, ...signal })).hidden! : undefined);
    }
    return out;
  }
}

/** What a caller of forEachFFInput can share between passes. */
export interface FFInputReuse {
  /** Input recoveries by FF, for a caller that passes the same FFs again. */
  recoveries?: Map<FFWeights, InputRecovery>;
  /** The base model's states entering the first listed layer (used when it serves the pass's model). */
  entry?: EntryStates;
}

/**
 * Calls `each(layer, X, n)` with the FF input X [n, d] of every listed layer of `stack` for every calibration
 * batch (feature positions only), as `model` computes it: the base model gives the original inputs, a merged
 * view the inputs the merged model actually produces. `ffOf(layer)` is the FF `model` runs at that layer
 * (its W_in recovers X).
 */
export async function forEachFFInput(
  model: Model,
  stack: StackName,
  layers: number[],
  ffOf: (layer: number) => FFWeights,
  calibration: FeatureBatch[],
  each: (layer: number, X: Float32Array, n: number) => Promise<void>,
  opts: JobOptions,
  reuse: FFInputReuse = {},
): Promise<void> {
  const byFF = reuse.recoveries ?? new Map<FFWeights, InputRecovery>();
  // one recovery per distinct FF: a merged view runs the same FF at every layer of its window
  const recover = new Map<number, InputRecovery>();
  for (const l of layers) {
    const ff = ffOf(l);
    if (!byFF.has(ff)) byFF.set(ff, await inputRecovery(ff, opts));
    recover.set(l, byFF.get(ff)!);
  }
  const main = stack === model.mainStack;
  const signal = opts.signal ? { signal: opts.signal } : {};
  const from = reuse.entry?.serves(model, stack) ? Math.min(...layers) : 0;
  const entry = from > 0 ? await reuse.entry!.get(from, opts) : undefined;
  for (const [i, b] of calibration.entries()) {
    throwIfAborted(opts.signal);
    // the encoder of an encoder–decoder model runs before the decoder: toLayer 0 skips the decoder's layers
    const r = await model.forward(b.input, {
      output: 'hidden',
      ...(entry ? { fromLayer: from, hidden: entry[i] } : {}),
      toLayer: main ? Math.max(...layers) + 1 : 0,
      ...(main ? { captureFF: layers } : { captureEncoderFF: layers }),
      ...(b.featureMask ? { featureMask: b.featureMask } : {}),
      ...signal,
    });
    const captured = main ? r.ff : r.encoderFF;
    for (const l of layers) {
      const ff = ffOf(l);
      const U = captured!.get(l)!;
      const n = U.length / ff.dFF;
      if (n === 0) continue;
      await each(l, await recoverInputs(U, n, ff, recover.get(l)!, opts), n);
    }
  }
}

/**
 * `merged` with its shared W_out (and b_out) refitted by ridge least squares so that, at every layer of the
 * window, it reproduces that layer's original FF output (`originals`) on the FF inputs `source` produces
 * (`ffOf(layer)` = the FF `source` runs there). recover/refit passes the base model; recover/refit-seq a
 * merged view, so the fit sees the inputs the merged model itself produces.
 */
export async function refitOutput(
  source: Model,
  stack: StackName,
  layers: number[],
  ffOf: (layer: number) => FFWeights,
  merged: FFWeights,
  originals: Map<number, FFWeights>,
  calibration: FeatureBatch[],
  act: Activation,
  opts: JobOptions,
  reuse: FFInputReuse = {},
): Promise<FFWeights> {
  const acc = new RidgeAccumulator(merged.dFF, merged.d);
  const signal = opts.signal ? { signal: opts.signal } : {};
  await forEachFFInput(source, stack, layers, ffOf, calibration, async (l, X, n) => {
    await acc.addFF(X, n, merged, act, await outputOf(originals.get(l)!, X, n, act, opts), signal);
  }, opts, reuse);
  // A model without b_out (LLaMA) has no slot for one: the fit then has no intercept.
  const sol = await acc.solve(DEFAULT_RIDGE, { ...signal, bias: Boolean(merged.bOut) });
  return { ...merged, wOut: sol.w, ...(merged.bOut ? { bOut: sol.b } : {}) };
}
