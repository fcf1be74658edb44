/**
 * Prefix reuse for the window search: the base model's hidden states entering chosen layers, on every
 * scoring batch, computed once (one layer at a time). A candidate whose first changed layer is s (a merged
 * window, a dropped FF or dropped layers starting at s) then only runs layers s.. on its cached input — the
 * layers before s are the base model's and never change.
 *
 * Memory: a kept layer costs tokens × d × 4 bytes (10k tokens: 31 MB at GPT-2 small's width, 168 MB at a
 * 7B's). Layers are held in RAM up to `memoryBytes`; the rest are spilled to an unlinked temporary file each
 * (the kernel frees it when the handle closes or the process dies, so nothing is left behind) and read back
 * one batch at a time when a candidate needs them. A 7B search over 32 starts thus needs one budget of RAM,
 * not 32 × tokens × d.
 */
import { throwIfAborted, type JobOptions, type Progress } from '../native/job';
import type { ForwardInput, ForwardOptions, ForwardOutput, Model } from '../model/model';
import { type BatchStore, openBatchStore } from './spill';
import { STATE_MEMORY_BYTES } from './features';

export interface NllTotal {
  sum: number;
  count: number;
}

export function ppl(t: NllTotal): number {
  return Math.exp(t.sum / t.count);
}

/** Default RAM for kept states; the rest go to disk (page cache, in practice). */
export const PREFIX_MEMORY_BYTES = 256 * 2 ** 20;

export interface PrefixCacheOptions extends JobOptions {
  /** States kept in RAM, in bytes (default PREFIX_MEMORY_BYTES); layers beyond it are spilled to disk. */
  memoryBytes?: number | undefined;
  /**
   * RAM for the states carried from one layer to the next while the cache is built (default
   * STATE_MEMORY_BYTES, as the feature pass); past it they go through disk too.
   */
  stateMemoryBytes?: number | undefined;
  /** Folder for spill files (default os.tmpdir()). */
  spillDir?: string | undefined;
}

export class PrefixCache {
  private disposed = false;

  private constructor(
    readonly batches: ForwardInput[],
    private readonly stores: Map<number, BatchStore>,
  ) {}

  /** Runs the base model layer by layer up to the last of `keep`, keeping the states entering those layers. */
  static async build(model: Model, batches: ForwardInput[], keep: Iterable<number>, opts: PrefixCacheOptions = {}): Promise<PrefixCache> {
    const layers = [...new Set(keep)].sort((a, b) => a - b);
    const layerBytes = batches.reduce((n, b) => n + b.batch * b.seq * model.spec.dModel * 4, 0);
    // the earliest layers stay in RAM (start 0 serves every full evaluation); later ones spill
    const inRam = Math.floor((opts.memoryBytes ?? PREFIX_MEMORY_BYTES) / Math.max(1, layerBytes));
    const stores = new Map<number, BatchStore>();
    const cache = new PrefixCache(batches, stores);
    let cur: BatchStore | undefined;
    let next: BatchStore | undefined;
    try {
      for (const [i, l] of layers.entries()) {
        stores.set(l, await openBatchStore(i < inRam ? 'ram' : 'disk', `prefix-${l}`, opts.spillDir));
      }
      const last = layers[layers.length - 1] ?? 0;
      let done = 0;
      const total = batches.length * Math.max(1, last);
      // Layer-major: every batch through layer l before layer l + 1, so a model streamed from disk reads
      // each layer once. The states carried to the next layer are in RAM up to their budget, on disk past it.
      const carryInRam = 2 * layerBytes <= (opts.stateMemoryBytes ?? STATE_MEMORY_BYTES);
      const carry = (l: number) => openBatchStore(carryInRam ? 'ram' : 'disk', `prefix-carry-${l}`, opts.spillDir);
      cur = await carry(0);
      for (const b of batches) await cur.put((await model.forward(b, { output: 'hidden', fromLayer: 0, toLayer: 0, signal: opts.signal })).hidden);
      for (let l = 0; l <= last; l++) {
        throwIfAborted(opts.signal);
        const s = stores.get(l);
        if (s) for (let i = 0; i < batches.length; i++) await s.put(await cur.get(i));
        if (l === last) break;
        next = await carry(l + 1);
        for (const [i, b] of batches.entries()) {
          await next.put((await model.forward(b, { output: 'hidden', fromLayer: l, toLayer: l + 1, hidden: await cur.get(i), stage: true, signal: opts.signal })).hidden);
          opts.onProgress?.({ phase: 'prefix', done: ++done, total });
        }
        await cur.close();
        cur = next;
        next = undefined;
      }
      return cache;
    } catch (e) {
      await cache.dispose();
      throw e;
    } finally {
      await cur?.close();
      await next?.close();
    }
  }

  has(layer: number): boolean {
    return this.stores.has(layer);
  }

  /** Layers whose states were spilled to disk (for reports and tests). */
  spilled(): number[] {
    return [...this.stores].filter(([, s]) => s.kind === 'disk').map(([l]) => l);
  }

  private async state(layer: number, i: number): Promise<Float32Array> {
    if (this.disposed) throw new Error('prefix cache used after dispose');
    const s = this.stores.get(layer);
    if (!s) throw new Error(`prefix state for layer ${layer} was not kept`);
    return s.get(i);
  }

  /** Batch `i` run from the cached state entering `fromLayer` (a model whose layers before it are the base's). */
  async forward<O extends ForwardOptions['output']>(model: Model, fromLayer: number, i: number, opts: Omit<ForwardOptions, 'fromLayer' | 'hidden'> & { output: O }): Promise<ForwardOutput<O>> {
    const hidden = await this.state(fromLayer, i);
    return model.forward(this.batches[i]!, { ...opts, fromLayer, hidden });
  }

  /** Closes the spill files (their space is freed) and drops the states. Safe to call twice. */
  async dispose(): Promise<void> {
    if (this.disposed) return;
    this.disposed = true;
    for (const s of this.stores.values()) await s.close();
    this.stores.clear();
  }
}

/** NLL of `model` on batches [0, limit): from the cache when it holds `fromLayer`, else from the embeddings. */
export async function nllOf(model: Model, batches: ForwardInput[], opts: JobOptions & { cache?: PrefixCache | undefined; fromLayer?: number | undefined; limit?: number | undefined } = {}): Promise<NllTotal> {
  let sum = 0;
  let count = 0;
  const limit = Math.min(opts.limit ?? batches.length, batches.length);
  const from = opts.fromLayer ?? 0;
  const cached = opts.cache?.has(from) && opts.cache.batches === batches;
  const report = opts.onProgress;
  // The phase starts when its work does, and a batch's layers show as it runs: one batch of a 7B model is minutes.
  if (limit > 0) report?.({ phase: 'evaluate', done: 0, total: limit });
  for (let i = 0; i < limit; i++) {
    const layers = report ? { onProgress: (p: Progress) => report({ phase: 'evaluate', done: i, total: limit, within: p.done / Math.max(1, p.total), detail: `${Math.round((100 * p.done) / Math.max(1, p.total))}% of batch ${i + 1}` }) } : {};
    const r = cached ? await opts.cache!.forward(model, from, i, { output: 'nll', signal: opts.signal, ...layers }) : await model.forward(batches[i]!, { output: 'nll', signal: opts.signal, ...layers });
    sum += r.nllSum;
    count += r.nllCount;
    opts.onProgress?.({ phase: 'evaluate', done: i + 1, total: limit });
  }
  return { sum, count };
}
