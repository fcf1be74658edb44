/**
 * Whether token blocks hold text that other blocks hold: the same data given once as text and once as token-id
 * rows (or copied under another name, or passed as blocks) is not the same file, so only its tokens tell. A run of
 * RUN tokens is as good as unique in natural text; a block repeats the others when most of its runs occur there.
 */
export const RUN_TOKENS = 32;
const RUN = RUN_TOKENS;

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

/** Every run of the blocks, hashed: what blocks are compared against. */
export function tokenRuns(blocks: readonly Int32Array[]): Set<number> {
  const runs = new Set<number>();
  for (const b of blocks) for (let at = 0; at + RUN <= b.length; at++) runs.add(runHash(b, at));
  return runs;
}

/** The tokens of `blocks` that lie in a block most of whose runs are in `runs` (blocks shorter than a run never count). */
export function repeatedTokens(blocks: readonly Int32Array[], runs: ReadonlySet<number>): { tokens: number; blocks: number } {
  let tokens = 0;
  let count = 0;
  for (const b of blocks) {
    const n = b.length - RUN + 1;
    if (n <= 0) continue;
    let hits = 0;
    for (let at = 0; at < n; at++) if (runs.has(runHash(b, at))) hits++;
    if (2 * hits > n) {
      tokens += b.length;
      count++;
    }
  }
  return { tokens, blocks: count };
}
