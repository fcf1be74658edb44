/**
 * Applying a hidden-unit permutation to one FF sublayer. Unit j of the result is unit perm[j] of the input:
 * rows of W_in, b_in (and the SwiGLU gate) move, and so do the matching columns of W_out; b_out is untouched.
 * The FF computes exactly the same function afterwards (the nonlinearity acts unit by unit), which is why
 * aligning a layer to its window's anchor is free.
 */
import { FfmergeError, showValue } from '../errors';
import { checkJobOptions, type JobOptions } from '../native/job';
import { checkFFWeights, type FFWeights } from '../model/ff-weights';
import { forSlices, SLICE_ELEMENTS } from './slices';
import { zerosF32 } from '../native/external';
import { checkAttached } from '../native/staged';

/** Throws INVALID_ARGUMENT unless perm is a permutation of 0..n-1. */
function checkPermutation(perm: ArrayLike<number>, n: number): void {
  if (typeof perm !== 'object' || perm === null || typeof perm.length !== 'number') {
    throw new FfmergeError('INVALID_ARGUMENT', `permutation must be a list of ${n} integers (got ${showValue(perm)})`);
  }
  if (perm.length !== n) {
    throw new FfmergeError('INVALID_ARGUMENT', `permutation has ${perm.length} entries, expected ${n} (one per FF hidden unit)`);
  }
  const seen = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    const p = perm[i]!;
    if (!Number.isInteger(p) || p < 0 || p >= n || seen[p]) {
      throw new FfmergeError('INVALID_ARGUMENT', `permutation is not a rearrangement of 0..${n - 1} (entry ${i} is ${p})`);
    }
    seen[p] = 1;
  }
}

/** Rows of a row-major [rows, cols] matrix, reordered: out row j = in row perm[j]. */
function permuteRows(m: Float32Array, perm: ArrayLike<number>, cols: number): Float32Array {
  const out = new Float32Array(m.length);
  for (let j = 0; j < perm.length; j++) out.set(m.subarray(perm[j]! * cols, (perm[j]! + 1) * cols), j * cols);
  return out;
}

/** Columns of a row-major [rows, cols] matrix, reordered: out column j = in column perm[j]. */
function permuteCols(m: Float32Array, perm: ArrayLike<number>, rows: number): Float32Array {
  const cols = perm.length;
  const out = new Float32Array(m.length);
  for (let r = 0; r < rows; r++) {
    const base = r * cols;
    for (let j = 0; j < cols; j++) out[base + j] = m[base + perm[j]!]!;
  }
  return out;
}

function permuteVec(v: Float32Array, perm: ArrayLike<number>): Float32Array {
  const out = new Float32Array(v.length);
  for (let j = 0; j < perm.length; j++) out[j] = v[perm[j]!]!;
  return out;
}

/** Canonical (Linear) layout: a new FFWeights whose unit j is the input's unit perm[j]. */
export function permuteFF(ff: FFWeights, perm: ArrayLike<number>): FFWeights {
  checkFFWeights(ff, 'permuteFF(ff, perm): ff');
  checkPermutation(perm, ff.dFF);
  const out: FFWeights = {
    d: ff.d,
    dFF: ff.dFF,
    wIn: permuteRows(ff.wIn, perm, ff.d),
    wOut: permuteCols(ff.wOut, perm, ff.d),
  };
  if (ff.bIn) out.bIn = permuteVec(ff.bIn, perm);
  if (ff.wGate) out.wGate = permuteRows(ff.wGate, perm, ff.d);
  if (ff.bGate) out.bGate = permuteVec(ff.bGate, perm);
  if (ff.bOut) out.bOut = ff.bOut.slice();
  return out;
}

/**
 * permuteFF without blocking the event loop (identical values): rows are moved a slice at a time, into
 * native memory when large (native/external.ts). Progress counts the matrices permuted.
 */
export async function permuteFFAsync(ff: FFWeights, perm0: ArrayLike<number>, opts: JobOptions = {}): Promise<FFWeights> {
  checkJobOptions(opts, 'permuteFFAsync(ff, perm, options): options', []);
  checkFFWeights(ff, 'permuteFFAsync(ff, perm): ff');
  checkPermutation(perm0, ff.dFF);
  // The arrays are read over many turns of the event loop: the permutation is copied (it may change after the
  // check), and an array detached meanwhile is refused.
  const perm = Int32Array.from(perm0);
  const { d, dFF } = ff;
  const rowsPerSlice = SLICE_ELEMENTS / Math.max(d, dFF);
  const n = d * dFF; // checked above: a matrix detached since reads as empty
  const zeros = () => zerosF32(n, opts.signal ? { signal: opts.signal } : {});
  // a new matrix, its `count` output rows written by `row(out, i)` a slice at a time
  const permuted = async (m: Float32Array, count: number, row: (out: Float32Array, i: number) => void) => {
    const out = await zeros();
    await forSlices(count, rowsPerSlice, (i0, i1) => {
      checkAttached(m, n);
      for (let i = i0; i < i1; i++) row(out, i);
    }, opts.signal);
    return out;
  };
  const rows = (m: Float32Array) => permuted(m, dFF, (out, j) => out.set(m.subarray(perm[j]! * d, (perm[j]! + 1) * d), j * d));
  const cols = (m: Float32Array) =>
    permuted(m, d, (out, r) => {
      const base = r * dFF;
      for (let j = 0; j < dFF; j++) out[base + j] = m[base + perm[j]!]!;
    });
  const total = ff.wGate ? 3 : 2;
  let done = 0;
  const counted = async (t: Promise<Float32Array>) => {
    const m = await t;
    opts.onProgress?.({ phase: 'permute', done: ++done, total });
    return m;
  };
  const out: FFWeights = { d, dFF, wIn: await counted(rows(ff.wIn)), wOut: await counted(cols(ff.wOut)) };
  if (ff.bIn) out.bIn = permuteVec(ff.bIn, perm);
  if (ff.wGate) out.wGate = await counted(rows(ff.wGate));
  if (ff.bGate) out.bGate = permuteVec(ff.bGate, perm);
  if (ff.bOut) out.bOut = ff.bOut.slice();
  return out;
}
