/** Top-1 accuracy of classifier logits against integer labels. */
import { FfmergeError, showValue } from '../errors';
import { isArrayOf } from '../arguments';

const isNumbers = (v: unknown): v is ArrayLike<number> => ArrayBuffer.isView(v) || isArrayOf(v, (x) => typeof x === 'number');

/** Index of the largest logit in each row of a [rows, classes] matrix (first one on ties, like argmax). */
export function argmaxRows(logits: ArrayLike<number>, classes: number): Int32Array {
  if (!isNumbers(logits)) throw new FfmergeError('INVALID_ARGUMENT', `logits must be a typed array or a list of numbers (got ${showValue(logits)})`);
  if (!Number.isInteger(classes) || classes <= 0 || logits.length % classes !== 0) {
    throw new FfmergeError('SHAPE_MISMATCH', `logits of length ${logits.length} do not split into rows of ${classes} classes`);
  }
  const rows = logits.length / classes;
  const out = new Int32Array(rows);
  for (let r = 0; r < rows; r++) {
    const row = r * classes;
    let best = 0;
    for (let c = 1; c < classes; c++) if (logits[row + c]! > logits[row + best]!) best = c;
    out[r] = best;
  }
  return out;
}

export interface AccuracyCounts {
  correct: number;
  total: number;
  accuracy: number;
}

/** Counts rows whose argmax equals the label. */
export function top1Accuracy(logits: ArrayLike<number>, classes: number, labels: ArrayLike<number>): AccuracyCounts {
  const pred = argmaxRows(logits, classes);
  if (!isNumbers(labels)) throw new FfmergeError('INVALID_ARGUMENT', `labels must be a typed array or a list of numbers (got ${showValue(labels)})`);
  if (pred.length !== labels.length) {
    throw new FfmergeError('SHAPE_MISMATCH', `${pred.length} rows of logits but ${labels.length} labels`);
  }
  let correct = 0;
  for (let i = 0; i < pred.length; i++) if (pred[i] === labels[i]) correct++;
  return { correct, total: pred.length, accuracy: pred.length ? correct / pred.length : 0 };
}
