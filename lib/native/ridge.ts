/**
 * The refit's least squares on the native core: stream (H, Y) row blocks into a RidgeAccumulator, then
 * solve once for the shared W_out and b_out. H holds merged-FF hidden activations (after the nonlinearity),
 * Y the original FF outputs the merged layer should reproduce.
 */
import { FfmergeError } from '../errors';
import { loadAddon } from './loader';
import { runNativeJob, type JobOptions, type NativeJobHandle } from './job';

interface RidgeAddon {
  ridgeAccumulate(
    H: Float32Array,
    Y: Float32Array,
    n: number,
    p: number,
    m: number,
    G: Float64Array,
    C: Float64Array,
    onProgress?: (done: number, total: number) => void,
  ): NativeJobHandle<void>;
  ridgeSolve(
    G: Float64Array,
    C: Float64Array,
    p: number,
    m: number,
    lambdaRel: number,
    onProgress?: (done: number, total: number) => void,
  ): NativeJobHandle<Float64Array>;
  matmulABt(A: Float32Array, B: Float32Array, M: number, N: number, K: number, onProgress?: (done: number, total: number) => void): NativeJobHandle<Float32Array>;
}

function addon(): RidgeAddon {
  return loadAddon().module as unknown as RidgeAddon;
}

/** Default ridge factor: λ = 1e-3 × mean diagonal of HᵀH. */
export const DEFAULT_RIDGE = 1e-3;

export interface RidgeSolution {
  /** Output weights in canonical layout [m, p] (W_out: [d, dFF]). */
  w: Float32Array;
  /** Bias [m]. */
  b: Float32Array;
}

/** Turns X ((p+1)×m, row p = bias) into canonical W [m,p] and b [m]. */
export function splitSolution(X: Float64Array, p: number, m: number): RidgeSolution {
  const w = new Float32Array(m * p);
  const b = new Float32Array(m);
  for (let i = 0; i < p; i++) for (let o = 0; o < m; o++) w[o * p + i] = X[i * m + o]!;
  for (let o = 0; o < m; o++) b[o] = X[p * m + o]!;
  return { w, b };
}

export class RidgeAccumulator {
  readonly gram: Float64Array;
  readonly cross: Float64Array;
  private rows = 0;
  /** Serialises add() calls: each one writes into the shared sums. */
  private chain: Promise<unknown> = Promise.resolve();

  constructor(
    readonly p: number,
    readonly m: number,
  ) {
    if (!Number.isInteger(p) || !Number.isInteger(m) || p <= 0 || m <= 0) {
      throw new FfmergeError('INVALID_ARGUMENT', `RidgeAccumulator needs positive integer sizes, got p=${p}, m=${m}`);
    }
    this.gram = new Float64Array((p + 1) * (p + 1));
    this.cross = new Float64Array((p + 1) * m);
  }

  get count(): number {
    return this.rows;
  }

  /** Resolves once every add() so far has landed in the sums (for readers of gram/cross). */
  async settled(): Promise<void> {
    await this.chain;
  }

  /** Records rows whose sums were written into gram/cross directly (subAccumulator). */
  addCount(rows: number): void {
    this.rows += rows;
  }

  /** Adds n rows: H [n, p], Y [n, m]. */
  add(H: Float32Array, Y: Float32Array, n: number, opts: JobOptions = {}): Promise<void> {
    if (H.length !== n * this.p || Y.length !== n * this.m) {
      throw new FfmergeError('SHAPE_MISMATCH', `ridge rows: H must be ${n}×${this.p} and Y ${n}×${this.m}`);
    }
    const run = this.chain.then(() =>
      runNativeJob('refit', (cb) => addon().ridgeAccumulate(H, Y, n, this.p, this.m, this.gram, this.cross, cb), opts),
    );
    this.chain = run.catch(() => undefined);
    return run.then(() => {
      this.rows += n;
    });
  }

  /**
   * Solves for W and b. With `bias: false` the fit has no intercept (for layers without b_out): the bias
   * row and column are replaced by an identity entry and zero targets, so b comes out 0 and W solves the
   * leading p×p system alone.
   */
  async solve(lambdaRel = DEFAULT_RIDGE, opts: JobOptions & { bias?: boolean } = {}): Promise<RidgeSolution> {
    await this.chain;
    if (this.rows === 0) throw new FfmergeError('INVALID_ARGUMENT', 'refit: no calibration rows were accumulated');
    let gram = this.gram;
    let cross = this.cross;
    if (opts.bias === false) {
      const { p, m } = this;
      gram = this.gram.slice();
      cross = this.cross.slice();
      for (let i = 0; i <= p; i++) gram[i * (p + 1) + p] = gram[p * (p + 1) + i] = 0;
      gram[p * (p + 1) + p] = 1;
      cross.fill(0, p * m);
    }
    const X = await runNativeJob('refit', (cb) => addon().ridgeSolve(gram, cross, this.p, this.m, lambdaRel, cb), opts);
    return splitSolution(X, this.p, this.m);
  }
}

/** C = A·Bᵀ for A [M, K] and B [N, K] (float32, sgemm on the native pool): the refit's row-block products. */
export function matmulABt(A: Float32Array, B: Float32Array, M: number, N: number, K: number, opts: JobOptions = {}): Promise<Float32Array> {
  if (A.length !== M * K || B.length !== N * K) {
    throw new FfmergeError('SHAPE_MISMATCH', `matmulABt: A must be ${M}×${K} and B ${N}×${K}`);
  }
  return runNativeJob('refit', (cb) => addon().matmulABt(A, B, M, N, K, cb), opts);
}

interface SelectAddon {
  greedySelect(
    G: Float64Array,
    C: Float64Array,
    p: number,
    m: number,
    forced: Int32Array,
    count: number,
    lambdaRel: number,
    onProgress?: (done: number, total: number) => void,
  ): NativeJobHandle<Int32Array>;
}

/**
 * Greedy column subset on a RidgeAccumulator's sums (native pivoted Cholesky, core/select.h): the `count`
 * columns of [H 1] (index p = the constant column) that best reproduce Y by least squares, picked one at a
 * time by the largest drop in residual sum of squares, `forced` ones first. Returned in the order taken.
 */
export async function greedySelect(
  acc: RidgeAccumulator,
  count: number,
  opts: JobOptions & { forced?: number[]; lambdaRel?: number } = {},
): Promise<Int32Array> {
  await acc.settled();
  if (acc.count === 0) throw new FfmergeError('INVALID_ARGUMENT', 'select: no calibration rows were accumulated');
  const forced = Int32Array.from(opts.forced ?? []);
  const a = loadAddon().module as unknown as SelectAddon;
  return runNativeJob('refit', (cb) => a.greedySelect(acc.gram, acc.cross, acc.p, acc.m, forced, count, opts.lambdaRel ?? DEFAULT_RIDGE, cb), opts);
}

/** A RidgeAccumulator over a subset of another's columns (in the order given), the constant column kept last. */
export function subAccumulator(acc: RidgeAccumulator, cols: ArrayLike<number>): RidgeAccumulator {
  const k = cols.length;
  const { p, m } = acc;
  const idx = [...Array.from(cols), p];
  const sub = new RidgeAccumulator(k, m);
  for (let a = 0; a <= k; a++) {
    for (let b = 0; b <= k; b++) sub.gram[a * (k + 1) + b] = acc.gram[idx[a]! * (p + 1) + idx[b]!]!;
    sub.cross.set(acc.cross.subarray(idx[a]! * m, idx[a]! * m + m), a * m);
  }
  sub.addCount(acc.count);
  return sub;
}
