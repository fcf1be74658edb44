/**
 * Residual-matching training-free refit (beyond the paper), for pre-norm stacks: the merged model runs layer
 * by layer next to the original, and each merged position's FF output is fitted to what the residual stream
 * is missing there — the original model's state after that layer minus the merged model's state before its
 * FF:
 *     T_l = h_orig(after l) − (h_merged(after l) − FF_merged(X_l))
 * so a position also makes up for the error the earlier merged positions (and the attention that read their
 * output) left in the stream, not just its own FF's. X_l is the FF input the merged model produces. The shared
 * W_out is solved jointly over the window, and the pass repeated (the targets move with W_out).
 *
 * The layer after the window (DOWNSTREAM of them) then gets the same treatment, its own W_out (b_out) only:
 * what the merge still leaves wrong in the stream is made up before it travels further towards the head. Its
 * FF keeps its size and is not shared: the parameter count does not change.
 *
 * Post-norm stacks (Marian, BERT) normalise after the FF, so the stream difference is not an FF target there:
 * they get `refit-seq`'s targets (each position's own original FF on the merged inputs).
 */
import { NativeFF } from '../../native/native-ff';
import { RidgeAccumulator } from '../../native/ridge';
import { throwIfAborted, type JobOptions } from '../../native/job';
import type { Activation } from '../../model/activation';
import type { FFWeights } from '../../model/ff-weights';
import type { Model, StackName } from '../../model/model';
import { windowLayers } from '../../merge/windows';
import { modelFF, stackSpecOf } from '../align';
import { EntryStates, solveOut, statesBytes } from '../ff-inputs';
import { FIT_STATE_MEMORY_BYTES, openStatesStore, type BatchStore } from '../spill';
import type { MergeContext, MergedWindow, RecoverMethod } from '../plugins';
import { refitSeq, withView } from './refit-seq';

/** Passes over the window: the second gained on the llama probe (targets move with W_out), a third little. */
const PASSES = 2;

/**
 * Later layers refitted after the window: the next one. On the llama it scored better on validation than every
 * later layer (5.028 vs 5.075); on gpt2-sotu every later layer fitted the calibration text, not the test.
 */
const DOWNSTREAM = 1;

/**
 * The residual targets, in place: cur[r] += hb[i] − hv[i] for the r-th feature position i (every row without
 * a mask), so T = h_orig(after l) − (h_merged(after l) − FF_merged(X)) without copying either state.
 */
function addResidual(cur: Float32Array, hb: Float32Array, hv: Float32Array, d: number, mask: Uint8Array | undefined): Float32Array {
  const rows = mask ? mask.length : hb.length / d;
  for (let i = 0, r = 0; i < rows; i++) {
    if (mask && !mask[i]) continue;
    const src = i * d;
    const dst = d * r++;
    for (let c = 0; c < d; c++) cur[dst + c]! += hb[src + c]! - hv[src + c]!;
  }
  return cur;
}

/**
 * The states entering one layer, per calibration batch, in the original model and in the merged one: in RAM
 * within FIT_STATE_MEMORY_BYTES each, else on disk (undefined: layer 0, the embeddings are the start).
 */
export interface Streams {
  base: BatchStore | undefined;
  view: BatchStore | undefined;
}

/** Closes a stream's stores, except those of `keep` (the entry states, which their owner closes). */
async function closeStreams(s: Streams, keep: Streams): Promise<void> {
  for (const x of new Set([s.base, s.view])) if (x && x !== keep.base && x !== keep.view) await x.close();
}

/** What a fitting step gets: the view's FF input and residual target per batch. */
type Fit = (X: Float32Array, T: Float32Array, n: number) => Promise<void>;

/**
 * Runs layer l on every calibration batch in `base` and `view` from the given entry states; with `fit`,
 * calls fit(X, T, n) with the view's FF input and residual target (the view's own FF output at l, which its
 * pass captures, plus what the stream is missing). Returns the states after l.
 */
async function stepLayer(ctx: MergeContext, view: Model, l: number, entry: Streams, fit: Fit | undefined, opts: JobOptions): Promise<Streams> {
  const { model } = ctx;
  const d = model.spec.dModel;
  const bytes = statesBytes(ctx.calibration, d);
  const budget = ctx.entry?.budget ?? FIT_STATE_MEMORY_BYTES;
  const out: Streams = { base: await openStatesStore(`refit-res-base-${l}`, bytes, budget), view: undefined };
  try {
    out.view = await openStatesStore(`refit-res-view-${l}`, bytes, budget);
    for (const [i, b] of ctx.calibration.entries()) {
      throwIfAborted(opts.signal);
      const mask = b.featureMask ?? b.input.attentionMask;
      const step = (h: Float32Array | undefined) => ({ output: 'hidden' as const, fromLayer: l, toLayer: l + 1, ...(h ? { hidden: h, stage: true } : {}), signal: opts.signal });
      const hb = (await model.forward(b.input, step(await entry.base?.get(i)))).hidden!;
      const rv = await view.forward(b.input, { ...step(await entry.view?.get(i)), ...(fit ? { captureFFInput: [l], captureFFOutput: [l] } : {}), ...(mask ? { featureMask: mask } : {}) });
      await out.base!.put(hb);
      await out.view.put(rv.hidden!);
      if (!fit) continue;
      const X = rv.ffInput!.get(l)!;
      const n = X.length / d;
      if (n === 0) continue;
      const T = addResidual(rv.ffOutput!.get(l)!, hb, rv.hidden!, d, mask);
      await fit(X, T, n);
    }
  } catch (e) {
    await closeStreams(out, entry);
    throw e;
  }
  return out;
}

