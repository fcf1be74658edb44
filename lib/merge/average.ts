/**
 * The merge itself: the uniform average of k aligned FF sublayers (the paper's choice; b_out is averaged as
 * is, since the output side is never permuted). Works on either layout, as long as all inputs share one.
 */
import { FfmergeError, showValue } from '../errors';
import { checkJobOptions, type JobOptions } from '../native/job';
import { checkFFWeights, type FFWeights } from '../model/ff-weights';
import { forSlices, SLICE_ELEMENTS } from './slices';
import { zerosF32, zerosF64 } from '../native/external';
import { checkAttached } from '../native/staged';

function mean(tensors: Float32Array[]): Float32Array {
  const n = tensors[0]!.length;
  const acc = new Float64Array(n);
  for (const t of tensors) for (let i = 0; i < n; i++) acc[i]! += t[i]!;
  const out = new Float32Array(n);
  const inv = 1 / tensors.length;
  for (let i = 0; i < n; i++) out[i] = acc[i]! * inv;
  return out;
}

const OPTIONAL = ['bIn', 'wGate', 'bGate', 'bOut'] as const;

/** Throws unless FF i can be averaged with FF 0 (`first`): one shape, the same optional tensors. */
function checkAgainst(first: FFWeights, ff: FFWeights, i: number): void {
  checkFFWeights(ff, `FF ${i}`);
  if (ff.d !== first.d || ff.dFF !== first.dFF) {
    throw new FfmergeError('SHAPE_MISMATCH', `FF ${i} is ${ff.dFF}×${ff.d}, FF 0 is ${first.dFF}×${first.d}; merged FFs must have one shape`);
  }
  for (const key of OPTIONAL) {
    if (Boolean(ff[key]) !== Boolean(first[key])) {
      throw new FfmergeError('SHAPE_MISMATCH', `FF ${i} ${ff[key] ? 'has' : 'lacks'} ${key} but FF 0 does not agree`);
    }
  }
}

/** The FFs argument of averageFF / averageFFAsync: a list (a string or a single FF is refused, not iterated). */
function checkList(ffs: unknown, what: string): asserts ffs is FFWeights[] {
  if (!Array.isArray(ffs)) throw new FfmergeError('INVALID_ARGUMENT', `${what}(ffs): ffs must be a list of FF weights (got ${showValue(ffs)})`);
}

const KEYS = ['wIn', 'bIn', 'wGate', 'bGate', 'wOut', 'bOut'] as const;

/**
 * The mean of FFs added one at a time, without blocking the event loop: float64 sums taken in the order the
 * FFs arrive, so the result is bit-identical to averageFF's. Only the sums (twice one FF's bytes) and the FF
 * being added are held, not all k of them (k = 9 at Llama-2-7B width: 4.9 GB of float32 FFs). Large sums and
 * results live in native memory (native/external.ts): their pages are faulted and freed off the main thread.
 */
export class FFMean {
  private first: FFWeights | undefined;
  private readonly sums = new Map<(typeof KEYS)[number], Float64Array>();
  private count = 0;
  /** An add that failed part-way (detached, aborted) left part of an FF in the sums: the mean is lost. */
  private broken = false;

  async add(ff: FFWeights, signal?: AbortSignal): Promise<void> {
    this.checkUsable();
    checkFFWeights(ff, `FF ${this.count}`);
    if (!this.first) {
      // the first FF's shape only, for the checks: holding the FF itself would hold one more FF throughout
      const none = new Float32Array(0);
      this.first = { d: ff.d, dFF: ff.dFF, wIn: none, wOut: none };
      for (const key of OPTIONAL) if (ff[key]) this.first[key] = none;
    }
    checkAgainst(this.first, ff, this.count);
    // the lengths checked, before the first await: an array detached later reads as empty
    const lengths = new Map(KEYS.map((k) => [k, ff[k]?.length ?? 0]));
    this.broken = true; // until the whole FF is in
    for (const key of KEYS) {
      const t = ff[key];
      if (!t) continue;
      const n = lengths.get(key)!;
      const sum = this.sums.get(key) ?? (await zerosF64(n, signal ? { signal } : {}));
      this.sums.set(key, sum);
      await forSlices(n, SLICE_ELEMENTS, (i0, i1) => {
        checkAttached(t, n); // a detached array reads as empty: its values would add as NaN
        for (let i = i0; i < i1; i++) sum[i]! += t[i]!;
      }, signal);
    }
    this.count++;
    this.broken = false;
  }

  private checkUsable(): void {
    if (this.broken) throw new FfmergeError('INVALID_STATE', 'this FF mean is unusable: an earlier add failed part-way (aborted, or an array detached), leaving part of an FF in the sums');
  }

  async result(signal?: AbortSignal): Promise<FFWeights> {
    this.checkUsable();
    if (!this.first) throw new FfmergeError('INVALID_ARGUMENT', 'averageFF needs at least one FF sublayer');
    const inv = 1 / this.count;
    const out: FFWeights = { d: this.first.d, dFF: this.first.dFF, wIn: new Float32Array(0), wOut: new Float32Array(0) };
    for (const [key, sum] of this.sums) {
      const t = await zerosF32(sum.length, signal ? { signal } : {});
      await forSlices(sum.length, SLICE_ELEMENTS, (i0, i1) => {
        for (let i = i0; i < i1; i++) t[i] = sum[i]! * inv;
      }, signal);
      out[key] = t;
    }
    return out;
  }
}

/** The uniform average of k FFs of one shape (the merge's step 4; align them first: permuteFF). */
export function averageFF(ffs: FFWeights[]): FFWeights {
  checkList(ffs, 'averageFF');
  const first = ffs[0];
  if (!first) throw new FfmergeError('INVALID_ARGUMENT', 'averageFF needs at least one FF sublayer');
  for (const [i, ff] of ffs.entries()) checkAgainst(first, ff, i);
  const out: FFWeights = { d: first.d, dFF: first.dFF, wIn: new Float32Array(0), wOut: new Float32Array(0) };
  for (const key of KEYS) if (first[key]) out[key] = mean(ffs.map((f) => f[key]!));
  return out;
}

/** averageFF without blocking the event loop (identical values); progress counts the FFs added, then the mean. */
export async function averageFFAsync(ffs: FFWeights[], opts: JobOptions = {}): Promise<FFWeights> {
  checkList(ffs, 'averageFFAsync');
  checkJobOptions(opts, 'averageFFAsync(ffs, options): options', []);
  // FFMean checks each FF as it is added (the same checks and messages as averageFF's)
  const mean = new FFMean();
  const total = ffs.length + 1;
  for (const [i, ff] of ffs.entries()) {
    await mean.add(ff, opts.signal);
    opts.onProgress?.({ phase: 'average', done: i + 1, total });
  }
  const out = await mean.result(opts.signal);
  opts.onProgress?.({ phase: 'average', done: total, total });
  return out;
}
