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
