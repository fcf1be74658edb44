/**
 * Plain float64 ridge regression, the oracle for native/core/ridge: builds [H 1]ᵀ[H 1] and [H 1]ᵀY row by
 * row, adds λ = lambdaRel × mean diag (not on the bias; 1 when that mean is 0), and solves by Gaussian elimination with partial
 * pivoting (a different algorithm from the native Cholesky, on purpose). Returns X (p+1)×m, row p = bias.
 */
import { FfmergeError } from '../../lib/errors';

export function ridgeReference(H: ArrayLike<number>, Y: ArrayLike<number>, n: number, p: number, m: number, lambdaRel: number): Float64Array {
  const p1 = p + 1;
  const A = new Float64Array(p1 * p1);
  const B = new Float64Array(p1 * m);
  const row = new Float64Array(p1);
  for (let r = 0; r < n; r++) {
    for (let i = 0; i < p; i++) row[i] = H[r * p + i]!;
    row[p] = 1;
    for (let i = 0; i < p1; i++) {
      const ri = row[i]!;
      for (let j = 0; j < p1; j++) A[i * p1 + j]! += ri * row[j]!;
      for (let o = 0; o < m; o++) B[i * m + o]! += ri * Y[r * m + o]!;
    }
  }
  let mean = 0;
  for (let i = 0; i < p; i++) mean += A[i * p1 + i]!;
  // every unit zero on every row: λ = 1 (any λ > 0 gives W = 0 and the targets' mean as bias), as the native solve
  const lambda = lambdaRel > 0 && mean === 0 ? 1 : p ? (lambdaRel * mean) / p : 0;
  for (let i = 0; i < p; i++) A[i * p1 + i]! += lambda;
  // Gaussian elimination with partial pivoting on [A | B].
  for (let c = 0; c < p1; c++) {
    let piv = c;
    for (let r = c + 1; r < p1; r++) if (Math.abs(A[r * p1 + c]!) > Math.abs(A[piv * p1 + c]!)) piv = r;
    if (Math.abs(A[piv * p1 + c]!) < 1e-300) throw new FfmergeError('SINGULAR_MATRIX', 'reference ridge: singular system');
    if (piv !== c) {
      for (let j = 0; j < p1; j++) [A[c * p1 + j], A[piv * p1 + j]] = [A[piv * p1 + j]!, A[c * p1 + j]!];
      for (let o = 0; o < m; o++) [B[c * m + o], B[piv * m + o]] = [B[piv * m + o]!, B[c * m + o]!];
    }
    const d = A[c * p1 + c]!;
    for (let r = 0; r < p1; r++) {
      if (r === c) continue;
      const f = A[r * p1 + c]! / d;
      if (f === 0) continue;
      for (let j = c; j < p1; j++) A[r * p1 + j]! -= f * A[c * p1 + j]!;
      for (let o = 0; o < m; o++) B[r * m + o]! -= f * B[c * m + o]!;
    }
  }
  const X = new Float64Array(p1 * m);
  for (let i = 0; i < p1; i++) for (let o = 0; o < m; o++) X[i * m + o] = B[i * m + o]! / A[i * p1 + i]!;
  return X;
}

/** Turns X ((p+1)×m, row p = bias) into canonical W [m, p] and b [m]: what the native solve returns. */
export function splitSolution(X: Float64Array, p: number, m: number): { w: Float32Array; b: Float32Array } {
  const w = new Float32Array(m * p);
  const b = new Float32Array(m);
  for (let i = 0; i < p; i++) for (let o = 0; o < m; o++) w[o * p + i] = X[i * m + o]!;
  for (let o = 0; o < m; o++) b[o] = X[p * m + o]!;
  return { w, b };
}
