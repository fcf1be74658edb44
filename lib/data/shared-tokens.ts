/**
 * Whether token blocks hold text that other blocks hold: the same data given once as text and once as token-id
 * rows (or copied under another name, or passed as blocks) is not the same file, so only its tokens tell. A run of
 * RUN_TOKENS tokens is as good as unique in natural text; a block repeats the others when most of its runs occur
 * there. Runs the others hold more than once (a template, a licence header, padding) tell nothing and are left out.
 */
export const RUN_TOKENS = 32;
const RUN = RUN_TOKENS;
/** At most this many runs are kept: past it, a fixed share of them chosen by content (the same runs on both sides). */
const MAX_RUNS = 1 << 22;

/** A 53-bit hash of tokens[at, at + RUN): two 32-bit FNV-1a hashes with different seeds, one cut to 21 bits. */
function runHash(tokens: Int32Array, at: number): number {
  let a = 0x811c9dc5;
  let b = 0x01000193;
  for (let i = at; i < at + RUN; i++) {
    const t = tokens[i]!;
    a = Math.imul(a ^ t, 0x01000193);
    b = Math.imul(b ^ (t + 0x9e3779b9), 0x85ebca6b);
  }
  return (a >>> 0) * 2 ** 21 + ((b >>> 0) & 0x1fffff);
}

/** The runs of some blocks, to compare other blocks against: `every`-th of them by hash value (1: all). */
export interface TokenRuns {
  runs: Set<number>;
  every: number;
}

/** Every run the blocks hold once (or, past MAX_RUNS, those whose hash falls in a 1/every share). */
export function tokenRuns(blocks: readonly Int32Array[]): TokenRuns {
  const total = blocks.reduce((n, b) => n + Math.max(0, b.length - RUN + 1), 0);
  const every = Math.max(1, Math.ceil(total / MAX_RUNS));
  const runs = new Set<number>();
  const many = new Set<number>();
  for (const b of blocks) {
    for (let at = 0; at + RUN <= b.length; at++) {
      const h = runHash(b, at);
      if (h % every !== 0) continue;
      if (runs.has(h)) many.add(h);
      else runs.add(h);
    }
  }
  for (const h of many) runs.delete(h);
  return { runs, every };
}

/**
 * The tokens of `blocks` that lie in a block most of whose (sampled) runs are in `earlier`; a block none of whose
 * runs is sampled, or shorter than a run, never counts.
 */
export function repeatedTokens(blocks: readonly Int32Array[], earlier: TokenRuns): { tokens: number; blocks: number } {
  let tokens = 0;
  let count = 0;
  for (const b of blocks) {
    let seen = 0;
    let hits = 0;
    for (let at = 0; at + RUN <= b.length; at++) {
      const h = runHash(b, at);
      if (h % earlier.every !== 0) continue;
      seen++;
      if (earlier.runs.has(h)) hits++;
    }
    if (seen > 0 && 2 * hits > seen) {
      tokens += b.length;
      count++;
    }
  }
  return { tokens, blocks: count };
}
