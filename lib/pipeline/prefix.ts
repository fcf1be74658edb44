/**
 * Prefix reuse for the window search: the base model's hidden states entering every layer, on every
 * validation batch, computed once (one layer at a time). A candidate merged at window start s then only runs
 * layers s..L on its cached input — the layers before its window are the base model's and never change.
 * Memory: tokens × d × (L+1) floats (e.g. 10k tokens × 768 × 13 × 4 B ≈ 400 MB for GPT-2 small).
 */
import type { JobOptions } from '../native/job';
import { throwIfAborted } from '../native/job';
import type { Model } from '../model/model';
import type { Batch } from './data';

export interface NllTotal {
  sum: number;
  count: number;
}

export function ppl(t: NllTotal): number {
  return Math.exp(t.sum / t.count);
}

export class PrefixCache {
  /** states[layer][batch]: hidden state entering `layer` (layer L = after the last layer). */
  private constructor(
    readonly batches: Batch[],
    private readonly states: Float32Array[][],
  ) {}

  /** Runs the base model layer by layer, keeping the states entering the layers in `keep` (and L). */
  static async build(model: Model, batches: Batch[], keep: Set<number>, opts: JobOptions = {}): Promise<PrefixCache> {
    const L = model.spec.layers;
    const states: Float32Array[][] = Array.from({ length: L + 1 }, () => []);
    let done = 0;
    const total = batches.length * L;
    for (const b of batches) {
      let h = (await model.forward(b, { output: 'hidden', fromLayer: 0, toLayer: 0, signal: opts.signal })).hidden!;
      for (let l = 0; l < L; l++) {
        throwIfAborted(opts.signal);
        if (keep.has(l)) states[l]!.push(h);
        h = (await model.forward(b, { output: 'hidden', fromLayer: l, toLayer: l + 1, hidden: h, signal: opts.signal })).hidden!;
        opts.onProgress?.({ phase: 'prefix', done: ++done, total });
      }
      states[L]!.push(h);
    }
    return new PrefixCache(batches, states);
  }

  state(layer: number, batch: number): Float32Array {
    const s = this.states[layer]?.[batch];
    if (!s) throw new Error(`prefix state for layer ${layer} was not kept`);
    return s;
  }

  /** NLL of `model` on the first `limit` batches, starting from the cached state entering `fromLayer`. */
  async nll(model: Model, fromLayer: number, limit = this.batches.length, opts: JobOptions = {}): Promise<NllTotal> {
    let sum = 0;
    let count = 0;
    for (let i = 0; i < limit; i++) {
      const r = await model.forward(this.batches[i]!, { output: 'nll', fromLayer, hidden: this.state(fromLayer, i), signal: opts.signal });
      sum += r.nllSum!;
      count += r.nllCount!;
    }
    return { sum, count };
  }

  /**
   * NLL when the state entering layer `input` goes through layers [from, to) only and then straight on to
   * layers [resume, L): everything else is skipped (the drop-layers baseline).
   */
  async nllSkipping(model: Model, input: number, from: number, to: number, resume: number, limit = this.batches.length, opts: JobOptions = {}): Promise<NllTotal> {
    let sum = 0;
    let count = 0;
    for (let i = 0; i < limit; i++) {
      const b = this.batches[i]!;
      const h = (await model.forward(b, { output: 'hidden', fromLayer: from, toLayer: to, hidden: this.state(input, i), signal: opts.signal })).hidden!;
      const r = await model.forward(b, { output: 'nll', fromLayer: resume, hidden: h, signal: opts.signal });
      sum += r.nllSum!;
      count += r.nllCount!;
    }
    return { sum, count };
  }
}

/** NLL of a model on batches, from the embeddings (no cache). */
export async function nllOf(model: Model, batches: Batch[], opts: JobOptions = {}): Promise<NllTotal> {
  let sum = 0;
  let count = 0;
  let done = 0;
  for (const b of batches) {
    const r = await model.forward(b, { output: 'nll', signal: opts.signal });
    sum += r.nllSum!;
    count += r.nllCount!;
    opts.onProgress?.({ phase: 'eval', done: ++done, total: batches.length });
  }
  return { sum, count };
}
