/**
 * Plain float64 Pearson cross-correlation between the columns of two activation matrices (two passes:
 * means, then centred products). O(tokens·dx·dy): for tests and small examples only.
 * corr[a*dy + b] = corr(X[:, a], Y[:, b]); a column with zero standard deviation correlates 0 with everything.
 */
import { FfmergeError } from '../../lib/errors';

export function pearsonCrossCorrelationSmall(
  x: ArrayLike<number>,
  y: ArrayLike<number>,
  tokens: number,
  dx: number,
  dy: number,
): Float64Array {
  if (x.length !== tokens * dx || y.length !== tokens * dy) {
    throw new FfmergeError('SHAPE_MISMATCH', `expected X of ${tokens}×${dx} and Y of ${tokens}×${dy} elements`);
  }
  const centred = (m: ArrayLike<number>, d: number): { c: Float64Array; norm: Float64Array } => {
    const mean = new Float64Array(d);
    for (let t = 0; t < tokens; t++) for (let j = 0; j < d; j++) mean[j]! += m[t * d + j] as number;
    for (let j = 0; j < d; j++) mean[j]! /= tokens;
    const c = new Float64Array(tokens * d);
    const norm = new Float64Array(d);
    for (let t = 0; t < tokens; t++) {
      for (let j = 0; j < d; j++) {
        const z = (m[t * d + j] as number) - (mean[j] as number);
        c[t * d + j] = z;
        norm[j]! += z * z;
      }
    }
    for (let j = 0; j < d; j++) norm[j] = Math.sqrt(norm[j] as number);
    return { c, norm };
  };
  const X = centred(x, dx);
  const Y = centred(y, dy);
  const corr = new Float64Array(dx * dy);
  for (let t = 0; t < tokens; t++) {
    for (let a = 0; a < dx; a++) {
      const xa = X.c[t * dx + a] as number;
      if (xa === 0) continue;
      const row = a * dy;
      for (let b = 0; b < dy; b++) corr[row + b]! += xa * (Y.c[t * dy + b] as number);
    }
  }
  for (let a = 0; a < dx; a++) {
    for (let b = 0; b < dy; b++) {
      const den = (X.norm[a] as number) * (Y.norm[b] as number);
      corr[a * dy + b] = den > 0 ? (corr[a * dy + b] as number) / den : 0;
    }
  }
  return corr;
}
