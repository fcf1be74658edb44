/**
 * The refit's least squares on the native core: stream (H, Y) row blocks into a RidgeAccumulator, then
 * solve once for the shared W_out and b_out. H holds merged-FF hidden activations (after the nonlinearity),
 * Y the original FF outputs the merged layer should reproduce. The sums ([H 1]ᵀ[H 1] and [H 1]ᵀY, fp64) live
 * in native memory (native/binding/ridge_binding.cc says why) and are only ever read by native jobs.
 */
import { FfmergeError } from '../errors';
import { checkArrayOf, checkBoolean, checkCount, checkFloat32Array } from '../arguments';
import type { Activation } from '../model/activation';
import { checkFFWeights, type FFWeights } from '../model/ff-weights';
import { addonModule } from './loader';
import { checkJobOptions, nativeCall, runNativeJob, throwIfAborted, type JobOptions, type NativeJobHandle, type NativeProgress } from './job';
import { NativeFF } from './native-ff';
import { type StagedFloatsHandle, type StageOptions, withStaged } from './staged';

/** The FF pieces a native job computes hidden units from. */
type FFParts = Pick<FFWeights, 'wIn' | 'bIn' | 'wGate' | 'bGate' | 'wOut' | 'bOut'>;
/** An FF a job reads: a JS one (copied for the job) or a NativeFF (shared, for the hidden units only). */
export type FFInput = (FFParts & { d: number; dFF: number }) | NativeFF;

interface NativeRidgeSums {
  add(H: Float32Array, Y: Float32Array, n: number, onProgress: NativeProgress): NativeJobHandle<void>;
  addFF(X: Float32Array | StagedFloatsHandle, n: number, ff: unknown, activation: string, Y: Float32Array | StagedFloatsHandle, onProgress: NativeProgress): NativeJobHandle<void>;
  solve(lambdaRel: number, bias: boolean, columns: Int32Array | null, onProgress: NativeProgress): NativeJobHandle<RidgeSolution>;
  select(forced: Int32Array, count: number, lambdaRel: number, onProgress: NativeProgress): NativeJobHandle<Int32Array>;
  rows(): number;
}

interface RidgeAddon {
  RidgeSums: new (p: number, m: number) => NativeRidgeSums;
  ffApply(X: Float32Array, n: number, d: number, units: number, ff: unknown, activation: string, output: boolean, onProgress?: NativeProgress): NativeJobHandle<Float32Array>;
}

/** Default ridge factor: λ = 1e-3 × mean diagonal of HᵀH. */
export const DEFAULT_RIDGE = 1e-3;

export interface RidgeSolution {
  /** Output weights in canonical layout [m, p] (W_out: [d, dFF]). */
  w: Float32Array;
  /** Bias [m]. */
  b: Float32Array;
}

/**
 * Streamed ridge least squares (the refit recover methods): add rows of inputs H and targets Y, then solve for
 * W and b minimising Σ‖Hw + b − y‖² + λ‖W‖², or greedily select columns (the select merge).
 */
export class RidgeAccumulator {
  private readonly native: NativeRidgeSums;
  /** Serialises the jobs: each one reads or writes the shared sums. */
  private chain: Promise<unknown> = Promise.resolve();

  constructor(
    readonly p: number,
    readonly m: number,
  ) {
    if (!Number.isInteger(p) || !Number.isInteger(m) || p <= 0 || m <= 0) {
      throw new FfmergeError('INVALID_ARGUMENT', `RidgeAccumulator needs positive integer sizes, got p=${p}, m=${m}`);
    }
    this.native = nativeCall(() => new (addonModule<RidgeAddon>().RidgeSums)(p, m));
  }

  /** A list (or typed array) of column indices 0..max: a string, or 2³², NaN or 1.7 in it, is refused. */
  private checkColumns(v: unknown, what: string, max: number): void {
    const list = typeof v === 'object' && v !== null && typeof (v as ArrayLike<unknown>).length === 'number' ? Array.from(v as ArrayLike<unknown>) : v;
    checkArrayOf<number>(list, what, `column indices 0 to ${max}`, (c) => Number.isInteger(c) && (c as number) >= 0 && (c as number) <= max);
  }

  /** Rows added so far (those of settled adds). */
  get count(): number {
    return this.native.rows();
  }

  /** Resolves once every job so far has settled. */
  async settled(): Promise<void> {
    await this.chain;
  }

  private queue<T>(start: (cb: NativeProgress) => NativeJobHandle<T>, opts: JobOptions): Promise<T> {
    const run = this.chain.then(() => runNativeJob('refit', start, opts));
    this.chain = run.catch(() => undefined);
    return run;
  }

  /** Adds n rows: H [n, p], Y [n, m]. */
  async add(H: Float32Array, Y: Float32Array, n: number, opts: JobOptions = {}): Promise<void> {
    checkJobOptions(opts, 'RidgeAccumulator#add(H, Y, n, options): options', []);
    checkFloat32Array(H, 'RidgeAccumulator#add: H');
    checkFloat32Array(Y, 'RidgeAccumulator#add: Y');
    checkCount(n, 'RidgeAccumulator#add: n');
    if (H.length !== n * this.p || Y.length !== n * this.m) {
      throw new FfmergeError('SHAPE_MISMATCH', `ridge rows: H must be ${n}×${this.p} and Y ${n}×${this.m}`);
    }
    return this.queue((cb) => this.native.add(H, Y, n, cb), opts);
  }

