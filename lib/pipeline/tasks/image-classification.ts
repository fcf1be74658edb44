/**
 * Image classification (ViT): calibration features on every position (CLS + patches) of the calibration
 * images, candidates scored by top-1 accuracy on the validation images (higher is better), with the base
 * model's states entering each candidate's first changed layer kept once.
 */
import { FfmergeError, showValue } from '../../errors';
import { checkLabels, loadPreprocessor } from '../../data/images';
import { imageBatches } from '../../data/feature-batches';
import { crossEntropy, evaluateImageClassifier } from '../../eval/accuracy';
import { argmaxRows } from '../../metrics/accuracy';
import type { JobOptions } from '../../native/job';
import type { Model } from '../../model/model';
import { PrefixCache } from '../prefix';
import { checkPositiveInts, checkSelectBy, checkTestBudget, type ImageSource } from '../options';
import type { Task, TaskKind } from '../task';
import { checkSize, checkSource, describeSource as describe, imageReader, isImageSource, sameSource } from './sources';
import { copyWords } from '../../data/same-data';

/** The whole validation range is scored when it has at most this many images. */
export const MAX_VALIDATION_IMAGES = 5000;

export const imageClassification: TaskKind = {
  name: 'image-classification',
  description: 'top-1 accuracy (higher is better)',
  optionKeys: ['images', 'validation', 'test', 'calibrationImages', 'validationStart', 'validationImages', 'testImages', 'selectBy'],
  accepts: (s) => s.modelType === 'vit',
  check(o) {
    if (o.images === undefined) throw new FfmergeError('INVALID_ARGUMENT', 'an image classifier is calibrated on images: give images ({ images, labels } idx files or { folder })');
    for (const k of ['images', 'validation', 'test'] as const) checkSource(o[k], k, isImageSource, 'an image classifier is { images, labels } (idx files) or { folder }');
    checkPositiveInts(o, ['calibrationImages', 'validationImages', 'testImages']);
    checkSelectBy(o.selectBy);
    checkTestBudget(o, 'testImages', { budget: '--test-size', test: '--test <folder> or --test-images/--test-labels' });
    if (o.validationStart !== undefined && (!Number.isInteger(o.validationStart) || o.validationStart < 0)) {
      throw new FfmergeError('INVALID_ARGUMENT', `validationStart must be a non-negative integer (got ${showValue(o.validationStart)})`);
    }
  },
  async create({ model, dir, options: o }, job) {
    const pre = await loadPreprocessor(dir);
    const config = model.config as Record<string, unknown>;
    // an empty set is refused by its reader, before any model work, naming its file (loadIdxImages, loadImageFolder)
    const load = imageReader(pre, config, job);
    const set = await load(o.images!);
    const classes = model.spec.numLabels ?? 0;
    checkSize(o.calibrationImages, 'calibrationImages', set.count, `images of ${describe(o.images!)}`);
    const calN = o.calibrationImages ?? Math.min(600, set.count);
    // recover 'finetune' trains on the calibration images' labels: checked like those scored below
    if (o.recover === 'finetune' && set.labels) {
      checkLabels({ ...set, count: calN, labels: set.labels.subarray(0, calN) }, classes, `the calibration images of ${describe(o.images!)}`);
    }
    const valSet = o.validation ? await load(o.validation as ImageSource) : set;
    // Every label scored (validation, test) must be one of the model's classes, checked before any model work:
    // a label past them would only count as a wrong answer (eval refuses the same files the same way).
    checkLabels(valSet, classes, describe((o.validation ?? o.images) as ImageSource));
    // Validation images must not be calibration images: those shaped the merge they would score.
    const same = o.validation ? await sameSource(o.images!, o.validation as ImageSource) : 'file';
    const valStart = o.validationStart ?? (o.validation ? 0 : set.count === 60000 ? 55000 : calN);
    if (same && valStart < calN) {
      throw new FfmergeError(
        'INVALID_ARGUMENT',
        `validation would start at image ${valStart}, inside the calibration images 0-${calN - 1} of the same ${same !== 'file' ? `data (the validation file is ${copyWords(same)} of the calibration file)` : 'file'}: ` +
          `${calN < valSet.count ? `start it at ${calN} or later (validationStart, --validation-start), ` : ''}calibrate on fewer images, or give a separate validation set`,
      );
    }
    if (o.validationStart !== undefined && o.validationStart >= valSet.count) {
      throw new FfmergeError('INVALID_ARGUMENT', `validationStart (--validation-start) ${valStart} is past the last of the ${valSet.count} validation images (${valSet.count - 1})`);
    }
    const valLeft = valSet.count - valStart;
    checkSize(o.validationImages, 'validationImages', valLeft, `validation images from image ${valStart} on`);
    const valN = o.validationImages ?? Math.min(MAX_VALIDATION_IMAGES, valLeft);
    if (valN <= 0) {
      // the caller's own size or start that leaves nothing is a usage error
      const own = o.calibrationImages !== undefined || o.validationStart !== undefined;
      // where the calibration size took them all, said with what to change
      const after = o.validationStart !== undefined || o.validation ? '' : `, after the ${calN} calibration images (calibrationImages, --calibration-size: ${o.calibrationImages !== undefined ? calN : 'by default 600, or all the images there are'}): calibrate on fewer, or give a validation set (validation: --valid <folder>, or --valid-images with --valid-labels)`;
      throw new FfmergeError(own ? 'INVALID_ARGUMENT' : 'INVALID_DATA', `no validation images: the set has ${valSet.count} images and validation starts at ${valStart}${after}`);
    }
    const testSet = o.test ? await load(o.test as ImageSource) : undefined;
    if (testSet) {
      checkLabels(testSet, classes, describe(o.test as ImageSource));
      checkSize(o.testImages, 'testImages', testSet.count, 'test images');
    }
    const testN = testSet ? (o.testImages ?? testSet.count) : undefined;
    // The test number is the held-out one: test images (from image 0 of their set) that are calibration images
    // (which shaped the merge) or validation images (which chose it) would inflate it.
    if (testN !== undefined) {
      const ranges = [
        ['calibration', o.images!, 0, calN],
        ['validation', (o.validation ?? o.images) as ImageSource, valStart, valN],
      ] as const;
      for (const [what, src, from, n] of ranges) {
        const hit = from < testN && n > 0 ? await sameSource(src, o.test as ImageSource) : undefined;
        if (hit) {
          throw new FfmergeError(
            'INVALID_ARGUMENT',
            `the test images 0-${testN - 1} overlap the ${what} images ${from}-${from + n - 1} of the same ${hit !== 'file' ? `data (${copyWords(hit)})` : 'file'}, so the test number would not be held out: give test images the run neither calibrates nor validates on`,
          );
        }
      }
    }
    const patch = model.spec.patch ?? 1;
    const val = imageBatches(valSet, pre, patch, { start: valStart, count: valN, batchSize: 250 });
    const labels = valSet.labels!.subarray(valStart, valStart + valN);
    let cache: PrefixCache | undefined;
    /** Validation accuracy and mean cross-entropy, from the cached states entering `start` when there are some. */
    const scores = async (m: Model, start: number, opts: JobOptions): Promise<{ accuracy: number; loss: number }> => {
      if (!cache?.has(start)) return evaluateImageClassifier(m, valSet, pre, { ...opts, start: valStart, count: valN });
      let correct = 0;
      let nll = 0;
      let row = 0;
      // counted as evaluateImageClassifier counts
      opts.onProgress?.({ phase: 'evaluate', done: 0, total: valN, unit: 'images' });
      for (const [i, b] of val.entries()) {
        const r = await cache.forward(m, start, i, { output: 'logits', signal: opts.signal });
        const pred = argmaxRows(r.logits, classes);
        for (let j = 0; j < b.input.batch; j++, row++) {
          if (pred[j] === labels[row]) correct++;
          nll += crossEntropy(r.logits.subarray(j * classes, (j + 1) * classes), labels[row]!);
        }
        opts.onProgress?.({ phase: 'evaluate', done: row, total: valN, unit: 'images' });
      }
      return { accuracy: correct / valN, loss: nll / valN };
    };
    const byLoss = o.selectBy === 'loss';
    const task: Task = {
      metric: { name: 'accuracy', higherIsBetter: true },
      calibration: imageBatches(set, pre, patch, { start: 0, count: calN, batchSize: 100 }),
      data: {
        unit: 'images',
        calibration: calN,
        validation: valN,
        search: valN,
        ...(testN !== undefined ? { test: testN } : {}),
        notes: [`validation: images ${valStart}-${valStart + valN - 1} of ${o.validation ? 'the validation set' : 'the calibration set'}`],
      },
      async prepare(starts, opts) {
        cache = await PrefixCache.build(model, val.map((b) => b.input), [0, ...starts], opts);
      },
      dispose: async () => cache?.dispose(),
      ...(byLoss ? { selection: { name: 'loss', higherIsBetter: false } as const } : {}),
      search: async (m, start, opts) => {
        const r = await scores(m, start, opts);
        return byLoss ? r.loss : r.accuracy;
      },
      validate: async (m, start, opts) => (await scores(m, start, opts)).accuracy,
      ...(testSet ? { test: async (m: Model, opts: JobOptions) => (await evaluateImageClassifier(m, testSet, pre, { ...opts, count: testN! })).accuracy } : {}),
    };
    return task;
  },
};
