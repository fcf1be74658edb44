/**
 * What the training-free fits (recover/refit, recover/refit-seq, merge-methods/select) share: each window
 * position's FF input X on the calibration data, as the forward pass captures it (the state the first FF
 * matrix reads), and FF outputs on such inputs.
 */
import { throwIfAborted, type JobOptions } from '../native/job';
import { DEFAULT_RIDGE, ffApply, RidgeAccumulator, type FFInput } from '../native/ridge';
import { NativeFF } from '../native/native-ff';
import type { Activation } from '../model/activation';
import type { FFWeights } from '../model/ff-weights';
import type { Model, StackName } from '../model/model';
import type { FeatureBatch } from '../data/feature-batches';
import { stackSpecOf } from './align';
import { FIT_STATE_MEMORY_BYTES, openStatesStore, type BatchStore } from './spill';
import type { MergeContext } from './plugins';

/** Bytes of one copy of the hidden states of every calibration batch ([batch, seq, d] floats each). */
export function statesBytes(calibration: FeatureBatch[], d: number): number {
  return calibration.reduce((n, b) => n + b.input.batch * b.input.seq * d * 4, 0);
}

/**
 * The base model's states entering one layer of its main stack on every calibration batch, kept for the
 * latest layer asked: the search builds every method combination of a window in a row, and each of them
 * (select's passes, refit, refit-res) starts at the window's first layer. Held: one layer's states of the
 * calibration (tokens × d floats), in RAM within FIT_STATE_MEMORY_BYTES, else on disk (openStatesStore).
 * Undefined at layer 0: the embeddings are the start. Encoder–decoder models are left out (their decoder
 * passes rerun the encoder whatever the start). `close()` frees them (compress, once its search is done).
 */
export class EntryStates {
  private slot: { layer: number; states: Promise<BatchStore | undefined> } | undefined;

  /**
   * @param budget RAM for one copy of the calibration's states (default FIT_STATE_MEMORY_BYTES); past it they
   *   go to disk. The fits that start from these states keep their own copies under the same budget.
   */
  constructor(
    readonly model: Model,
    private readonly calibration: FeatureBatch[],
    readonly budget = FIT_STATE_MEMORY_BYTES,
  ) {}

  /** Whether the states serve passes of `model` over `stack` (the same base model, its main stack). */
  serves(model: Model, stack: StackName): boolean {
    return model === this.model && stack === model.mainStack && !model.encoderSpec;
  }

  /** States entering `layer`, one per calibration batch in order (undefined at layer 0). Valid until the next get of another layer, or close. */
  get(layer: number, opts: JobOptions): Promise<BatchStore | undefined> {
    if (this.slot?.layer !== layer) {
      const old = this.slot?.states;
      const states = this.compute(layer, opts);
      this.slot = { layer, states };
      void old?.then((s) => s?.close(), () => undefined);
      // a failed or aborted computation is not kept
      states.catch(() => {
        if (this.slot?.states === states) this.slot = undefined;
      });
    }
    return this.slot.states;
  }

  /** Frees the states held (a store on disk closes its file). */
  async close(): Promise<void> {
    const old = this.slot?.states;
    this.slot = undefined;
    await old?.then((s) => s?.close(), () => undefined);
  }

  private async compute(layer: number, opts: JobOptions): Promise<BatchStore | undefined> {
    if (layer === 0) return undefined;
    const store = await openStatesStore(`entry-${layer}`, statesBytes(this.calibration, this.model.spec.dModel), this.budget);
    try {
      for (const b of this.calibration) await store.put((await this.model.forward(b.input, { output: 'hidden', toLayer: layer, signal: opts.signal })).hidden!);
    } catch (e) {
      await store.close();
      throw e;
    }
    return store;
  }
}

/**
 * Calls `each(layer, X, n, Y)` with the FF input X [n, d] of every listed layer of `stack` for every calibration
 * batch (feature positions only), as `model` computes it: the base model gives the original inputs, a merged
 * view the inputs the merged model actually produces. With `opts.outputs`, Y [n, d] is what that layer's own FF
 * made of X in the same pass (on the base model: the original FF output, the fits' target); else undefined.
 * `entry`: the base model's states entering the first listed layer, used when they serve the pass's model.
 */
