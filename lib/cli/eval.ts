/** `ffmerge eval <model> …`: the metric of the model's task — perplexity, top-1 accuracy, or BLEU + chrF (decoded per generation_config.json). */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { FfmergeError } from '../errors';
import { loadModel } from '../model/load';
import { inspectModel } from '../model/inspect';
import { loadTokenizer } from '../tokenizer';
import { loadPreprocessor } from '../data/images';
import { isTokenRowFile } from '../data/token-rows';
import { evaluateImageClassifier } from '../eval/accuracy';
import { decodingLabel, evaluateTranslation } from '../eval/translate';
import { blocksFrom, fitBlockSize, makeBatches, shortBudgetNote, takeTokens, tokenCount } from '../pipeline/data';
import { nllOf, ppl } from '../pipeline/prefix';
import { loadImageSource, loadParallelSource } from '../pipeline/tasks/sources';
import { taskFor } from '../pipeline/tasks';
import { imageSourceFrom, int, parallelSourceFrom, refuseFlags, type SplitFlags } from './flags';
import { ProgressBar } from './progress';
import { fmtInt, fmtSeconds, printResult } from './format';

export interface EvalCliOptions extends SplitFlags {
  start?: string | undefined;
  count?: string | undefined;
  tokens?: string | undefined;
  blockSize?: string | undefined;
  stream?: boolean | undefined;
  json?: boolean | undefined;
}

const TASK_FLAGS: Record<string, readonly (keyof EvalCliOptions)[]> = {
  'language-modeling': ['data', 'tokens', 'blockSize'],
  'image-classification': ['data', 'images', 'labels', 'start', 'count'],
  translation: ['data', 'source', 'target', 'start', 'count'],
};

/** A metric that came out NaN or infinite (NaN weights, overflow) is a failure, never a printed number. */
function finite(v: number, metric: string): number {
  if (!Number.isFinite(v)) throw new FfmergeError('NON_FINITE_METRIC', `${metric} is ${v}: the model or its data holds non-finite values`);
  return v;
}

/**
 * --start and --count, or all of the data: a range past the data is refused, never cut to what is there
 * without a word. → the first item and how many.
 */
function withinData(o: EvalCliOptions, available: number, what: string): { start: number; count: number } {
  const start = int(o.start, 'start', 0) ?? 0;
  const count = int(o.count, 'count');
  if (start >= available) {
    throw new FfmergeError('INVALID_ARGUMENT', `--start ${start} is past the ${available} ${what} of the data (the first is 0): give at most ${available - 1}`);
  }
  const left = available - start;
  if (count !== undefined && count > left) {
    const from = start ? ` from --start ${start}` : '';
    throw new FfmergeError('INVALID_ARGUMENT', `--count ${count} is more than the ${left} ${what} of the data${from}: ask for at most ${left}, or leave --count out for all of them`);
  }
  return { start, count: count ?? left };
}

/** " from image 55000" where --start moved the range (the first is 0). */
const fromItem = (start: number, what: string) => (start ? ` from ${what} ${start}` : '');

export async function runEval(model: string, o: EvalCliOptions, signal: AbortSignal): Promise<void> {
  const bar = new ProgressBar(!o.json);
  await bar.watch(evaluate(model, o, signal, bar));
}

