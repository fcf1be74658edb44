/**
 * Windows of adjacent layers to merge: how many (k, or k from a fraction), which ones (every start for the
 * search, or one the user names as "a-b"), and which layer of a window is the anchor the others align to.
 */
import { FfmergeError, counted, showValue } from '../errors';

/** Layers first..first+k-1 (0-based, inclusive) of one stack. */
export interface Window {
  start: number;
  k: number;
}

export type Anchor = 'first' | 'middle' | 'last';

export function windowLayers(w: Window): number[] {
  return Array.from({ length: w.k }, (_, i) => w.start + i);
}

export function windowLabel(w: Window): string {
  return `${w.start}-${w.start + w.k - 1}`;
}

/**
 * "k = 3" for a merge whose windows span k layers each (`sizes`: one stack's windows). The default search may
 * keep k − 1 pairs instead of one window of k (as many FF sublayers removed): "k = 3 as 2 pairs", where the k
 * alone would read as windows of 3; windows of other sizes are listed by size.
 */
export function kLabel(k: number, sizes: readonly number[]): string {
  if (sizes.every((n) => n === k)) return `k = ${k}`;
  if (k > 2 && sizes.every((n) => n === 2)) return `k = ${k} as ${sizes.length} pairs`;
  return `k = ${[...new Set(sizes)].sort((a, b) => a - b).join(', ')}`;
}

/** Throws K_TOO_LARGE / INVALID_ARGUMENT unless 2 ≤ k ≤ layers. */
export function checkK(k: number, layers: number): void {
  if (!Number.isInteger(k) || k < 2) {
    throw new FfmergeError('INVALID_ARGUMENT', `k must be an integer ≥ 2 (the number of FF sublayers merged into one), got ${showValue(k)}`);
  }
  if (k > layers) {
    throw new FfmergeError('K_TOO_LARGE', `k = ${k} is larger than the model's ${counted(layers, 'layer')}`);
  }
}

/**
 * k for a target fraction of FF sublayers removed: merging k layers removes k−1 FF parameter sets, so
 * k = 1 + round(fraction × layers); a fraction that rounds below 2 or past `layers` is refused.
 */
export function kFromFraction(fraction: number, layers: number): number {
  if (typeof fraction !== 'number' || !(fraction > 0 && fraction < 1)) {
    throw new FfmergeError('INVALID_ARGUMENT', `fraction must be between 0 and 1 (share of FF sublayers removed), got ${showValue(fraction)}`);
  }
  if (layers < 2) throw new FfmergeError('K_TOO_LARGE', `the model has ${layers} layer${layers === 1 ? '' : 's'}: a merge needs at least 2 FF sublayers`);
  const removed = Math.round(fraction * layers);
  const rounds = `fraction ${fraction} of ${layers} layers is ${+(fraction * layers).toFixed(2)} FF sublayers, which rounds to`;
  // a share that rounds to no FF sublayer at all is refused, not raised to k = 2 (1 of 5 layers is 20 %, not 1 %)
  if (removed < 1) {
    throw new FfmergeError(
      'INVALID_ARGUMENT',
      `${rounds} none; the least a merge removes is one (k = 2, fraction ${+(1 / layers).toFixed(3)})`,
    );
  }
  // nor one that rounds past what one window of all the layers removes, cut to it silently
  if (removed > layers - 1) {
    throw new FfmergeError(
      'K_TOO_LARGE',
      `${rounds} ${removed}; the most a merge of ${layers} layers removes is ${layers - 1} (k = ${layers}, fraction ${+((layers - 1) / layers).toFixed(3)})`,
    );
  }
  return 1 + removed;
}

/** Every window of k adjacent layers, in order of start index (the paper's search space). */
export function enumerateWindows(layers: number, k: number): Window[] {
  if (!Number.isSafeInteger(layers) || layers < 1) throw new FfmergeError('INVALID_ARGUMENT', `layers must be a positive integer (got ${showValue(layers)})`);
  checkK(k, layers);
  return Array.from({ length: layers - k + 1 }, (_, start) => ({ start, k }));
}

/** Parses "a-b" (inclusive, 0-based) and checks it against the model and k. */
export function parseWindow(spec: string, layers: number, k?: number, kSaid = String(k)): Window {
  const m = /^\s*(\d+)\s*-\s*(\d+)\s*$/.exec(spec);
  if (!m) {
    throw new FfmergeError('INVALID_WINDOW', `window "${spec}" is not of the form a-b (first and last layer, 0-based), e.g. 4-7`);
  }
  const start = Number(m[1]);
  const end = Number(m[2]);
  if (end <= start) throw new FfmergeError('INVALID_WINDOW', `window "${spec}" must span at least two layers (a < b)`);
  if (end >= layers) {
    throw new FfmergeError('INVALID_WINDOW', `window "${spec}" ends at layer ${end} but the model has layers 0-${layers - 1}`);
  }
  const w = { start, k: end - start + 1 };
  if (k !== undefined && w.k !== k) {
    throw new FfmergeError('INVALID_WINDOW', `window "${spec}" spans ${w.k} layers but k = ${kSaid}`);
  }
  return w;
}

/** Checks that an explicit window lies inside the stack. */
export function checkWindow(w: Window, layers: number): void {
  if (typeof w !== 'object' || w === null || typeof w.start !== 'number' || typeof w.k !== 'number') {
    throw new FfmergeError('INVALID_WINDOW', `a window is { start, k } (integers) or "a-b", got ${showValue(w)}`);
  }
  // { start, k, end } or a misspelt key is refused: read as { start, k } it would merge another window than meant
  const extra = Object.keys(w).filter((key) => key !== 'start' && key !== 'k');
  if (extra.length) throw new FfmergeError('INVALID_WINDOW', `a window is { start, k }; ${showValue(w)} also has ${extra.map((e) => showValue(e)).join(', ')}`);
  if (Number.isInteger(w.k) && w.k < 2) throw new FfmergeError('INVALID_WINDOW', `window start ${w.start}, k ${w.k}: a window merges at least 2 layers`);
  if (!Number.isInteger(w.start) || !Number.isInteger(w.k) || w.start < 0 || w.start + w.k > layers) {
    throw new FfmergeError('INVALID_WINDOW', `window start ${w.start}, k ${w.k} does not fit in the model's ${layers} layers`);
  }
}

/** Index within the window (0..k-1) of the anchor layer. */
export function anchorOffset(anchor: Anchor, k: number): number {
  if (anchor === 'first') return 0;
  if (anchor === 'middle') return Math.floor((k - 1) / 2);
  if (anchor === 'last') return k - 1;
  throw new FfmergeError('INVALID_ARGUMENT', `anchor must be first, middle or last, got ${showValue(anchor)}`);
}
