/**
 * Aligned parallel text (e.g. Multi30k en→de): two line-aligned plain-text files (each optionally gzip), or
 * one TSV file with source and target columns. Line counts must agree (INVALID_DATA otherwise); a missing
 * file is DATA_NOT_FOUND.
 */
import * as fs from 'node:fs';
import { FfmergeError, abortError } from '../errors';
import { readLines } from './text';
import { checkPath } from '../arguments';
import { checkJobOptions, type JobOptions } from '../native/job';

export interface SentencePair {
  source: string;
  target: string;
}

/**
 * A pair, none for a line blank on both sides (as the text readers skip blank lines), and INVALID_DATA for a
 * side blank alone: an empty source was translated and an empty reference scored as they were, and one side
 * blank is far more often files out of step or a broken column than a sentence meant to be empty.
 */
function pairOf(source: string, target: string, where: string, sides = ['the source', 'the target']): SentencePair | undefined {
  const [s, t] = [source.trim() === '', target.trim() === ''];
  if (s && t) return undefined;
  const [blank, other] = s ? sides : [sides[1], sides[0]];
  if (s || t) throw new FfmergeError('INVALID_DATA', `${where}: ${blank} is empty and ${other} is not; every pair needs both (remove the pair, or check that the files are aligned)`);
  return { source, target };
}

/** Whether two paths name one file (a link or another spelling of it); false where either cannot be resolved. */
async function sameFile(a: string, b: string): Promise<boolean> {
  try {
    return (await fs.promises.realpath(a)) === (await fs.promises.realpath(b));
  } catch {
    return false; // the readers say what is missing
  }
}

/**
 * Streams aligned pairs from two files read in lockstep (a line blank in both is skipped, and blank lines that end
 * one file where the other has ended: many files end with an extra blank line).
 */
export async function* streamParallel(sourceFile: string, targetFile: string): AsyncGenerator<SentencePair> {
  checkPath(sourceFile, 'sourceFile');
  checkPath(targetFile, 'targetFile');
  // every pair would be a sentence and itself: a BLEU of the model against its input
  if (await sameFile(sourceFile, targetFile)) {
    throw new FfmergeError('INVALID_ARGUMENT', `the source and target files are one file (${sourceFile}): give the reference translations in a file of their own`);
  }
  const src = readLines(sourceFile);
  const tgt = readLines(targetFile);
  let n = 0;
  try {
    for (;;) {
      const [a, b] = await Promise.all([src.next(), tgt.next()]);
      if (a.done && b.done) return;
      if (a.done || b.done) {
        const [shortFile, longFile] = a.done ? [sourceFile, targetFile] : [targetFile, sourceFile];
        // the longer file's rest: blank lines only (an extra blank line at the end), and it ends as the other does
        const rest = a.done ? tgt : src;
        let more = b.done ? a : b;
        while (!more.done && more.value.trim() === '') more = await rest.next();
        if (more.done) return;
        throw new FfmergeError(
          'INVALID_DATA',
          `parallel files are not aligned: ${shortFile} has ${n} lines but ${longFile} has more`,
        );
      }
      n++;
      const pair = pairOf(a.value, b.value, `line ${n}`, [sourceFile, targetFile]);
      if (pair) yield pair;
    }
  } finally {
    await Promise.allSettled([src.return(undefined), tgt.return(undefined)]);
  }
}

/** All aligned pairs of two files; `signal` stops the read between lines (the files are closed). */
export async function readParallel(sourceFile: string, targetFile: string, opts: Pick<JobOptions, 'signal'> = {}): Promise<SentencePair[]> {
  checkJobOptions(opts, 'readParallel(sourceFile, targetFile, options): options', []);
  return (await collectPairs(streamParallel(sourceFile, targetFile), opts)).pairs;
}

/**
 * The pairs of a stream from `skip` on, at most `keep` of them (default all), and how many it holds: the rest is
 * read to its end (checked: aligned, no side blank alone) and counted, not kept. The signal stops the stream
 * (its finally closes the files).
 */
export async function collectPairs(stream: AsyncGenerator<SentencePair>, opts: { signal?: AbortSignal | undefined; keep?: number; skip?: number } = {}): Promise<{ pairs: SentencePair[]; total: number }> {
  const { signal, keep = Infinity, skip = 0 } = opts;
  const pairs: SentencePair[] = [];
  let total = 0;
  if (signal?.aborted) throw abortError(signal);
  for await (const p of stream) {
    if (signal?.aborted) throw abortError(signal);
    if (total >= skip && total - skip < keep) pairs.push(p);
    total++;
  }
  return { pairs, total };
}

/**
 * Column names a header row gives a TSV (pandas' to_csv and csv.writer write one): a first line of two such
 * names is refused, not translated and scored as a pair. Language codes (en, de, pt_BR) included.
 */
const HEADER_NAME =
  /^(source|target|src|tgt|trg|input|output|text|sentence|translation|reference|(en|de|fr|es|it|pt|nl|ru|zh|ja|ko|ar|cs|pl|tr|sv|da|fi|nb|ro|hu|el|he|hi|uk|vi|th|id|bg|hr|sk|sl|et|lv|lt|fa|ca)([_-][a-z]{2,4})?)$/i;

/** Streams pairs from a TSV file: each line "source<TAB>target" (exactly two columns), no header row. */
export async function* streamParallelTsv(file: string): AsyncGenerator<SentencePair> {
  checkPath(file, 'the TSV file');
  let lineNo = 0;
  for await (const line of readLines(file)) {
    lineNo++;
    if (line.trim() === '') continue; // a blank line is no pair (a trailing one is common), as in the text readers
    const cols = line.split('\t');
    if (cols.length !== 2) {
      throw new FfmergeError('INVALID_DATA', `${file} line ${lineNo} has ${cols.length} tab-separated column${cols.length === 1 ? '' : 's'}; expected 2 (source, target)`);
    }
    if (lineNo === 1 && cols.every((c) => HEADER_NAME.test(c.trim()))) {
      throw new FfmergeError('INVALID_DATA', `${file} line 1 ("${cols.join('\\t')}") is a header row, not a sentence pair: remove it (a .tsv here is source<TAB>target lines only)`);
    }
    const pair = pairOf(cols[0]!, cols[1]!, `${file} line ${lineNo}`);
    if (pair) yield pair;
  }
}

/** All pairs of a TSV file; `signal` as for readParallel. */
export async function readParallelTsv(file: string, opts: Pick<JobOptions, 'signal'> = {}): Promise<SentencePair[]> {
  checkJobOptions(opts, 'readParallelTsv(file, options): options', []);
  return (await collectPairs(streamParallelTsv(file), opts)).pairs;
}
