/**
 * Plain TypeScript matrix multiply, float64 accumulation: the oracle the native sgemm is tested against and
 * the "pure JS" side of the GEMM benchmark. Row-major, same conventions as `matmul` in lib/native/gemm.ts:
 * op(A) is m×k (A stored k×m when transA), op(B) is k×n (B stored n×k when transB).
 */

import { checkMatmulShape, type MatmulShape } from '../native/matmul-shape';

/** C = op(A)·op(B) as float64 sums, rounded once to float32 at the end. */
export function matmulReference(a: Float32Array, b: Float32Array, shape: MatmulShape): Float32Array {
  checkMatmulShape(a, b, shape);
  const { m, n, k, transA = false, transB = false } = shape;
  const c = new Float32Array(m * n);
  const row = new Float64Array(n);
  for (let i = 0; i < m; i++) {
    row.fill(0);
    for (let p = 0; p < k; p++) {
      const aip = transA ? a[p * m + i]! : a[i * k + p]!;
      if (transB) {
        for (let j = 0; j < n; j++) row[j]! += aip * b[j * k + p]!;
      } else {
        const base = p * n;
        for (let j = 0; j < n; j++) row[j]! += aip * b[base + j]!;
      }
    }
    c.set(row, i * n);
  }
  return c;
}

/** Σ_p |op(A)(i,p)·op(B)(p,j)| for every (i, j): the scale an fp32 rounding-error bound is relative to. */
export function matmulAbsReference(a: Float32Array, b: Float32Array, shape: MatmulShape): Float64Array {
  const absA = Float32Array.from(a, Math.abs);
  const absB = Float32Array.from(b, Math.abs);
  return Float64Array.from(matmulReference(absA, absB, shape));
}
