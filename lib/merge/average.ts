/**
 * The merge itself: the uniform average of k aligned FF sublayers (the paper's choice; b_out is averaged as
 * is, since the output side is never permuted). Works on either layout, as long as all inputs share one.
 */
import { FfmergeError } from '../errors';
import { checkFFWeights, type FFWeights } from '../model/ff-weights';
import { forSlices, SLICE_ELEMENTS } from './slices';

function mean(tensors: Float32Array[]): Float32Array {
  const n = tensors[0]!.length;
  const acc = new Float64Array(n);
  for (const t of tensors) for (let i = 0; i < n; i++) acc[i]! += t[i]!;
  const out = new Float32Array(n);
  const inv = 1 / tensors.length;
  for (let i = 0; i < n; i++) out[i] = acc[i]! * inv;
  return out;
}

/** The mean in slices with yields between them (same values as mean()): see slices.ts. */
async function meanSliced(tensors: Float32Array[], signal?: AbortSignal): Promise<Float32Array> {
  const n = tensors[0]!.length;
  const out = new Float32Array(n);
  const inv = 1 / tensors.length;
  await forSlices(n, SLICE_ELEMENTS / tensors.length, (i0, i1) => {
    for (let i = i0; i < i1; i++) {
      let acc = 0; // float64, summed in the same order as mean()
      for (const t of tensors) acc += t[i]!;
      out[i] = acc * inv;
    }
  }, signal);
  return out;
}

function checkMergeable(ffs: FFWeights[]): FFWeights {
  const first = ffs[0];
  if (!first) throw new FfmergeError('INVALID_ARGUMENT', 'averageFF needs at least one FF sublayer');
  for (const [i, ff] of ffs.entries()) {
    checkFFWeights(ff, `FF ${i}`);
    if (ff.d !== first.d || ff.dFF !== first.dFF) {
      throw new FfmergeError('SHAPE_MISMATCH', `FF ${i} is ${ff.dFF}×${ff.d}, FF 0 is ${first.dFF}×${first.d}; merged FFs must have one shape`);
    }
    for (const key of ['bIn', 'wGate', 'bGate', 'bOut'] as const) {
      if (Boolean(ff[key]) !== Boolean(first[key])) {
        throw new FfmergeError('SHAPE_MISMATCH', `FF ${i} ${ff[key] ? 'has' : 'lacks'} ${key} but FF 0 does not agree`);
      }
    }
  }
  return first;
}

export function averageFF(ffs: FFWeights[]): FFWeights {
  const first = checkMergeable(ffs);
  const out: FFWeights = {
    d: first.d,
    dFF: first.dFF,
    wIn: mean(ffs.map((f) => f.wIn)),
    wOut: mean(ffs.map((f) => f.wOut)),
  };
  for (const key of ['bIn', 'wGate', 'bGate', 'bOut'] as const) {
    if (first[key]) out[key] = mean(ffs.map((f) => f[key]!));
  }
  return out;
}

/** averageFF without blocking the event loop (identical values): what the pipeline uses. */
export async function averageFFAsync(ffs: FFWeights[], opts: { signal?: AbortSignal } = {}): Promise<FFWeights> {
  const first = checkMergeable(ffs);
  const out: FFWeights = {
    d: first.d,
    dFF: first.dFF,
    wIn: await meanSliced(ffs.map((f) => f.wIn), opts.signal),
    wOut: await meanSliced(ffs.map((f) => f.wOut), opts.signal),
  };
  for (const key of ['bIn', 'wGate', 'bGate', 'bOut'] as const) {
    if (first[key]) out[key] = await meanSliced(ffs.map((f) => f[key]!), opts.signal);
  }
  return out;
}
