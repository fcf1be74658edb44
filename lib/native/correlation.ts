/**
 * Streamed Pearson cross-correlation between the FF hidden units of layer pairs, on the native core
 * (native/core/correlation.h): feed batches of activations with add(), read d_i × d_j correlation matrices
 * with finalize(). Memory is O(Σ pair dims²), independent of the number of tokens.
 */
import { FfmergeError, showValue } from '../errors';
import { checkJobOptions, type JobOptions, nativeCall, type NativeJobHandle, type NativeProgress, runNativeJob, throwIfAborted } from './job';
import { addonModule } from './loader';
import { checkFFRows, checkStageOptions, type FFInput, parts } from './ridge';
import { type StagedFloatsHandle, type StageOptions, withStaged } from './staged';
import { isFloat32Array } from '../typed-arrays';
import { checkArrayOf, checkBoolean, checkFloat32Array, isArrayOf } from '../arguments';
import type { Activation } from '../model/activation';

interface NativeCorrelationAccumulator {
  add(layers: (Float32Array | StagedFloatsHandle | null)[], rows: number, onProgress: NativeProgress): NativeJobHandle<void>;
  finalize(pairIndex: number, onProgress: NativeProgress, release?: boolean): NativeJobHandle<Float32Array>;
  explained(pairIndex: number, onProgress: NativeProgress, release?: boolean): NativeJobHandle<Float64Array>;
  alignment(pairIndex: number, onProgress: NativeProgress, release?: boolean): NativeJobHandle<Int32Array>;
  addFF(X: Float32Array | StagedFloatsHandle, n: number, ff: unknown, activation: string, Y: Float32Array | StagedFloatsHandle, onProgress: NativeProgress): NativeJobHandle<void>;
  addPair(i: number, j: number): number;
  release(pairIndex: number): void;
  pairCount(pairIndex: number): number;
  count(): number;
  backend(): string;
  setBlockRows(rows: number): void;
}

interface CorrelationAddon {
  CorrelationAccumulator: new (dims: number[], pairs: Int32Array) => NativeCorrelationAccumulator;
}

function isCount(n: unknown): n is number {
  return typeof n === 'number' && Number.isSafeInteger(n) && n >= 0;
}

function checkPair(dims: readonly number[], i: unknown, j: unknown, p: number): void {
  for (const l of [i, j]) {
    if (!Number.isInteger(l) || (l as number) < 0 || (l as number) >= dims.length) {
      throw new FfmergeError('INVALID_ARGUMENT', `pair ${p} = (${String(i)}, ${String(j)}) names a layer outside 0..${dims.length - 1}`);
    }
  }
}

type ReleaseOptions = JobOptions & { release?: boolean | undefined };

/**
 * Streamed Pearson cross-correlation between the hidden units of two layers (step 2): add rows of both layers'
 * activations as they come (Σx, Σy, Σxᵀy in float64, natively), then finalize to the d×d correlation matrix.
 */
export class CorrelationAccumulator {
  readonly dims: readonly number[];
  private readonly pairList: (readonly [number, number])[];
  private readonly released = new Set<number>();
  private readonly native: NativeCorrelationAccumulator;

  /**
   * @param dims width (d_ff) of each layer
   * @param pairs (i, j) layer index pairs whose cross-correlation is wanted; i may equal j. Must not be empty
   *   (use CorrelationAccumulator.inFlight for an accumulator whose pairs come and go).
   */
  constructor(dims: number[], pairs: [number, number][]) {
    if (!Array.isArray(pairs) || pairs.length === 0) {
      throw new FfmergeError('INVALID_ARGUMENT', 'pairs must name at least one (i, j) layer pair');
    }
    this.dims = CorrelationAccumulator.checkDims(dims);
    checkArrayOf<[number, number]>(pairs, 'CorrelationAccumulator(dims, pairs): pairs', 'pairs [i, j]', (p) => Array.isArray(p) && p.length === 2);
    const flat = new Int32Array(pairs.length * 2);
    pairs.forEach(([i, j], p) => {
      checkPair(dims, i, j, p);
      flat[2 * p] = i;
      flat[2 * p + 1] = j;
    });
    this.pairList = pairs.map(([i, j]) => [i, j] as const);
    this.native = CorrelationAccumulator.create(this.dims, flat);
  }

  /**
   * An accumulator with no pairs yet, for callers that keep only a few pairs resident: open a pair with
   * addPair(), feed it with add(), then finalize(p, { release: true }) frees its fp64 sums. Only open pairs
   * cost memory (d_i · d_j doubles each). Always the CPU backend.
   */
  static inFlight(dims: number[]): CorrelationAccumulator {
    const acc = Object.create(CorrelationAccumulator.prototype) as CorrelationAccumulator;
    const d = CorrelationAccumulator.checkDims(dims);
    Object.assign(acc, { dims: d, pairList: [], released: new Set<number>(), native: CorrelationAccumulator.create(d, new Int32Array(0)) });
    return acc;
  }

