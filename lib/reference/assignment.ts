/**
 * Pure-TypeScript exact linear sum assignment: the shortest augmenting path method (Crouse 2016, the
 * algorithm behind scipy.optimize.linear_sum_assignment), O(n³). It is the oracle for the native solver's
 * tests and the "pure JS" side of its benchmark, so it favours clarity over speed.
 *
 * Semantics match scipy: for a rows×cols matrix (row-major), returns min(rows, cols) pairs with rowInd
 * strictly increasing, minimising (or maximising) the sum of the chosen entries.
 */
import { FfmergeError, showValue } from '../errors';

import type { AssignmentResult } from '../native/assignment';

export type { AssignmentResult };

type Matrix = ArrayLike<number>;

function checkInput(cost: Matrix, rows: number, cols: number): void {
  if (!Number.isInteger(rows) || !Number.isInteger(cols) || rows < 0 || cols < 0) {
    throw new FfmergeError('INVALID_ARGUMENT', `rows and cols must be non-negative integers (got ${rows}, ${cols})`);
  }
  if (typeof cost !== 'object' || cost === null || typeof cost.length !== 'number') {
    throw new FfmergeError('INVALID_ARGUMENT', `cost must be an array of numbers (got ${showValue(cost)})`);
  }
  if (cost.length !== rows * cols) {
    throw new FfmergeError('SHAPE_MISMATCH', `cost has ${cost.length} elements but rows×cols = ${rows}×${cols} = ${rows * cols}`);
  }
  for (let k = 0; k < cost.length; k++) {
    const x = cost[k] as number;
    if (!Number.isFinite(x)) {
      throw new FfmergeError(
        'NON_FINITE_INPUT',
        `the cost matrix has a non-finite entry (${x} at row ${Math.floor(k / cols)}, column ${k % cols}); every cost must be a finite number`,
      );
    }
  }
}

/** Solves the n×m problem (n ≤ m) given as a float64 row-major matrix to minimise; returns row → column. */
function solveMin(c: Float64Array, n: number, m: number): Int32Array {
  const u = new Float64Array(n);
  const v = new Float64Array(m);
  const dist = new Float64Array(m); // shortest path cost to each column in the current search
  const path = new Int32Array(m); // the row from which each column was reached
  const col4row = new Int32Array(n).fill(-1);
  const row4col = new Int32Array(m).fill(-1);
  const rowSeen = new Uint8Array(n);
  const colSeen = new Uint8Array(m);
  const remaining = new Int32Array(m); // columns not yet scanned in this search

  for (let cur = 0; cur < n; cur++) {
    dist.fill(Infinity);
    rowSeen.fill(0);
    colSeen.fill(0);
    let left = m;
    for (let k = 0; k < m; k++) remaining[k] = m - k - 1;
    let i = cur;
    let minVal = 0;
    let sink = -1;
    // Dijkstra over columns with reduced costs c[i][j] - u[i] - v[j] >= 0.
    while (sink === -1) {
      rowSeen[i] = 1;
      let best = -1;
      let lowest = Infinity;
      const base = i * m;
      for (let k = 0; k < left; k++) {
        const j = remaining[k] as number;
        const r = minVal + (c[base + j] as number) - (u[i] as number) - (v[j] as number);
        if (r < (dist[j] as number)) {
          path[j] = i;
          dist[j] = r;
        }
        const d = dist[j] as number;
        // Prefer a free column on ties: it ends the search early.
        if (d < lowest || (d === lowest && row4col[j] === -1)) {
          lowest = d;
          best = k;
        }
      }
      minVal = lowest;
      const j = remaining[best] as number;
      colSeen[j] = 1;
      remaining[best] = remaining[--left] as number;
      if (row4col[j] === -1) sink = j;
      else i = row4col[j] as number;
    }
    // Dual update keeps every reduced cost non-negative and the matched ones zero.
    u[cur] = (u[cur] as number) + minVal;
    for (let r = 0; r < n; r++) {
      if (rowSeen[r] && r !== cur) u[r] = (u[r] as number) + minVal - (dist[col4row[r] as number] as number);
    }
    for (let j = 0; j < m; j++) {
      if (colSeen[j]) v[j] = (v[j] as number) - (minVal - (dist[j] as number));
    }
    // Flip the path.
    for (let j = sink; ; ) {
      const r = path[j] as number;
      row4col[j] = r;
      const prev = col4row[r] as number;
      col4row[r] = j;
      if (r === cur) break;
      j = prev;
    }
  }
  return col4row;
}

/**
 * Exact linear sum assignment of a rows×cols row-major cost matrix (any array of numbers). Throws
 * FfmergeError NON_FINITE_INPUT for NaN/±Infinity, SHAPE_MISMATCH when the length is not rows×cols.
 */
export function linearSumAssignmentReference(
  cost: Matrix,
  rows: number,
  cols: number,
  opts: { maximize?: boolean } = {},
): AssignmentResult {
  checkInput(cost, rows, cols);
  const sign = opts.maximize ? -1 : 1;
  const transposed = rows > cols;
  const n = transposed ? cols : rows;
  const m = transposed ? rows : cols;
  const c = new Float64Array(n * m);
  for (let r = 0; r < rows; r++) {
    for (let q = 0; q < cols; q++) {
      const x = sign * (cost[r * cols + q] as number);
      if (transposed) c[q * rows + r] = x;
      else c[r * cols + q] = x;
    }
  }
  const match = n > 0 ? solveMin(c, n, m) : new Int32Array(0);
  const colOfRow = new Int32Array(rows).fill(-1);
  for (let a = 0; a < n; a++) {
    if (transposed) colOfRow[match[a] as number] = a;
    else colOfRow[a] = match[a] as number;
  }
  const rowInd = new Int32Array(n);
  const colInd = new Int32Array(n);
  let objective = 0;
  let k = 0;
  for (let r = 0; r < rows; r++) {
    const q = colOfRow[r] as number;
    if (q < 0) continue;
    rowInd[k] = r;
    colInd[k] = q;
    objective += cost[r * cols + q] as number;
    k++;
  }
  return { rowInd, colInd, objective };
}
