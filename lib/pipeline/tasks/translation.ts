/**
 * Translation (encoder–decoder, Marian): calibration features from teacher forcing on the reference
 * translations (padding masked) in both stacks, candidates scored by greedy corpus BLEU on the validation
 * sentences (higher is better; chrF is reported by `eval`). The decoder's states depend on what it generates,
 * so every candidate is a full greedy translation: no prefix reuse.
 */
import { FfmergeError } from '../../errors';
import { translationBatches } from '../../data/feature-batches';
import { encodeSentences } from '../../data/encode-sentences';
import type { SentencePair } from '../../data/parallel';
import { evaluateTranslation, loadGenerationConfig } from '../../eval/translate';
import type { JobOptions } from '../../native/job';
import type { Model } from '../../model/model';
import { loadTokenizer } from '../../tokenizer';
import { checkSelectBy, checkTestBudget, positiveInt, type ParallelSource } from '../options';
import { referenceBatches, teacherForcedLoss } from '../../eval/translation-loss';
import type { Task, TaskKind } from '../task';
import { checkSourceFiles, isParallelSource, loadParallelSource, sameSource } from './sources';
import { sameDataPhrase } from '../../data/same-data';

/** The whole validation split is translated per candidate when it has at most this many sentences. */
export const MAX_VALIDATION_SENTENCES = 1024;

function checkSource(v: unknown, what: string): void {
  if (v === undefined) return;
  if (!isParallelSource(v)) throw new FfmergeError('INVALID_ARGUMENT', `${what} for a translation model is { source, target } (line-aligned files) or { tsv }`);
  checkSourceFiles(v);
}

export const translation: TaskKind = {
  name: 'translation',
  description: 'greedy corpus BLEU (higher is better)',
  optionKeys: ['parallel', 'validation', 'test', 'calibrationPairs', 'validationSentences', 'testSentences', 'selectBy'],
  accepts: (s) => s.stacks.some((x) => x.name === 'encoder') && s.stacks.some((x) => x.name === 'decoder'),
  async check(o) {
    if (o.parallel === undefined) throw new FfmergeError('INVALID_ARGUMENT', 'a translation model is calibrated on sentence pairs: give parallel ({ source, target } or { tsv })');
    checkSource(o.parallel, 'parallel');
    checkSource(o.validation, 'validation');
    checkSource(o.test, 'test');
    for (const k of ['calibrationPairs', 'validationSentences', 'testSentences'] as const) if (o[k] !== undefined) positiveInt(o[k], k, 1);
    checkSelectBy(o.selectBy);
    checkTestBudget(o, 'testSentences', { budget: '--test-size', test: '--test <file.tsv> or --test-source/--test-target' });
    // A validation corpus is read from its first pair, so the calibration file given again as validation
    // would score candidates on the very pairs that shaped them; without one, validation follows calibration.
    const same = o.validation !== undefined ? await sameSource(o.parallel as ParallelSource, o.validation as ParallelSource) : undefined;
    if (same) {
      throw new FfmergeError(
        'INVALID_ARGUMENT',
        `the validation corpus ${sameDataPhrase(same, 'calibration')}, so its pairs would overlap the calibration pairs: give a different validation corpus, or none to validate on the pairs after the calibration ones`,
      );
    }
  },
  async create({ model, dir, options: o }) {
    const tokenizer = await loadTokenizer(dir);
    const generation = await loadGenerationConfig(dir, model.config as Record<string, unknown>);
    const pairs = await loadParallelSource(o.parallel!);
    const calN = Math.min(o.calibrationPairs ?? 600, pairs.length);
    const valAll = o.validation ? await loadParallelSource(o.validation as ParallelSource) : pairs.slice(calN);
    const val = valAll.slice(0, o.validationSentences ?? MAX_VALIDATION_SENTENCES);
    if (val.length === 0) throw new FfmergeError('INVALID_DATA', 'no validation pairs: give a validation corpus, or more pairs than the calibration budget');
    const testAll = o.test ? await loadParallelSource(o.test as ParallelSource) : undefined;
    const test = testAll?.slice(0, o.testSentences ?? testAll.length);
    const bleu = async (m: Model, ps: SentencePair[], opts: JobOptions) => (await evaluateTranslation(m, tokenizer, ps, { ...opts, generation })).bleu.score;
    // Sentences longer than the model's positions are cut to them (as translate() does), and the notes say how many.
    const srcMax = model.encoderSpec!.maxPositions;
    const tgtMax = model.spec.maxPositions;
    const ids = { decoderStartTokenId: generation.decoderStartTokenId, padTokenId: generation.padTokenId };
    const calibration = translationBatches(pairs.slice(0, calN), tokenizer, { ...ids, maxSourceTokens: srcMax, maxTargetTokens: tgtMax });
    const calCut = calibration.reduce((n, b) => n + (b.truncated ?? 0), 0);
    const valCut = encodeSentences(tokenizer, val.map((p) => p.source), srcMax).cut.length;
    const testCut = test ? encodeSentences(tokenizer, test.map((p) => p.source), srcMax).cut.length : 0;
    const cutNote = (n: number, of: number, what: string) => (n > 0 ? [`${what}: ${n} of ${of} longer than the model's positions (${srcMax} source, ${tgtMax} target tokens), cut to them`] : []);
    const byLoss = o.selectBy === 'loss';
    const valRefs = byLoss ? referenceBatches(val, tokenizer, { ...ids, maxSourceTokens: srcMax, maxTargetTokens: tgtMax - 1 }) : undefined;
    const task: Task = {
      metric: { name: 'bleu', higherIsBetter: true },
      calibration,
      data: {
        unit: 'sentences',
        calibration: calN,
        validation: val.length,
        search: val.length,
        ...(test ? { test: test.length } : {}),
        notes: [
          `validation: ${val.length} of ${valAll.length} ${o.validation ? 'validation pairs' : 'pairs after the calibration ones'}`,
          ...cutNote(calCut, calN, 'calibration pairs'),
          ...cutNote(Math.max(valCut, valRefs?.truncated ?? 0), val.length, 'validation pairs'),
          ...cutNote(testCut, test?.length ?? 0, 'test sources'),
        ],
      },
      prepare: async () => {},
      ...(byLoss ? { selection: { name: 'loss', higherIsBetter: false } as const } : {}),
      search: (m, _start, opts) => (byLoss ? teacherForcedLoss(m, valRefs!.batches, opts) : bleu(m, val, opts)),
      validate: (m, _start, opts) => bleu(m, val, opts),
      ...(test ? { test: (m: Model, opts: JobOptions) => bleu(m, test, opts) } : {}),
    };
    return task;
  },
};
