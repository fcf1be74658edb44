/** The shape of a matrix product and its checks, shared by the native wrapper and the reference oracle. */
import { FfmergeError, showValue } from '../errors';

export interface MatmulShape {
  m: number;
  n: number;
  k: number;
  transA?: boolean;
  transB?: boolean;
}

/** Throws INVALID_ARGUMENT / SHAPE_MISMATCH unless a, b fit the shape. Shared with the native wrapper. */
export function checkMatmulShape(a: ArrayLike<number>, b: ArrayLike<number>, shape: MatmulShape): void {
  if (typeof shape !== 'object' || shape === null) {
    throw new FfmergeError('INVALID_ARGUMENT', `matmul(a, b, shape): shape must be an object { m, n, k, transA?, transB? } (got ${showValue(shape)})`);
  }
  for (const [name, x] of [['a', a], ['b', b]] as const) {
    if (typeof x !== 'object' || x === null || typeof x.length !== 'number') throw new FfmergeError('INVALID_ARGUMENT', `matmul(a, b, shape): ${name} must be an array of numbers (got ${showValue(x)})`);
  }
  for (const t of ['transA', 'transB'] as const) {
    if (shape[t] !== undefined && typeof shape[t] !== 'boolean') throw new FfmergeError('INVALID_ARGUMENT', `matmul: ${t} must be true or false (got ${showValue(shape[t])})`);
  }
  for (const dim of ['m', 'n', 'k'] as const) {
    const v = shape[dim];
    if (!Number.isSafeInteger(v) || v < 0) {
      throw new FfmergeError('INVALID_ARGUMENT', `matmul: ${dim} must be a non-negative integer (got ${String(v)})`);
    }
  }
  for (const [name, x, rows, cols] of [['a', a, 'm', 'k'], ['b', b, 'k', 'n']] as const) {
    const want = shape[rows] * shape[cols];
    if (x.length !== want) throw new FfmergeError('SHAPE_MISMATCH', `matmul: ${name} holds ${x.length} values but ${rows}·${cols} = ${shape[rows]}·${shape[cols]} = ${want}`);
  }
}
