/**
 * Step 1–2 of the method: one pass of the calibration data through the base model capturing every needed
 * layer's FF pre-activations, streamed into a CorrelationAccumulator for exactly the (anchor, layer) pairs the
 * candidate windows need. Features are collected once for all windows; nothing per token is kept.
 */
import type { JobOptions } from '../native/job';
import { CorrelationAccumulator } from '../native/correlation';
import type { Model } from '../model/model';
import type { Batch } from './data';

export class PairCorrelations {
  private readonly index = new Map<string, number>();

  constructor(
    readonly acc: CorrelationAccumulator,
    pairs: [number, number][],
  ) {
    pairs.forEach(([a, b], i) => this.index.set(`${a},${b}`, i));
  }

  /** Pearson correlation [dFF, dFF]: unit i of the anchor vs unit j of `layer`. */
  get(anchor: number, layer: number, opts: JobOptions = {}): Promise<Float32Array> {
    const i = this.index.get(`${anchor},${layer}`);
    if (i === undefined) throw new Error(`correlation (${anchor}, ${layer}) was not collected`);
    return this.acc.finalize(i, opts);
  }

  get tokens(): number {
    return this.acc.count;
  }
}

export async function collectCorrelations(
  model: Model,
  batches: Batch[],
  pairs: [number, number][],
  opts: JobOptions = {},
): Promise<PairCorrelations> {
  const { layers, dFF } = model.spec;
  const acc = new CorrelationAccumulator(Array(layers).fill(dFF) as number[], pairs);
  const needed = [...new Set(pairs.flat())].sort((a, b) => a - b);
  const last = needed[needed.length - 1]! + 1;
  let done = 0;
  for (const b of batches) {
    const r = await model.forward(b, { output: 'hidden', toLayer: last, captureFF: needed, signal: opts.signal });
    // Plain views over the native buffers: keeps `instanceof Float32Array` true even when the addon's arrays
    // come from another JS realm (as under jest), without copying.
    const feats = Array.from({ length: layers }, (_, l) => {
      const x = r.ff?.get(l);
      return x ? new Float32Array(x.buffer, x.byteOffset, x.length) : null;
    });
    const rows = feats[needed[0]!]!.length / dFF;
    await acc.add(feats, rows, { signal: opts.signal });
    opts.onProgress?.({ phase: 'features', done: ++done, total: batches.length });
  }
  return new PairCorrelations(acc, pairs);
}

/** Correlations for the (anchor, layer) pairs of each stack, in one pass of the calibration batches. */
export async function collectStackCorrelations(
  model: Model,
  batches: { input: import('../model/model').ForwardInput; featureMask?: Uint8Array }[],
  pairs: Map<import('../model/model').StackName, [number, number][]>,
  opts: JobOptions,
): Promise<{ corr: Map<import('../model/model').StackName, PairCorrelations>; rows: Partial<Record<import('../model/model').StackName, number>> }> {
  type StackName = import('../model/model').StackName;
  const accs = new Map<StackName, CorrelationAccumulator>();
  const needed = new Map<StackName, number[]>();
  const specOf = (s: StackName) => (s === model.mainStack ? model.spec : model.encoderSpec!);
  for (const [stack, ps] of pairs) {
    if (ps.length === 0) continue;
    const spec = specOf(stack);
    accs.set(stack, new CorrelationAccumulator(Array(spec.layers).fill(spec.dFF) as number[], ps));
    needed.set(stack, [...new Set(ps.flat())].sort((a, b) => a - b));
  }
  const main = model.mainStack;
  const rows: Partial<Record<StackName, number>> = {};
  let done = 0;
  for (const b of batches) {
    const mainLayers = needed.get(main);
    const encLayers = main !== 'encoder' ? needed.get('encoder') : undefined;
    const r = await model.forward(b.input, {
      output: 'hidden',
      toLayer: mainLayers ? mainLayers[mainLayers.length - 1]! + 1 : 0,
      ...(mainLayers ? { captureFF: mainLayers } : {}),
      ...(encLayers ? { captureEncoderFF: encLayers } : {}),
      ...(b.featureMask ? { featureMask: b.featureMask } : {}),
      ...(opts.signal ? { signal: opts.signal } : {}),
    });
    for (const [stack, acc] of accs) {
      const captured = stack === main ? r.ff : r.encoderFF;
      const spec = specOf(stack);
      const feats = Array.from({ length: spec.layers }, (_, l) => {
        const x = captured?.get(l);
        return x ? new Float32Array(x.buffer, x.byteOffset, x.length) : null;
      });
      const n = feats[needed.get(stack)![0]!]!.length / spec.dFF;
      rows[stack] = (rows[stack] ?? 0) + n;
      await acc.add(feats, n, opts.signal ? { signal: opts.signal } : {});
    }
    opts.onProgress?.({ phase: 'features', done: ++done, total: batches.length });
  }
  const corr = new Map<StackName, PairCorrelations>();
  for (const [stack, acc] of accs) corr.set(stack, new PairCorrelations(acc, pairs.get(stack)!));
  return { corr, rows };
}
