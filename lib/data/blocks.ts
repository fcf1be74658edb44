/**
 * Language-model evaluation blocks: tokenize a whole split in one call (no special tokens) and cut the ids
 * into consecutive, non-overlapping blocks of `blockSize` tokens; a last shorter block is kept when it has at
 * least 2 tokens (one prediction). This is the protocol of the fixtures' eval.json (e.g. gpt2-sotu: 256).
 */
import * as fs from 'node:fs';
import { abortError, FfmergeError, showValue } from '../errors';
import { checkTokenizer, tokenizerDirOf, type Tokenizer } from '../tokenizer';
import { checkJobOptions, type JobOptions } from '../native/job';
import { tokenizeFile } from './tokenize-file';
import { isInt32Array } from '../typed-arrays';
import { checkTextFile, formatOf, readText, TextSourceOptions } from './text';

/** Shortest block worth keeping: a block of n tokens scores n-1 predictions. */
export const MIN_BLOCK_TOKENS = 2;

export interface TokenBlocks {
  /** Every token of the split. */
  tokens: Int32Array;
  /** Views into `tokens` (no copies), in order. */
  blocks: Int32Array[];
}

function checkBlockSize(blockSize: number): void {
  if (!Number.isSafeInteger(blockSize) || blockSize < MIN_BLOCK_TOKENS) {
    throw new FfmergeError('INVALID_ARGUMENT', `block size must be an integer ≥ ${MIN_BLOCK_TOKENS}, got ${blockSize}`);
  }
}

/** Cuts `tokens` into consecutive blocks of `blockSize` (the last may be shorter, if ≥ 2 tokens). */
export function cutBlocks(tokens: Int32Array, blockSize: number): Int32Array[] {
  if (!isInt32Array(tokens)) throw new FfmergeError('INVALID_ARGUMENT', `cutBlocks(tokens, blockSize): tokens must be an Int32Array (got ${showValue(tokens)})`);
  checkBlockSize(blockSize);
  const blocks: Int32Array[] = [];
  for (let start = 0; start < tokens.length; start += blockSize) {
    const end = Math.min(start + blockSize, tokens.length);
    if (end - start >= MIN_BLOCK_TOKENS) blocks.push(tokens.subarray(start, end));
  }
  return blocks;
}

/** Tokenizes a whole text (one encode call, no special tokens) and cuts it into blocks. */
export function tokenizeToBlocks(tokenizer: Tokenizer, text: string, blockSize: number): TokenBlocks {
  checkTokenizer(tokenizer, 'tokenizeToBlocks(tokenizer, text, blockSize): tokenizer');
  if (typeof text !== 'string') throw new FfmergeError('INVALID_ARGUMENT', `tokenizeToBlocks(tokenizer, text, blockSize): text must be a string (got ${showValue(text)})`);
  const tokens = Int32Array.from(tokenizer.encode(text, { addSpecialTokens: false }));
  return { tokens, blocks: cutBlocks(tokens, blockSize) };
}

/**
 * Reads a split file (.txt, .txt.gz, .jsonl, .jsonl.gz) whole, tokenizes it (the ids of one encode call) and cuts
 * blocks. A tokenizer from loadTokenizer works in a worker thread (tokenizeFile: the same ids, tested), so a
 * large file does not stall the caller's event loop, and the signal stops it at once; any other Tokenizer
 * object, or one whose folder's files changed since it was loaded, encodes on the calling thread, the signal
 * checked before and after.
 */
export async function loadSplitBlocks(
  tokenizer: Tokenizer,
  file: string,
  blockSize: number,
  opts: TextSourceOptions & JobOptions = {},
): Promise<TokenBlocks> {
  const what = 'loadSplitBlocks(tokenizer, file, blockSize, options)';
  checkTokenizer(tokenizer, `${what}: tokenizer`);
  checkJobOptions(opts, `${what}: options`, ['field', 'format']);
  checkBlockSize(blockSize); // before the work
  const dir = tokenizerDirOf(tokenizer);
  const { format, signal, onProgress } = opts;
  if (dir !== undefined) {
    // the options as they are: checked above with tokenizeFile's own keys but maxTokens
    const tokens = await tokenizeFile(dir, file, opts);
    return { tokens, blocks: cutBlocks(tokens, blockSize) };
  }
  // about to be tokenized as prose: not JSON Lines rows named otherwise (tokenizeFile's check)
  await checkTextFile(file, { prose: format === undefined && formatOf(file, opts) === 'txt' });
  if (signal?.aborted) throw abortError(signal);
  const text = await readText(file, opts);
  if (signal?.aborted) throw abortError(signal);
  const blocks = tokenizeToBlocks(tokenizer, text, blockSize);
  // one report, once the file is read and tokenized (the worker's are in bytes of the file as it reads)
  const { size } = await fs.promises.stat(file);
  onProgress?.({ phase: 'tokenize', done: size, total: size });
  return blocks;
}

/** Number of scored predictions over blocks (tokens 2..n of every block). */
export function countPredictions(blocks: readonly Int32Array[]): number {
  return blocks.reduce((s, b) => s + b.length - 1, 0);
}
