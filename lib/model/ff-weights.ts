/**
 * One FF sublayer's weights in ffmerge's canonical ("Linear") layout — see architectures/types.ts for the shapes.
 * Every merge op works on this layout; GPT-2's transposed Conv1D tensors are converted where the model is read
 * (model/plan.ts) and written (checkpoint/write.ts).
 */
import { FfmergeError, showValue } from '../errors';
import { isFloat32Array } from '../typed-arrays';
import { forSlices, SLICE_ELEMENTS } from '../merge/slices';

export interface FFWeights {
  /** Model width d. */
  d: number;
  /** Hidden units d_ff. */
  dFF: number;
  wIn: Float32Array; // [dFF, d]
  bIn?: Float32Array; // [dFF]
  wGate?: Float32Array; // [dFF, d]
  bGate?: Float32Array; // [dFF]
  wOut: Float32Array; // [d, dFF]
  bOut?: Float32Array; // [d]
}

/**
 * Throws INVALID_ARGUMENT unless `ff` is FF weights (positive integers d and dFF, Float32Arrays wIn and wOut, the
 * optional tensors Float32Arrays where present), and SHAPE_MISMATCH unless every present tensor has the size d
 * and dFF imply.
 */
export function checkFFWeights(ff: FFWeights, what = 'FF weights'): void {
  const x = ff as unknown as Record<string, unknown> | null;
  const isDim = (v: unknown) => typeof v === 'number' && Number.isSafeInteger(v) && v > 0;
  const isTensor = (key: string, required: boolean) => (x![key] === undefined && !required) || isFloat32Array(x![key]);
  if (
    typeof x !== 'object' || x === null || !isDim(x.d) || !isDim(x.dFF) ||
    !isTensor('wIn', true) || !isTensor('wOut', true) || !['bIn', 'wGate', 'bGate', 'bOut'].every((k) => isTensor(k, false))
  ) {
    throw new FfmergeError(
      'INVALID_ARGUMENT',
      `${what} must be { d, dFF, wIn, wOut, bIn?, wGate?, bGate?, bOut? } (positive integer sizes, Float32Array tensors), as Model.ffWeights returns (got ${showValue(ff, 120)})`,
    );
  }
  const { d, dFF } = ff;
  const want: [keyof FFWeights, number][] = [
    ['wIn', dFF * d],
    ['bIn', dFF],
    ['wGate', dFF * d],
    ['bGate', dFF],
    ['wOut', d * dFF],
    ['bOut', d],
  ];
  for (const [key, n] of want) {
    const t = ff[key] as Float32Array | undefined;
    if (t && t.length !== n) {
      throw new FfmergeError('SHAPE_MISMATCH', `${what}: ${key} has ${t.length} values, expected ${n} (d=${d}, d_ff=${dFF})`);
    }
  }
}

/** Rows [r0, r1) of the row-major [rows, cols] matrix m, written transposed into out. */
function transposeRows(m: Float32Array, out: Float32Array, rows: number, cols: number, r0: number, r1: number): void {
  for (let r = r0; r < r1; r++) {
    const base = r * cols;
    for (let c = 0; c < cols; c++) out[c * rows + r] = m[base + c]!;
  }
}

/** Transposes a row-major [rows, cols] matrix. */
export function transpose(m: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(m.length);
  transposeRows(m, out, rows, cols, 0, rows);
  return out;
}

/**
 * transpose, in slices of rows of about a millisecond with the event loop run between them: for the writers,
 * which run beside a host's other work. The same values as transpose.
 */
export async function transposeSliced(m: Float32Array, rows: number, cols: number, signal?: AbortSignal): Promise<Float32Array> {
  const out = new Float32Array(m.length);
  await forSlices(rows, SLICE_ELEMENTS / Math.max(1, cols), (r0, r1) => transposeRows(m, out, rows, cols, r0, r1), signal);
  return out;
}

