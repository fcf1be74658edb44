/**
 * Streamed Pearson cross-correlation between the FF hidden units of layer pairs, on the native core
 * (native/core/correlation.h): feed batches of activations with add(), read d_i × d_j correlation matrices
 * with finalize(). Memory is O(Σ pair dims²), independent of the number of tokens.
 */
import { FfmergeError, fromNativeError } from '../errors';
import { type JobOptions, type NativeJobHandle, runNativeJob, throwIfAborted } from './job';
import { loadAddon } from './loader';

type NativeProgress = ((done: number, total: number) => void) | undefined;

interface NativeCorrelationAccumulator {
  add(layers: (Float32Array | null)[], rows: number, onProgress: NativeProgress): NativeJobHandle<void>;
  finalize(pairIndex: number, onProgress: NativeProgress): NativeJobHandle<Float32Array>;
  count(): number;
  backend(): string;
  setBlockRows(rows: number): void;
}

interface CorrelationAddon {
  CorrelationAccumulator: new (dims: number[], pairs: Int32Array) => NativeCorrelationAccumulator;
}

function addon(): CorrelationAddon {
  return loadAddon().module as unknown as CorrelationAddon;
}

function isCount(n: unknown): n is number {
  return typeof n === 'number' && Number.isSafeInteger(n) && n >= 0;
}

export class CorrelationAccumulator {
  readonly dims: readonly number[];
  readonly pairs: readonly (readonly [number, number])[];
  private readonly used: boolean[];
  private readonly native: NativeCorrelationAccumulator;

  /**
   * @param dims width (d_ff) of each layer
   * @param pairs (i, j) layer index pairs whose cross-correlation is wanted; i may equal j
   */
  constructor(dims: number[], pairs: [number, number][]) {
    if (!Array.isArray(dims) || dims.length === 0 || !dims.every((d) => isCount(d) && d > 0)) {
      throw new FfmergeError('INVALID_ARGUMENT', 'dims must be a non-empty array of positive integer layer widths');
    }
    if (!Array.isArray(pairs) || pairs.length === 0) {
      throw new FfmergeError('INVALID_ARGUMENT', 'pairs must name at least one (i, j) layer pair');
    }
    const flat = new Int32Array(pairs.length * 2);
    this.used = dims.map(() => false);
    pairs.forEach((pair, p) => {
      const [i, j] = pair;
      for (const l of [i, j]) {
        if (!Number.isInteger(l) || l < 0 || l >= dims.length) {
          throw new FfmergeError(
            'INVALID_ARGUMENT',
            `pair ${p} = (${String(i)}, ${String(j)}) names a layer outside 0..${dims.length - 1}`,
          );
        }
        this.used[l] = true;
      }
      flat[2 * p] = i;
      flat[2 * p + 1] = j;
    });
    this.dims = [...dims];
    this.pairs = pairs.map(([i, j]) => [i, j] as const);
    try {
      this.native = new (addon().CorrelationAccumulator)([...dims], flat);
    } catch (e) {
      throw fromNativeError(e);
    }
  }

  /**
   * @internal The native object, for modelForward to accumulate into directly (Model.forward's `accumulate`).
   * It enforces the one-job-at-a-time rule itself, so handing it out cannot interleave two jobs.
   */
  get nativeAccumulator(): unknown {
    return this.native;
  }

  /** The layers some pair uses, ascending (the layers whose activations add() needs). */
  usedLayers(): number[] {
    return this.used.flatMap((u, l) => (u ? [l] : []));
  }

  /** Rows (tokens) added so far. */
  get count(): number {
    return this.native.count();
  }

  /** Where the block products run: 'cpu', or 'cuda' with the CUDA build on a machine with a device. */
  get backend(): 'cpu' | 'cuda' {
    return this.native.backend() === 'cuda' ? 'cuda' : 'cpu';
  }

