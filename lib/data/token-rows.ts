/**
 * Token-id data for language models: JSON Lines whose rows are `{"input_ids": [...]}` (optionally gzip). Each
 * row is one sequence, used as it is — not re-tokenized, not packed with its neighbours, not cut — so an
 * evaluation on exact ids (e.g. a model's own samples) reproduces the numbers computed elsewhere on them.
 * A row with an `attention_mask` (a padded, tokenized dataset) keeps only the tokens it marks 1; other columns
 * (`text`) are not read. Rows are streamed and reading stops at the token budget.
 */
import { FfmergeError, showValue } from '../errors';
import { badJsonLine, formatOf, readLines } from './text';
import { checkInt, checkOptions, checkPath, isObject } from '../arguments';

export interface TokenRowOptions {
  /** Stop after the row that reaches this many tokens (default: read all). */
  maxTokens?: number | undefined;
  /** Ids must be below this (the model's vocabulary). */
  vocab?: number | undefined;
  /** Rows longer than this are refused (the model's positions). */
  maxLength?: number | undefined;
  /** Rows shorter than this are refused. Default 2: a row scored alone needs a token to predict; rows joined into one stream (fine-tuning) may be 1. */
  minLength?: number | undefined;
}

/** Whether a .jsonl file holds token-id rows (its first non-blank row has "input_ids"), not text rows. */
export async function isTokenRowFile(file: string): Promise<boolean> {
  if (formatOf(file, {}) !== 'jsonl') return false;
  for await (const line of readLines(file)) {
    if (line.trim() === '') continue;
    try {
      const row = JSON.parse(line) as unknown;
      return isObject(row) && Object.hasOwn(row, 'input_ids');
    } catch {
      return false; // readDocuments reports the bad JSON with its line number
    }
  }
  return false;
}

/** The rows of a token-id JSON Lines file as Int32Arrays, in order. */
export async function readTokenRows(file: string, opts: TokenRowOptions = {}): Promise<Int32Array[]> {
  checkPath(file, 'readTokenRows(file, options): file');
  checkOptions(opts, 'readTokenRows(file, options): options', ['maxTokens', 'vocab', 'maxLength', 'minLength']);
  if (opts.maxTokens !== Infinity) checkInt(opts.maxTokens, 'readTokenRows: maxTokens', 1);
  checkInt(opts.vocab, 'readTokenRows: vocab', 1);
  checkInt(opts.maxLength, 'readTokenRows: maxLength', 1);
  checkInt(opts.minLength, 'readTokenRows: minLength', 1);
  const rows: Int32Array[] = [];
  let tokens = 0;
  let lineNo = 0;
  const budget = opts.maxTokens ?? Infinity;
  const min = opts.minLength ?? 2;
  for await (const line of readLines(file)) {
    lineNo++;
    if (line.trim() === '') continue;
    let row: unknown;
    try {
      row = JSON.parse(line);
    } catch (e) {
      throw badJsonLine(file, lineNo, line, e);
    }
    if (!isObject(row) || !Object.hasOwn(row, 'input_ids')) {
      // the file was read as token ids because its first row has them: this row is text, or something else
      throw new FfmergeError('INVALID_DATA', `${file} line ${lineNo} has no "input_ids", though the file's first row does: every row of a token-id file must have them (rows of text and of token ids do not mix)`);
    }
    const { input_ids: ids, attention_mask: mask } = row;
    const tooShort = () => new FfmergeError('INVALID_DATA', `${file} line ${lineNo}: "input_ids" must be a list of at least ${min} token id${min === 1 ? '' : 's'}${mask !== undefined ? ' where "attention_mask" is 1' : ''}`);
    if (!Array.isArray(ids)) throw tooShort();
    // only the kept tokens are checked: padding is often an id the vocabulary lacks (Llama 2's added [PAD], -1)
    const [from, to] = mask === undefined ? [0, ids.length] : keptSpan(ids.length, mask, `${file} line ${lineNo}`);
    if (to - from < min) throw tooShort();
    const out = new Int32Array(to - from);
    for (let i = from; i < to; i++) {
      const t = ids[i] as unknown;
      // at most the largest id an Int32Array holds, whatever the vocabulary
      if (typeof t !== 'number' || !Number.isInteger(t) || t < 0 || t >= Math.min(opts.vocab ?? Infinity, 2 ** 31)) {
        throw new FfmergeError(
          'INVALID_DATA',
          `${file} line ${lineNo}: input_ids[${i}] = ${showValue(t)} is not a token id${opts.vocab !== undefined && opts.vocab <= 2 ** 31 ? ` of this model (0..${opts.vocab - 1})` : ' (0..2147483647)'}`,
        );
      }
      out[i - from] = t;
    }
    if (opts.maxLength !== undefined && out.length > opts.maxLength) {
      throw new FfmergeError('SEQUENCE_TOO_LONG', `${file} line ${lineNo} has ${out.length} tokens; the model takes at most ${opts.maxLength}`);
    }
    rows.push(out);
    tokens += out.length;
    if (tokens >= budget) break;
  }
  if (rows.length === 0) throw new FfmergeError('INVALID_DATA', `${file} has no token rows`);
  return rows;
}

/**
 * Where a padded row's tokens are: the run its attention_mask marks 1, [from, to), as a tokenized dataset pads
 * them (left or right). Padding positions are not data; scored as tokens they would change every number. A mask
 * that is not one run of 1s (a hole inside the sequence) describes no padding ffmerge can drop, and is refused.
 */
function keptSpan(length: number, mask: unknown, where: string): [number, number] {
  const bad = (why: string) => new FfmergeError('INVALID_DATA', `${where}: "attention_mask"${why.startsWith('[') ? '' : ' '}${why}`);
  if (!Array.isArray(mask) || mask.length !== length) throw bad(`must be a list of 0s and 1s as long as "input_ids" (${length})`);
  const first = mask.indexOf(1);
  const last = mask.lastIndexOf(1);
  for (let i = 0; i < mask.length; i++) {
    const m = mask[i] as unknown;
    if (m !== 0 && m !== 1) throw bad(`[${i}] = ${showValue(m)} is not 0 or 1`);
    if (m === 0 && i > first && i < last) throw bad(`has a 0 at ${i}, inside the tokens it marks 1 (${first}-${last}): only padding before or after a sequence can be dropped`);
  }
  return first < 0 ? [0, 0] : [first, last + 1];
}
