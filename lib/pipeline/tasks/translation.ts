/**
 * Translation (encoder–decoder, Marian): calibration features from teacher forcing on the reference
 * translations (padding masked) in both stacks, candidates scored by corpus BLEU on the validation sentences
 * (higher is better; chrF is reported by `eval`), decoded as generation_config.json says (greedy unless it
 * asks for beams). The decoder's states depend on what it generates, so every candidate is a full
 * translation: no prefix reuse.
 */
import { FfmergeError } from '../../errors';
import { translationBatches } from '../../data/feature-batches';
import { encodeSentences } from '../../data/encode-sentences';
import type { SentencePair } from '../../data/parallel';
import { decodingLabel, loadGenerationConfig, translationBleu } from '../../eval/translate';
import type { JobOptions } from '../../native/job';
import type { Model } from '../../model/model';
import { loadTokenizer, textForTokens } from '../../tokenizer';
import { checkPositiveInts, checkSelectBy, checkTestBudget, type ParallelSource } from '../options';
import { referenceBatches, teacherForcedLoss } from '../../eval/translation-loss';
import type { Task, TaskKind } from '../task';
import { checkHeldOut, checkSize, checkSource, describeSource as describe, isParallelSource, loadParallelSource, sameSource } from './sources';
import { sameDataPhrase } from '../../data/same-data';

/** The whole validation split is translated per candidate when it has at most this many sentences. */
export const MAX_VALIDATION_SENTENCES = 1024;

