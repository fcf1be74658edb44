/**
 * Python-compatible string helpers for the metrics: sacreBLEU is Python, and its results depend on Python's
 * notion of whitespace (str.split / str.rstrip) and on strings being sequences of code points.
 */

// Python's str.isspace() set (what str.split() with no argument splits on). Differs from JS \s: it has
// \x1c-\x1f and \x85, and lacks \ufeff.
const PY_WS = '\\t\\n\\v\\f\\r\\x1c-\\x20\\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000';
const WS_RUN = new RegExp(`[${PY_WS}]+`, 'gu');
const TRAILING_WS = new RegExp(`[${PY_WS}]+$`, 'u');

/** Python's `s.split()`: split on runs of whitespace, no empty fields. */
export function pySplit(s: string): string[] {
  return s.split(WS_RUN).filter((w) => w.length > 0);
}

/** Python's `s.rstrip()`. */
export function pyRstrip(s: string): string {
  return s.replace(TRAILING_WS, '');
}

/** The code points of a string (Python indexes strings by code point, JS by UTF-16 unit). */
export function codePoints(s: string): string[] {
  return Array.from(s);
}
