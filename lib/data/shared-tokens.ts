/**
 * Whether token blocks hold text that other blocks hold: the same data given once as text and once as token-id
 * rows (or copied under another name, or passed as blocks) is not the same file, so only its tokens tell. A run of
 * RUN_TOKENS tokens is as good as unique in natural text; a block repeats the others when most of its runs occur
 * there. Runs that either side holds more than once (a template, a licence header, padding) tell nothing and are
 * left out. The loops yield to the event loop every few milliseconds: millions of tokens take seconds.
 */
import { forSlices } from '../merge/slices';

export const RUN_TOKENS = 32;
const RUN = RUN_TOKENS;
/** At most this many runs are kept: past it, a fixed share of them chosen by content (the same runs on both sides). */
const MAX_RUNS = 1 << 22;
/** Positions hashed between yields (about a millisecond). */
const SLICE = 1 << 16;

// Two polynomial hashes mod 2^32, rolled one token at a time, joined into 53 bits.
const [B1, B2] = [0x01000193, 0x5bd1e995];
const pow = (b: number) => {
  let p = 1;
  for (let i = 1; i < RUN; i++) p = Math.imul(p, b);
  return p;
};
const [P1, P2] = [pow(B1), pow(B2)];

/** Calls `fn` with the hash of every run of `b`, in order. */
function eachRun(b: Int32Array, fn: (h: number) => void): void {
  let h1 = 0;
  let h2 = 0;
  for (let i = 0; i < b.length; i++) {
    if (i >= RUN) {
      const o = b[i - RUN]! + 1;
      h1 = (h1 - Math.imul(o, P1)) | 0;
      h2 = (h2 - Math.imul(o, P2)) | 0;
    }
    const t = b[i]! + 1;
    h1 = (Math.imul(h1, B1) + t) | 0;
    h2 = (Math.imul(h2, B2) + t) | 0;
    if (i >= RUN - 1) fn((h1 >>> 0) * 2 ** 21 + ((h2 >>> 0) & 0x1fffff));
  }
}

/** Runs `body` on each block, yielding between slices of about SLICE positions (blocks of a split are alike in length). */
function sliced(blocks: readonly Int32Array[], body: (b: Int32Array) => void, signal?: AbortSignal): Promise<void> {
  const mean = blocks.reduce((n, b) => n + b.length, 0) / Math.max(1, blocks.length);
  return forSlices(blocks.length, SLICE / Math.max(1, mean), (i0, i1) => blocks.slice(i0, i1).forEach((b) => body(b)), signal);
}

/** The runs of some blocks, to compare other blocks against: those whose hash falls in a 1/`every` share. */
export interface TokenRuns {
  runs: Set<number>;
  every: number;
}

/** Every run the blocks hold once (or, past MAX_RUNS, those of a 1/every share by hash). */
export async function tokenRuns(blocks: readonly Int32Array[], signal?: AbortSignal): Promise<TokenRuns> {
  const total = blocks.reduce((n, b) => n + Math.max(0, b.length - RUN + 1), 0);
  const every = Math.max(1, Math.ceil(total / MAX_RUNS));
  const runs = new Set<number>();
  const many = new Set<number>();
  const add = (h: number) => {
    if (h % every !== 0) return;
    if (runs.has(h)) many.add(h);
    else runs.add(h);
  };
  await sliced(blocks, (b) => eachRun(b, add), signal);
  for (const h of many) runs.delete(h);
  return { runs, every };
}

/**
 * The tokens of `blocks` that lie in a block most of whose (sampled) runs are in `earlier`. A run of `earlier` that
 * `blocks` hold in more than one place (their own template or padding) is no evidence, and is not counted a hit.
 */
export async function repeatedTokens(blocks: readonly Int32Array[], earlier: TokenRuns, signal?: AbortSignal): Promise<{ tokens: number; blocks: number }> {
  const { runs, every } = earlier;
  // how often `blocks` hold each run of `earlier`
  const times = new Map<number, number>();
  await sliced(blocks, (b) => eachRun(b, (h) => void (h % every === 0 && runs.has(h) && times.set(h, (times.get(h) ?? 0) + 1))), signal);
  let tokens = 0;
  let count = 0;
  await sliced(
    blocks,
    (b) => {
      let seen = 0;
      let hits = 0;
      eachRun(b, (h) => {
        if (h % every !== 0) return;
        seen++;
        if (times.get(h) === 1) hits++;
      });
      if (seen > 0 && 2 * hits > seen) {
        tokens += b.length;
        count++;
      }
    },
    signal,
  );
  return { tokens, blocks: count };
}
