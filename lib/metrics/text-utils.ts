/**
 * Python-compatible string helpers for the metrics: sacreBLEU is Python, and its results depend on Python's
 * notion of whitespace (str.split / str.rstrip) and on strings being sequences of code points.
 */
import { FfmergeError, showValue } from '../errors';
import { isArrayOf } from '../arguments';
import { forSlices } from '../merge/slices';

/** Sentences scored between yields to the event loop: a few milliseconds of work. */
export const METRIC_SLICE_SENTENCES = 32;

// Python's str.isspace() set (what str.split() with no argument splits on). Differs from JS \s: it has
// \x1c-\x1f and \x85, and lacks \ufeff.
const PY_WS = '\\t\\n\\v\\f\\r\\x1c-\\x20\\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000';
const WS_RUN = new RegExp(`[${PY_WS}]+`, 'gu');
const TRAILING_WS = new RegExp(`[${PY_WS}]+$`, 'u');

/**
 * The hypotheses and reference streams of a corpus metric (one list of strings each, aligned): a string, a
 * list holding something else, or no reference stream is INVALID_ARGUMENT, streams of other lengths INVALID_DATA.
 */
export function checkCorpus(what: string, hypotheses: unknown, references: unknown): void {
  const isTexts = (v: unknown): v is string[] => isArrayOf(v, (x) => typeof x === 'string');
  if (!isTexts(hypotheses)) throw new FfmergeError('INVALID_ARGUMENT', `${what}: hypotheses must be a list of strings (got ${showValue(hypotheses)})`);
  if (!isArrayOf<string[]>(references, isTexts)) {
    throw new FfmergeError('INVALID_ARGUMENT', `${what}: references must be a list of reference streams, each a list of strings (got ${showValue(references)})`);
  }
  if (references.length === 0) throw new FfmergeError('INVALID_ARGUMENT', `${what} needs at least one reference stream`);
  for (const refs of references) {
    if (refs.length !== hypotheses.length) {
      throw new FfmergeError('INVALID_DATA', `${what}: ${hypotheses.length} hypotheses but a reference stream has ${refs.length} lines; they must be aligned`);
    }
  }
}

/** A sentence metric's hypothesis (a string) and references (a list of strings). */
export function checkSentence(what: string, hypothesis: unknown, references: unknown): void {
  if (typeof hypothesis !== 'string') throw new FfmergeError('INVALID_ARGUMENT', `${what}: the hypothesis must be a string (got ${showValue(hypothesis)})`);
  if (!isArrayOf(references, (r) => typeof r === 'string')) {
    throw new FfmergeError('INVALID_ARGUMENT', `${what}: references must be a list of strings (got ${showValue(references)})`);
  }
}

/** Python's `s.split()`: split on runs of whitespace, no empty fields. */
export function pySplit(s: string): string[] {
  return s.split(WS_RUN).filter((w) => w.length > 0);
}

/** Python's `s.rstrip()`. */
export function pyRstrip(s: string): string {
  return s.replace(TRAILING_WS, '');
}

/** n-gram counts per order (index n-1), each n-gram its items joined with `sep`. */
export function ngramCounts(items: string[], maxOrder: number, sep: string): Map<string, number>[] {
  const perOrder: Map<string, number>[] = [];
  for (let n = 1; n <= maxOrder; n++) {
    const counts = new Map<string, number>();
    for (let i = 0; i + n <= items.length; i++) {
      const key = items.slice(i, i + n).join(sep);
      counts.set(key, (counts.get(key) ?? 0) + 1);
    }
    perOrder.push(counts);
  }
  return perOrder;
}

/**
 * A corpus metric's statistics (`add(s)` per sentence) over n sentences, added a few at a time with the event
 * loop free between them (a search scores a thousand sentences per candidate), then its result.
 */
export async function addSliced<R>(corpus: { add(s: number): void; result(): R }, n: number, signal?: AbortSignal): Promise<R> {
  await forSlices(n, METRIC_SLICE_SENTENCES, (s0, s1) => {
    for (let s = s0; s < s1; s++) corpus.add(s);
  }, signal);
  return corpus.result();
}
