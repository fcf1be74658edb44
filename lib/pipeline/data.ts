/**
 * Token data for the pipeline: a text file (or blocks the caller already has) cut into fixed-length blocks,
 * limited to a token budget, and grouped into forward batches of equal-length blocks.
 */
import * as fs from 'node:fs';
import { FfmergeError } from '../errors';
import { loadSplitBlocks } from '../data/blocks';
import type { Tokenizer } from '../tokenizer';

export interface Batch {
  ids: Int32Array;
  batch: number;
  seq: number;
}

/** A text file path, or token blocks already cut. */
export type DataSource = string | Int32Array[];

/** Blocks of `blockSize` tokens from a source (file read and tokenized in one call). */
export async function blocksFrom(source: DataSource, tokenizer: Tokenizer, blockSize: number, what: string): Promise<Int32Array[]> {
  if (typeof source !== 'string') return source;
  if (!fs.existsSync(source)) throw new FfmergeError('DATA_NOT_FOUND', `${what} file ${source} does not exist`);
  const { blocks } = await loadSplitBlocks(tokenizer, source, blockSize);
  if (blocks.length === 0) throw new FfmergeError('INVALID_DATA', `${what} file ${source} holds fewer than 2 tokens`);
  return blocks;
}

/** The leading blocks holding at most `tokens` tokens (at least one block). */
export function takeTokens(blocks: Int32Array[], tokens: number): Int32Array[] {
  const out: Int32Array[] = [];
  let n = 0;
  for (const b of blocks) {
    if (out.length > 0 && n + b.length > tokens) break;
    out.push(b);
    n += b.length;
  }
  return out;
}

export function tokenCount(blocks: readonly Int32Array[]): number {
  return blocks.reduce((s, b) => s + b.length, 0);
}

/** Consecutive equal-length blocks, `perBatch` at a time (a shorter last block gets a batch of its own). */
export function makeBatches(blocks: Int32Array[], perBatch: number): Batch[] {
  const out: Batch[] = [];
  let i = 0;
  while (i < blocks.length) {
    const seq = blocks[i]!.length;
    let j = i;
    while (j < blocks.length && j - i < perBatch && blocks[j]!.length === seq) j++;
    const ids = new Int32Array((j - i) * seq);
    for (let b = i; b < j; b++) ids.set(blocks[b]!, (b - i) * seq);
    out.push({ ids, batch: j - i, seq });
    i = j;
  }
  return out;
}