  private static checkDims(dims: number[]): readonly number[] {
    if (!isArrayOf(dims, (d) => isCount(d) && (d as number) > 0) || dims.length === 0) {
      throw new FfmergeError('INVALID_ARGUMENT', 'dims must be a non-empty array of positive integer layer widths');
    }
    return [...dims];
  }

  private static create(dims: readonly number[], flat: Int32Array): NativeCorrelationAccumulator {
    return nativeCall(() => new (addonModule<CorrelationAddon>().CorrelationAccumulator)([...dims], flat));
  }

  /** Every pair ever opened, by index (released ones included: indices are never reused). */
  get pairs(): readonly (readonly [number, number])[] {
    return this.pairList;
  }

  /** Opens pair (i, j) and returns its index; it sees the rows of later add() calls only. */
  addPair(i: number, j: number): number {
    checkPair(this.dims, i, j, this.pairList.length);
    const p = nativeCall(() => this.native.addPair(i, j));
    this.pairList.push([i, j] as const);
    return p;
  }

  /** Frees pair p's sums (finalize it first if its result is wanted). Releasing twice is a no-op. */
  release(pairIndex: number): void {
    this.checkIndex(pairIndex);
    nativeCall(() => this.native.release(pairIndex));
    this.released.add(pairIndex);
  }

  /** Rows pair p has seen. */
  pairCount(pairIndex: number): number {
    this.checkIndex(pairIndex);
    return nativeCall(() => this.native.pairCount(pairIndex));
  }

  private checkIndex(pairIndex: number): void {
    if (!isCount(pairIndex) || pairIndex >= this.pairList.length) {
      throw new FfmergeError('INVALID_ARGUMENT', `pair index ${pairIndex} is out of range (this accumulator has ${this.pairList.length} pairs)`);
    }
  }