export const translation: TaskKind = {
  name: 'translation',
  description: 'corpus BLEU, decoded per generation_config.json (higher is better)',
  optionKeys: ['parallel', 'validation', 'test', 'calibrationPairs', 'validationSentences', 'testSentences', 'selectBy'],
  accepts: (s) => s.stacks.some((x) => x.name === 'encoder') && s.stacks.some((x) => x.name === 'decoder'),
  async check(o) {
    if (o.parallel === undefined) throw new FfmergeError('INVALID_ARGUMENT', 'a translation model is calibrated on sentence pairs: give parallel ({ source, target } or { tsv })');
    for (const k of ['parallel', 'validation', 'test'] as const) checkSource(o[k], k, isParallelSource, 'a translation model is { source, target } (line-aligned files) or { tsv }');
    checkPositiveInts(o, ['calibrationPairs', 'validationSentences', 'testSentences']);
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
    const test = o.test as ParallelSource | undefined;
    if (test) await checkHeldOut([['calibration', o.parallel], ['validation', o.validation]], (src) => sameSource(src as ParallelSource, test), { test: 'corpus', give: 'pairs' });
  },
  async create({ model, dir, options: o }, job) {
    const tokenizer = await loadTokenizer(dir);
    const generation = await loadGenerationConfig(dir, model.config as Record<string, unknown>);
    // only the pairs used are kept (calibration, then validation unless a corpus of its own gives it); the
    // corpora are counted whole, for the checks and notes below
    const read = (src: ParallelSource, keep: number) => loadParallelSource(src, { signal: job.signal, keep });
    const valKeep = o.validationSentences ?? MAX_VALIDATION_SENTENCES;
    const { pairs, total } = await read(o.parallel!, (o.calibrationPairs ?? 600) + (o.validation ? 0 : valKeep));
    checkSize(o.calibrationPairs, 'calibrationPairs', total, `sentence pairs of ${describe(o.parallel!)}`);
    const calN = o.calibrationPairs ?? Math.min(600, total);
    const valAll = o.validation ? await read(o.validation as ParallelSource, valKeep) : { pairs: pairs.slice(calN), total: total - calN };
    if (valAll.total === 0) {
      // the caller's own size that leaves nothing is a usage error; a corpus too small for the default is the data's
      throw new FfmergeError(
        o.validation || o.calibrationPairs === undefined ? 'INVALID_DATA' : 'INVALID_ARGUMENT',
        o.validation
          ? `no validation pairs: ${describe(o.validation as ParallelSource)} holds none`
          : `no validation pairs: the calibration size (${o.calibrationPairs !== undefined ? `--calibration-size ${calN}` : `by default 600, or all the pairs there are`}) takes all ${total === 1 ? 'the 1 pair' : `${total} pairs`} of ${describe(o.parallel!)}; give a smaller calibration size, or a validation corpus`,
      );
    }
    const valWhat = o.validation ? `validation pairs of ${describe(o.validation as ParallelSource)}` : `pairs of ${describe(o.parallel!)} after the ${calN} calibration ones`;
    checkSize(o.validationSentences, 'validationSentences', valAll.total, valWhat);
    const val = valAll.pairs.slice(0, valKeep);
    const testAll = o.test ? await read(o.test as ParallelSource, o.testSentences ?? Infinity) : undefined;
    if (testAll) checkSize(o.testSentences, 'testSentences', testAll.total, `test pairs of ${describe(o.test as ParallelSource)}`);
    const test = testAll?.pairs;
    // Sentences longer than the model's positions are cut to them (as translate() does), and the notes say how many.
    const srcMax = model.encoderSpec!.maxPositions;
    const tgtMax = model.spec.maxPositions;
    // Each text is cut to the words its kept ids come from before it is encoded (the same ids, textForTokens):
    // a line of half a million characters would overflow the tokenizer library; one it cannot encode is named.
    // References are scored raw by BLEU: only the copies that are encoded are cut.
    const lineOf = (src: ParallelSource, side: 'source' | 'target', line: number) => `line ${line} of ${'tsv' in src ? src.tsv : src[side]}`;
    const forTokens = (ps: SentencePair[], src: ParallelSource, first: number, maxTarget: number | undefined): SentencePair[] =>
      ps.map((p, i) => ({
        source: textForTokens(tokenizer, p.source, srcMax, lineOf(src, 'source', first + i)),
        target: maxTarget === undefined ? p.target : textForTokens(tokenizer, p.target, maxTarget, lineOf(src, 'target', first + i)),
      }));
    const valSrc = (o.validation as ParallelSource | undefined) ?? o.parallel!;
    const valFirst = o.validation ? 1 : calN + 1;
    const calPairs = forTokens(pairs.slice(0, calN), o.parallel!, 1, tgtMax);
    const valPairs = forTokens(val, valSrc, valFirst, undefined);
    const testPairs = test ? forTokens(test, o.test as ParallelSource, 1, undefined) : undefined;
    const bleu = (m: Model, ps: SentencePair[], opts: JobOptions) => translationBleu(m, tokenizer, ps, { ...opts, generation });
    const ids = { decoderStartTokenId: generation.decoderStartTokenId, padTokenId: generation.padTokenId };
    const calibration = translationBatches(calPairs, tokenizer, { ...ids, maxSourceTokens: srcMax, maxTargetTokens: tgtMax });
    const calCut = calibration.reduce((n, b) => n + (b.truncated ?? 0), 0);
    const valCut = encodeSentences(tokenizer, valPairs.map((p) => p.source), srcMax).cut.length;
    const testCut = testPairs ? encodeSentences(tokenizer, testPairs.map((p) => p.source), srcMax).cut.length : 0;
    const cutNote = (n: number, of: number, what: string) => (n > 0 ? [`${what}: ${n} of ${of} longer than the model's positions (${srcMax} source, ${tgtMax} target tokens), cut to them`] : []);
    const byLoss = o.selectBy === 'loss';
    const valRefs = byLoss ? referenceBatches(forTokens(val, valSrc, valFirst, tgtMax - 1), tokenizer, { ...ids, maxSourceTokens: srcMax, maxTargetTokens: tgtMax - 1 }) : undefined;
    const task: Task = {
      // the decoding that produced the number (generation_config.json's num_beams), which the summary,
      // report.json and the model card name
      metric: { name: 'bleu', higherIsBetter: true, decoding: decodingLabel(generation) },
      calibration,
      data: {
        unit: 'sentences',
        calibration: calN,
        validation: val.length,
        search: val.length,
        ...(test ? { test: test.length } : {}),
        notes: [
          `validation: ${val.length} of ${valAll.total} ${o.validation ? 'validation pairs' : 'pairs after the calibration ones'}`,
          ...(test && testAll && test.length < testAll.total ? [`test: the first ${test.length} of ${testAll.total} test pairs`] : []),
          ...cutNote(calCut, calN, 'calibration pairs'),
          ...cutNote(Math.max(valCut, valRefs?.truncated ?? 0), val.length, 'validation pairs'),
          ...cutNote(testCut, test?.length ?? 0, 'test sources'),
        ],
      },
      prepare: async () => {},
      ...(byLoss ? { selection: { name: 'loss', higherIsBetter: false } as const } : {}),
      search: (m, _start, opts) => (byLoss ? teacherForcedLoss(m, valRefs!.batches, opts) : bleu(m, valPairs, opts)),
      validate: (m, _start, opts) => bleu(m, valPairs, opts),
      ...(testPairs ? { test: (m: Model, opts: JobOptions) => bleu(m, testPairs, opts) } : {}),
    };
    return task;
  },
};
