/**
 * Token data for language models: a text file (or blocks the caller already has) cut into fixed-length blocks,
 * or token-id rows kept as they are, limited to a token budget, and grouped into forward batches.
 */
import * as fs from 'node:fs';
import { FfmergeError, groupDigits, showValue } from '../errors';
import { loadTokenizer } from '../tokenizer';
import { whyMissing } from '../files';
import { cutBlocks } from '../data/blocks';
import { tokenizeFile } from '../data/tokenize-file';
import { isTokenRowFile, readTokenRows } from '../data/token-rows';
import type { Progress } from '../native/job';
import type { TokenSource } from './options';

export interface Batch {
  ids: Int32Array;
  batch: number;
  seq: number;
}

export interface BlockOptions {
  /** Tokens per block when text is cut (token-id rows are kept whole). */
  blockSize: number;
  /** What the data is for, in messages ("calibration", "test", …). */
  what: string;
  /** The model folder whose tokenizer.json tokenizes text (in a worker thread). */
  tokenizerDir: string;
  /** Read no further than this many tokens (rounded up to whole blocks, so the blocks are those of the whole file). */
  maxTokens?: number | undefined;
  signal?: AbortSignal | undefined;
  onProgress?: ((p: Progress) => void) | undefined;
  vocab?: number | undefined;
  /** Longest row the model takes (token-id rows). */
  maxLength?: number | undefined;
  /** Shortest token-id row (default 2, see TokenRowOptions.minLength). */
  minLength?: number | undefined;
}

/** A data file given by name exists ("training file x.txt does not exist"), checked before any work needs it. */
export function checkDataFile(file: string, what: string): void {
  if (!fs.existsSync(file)) throw new FfmergeError('DATA_NOT_FOUND', `${what} file ${file} ${whyMissing(file)}`);
}

/**
 * Token blocks from a source: blocks the caller cut, a JSON Lines file of {"input_ids"} rows (each row one
 * block, as it is), or text (.txt/.gz, .jsonl of {"text"}) tokenized and cut into blocks of blockSize.
 */
export async function blocksFrom(source: TokenSource, o: BlockOptions): Promise<Int32Array[]> {
  if (typeof source !== 'string') return source;
  checkDataFile(source, o.what);
  if (await isTokenRowFile(source)) {
    return readTokenRows(source, {
      ...(o.maxTokens !== undefined && Number.isFinite(o.maxTokens) ? { maxTokens: o.maxTokens } : {}),
      ...(o.vocab !== undefined ? { vocab: o.vocab } : {}),
      ...(o.maxLength !== undefined ? { maxLength: o.maxLength } : {}),
      ...(o.minLength !== undefined ? { minLength: o.minLength } : {}),
    });
  }
  // Whole blocks only: the last block read is then full, as in a whole-file cut, and takeTokens keeps the same ones.
  const budget = o.maxTokens !== undefined && Number.isFinite(o.maxTokens) ? Math.ceil(o.maxTokens / o.blockSize) * o.blockSize : undefined;
  const tokens = await tokenizeFile(o.tokenizerDir, source, {
    ...(budget !== undefined ? { maxTokens: budget } : {}),
    signal: o.signal,
    onProgress: o.onProgress,
  });
  if (o.vocab !== undefined) await checkTokenizerFitsModel(tokens, o.vocab, o.tokenizerDir, source);
  const blocks = cutBlocks(tokens, o.blockSize);
  if (blocks.length === 0) {
    // A file of real length that encodes to one token or none is a tokenizer that cannot read text: said, or the
    // data alone would be blamed.
    const { size } = await fs.promises.stat(source);
    const why = size >= 64 ? `: its ${size} bytes encode to ${tokens.length} token${tokens.length === 1 ? '' : 's'} (${tokens.length === 1 ? `id ${tokens[0]}` : 'none'}), so check ${o.tokenizerDir}'s tokenizer.json as well` : '';
    throw new FfmergeError('INVALID_DATA', `${o.what} file ${source} holds fewer than 2 tokens${why}`);
  }
  return blocks;
}

/**
 * Ids the folder's own tokenizer gave are the model folder's fault when the model has no row for them (a
 * tokenizer.json from another model, a vocab_size cut short): INVALID_CONFIG naming the token, before any
 * forward pass refuses the id as if the data or the call were wrong.
 */
async function checkTokenizerFitsModel(tokens: Int32Array, vocab: number, tokenizerDir: string, file: string): Promise<void> {
  const at = tokens.findIndex((t) => t >= vocab);
  if (at < 0) return;
  const id = tokens[at]!;
  let token = '';
  try {
    token = ` (${showValue((await loadTokenizer(tokenizerDir)).idToToken(id))})`;
  } catch {
    // the id alone says enough
  }
  throw new FfmergeError(
    'INVALID_CONFIG',
    `${tokenizerDir}'s tokenizer encodes ${file} to token id ${id}${token}, but config.json's vocab_size is ${vocab}: the tokenizer does not fit the model's embeddings`,
  );
}

/**
 * Tokens per block: the default fits itself to a model with fewer positions, a length asked for is never cut
 * silently (a longer block than the model's positions is refused, naming `what`).
 */
export function fitBlockSize(asked: number | undefined, dflt: number, maxPositions: number, what: string): number {
  if (asked !== undefined && asked < 2) throw new FfmergeError('INVALID_ARGUMENT', `${what} ${asked} is too short: a block holds at least 2 tokens (one predicts the next)`);
  // the default is cut to the model's positions: a model of one position would get a block of one, which the
  // same rule refuses when asked for
  if (maxPositions < 2) throw new FfmergeError('INVALID_CONFIG', `the model takes ${maxPositions} position${maxPositions === 1 ? '' : 's'}, and a block (${what}) needs at least 2 tokens (one predicts the next)`);
  if (asked !== undefined && asked > maxPositions) {
    throw new FfmergeError('INVALID_ARGUMENT', `${what} ${asked} is longer than the model's ${maxPositions} positions`);
  }
  return Math.min(asked ?? dflt, maxPositions);
}

/**
 * The note for a token budget past what its data holds ("all 12,288 tokens the data holds, fewer than the 100,000
 * --tokens asks"), or undefined where the data fills it: one wording for eval, finetune and compress.
 */
export function shortBudgetNote(held: number, asked: number, asker: string): string | undefined {
  return Number.isFinite(asked) && held < asked ? `all ${groupDigits(held)} tokens the data holds, fewer than the ${groupDigits(asked)} ${asker} asks` : undefined;
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