export async function forEachFFInput(
  model: Model,
  stack: StackName,
  layers: number[],
  calibration: FeatureBatch[],
  each: (layer: number, X: Float32Array, n: number, Y: Float32Array | undefined) => Promise<void>,
  opts: JobOptions & { outputs?: boolean | undefined },
  entryStates?: EntryStates,
): Promise<void> {
  const main = stack === model.mainStack;
  const d = stackSpecOf(model, stack).dModel;
  const from = entryStates?.serves(model, stack) ? Math.min(...layers) : 0;
  const entry = from > 0 ? await entryStates!.get(from, opts) : undefined;
  for (const [i, b] of calibration.entries()) {
    throwIfAborted(opts.signal);
    const hidden = entry ? await entry.get(i) : undefined;
    // the encoder of an encoder–decoder model runs before the decoder: toLayer 0 skips the decoder's layers
    const r = await model.forward(b.input, {
      output: 'hidden',
      ...(hidden ? { fromLayer: from, hidden, stage: true } : {}),
      toLayer: main ? Math.max(...layers) + 1 : 0,
      ...(main ? { captureFFInput: layers } : { captureEncoderFFInput: layers }),
      ...(opts.outputs ? (main ? { captureFFOutput: layers } : { captureEncoderFFOutput: layers }) : {}),
      ...(b.featureMask ? { featureMask: b.featureMask } : {}),
      signal: opts.signal,
    });
    const captured = main ? r.ffInput : r.encoderFFInput;
    const outputs = main ? r.ffOutput : r.encoderFFOutput;
    for (const l of layers) {
      const X = captured!.get(l)!;
      if (X.length > 0) await each(l, X, X.length / d, outputs?.get(l));
    }
  }
}

/**
 * Feeds `sums` (ridge or correlation sums) with `ff`'s hidden units on the FF input of every listed layer as
 * `source` computes it, against a target: that layer's own FF output in the same pass (`originals` undefined:
 * on the base model, the original output), or its original FF (`originals`) applied to the input.
 */
export async function addFFSums(
  ctx: MergeContext,
  source: Model,
  stack: StackName,
  layers: number[],
  sums: Pick<RidgeAccumulator, 'addFF'>,
  ff: FFInput,
  originals: Map<number, FFWeights> | undefined,
  opts: JobOptions,
): Promise<void> {
  const act = stackSpecOf(source, stack).activation as Activation;
  await forEachFFInput(source, stack, layers, ctx.calibration, async (l, X, n, Y) => {
    await sums.addFF(X, n, ff, act, Y ?? (await ffApply(originals!.get(l)!, X, n, act, true, opts)), { signal: opts.signal, stage: true });
  }, { ...opts, outputs: originals === undefined }, ctx.entry);
}

/**
 * `merged` with its shared W_out (and b_out) refitted by ridge least squares so that, at every layer of the
 * window, it reproduces that layer's original FF output on the FF inputs `source` produces. recover/refit
 * passes the base model, whose pass gives those outputs itself (`originals` undefined); recover/refit-seq a
 * merged view, so the fit sees the inputs the merged model itself produces, with the original FFs
 * (`originals`) applied to them as targets.
 */
export async function refitOutput(ctx: MergeContext, source: Model, stack: StackName, layers: number[], merged: FFWeights, originals: Map<number, FFWeights> | undefined, opts: JobOptions): Promise<FFWeights> {
  const acc = new RidgeAccumulator(merged.dFF, merged.d);
  // held natively once, not copied for every layer and batch (360 MB at 7B width)
  const input = await NativeFF.of(merged, opts);
  try {
    await addFFSums(ctx, source, stack, layers, acc, input, originals, opts);
  } finally {
    input.dispose();
  }
  return solveOut(merged, acc, opts);
}

/** `ff` with W_out (and b_out) solved from the accumulated sums. */
export async function solveOut(ff: FFWeights, acc: RidgeAccumulator, opts: JobOptions): Promise<FFWeights> {
  // A model without b_out (LLaMA) has no slot for one: the fit then has no intercept.
  const sol = await acc.solve(DEFAULT_RIDGE, { signal: opts.signal, bias: Boolean(ff.bOut) });
  return { ...ff, wOut: sol.w, ...(ff.bOut ? { bOut: sol.b } : {}) };
}