  /**
   * Adds n rows whose H is the hidden units of `ff` (p units) on inputs X [n, d], computed in the job: H never
   * exists in JS (it is the largest array of a select merge, n × k·d_ff). X and Y are copied by the call; with
   * `stage`, a slice at a time first (native/staged.ts: 67 MB a batch at 7B width), and they must then not
   * change until the promise settles.
   */
  async addFF(X: Float32Array, n: number, ff: FFInput, act: Activation, Y: Float32Array, opts: StageOptions = {}): Promise<void> {
    checkStageOptions(opts, 'RidgeAccumulator#addFF(X, n, ff, act, Y, options): options');
    checkFFRows('RidgeAccumulator#addFF', X, n, ff, Y);
    if (ff.dFF !== this.p || X.length !== n * ff.d || Y.length !== n * this.m) {
      throw new FfmergeError('SHAPE_MISMATCH', `ridge rows: the FF must have ${this.p} units, X ${n}×${ff.d} and Y ${n}×${this.m}`);
    }
    // no rows: nothing to add (the addon would read d from X's rows, and refuse the FF as the wrong shape)
    if (n === 0) return throwIfAborted(opts.signal);
    await withStaged([{ X, Y }], opts, ([s]) => this.queue((cb) => this.native.addFF(s!.X, n, parts(ff), act, s!.Y, cb), opts));
  }

  /**
   * Solves for W and b. With `bias: false` the fit has no intercept (for layers without b_out): b comes out 0
   * and W solves the leading system alone. With `columns`, only those columns of H take part (in that
   * order; W is [m, columns.length]): the fit on a subset, without a second accumulation.
   */
  async solve(lambdaRel = DEFAULT_RIDGE, opts: JobOptions & { bias?: boolean | undefined; columns?: ArrayLike<number> | undefined } = {}): Promise<RidgeSolution> {
    checkJobOptions(opts, 'RidgeAccumulator#solve(lambdaRel, options): options', ['bias', 'columns']);
    checkBoolean(opts.bias, 'RidgeAccumulator#solve: bias');
    // Int32Array.from would wrap 2³² to column 0, and read NaN and 1.7 as 0 and 1
    if (opts.columns !== undefined) this.checkColumns(opts.columns, 'RidgeAccumulator#solve: columns', this.p - 1);
    await this.chain;
    if (this.count === 0) throw new FfmergeError('INVALID_ARGUMENT', 'refit: no calibration rows were accumulated');
    const columns = opts.columns ? Int32Array.from(opts.columns) : null;
    // W and b come back split and in float32 from the job (ridge_binding.cc says why)
    return this.queue((cb) => this.native.solve(lambdaRel, opts.bias !== false, columns, cb), opts);
  }

  /**
   * Greedy column subset (native pivoted Cholesky, core/select.h): the `count` columns of [H 1] (index p =
   * the constant column) that best reproduce Y by least squares, picked one at a time by the largest drop in
   * residual sum of squares, `forced` ones first. Returned in the order taken.
   */
  async select(count: number, opts: JobOptions & { forced?: number[] | undefined; lambdaRel?: number | undefined } = {}): Promise<Int32Array> {
    checkJobOptions(opts, 'RidgeAccumulator#select(count, options): options', ['forced', 'lambdaRel']);
    checkCount(count, 'RidgeAccumulator#select: count');
    if (opts.forced !== undefined) this.checkColumns(opts.forced, 'RidgeAccumulator#select: forced', this.p);
    await this.chain;
    if (this.count === 0) throw new FfmergeError('INVALID_ARGUMENT', 'select: no calibration rows were accumulated');
    const forced = Int32Array.from(opts.forced ?? []);
    return this.queue((cb) => this.native.select(forced, count, opts.lambdaRel ?? DEFAULT_RIDGE, cb), opts);
  }
}

/** An addFF call's X, n, ff and Y, by type (the shapes are the caller's to check against its own sizes). */
export function checkFFRows(what: string, X: unknown, n: unknown, ff: unknown, Y: unknown): void {
  checkFloat32Array(X, `${what}: X`);
  checkFloat32Array(Y, `${what}: Y`);
  checkCount(n, `${what}: n`);
  if (!(ff instanceof NativeFF)) checkFFWeights(ff as FFWeights, `${what}: ff`);
}

/** The options of a call that takes `stage`. */
export function checkStageOptions(opts: unknown, what: string): void {
  checkJobOptions(opts as JobOptions, what, ['stage']);
  checkBoolean((opts as { stage?: unknown } | undefined)?.stage, `${what.replace(/: options$/, '')}: stage`);
}

/** What the binding reads: a NativeFF's handle, or only the FF's arrays (a JS object it reads by key). */
export function parts(ff: FFInput): unknown {
  if (ff instanceof NativeFF) return ff.handle;
  const out: FFParts = { wIn: ff.wIn, wOut: ff.wOut };
  for (const k of ['bIn', 'wGate', 'bGate', 'bOut'] as const) if (ff[k]) out[k] = ff[k];
  return out;
}

/**
 * An FF on inputs X [n, d] in one native job (native/binding/ff_binding.cc): its hidden units [n, dFF]
 * (after the nonlinearity), or with `output` its output [n, d] (W_out and b_out applied).
 */
export function ffApply(ff: FFInput, X: Float32Array, n: number, act: Activation, output: boolean, opts: JobOptions = {}): Promise<Float32Array> {
  if (X.length !== n * ff.d) throw new FfmergeError('SHAPE_MISMATCH', `ffApply: X must be ${n}×${ff.d}`);
  return runNativeJob('refit', (cb) => addonModule<RidgeAddon>().ffApply(X, n, ff.d, ff.dFF, parts(ff), act, output, cb), opts);
}
