/**
 * Plain float64 two-pass Pearson cross-correlation: the oracle the native accumulator is tested against and
 * the "pure JS" side of benchmarks/correlation.ts. No streaming, no tricks: means first, then centred sums.
 */

/**
 * Pearson correlation of the columns of x (rows × dx, row-major) against those of y (rows × dy):
 * result[a * dy + b] = corr(x[:, a], y[:, b]); 0 where either column has zero variance.
 */
export function pearsonReference(
  x: ArrayLike<number>,
  y: ArrayLike<number>,
  rows: number,
  dx: number,
  dy: number,
): Float64Array {
  const xc = centred(x, rows, dx);
  const yc = centred(y, rows, dy);
  const cross = new Float64Array(dx * dy);
  const ssx = new Float64Array(dx);
  const ssy = new Float64Array(dy);
  for (let r = 0; r < rows; r++) {
    const xo = r * dx;
    const yo = r * dy;
    for (let b = 0; b < dy; b++) ssy[b]! += yc[yo + b]! * yc[yo + b]!;
    for (let a = 0; a < dx; a++) {
      const u = xc[xo + a]!;
      ssx[a]! += u * u;
      if (u === 0) continue;
      const co = a * dy;
      for (let b = 0; b < dy; b++) cross[co + b]! += u * yc[yo + b]!;
    }
  }
  for (let a = 0; a < dx; a++) {
    for (let b = 0; b < dy; b++) {
      const d = Math.sqrt(ssx[a]! * ssy[b]!);
      cross[a * dy + b] = d > 0 ? cross[a * dy + b]! / d : 0;
    }
  }
  return cross;
}

function centred(x: ArrayLike<number>, rows: number, d: number): Float64Array {
  const mean = new Float64Array(d);
  for (let r = 0; r < rows; r++) for (let a = 0; a < d; a++) mean[a]! += x[r * d + a]!;
  for (let a = 0; a < d; a++) mean[a]! /= rows;
  const out = new Float64Array(rows * d);
  for (let r = 0; r < rows; r++) for (let a = 0; a < d; a++) out[r * d + a] = x[r * d + a]! - mean[a]!;
  return out;
}
