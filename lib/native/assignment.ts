/**
 * Exact dense linear assignment on the native core (Jonker–Volgenant, SIMD inner loops), with scipy's
 * linear_sum_assignment semantics for finite costs (±Infinity, which scipy takes as forbidden pairs, is
 * refused here: a correlation is never infinite), plus the permutation helper the merge uses to align a layer's FF
 * hidden units to an anchor layer.
 */
import { FfmergeError, showValue } from '../errors';
import { checkBoolean, checkCount } from '../arguments';
import { checkJobOptions, runNativeJob, type JobOptions, type NativeJobHandle, type NativeProgress } from './job';
import { addonModule } from './loader';
import { type StagedFloatsHandle, withStaged } from './staged';

export interface AssignmentResult {
  /** Rows of the matched pairs, strictly increasing. */
  rowInd: Int32Array;
  /** colInd[k] is the column matched to rowInd[k]. */
  colInd: Int32Array;
  /** Sum of cost[rowInd[k], colInd[k]], accumulated in float64. */
  objective: number;
}

/** Inner-loop implementation; every one returns the identical result ('auto' picks the fastest this CPU runs). */
export type AssignmentKernel = 'auto' | 'scalar' | 'avx2' | 'avx512';

export interface AssignmentOptions extends JobOptions {
  /** Maximise the sum instead of minimising it (as scipy's maximize=True). */
  maximize?: boolean | undefined;
  kernel?: AssignmentKernel | undefined;
  /**
   * A Float32Array cost of 1 Mi values or more is copied into native memory a slice at a time over the next
   * turns of the event loop (lib/native/staged.ts), not at the call: it must then not change until the promise
   * settles. A Float64Array is copied at the call.
   */
  stage?: boolean | undefined;
}

interface AssignmentAddon {
  linearSumAssignment(
    cost: Float32Array | Float64Array | StagedFloatsHandle,
    rows: number,
    cols: number,
    maximize: boolean,
    kernel: AssignmentKernel | undefined,
    onProgress: NativeProgress,
  ): NativeJobHandle<AssignmentResult>;
  assignmentKernels(): { auto: AssignmentKernel; supported: AssignmentKernel[] };
}

/** Which assignment kernels this CPU runs, and the one 'auto' picks. */
export function assignmentKernels() {
  return addonModule<AssignmentAddon>().assignmentKernels();
}

/**
 * Solves min (or max) Σ cost[rowInd[k], colInd[k]] over min(rows, cols) pairs with distinct rows and
 * columns, exactly, for a row-major rows×cols matrix (float32 or float64; copied at the call, or staged).
 * Rectangular matrices work both ways; rowInd is strictly increasing, as in scipy.
 *
 * Errors (FfmergeError): NON_FINITE_INPUT for NaN/±Infinity entries, SHAPE_MISMATCH when
 * cost.length !== rows*cols, INVALID_ARGUMENT for bad dimensions, ABORTED when opts.signal fires.
 * Progress: phase 'assignment', done = rows assigned of min(rows, cols).
 */
export function linearSumAssignment(
  cost: Float32Array | Float64Array,
  rows: number,
  cols: number,
  opts: AssignmentOptions = {},
): Promise<AssignmentResult> {
  // a misspelt `maximise` minimised, and maximize: 'no' maximised (truthy), both silently
  checkJobOptions(opts, 'linearSumAssignment(cost, rows, cols, options): options', ['maximize', 'kernel', 'stage']);
  checkBoolean(opts.maximize, 'linearSumAssignment: maximize');
  checkBoolean(opts.stage, 'linearSumAssignment: stage');
  // withStaged stages Float32Arrays only; a Float64Array goes as it is
  return withStaged([{ cost }], opts, ([staged]) =>
    runNativeJob('assignment', (onProgress) => addonModule<AssignmentAddon>().linearSumAssignment(staged!.cost, rows, cols, opts.maximize ?? false, opts.kernel, onProgress), opts),
  );
}

/**
 * The permutation that aligns layer B's d hidden units to anchor layer A, maximising total correlation.
 *
 * Input: corr[a*d + b] = correlation between unit a of A (the anchor) and unit b of B.
 * Output: perm with B's unit perm[a] moved to position a, i.e. the aligned layer is B'[a] = B[perm[a]]:
 * new W_in rows (and b_in, gate rows) are W_in[perm[a], :], new W_out columns are W_out[:, perm[a]].
 * Σ_a corr[a*d + perm[a]] is the largest achievable.
 */
export async function permutationFromCorrelation(
  corr: Float32Array | Float64Array,
  d: number,
  opts: Omit<AssignmentOptions, 'maximize'> = {},
): Promise<Int32Array> {
  checkJobOptions(opts, 'permutationFromCorrelation(corr, d, options): options', ['kernel', 'stage']);
  if (!ArrayBuffer.isView(corr)) throw new FfmergeError('INVALID_ARGUMENT', `permutationFromCorrelation: corr must be a Float32Array or Float64Array (got ${showValue(corr)})`);
  checkCount(d, 'permutationFromCorrelation: d');
  if (corr.length !== d * d) {
    throw new FfmergeError('SHAPE_MISMATCH', `the correlation matrix must be d×d = ${d}×${d}, got ${corr.length} elements`);
  }
  const { rowInd, colInd } = await linearSumAssignment(corr, d, d, { ...opts, maximize: true });
  const perm = new Int32Array(d);
  for (let k = 0; k < d; k++) perm[rowInd[k] as number] = colInd[k] as number;
  return perm;
}