/**
 * The layers after the window, up to `last`, refitted one at a time, each its own W_out (b_out), to restore
 * the original residual stream after the window's layers share `merged`. `entry` holds both models' states
 * entering the window. Returns layer → refitted FF.
 */
async function compensate(ctx: MergeContext, stack: StackName, layers: number[], merged: FFWeights, entry: Streams, last: number, opts: JobOptions): Promise<Map<number, FFWeights>> {
  const { model } = ctx;
  const spec = model.spec;
  const act = spec.activation as Activation;
  const adjusted = new Map<number, FFWeights>();
  const first = layers[layers.length - 1]! + 1;
  if (last < first) return adjusted;
  let after = entry;
  // each step's streams replace the last's, which are closed (the entry's stay: their owner closes them)
  const advance = async (next: Promise<Streams>) => {
    const was = after;
    after = await next;
    await closeStreams(was, entry);
  };
  try {
    await withView(model, layers.map((layer) => ({ stack, layer, ff: merged })), opts, async (view) => {
      for (const l of layers) await advance(stepLayer(ctx, view, l, after, undefined, opts));
    });
    for (let l = first; l <= last; l++) {
      const own = await modelFF(model, l, stack, opts);
      const acc = new RidgeAccumulator(spec.dFF, spec.dModel);
      const input = await NativeFF.of(own, opts);
      try {
        // only layer l runs here, so the base model (its own FF at l) stands for the view
        await closeStreams(await stepLayer(ctx, model, l, after, (X, T, n) => acc.addFF(X, n, input, act, T, { signal: opts.signal, stage: true }), opts), entry);
      } finally {
        input.dispose();
      }
      const ff = await solveOut(own, acc, opts);
      adjusted.set(l, ff);
      if (l < last) await advance(withView(model, [{ stack, layer: l, ff }], opts, (view) => stepLayer(ctx, view, l, after, undefined, opts)));
    }
  } finally {
    await closeStreams(after, entry);
  }
  return adjusted;
}

async function residualRefit(ctx: MergeContext, m: MergedWindow, opts: JobOptions): Promise<MergedWindow> {
  const { model } = ctx;
  const layers = windowLayers(m.window);
  // both models enter the window alike (nothing before it is edited): the context's shared states where there are some
  // (entry states of its own, where the context shares none, are closed when the fit is done)
  const own = ctx.entry ? undefined : new EntryStates(model, ctx.calibration);
  try {
    return await refitFrom(ctx, m, (await (ctx.entry ?? own!).get(layers[0]!, opts)), opts);
  } finally {
    await own?.close();
  }
}

async function refitFrom(ctx: MergeContext, m: MergedWindow, states: BatchStore | undefined, opts: JobOptions): Promise<MergedWindow> {
  const { model } = ctx;
  const spec = model.spec;
  const act = spec.activation as Activation;
  const layers = windowLayers(m.window);
  const entry: Streams = { base: states, view: states };
  let merged: FFWeights = m.merged;
  for (let pass = 0; pass < PASSES; pass++) {
    const ff = merged;
    const acc = new RidgeAccumulator(spec.dFF, spec.dModel);
    // held natively once, not copied for every layer and batch (360 MB at 7B width)
    const input = await NativeFF.of(ff, opts);
    const fit: Fit = (X, T, n) => acc.addFF(X, n, input, act, T, { signal: opts.signal, stage: true });
    try {
      await withView(model, layers.map((layer) => ({ stack: m.stack, layer, ff })), opts, async (view) => {
        let s = entry;
        try {
          for (const l of layers) {
            const next = await stepLayer(ctx, view, l, s, fit, opts);
            await closeStreams(s, entry);
            s = next;
          }
        } finally {
          await closeStreams(s, entry);
        }
      });
    } finally {
      input.dispose();
    }
    merged = await solveOut(ff, acc, opts);
  }
  const last = Math.min(spec.layers - 1, layers[layers.length - 1]! + DOWNSTREAM);
  const adjusted = await compensate(ctx, m.stack, layers, merged, entry, last, opts);
  return { ...m, merged, ...(adjusted.size ? { adjusted } : {}) };
}

export const refitRes: RecoverMethod = {
  name: 'refit-res',
  description: 'training-free: least-squares W_out so each merged position, then each later layer, restores the original residual stream (pre-norm; else refit-seq)',
  async recover(ctx, m, opts) {
    const spec = stackSpecOf(ctx.model, m.stack);
    // recorded as what ran: the report, record and card of a Marian output say refit-seq, not refit-res
    if (m.stack !== ctx.model.mainStack || spec.normPlacement !== 'pre') return { ...(await refitSeq.recover(ctx, m, opts)), recover: refitSeq.name };
    return residualRefit(ctx, m, opts);
  },
};