  /**
   * Adds one batch: layers[l] holds rows × dims[l] float32 activations (row-major, padding removed); layers
   * no pair uses may be null. A batch with NaN/Inf is rejected whole (NON_FINITE_ACTIVATIONS) and changes
   * nothing. An abort before the batch starts changes nothing; one that lands half-way through a large
   * batch leaves the accumulator unusable (later calls reject with INVALID_STATE). One add/finalize at a
   * time per accumulator (BUSY otherwise). Do not modify the arrays until the promise settles.
   */
  async add(layers: (Float32Array | null | undefined)[], rows: number, opts: JobOptions = {}): Promise<void> {
    throwIfAborted(opts.signal);
    if (!isCount(rows)) throw new FfmergeError('INVALID_ARGUMENT', `rows must be a non-negative integer, got ${rows}`);
    if (!Array.isArray(layers) || layers.length !== this.dims.length) {
      throw new FfmergeError(
        'SHAPE_MISMATCH',
        `expected activations for ${this.dims.length} layers, got ${Array.isArray(layers) ? layers.length : 'no array'}`,
      );
    }
    const arrays = layers.map((x, l) => {
      if (!this.used[l] && (x === null || x === undefined)) return null;
      if (!(x instanceof Float32Array)) {
        throw new FfmergeError('INVALID_ARGUMENT', `layer ${l} is used by a pair and needs a Float32Array`);
      }
      const want = rows * this.dims[l]!;
      if (x.length !== want) {
        throw new FfmergeError(
          'SHAPE_MISMATCH',
          `layer ${l} holds ${x.length} values, expected rows × width = ${rows} × ${this.dims[l]!} = ${want}`,
        );
      }
      return x;
    });
    await runNativeJob('correlation.add', (onProgress) => this.native.add(arrays, rows, onProgress), opts);
  }

  /**
   * Pearson correlation of pair `pairIndex` = (i, j): a dims[i] × dims[j] row-major Float32Array whose entry
   * [a * dims[j] + b] correlates unit a of layer i with unit b of layer j; 0 where either unit is constant.
   */
  async finalize(pairIndex: number, opts: JobOptions = {}): Promise<Float32Array> {
    if (!isCount(pairIndex) || pairIndex >= this.pairs.length) {
      throw new FfmergeError(
        'INVALID_ARGUMENT',
        `pair index ${pairIndex} is out of range (this accumulator has ${this.pairs.length} pairs)`,
      );
    }
    return runNativeJob('correlation.finalize', (onProgress) => this.native.finalize(pairIndex, onProgress), opts);
  }

  /** Rows per fp32 block product (default 2048); only before the first add. Smaller: more exact, slower. */
  setBlockRows(rows: number): void {
    if (!isCount(rows) || rows === 0) throw new FfmergeError('INVALID_ARGUMENT', 'blockRows must be a positive integer');
    try {
      this.native.setBlockRows(rows);
    } catch (e) {
      throw fromNativeError(e);
    }
  }
}

/**
 * One-shot Pearson cross-correlation of the columns of x (rows × dx) against those of y (rows × dy), both
 * row-major float32: a dx × dy Float32Array. Pass the same array twice for a self-correlation.
 */
export async function correlate(
  x: Float32Array,
  y: Float32Array,
  rows: number,
  dx: number,
  dy: number,
  opts: JobOptions = {},
): Promise<Float32Array> {
  if (!isCount(rows) || rows === 0) throw new FfmergeError('INVALID_ARGUMENT', 'rows must be a positive integer');
  const self = x === y && dx === dy;
  const acc = self ? new CorrelationAccumulator([dx], [[0, 0]]) : new CorrelationAccumulator([dx, dy], [[0, 1]]);
  if (!self && y.length !== rows * dy) {
    throw new FfmergeError('SHAPE_MISMATCH', `y holds ${y.length} values, expected rows × dy = ${rows} × ${dy}`);
  }
  await acc.add(self ? [x] : [x, y], rows, opts);
  return acc.finalize(0, opts);
}