async function evaluate(model: string, o: EvalCliOptions, signal: AbortSignal, bar: ProgressBar): Promise<void> {
  const summary = await inspectModel(model, { compareCopies: false }); // the task only
  const task = taskFor(summary).name;
  refuseFlags(o, TASK_FLAGS, task, summary.modelType);
  const t0 = performance.now();
  const seconds = () => (performance.now() - t0) / 1000;
  const loadOptions = { signal, onProgress: bar.update, ...(o.stream ? { stream: true } : {}) };
  let result: Record<string, unknown>;
  let line: string;
  if (task === 'language-modeling') {
    if (o.data === undefined) throw new FfmergeError('INVALID_ARGUMENT', 'eval needs --data <text or .jsonl file>');
    // token-id rows are each one sequence, never re-cut: a block size for them would be ignored (checked before loading)
    if (o.blockSize !== undefined && fs.existsSync(o.data) && (await isTokenRowFile(o.data))) {
      throw new FfmergeError('OPTION_NOT_APPLICABLE', `--block-size cuts text into blocks; ${o.data} holds token-id rows, each used as it is: give no --block-size`);
    }
    const m = await loadModel(model, loadOptions);
    try {
      const blockSize = fitBlockSize(int(o.blockSize, 'block-size', 2), 256, m.spec.maxPositions, '--block-size');
      const budget = int(o.tokens, 'tokens') ?? Infinity;
      // the read stops past the budget where the data holds more: what it holds, if fewer, is all of it
      const read = await blocksFrom(o.data, { blockSize, what: 'data', tokenizerDir: model, maxTokens: budget, vocab: m.spec.vocab, maxLength: m.spec.maxPositions, signal, onProgress: bar.update });
      const blocks = takeTokens(read, budget);
      const total = await nllOf(m, makeBatches(blocks, 8), { signal, onProgress: bar.update });
      bar.done();
      finite(ppl(total), 'perplexity');
      // a budget larger than the file, said as compress says it
      const pastData = shortBudgetNote(tokenCount(read), budget, '--tokens');
      const notes = pastData ? [pastData] : [];
      result = { model: path.resolve(model), data: path.resolve(o.data), metric: 'perplexity', tokens: tokenCount(blocks), predictions: total.count, perplexity: ppl(total), seconds: seconds(), ...(notes.length ? { notes } : {}) };
      // the default cut to a short model's positions, said; token-id rows are never cut
      const short = o.blockSize === undefined && blockSize < 256 && !(await isTokenRowFile(o.data)) ? `, in blocks of ${blockSize} (the model's positions)` : '';
      line = `perplexity ${ppl(total).toFixed(3)} on ${fmtInt(tokenCount(blocks))} tokens of ${o.data}${short}, ${fmtInt(total.count)} of them predicted (${fmtSeconds(seconds())})${notes.map((n) => `\nnote: ${n}`).join('')}`;
    } finally {
      m.dispose();
    }
  } else if (task === 'image-classification') {
    const src = imageSourceFrom(o, '');
    if (!src) throw new FfmergeError('INVALID_ARGUMENT', 'eval on an image model needs --images <idx images> --labels <idx labels>, or --data <image folder>');
    const pre = await loadPreprocessor(model);
    const m = await loadModel(model, loadOptions);
    try {
      const set = await loadImageSource(src, pre, m.config as Record<string, unknown>, { signal, onProgress: bar.update });
      const range = withinData(o, set.count, 'images');
      const r = await evaluateImageClassifier(m, set, pre, { signal, onProgress: bar.update, ...range });
      bar.done();
      finite(r.accuracy, 'accuracy');
      result = { model: path.resolve(model), metric: 'accuracy', accuracy: r.accuracy, correct: r.correct, start: range.start, images: r.total, seconds: seconds() };
      line = `top-1 accuracy ${(100 * r.accuracy).toFixed(2)}% (${fmtInt(r.correct)}/${fmtInt(r.total)} images${fromItem(range.start, 'image')}, ${fmtSeconds(seconds())})`;
    } finally {
      m.dispose();
    }
  } else {
    const src = parallelSourceFrom(o, '');
    if (!src) throw new FfmergeError('INVALID_ARGUMENT', 'eval on a translation model needs --source <file> --target <file> (line-aligned), or --data <file.tsv>');
    // the pairs up to the last one scored are kept, the rest counted (withinData checks --start and --count against it)
    const wanted = int(o.start, 'start', 0) ?? 0;
    const all = await loadParallelSource(src, { signal, skip: wanted, keep: int(o.count, 'count') ?? Infinity });
    const { start, count } = withinData(o, all.total, 'sentence pairs');
    const pairs = all.pairs.slice(0, count);
    const m = await loadModel(model, loadOptions);
    try {
      const tok = await loadTokenizer(model);
      // decoding settings: the folder's generation_config.json, which loadModel read (greedy unless it asks for beams)
      const r = await evaluateTranslation(m, tok, pairs, { signal, onProgress: bar.update });
      // translate() decodes with config.json's defaults (greedy) when the folder has no generation config
      const decoding = m.generation ? decodingLabel(m.generation) : 'greedy';
      bar.done();
      finite(r.bleu.score, 'BLEU');
      finite(r.chrf.score, 'chrF');
      result = { model: path.resolve(model), metric: 'bleu', decoding, bleu: r.bleu.score, chrf: r.chrf.score, start, sentences: pairs.length, truncated: r.truncated, seconds: seconds() };
      const cut = r.truncated > 0 ? `; ${r.truncated === 1 ? '1 source' : `${r.truncated} sources`} longer than the model's ${m.encoderSpec!.maxPositions} positions ${r.truncated === 1 ? 'was' : 'were'} cut to them` : '';
      line = `BLEU ${r.bleu.score.toFixed(2)}, chrF ${r.chrf.score.toFixed(2)} (${decoding}, ${fmtInt(pairs.length)} sentences${fromItem(start, 'sentence')}${cut}, ${fmtSeconds(seconds())})`;
    } finally {
      m.dispose();
    }
  }
  printResult(o.json, result, () => line);
}
