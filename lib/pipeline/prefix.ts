/**
 * Prefix reuse for the window search: the base model's hidden states entering chosen layers, on every
 * scoring batch, computed once (one layer at a time). A candidate whose first changed layer is s (a merged
 * window, a dropped FF or dropped layers starting at s) then only runs layers s.. on its cached input — the
 * layers before s are the base model's and never change.
 * Memory: tokens × d × (starts kept) floats (e.g. 10k tokens × 768 × 10 starts × 4 B ≈ 300 MB for GPT-2 small).
 */
import type { JobOptions } from '../native/job';
import { throwIfAborted } from '../native/job';
import type { ForwardInput, ForwardOptions, ForwardResult, Model } from '../model/model';

export interface NllTotal {
  sum: number;
  count: number;
}

export function ppl(t: NllTotal): number {
  return Math.exp(t.sum / t.count);
}

export class PrefixCache {
  /** states.get(layer)[batch]: hidden state entering `layer`. */
  private constructor(
    readonly batches: ForwardInput[],
    private readonly states: Map<number, Float32Array[]>,
  ) {}

  /** Runs the base model layer by layer up to the last of `keep`, keeping the states entering those layers. */
  static async build(model: Model, batches: ForwardInput[], keep: Iterable<number>, opts: JobOptions = {}): Promise<PrefixCache> {
    const layers = [...new Set(keep)].sort((a, b) => a - b);
    const states = new Map<number, Float32Array[]>(layers.map((l) => [l, []]));
    const last = layers[layers.length - 1] ?? 0;
    const signal = opts.signal ? { signal: opts.signal } : {};
    let done = 0;
    const total = batches.length * Math.max(1, last);
    for (const b of batches) {
      let h = (await model.forward(b, { output: 'hidden', fromLayer: 0, toLayer: 0, ...signal })).hidden!;
      for (let l = 0; l <= last; l++) {
        throwIfAborted(opts.signal);
        states.get(l)?.push(h);
        if (l === last) break;
        h = (await model.forward(b, { output: 'hidden', fromLayer: l, toLayer: l + 1, hidden: h, ...signal })).hidden!;
        opts.onProgress?.({ phase: 'prefix', done: ++done, total });
      }
    }
    return new PrefixCache(batches, states);
  }

  has(layer: number): boolean {
    return this.states.has(layer);
  }

  /** Batch `i` run from the cached state entering `fromLayer` (a model whose layers before it are the base's). */
  forward(model: Model, fromLayer: number, i: number, opts: Omit<ForwardOptions, 'fromLayer' | 'hidden'>): Promise<ForwardResult> {
    const s = this.states.get(fromLayer)?.[i];
    if (!s) throw new Error(`prefix state for layer ${fromLayer} was not kept`);
    return model.forward(this.batches[i]!, { ...opts, fromLayer, hidden: s });
  }
}

/** NLL of `model` on batches [0, limit): from the cache when it holds `fromLayer`, else from the embeddings. */
export async function nllOf(model: Model, batches: ForwardInput[], opts: JobOptions & { cache?: PrefixCache; fromLayer?: number; limit?: number } = {}): Promise<NllTotal> {
  let sum = 0;
  let count = 0;
  const limit = Math.min(opts.limit ?? batches.length, batches.length);
  const from = opts.fromLayer ?? 0;
  const cached = opts.cache?.has(from) && opts.cache.batches === batches;
  const signal = opts.signal ? { signal: opts.signal } : {};
  for (let i = 0; i < limit; i++) {
    const r = cached ? await opts.cache!.forward(model, from, i, { output: 'nll', ...signal }) : await model.forward(batches[i]!, { output: 'nll', ...signal });
    sum += r.nllSum!;
    count += r.nllCount!;
    opts.onProgress?.({ phase: 'evaluate', done: i + 1, total: limit });
  }
  return { sum, count };
}