  private get used(): boolean[] {
    const used = this.dims.map(() => false);
    this.pairList.forEach(([i, j], p) => {
      if (!this.released.has(p)) used[i] = used[j] = true;
    });
    return used;
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
   * time per accumulator (BUSY otherwise). The arrays are copied by the call, before it returns; with
   * `stage`, arrays of STAGE_MIN floats or more are copied a slice at a time over the next turns of the event
   * loop instead (native/staged.ts), so they must not change until the promise settles (a detached one
   * rejects with BUFFER_DETACHED).
   */
  async add(layers: (Float32Array | null | undefined)[], rows: number, opts: StageOptions = {}): Promise<void> {
    checkStageOptions(opts, 'CorrelationAccumulator#add(layers, rows, options): options');
    throwIfAborted(opts.signal);
    if (!isCount(rows)) throw new FfmergeError('INVALID_ARGUMENT', `rows must be a non-negative integer, got ${rows}`);
    if (!Array.isArray(layers) || layers.length !== this.dims.length) {
      throw new FfmergeError(
        'SHAPE_MISMATCH',
        `expected activations for ${this.dims.length} layers, got ${Array.isArray(layers) ? layers.length : 'no array'}`,
      );
    }
    const used = this.used;
    // one record per layer ({a}), the shape stageLarge takes
    const given = layers.map((x, l) => {
      if (!used[l] && (x === null || x === undefined)) return { a: null };
      if (!isFloat32Array(x)) {
        throw new FfmergeError('INVALID_ARGUMENT', `layer ${l} is used by a pair and needs a Float32Array`);
      }
      const want = rows * this.dims[l]!;
      if (x.length !== want) {
        throw new FfmergeError(
          'SHAPE_MISMATCH',
          `layer ${l} holds ${x.length} values, expected rows × width = ${rows} × ${this.dims[l]!} = ${want}`,
        );
      }
      return { a: x };
    });
    // At 7B width one batch's pre-activations of two layers are 180 MB, otherwise copied in one call.
    await withStaged(given, opts, (staged) => runNativeJob('correlation.add', (onProgress) => this.native.add(staged.map((s) => s.a), rows, onProgress), opts));
  }

  /**
   * Pearson correlation of pair `pairIndex` = (i, j): a dims[i] × dims[j] row-major Float32Array whose entry
   * [a * dims[j] + b] correlates unit a of layer i with unit b of layer j; 0 where either unit is constant.
   * With release, the pair's sums are freed in the same job (once it succeeded).
   */
  async finalize(pairIndex: number, opts: ReleaseOptions = {}): Promise<Float32Array> {
    return this.pairJob('finalize', pairIndex, opts, (onProgress, release) => this.native.finalize(pairIndex, onProgress, release));
  }

  /** finalize, alignment or explained: with `release`, the pair's sums are freed in the same job. */
  private async pairJob<T>(
    method: string,
    pairIndex: number,
    opts: ReleaseOptions,
    start: (p: NativeProgress, release: boolean) => NativeJobHandle<T>,
  ): Promise<T> {
    this.checkIndex(pairIndex);
    checkJobOptions(opts, `CorrelationAccumulator#${method}(pairIndex, options): options`, ['release']);
    checkBoolean(opts?.release, `CorrelationAccumulator#${method}: release`);
    const release = opts?.release === true;
    const out = await runNativeJob(`correlation.${method}`, (onProgress) => start(onProgress, release), opts);
    if (release) this.released.add(pairIndex);
    return out;
  }

  /**
   * For an accumulator of two layers [ff.dFF, m] (pair (0, 1)): adds the hidden units of `ff` (after the
   * nonlinearity) on inputs X [n, d] as layer 0 and Y [n, m] as layer 1. The hidden units are computed in the
   * job and never pass through JS; a NativeFF is read without a copy. X and Y are copied, or staged with
   * `stage`, as in RidgeAccumulator.addFF.
   */
  async addFF(X: Float32Array, n: number, ff: FFInput, act: Activation, Y: Float32Array, opts: StageOptions = {}): Promise<void> {
    checkStageOptions(opts, 'CorrelationAccumulator#addFF(X, n, ff, act, Y, options): options');
    checkFFRows('CorrelationAccumulator#addFF', X, n, ff, Y);
    throwIfAborted(opts.signal);
    if (this.dims.length !== 2 || ff.dFF !== this.dims[0] || X.length !== n * ff.d || Y.length !== n * this.dims[1]!) {
      throw new FfmergeError('SHAPE_MISMATCH', `addFF needs dims [units, m] = [${ff.dFF}, m], X ${n}×${ff.d} and Y ${n}×m (dims are [${this.dims.join(', ')}])`);
    }
    if (n === 0) return; // no rows: nothing to add (the addon would read d from X's rows and refuse the FF)
    await withStaged([{ X, Y }], opts, ([s]) => runNativeJob('correlation.addFF', (onProgress) => this.native.addFF(s!.X, n, parts(ff), act, s!.Y, onProgress), opts));
  }

  /**
   * For a pair (i, j) of equal widths d: the permutation of layer j's units with the largest total
   * correlation to layer i's (perm[a] = j's unit matched to unit a), what permutationFromCorrelation gives
   * on finalize's matrix, without the d × d matrix ever reaching JS. With release as in finalize.
   */
  async alignment(pairIndex: number, opts: ReleaseOptions = {}): Promise<Int32Array> {
    return this.pairJob('alignment', pairIndex, opts, (onProgress, release) => this.native.alignment(pairIndex, onProgress, release));
  }

  /**
   * Per unit a of pair (i, j)'s layer i: Σ_b corr(a, b)² · var(b) over layer j's units, the variance of
   * layer j it explains alone (fp64), without the dims[i] × dims[j] matrix. With release as in finalize.
   */
  async explained(pairIndex: number, opts: ReleaseOptions = {}): Promise<Float64Array> {
    return this.pairJob('explained', pairIndex, opts, (onProgress, release) => this.native.explained(pairIndex, onProgress, release));
  }

  /** Rows per fp32 block product (default 2048); only before the first add. Smaller: more exact, slower. */
  setBlockRows(rows: number): void {
    if (!isCount(rows) || rows === 0) throw new FfmergeError('INVALID_ARGUMENT', 'blockRows must be a positive integer');
    nativeCall(() => this.native.setBlockRows(rows));
  }
}

/**
 * One-shot Pearson cross-correlation of the columns of x (rows × dx) against those of y (rows × dy), both
 * row-major float32: a dx × dy Float32Array. Pass the same array twice for a self-correlation. With `stage`,
 * x and y are copied into native memory a slice at a time, as CorrelationAccumulator.add stages them: they must
 * not change until the promise settles.
 */
export async function correlate(
  x: Float32Array,
  y: Float32Array,
  rows: number,
  dx: number,
  dy: number,
  opts: StageOptions = {},
): Promise<Float32Array> {
  checkStageOptions(opts, 'correlate(x, y, rows, dx, dy, options): options');
  if (!isCount(rows) || rows === 0) throw new FfmergeError('INVALID_ARGUMENT', 'rows must be a positive integer');
  // the shapes before the accumulator: its sums are sized by dx and dy, which a wrong shape may make absurd
  for (const [name, v, dim] of [['x', x, dx], ['y', y, dy]] as const) {
    checkFloat32Array(v, `correlate: ${name}`);
    if (!isCount(dim) || dim === 0) throw new FfmergeError('INVALID_ARGUMENT', `correlate: d${name} must be a positive integer (got ${showValue(dim)})`);
    if (v.length !== rows * dim) throw new FfmergeError('SHAPE_MISMATCH', `${name} holds ${v.length} values, expected rows × d${name} = ${rows} × ${dim}`);
  }
  const self = x === y && dx === dy;
  const acc = self ? new CorrelationAccumulator([dx], [[0, 0]]) : new CorrelationAccumulator([dx, dy], [[0, 1]]);
  await acc.add(self ? [x] : [x, y], rows, opts);
  const { stage: _stage, ...job } = opts;
  return acc.finalize(0, job);
}
