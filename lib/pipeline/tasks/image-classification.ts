/**
 * Image classification (ViT): calibration features on every position (CLS + patches) of the calibration
 * images, candidates scored by top-1 accuracy on the validation images (higher is better), with the base
 * model's states entering each candidate's first changed layer kept once.
 */
import { FfmergeError, showValue } from '../../errors';
import { conformImages, loadPreprocessor, type ImageSet } from '../../data/images';
import { imageBatches } from '../../data/feature-batches';
import { crossEntropy, evaluateImageClassifier } from '../../eval/accuracy';
import { argmaxRows } from '../../metrics/accuracy';
import type { JobOptions } from '../../native/job';
import type { Model } from '../../model/model';
import { PrefixCache } from '../prefix';
import { checkSelectBy, checkTestBudget, positiveInt, type ImageSource } from '../options';
import type { Task, TaskKind } from '../task';
import { checkSourceFiles, isImageSource, loadImageSource, sameSource } from './sources';

/** The whole validation range is scored when it has at most this many images. */
export const MAX_VALIDATION_IMAGES = 5000;

function checkSource(v: unknown, what: string): void {
  if (v === undefined) return;
  if (!isImageSource(v)) throw new FfmergeError('INVALID_ARGUMENT', `${what} for an image classifier is { images, labels } (idx files) or { folder }`);
  checkSourceFiles(v);
}

export const imageClassification: TaskKind = {
  name: 'image-classification',
  description: 'top-1 accuracy (higher is better)',
  optionKeys: ['images', 'validation', 'test', 'calibrationImages', 'validationStart', 'validationImages', 'testImages', 'selectBy'],
  accepts: (s) => s.modelType === 'vit',
  check(o) {
    if (o.images === undefined) throw new FfmergeError('INVALID_ARGUMENT', 'an image classifier is calibrated on images: give images ({ images, labels } idx files or { folder })');
    checkSource(o.images, 'images');
    checkSource(o.validation, 'validation');
    checkSource(o.test, 'test');
    for (const k of ['calibrationImages', 'validationImages', 'testImages'] as const) if (o[k] !== undefined) positiveInt(o[k], k, 1);
    checkSelectBy(o.selectBy);
    checkTestBudget(o, 'testImages', { budget: '--test-size', test: '--test <folder> or --test-images/--test-labels' });
    if (o.validationStart !== undefined && (!Number.isInteger(o.validationStart) || o.validationStart < 0)) {
      throw new FfmergeError('INVALID_ARGUMENT', `validationStart must be a non-negative integer (got ${showValue(o.validationStart)})`);
    }
  },
  async create({ model, dir, options: o }) {
    const pre = await loadPreprocessor(dir);
    const config = model.config as Record<string, unknown>;
    const load = async (src: ImageSource): Promise<ImageSet> => conformImages(await loadImageSource(src, pre, config), pre);
    const set = await load(o.images!);
    const calN = Math.min(o.calibrationImages ?? 600, set.count);
    const valSet = o.validation ? await load(o.validation as ImageSource) : set;
    // Validation images must not be calibration images: those shaped the merge they would score.
    const sameSet = !o.validation || sameSource(o.images!, o.validation as ImageSource);
    const valStart = o.validationStart ?? (o.validation ? 0 : set.count === 60000 ? 55000 : calN);
    if (sameSet && valStart < calN) {
      throw new FfmergeError(
        'INVALID_ARGUMENT',
        `validation would start at image ${valStart}, inside the calibration images 0-${calN - 1} of the same file: ` +
          `start it at ${calN} or later (validationStart, --validation-start), calibrate on fewer images, or give a separate validation set`,
      );
    }
    const valN = Math.min(o.validationImages ?? MAX_VALIDATION_IMAGES, valSet.count - valStart);
    if (valN <= 0) throw new FfmergeError('INVALID_DATA', `no validation images: the set has ${valSet.count} images and validation starts at ${valStart}`);
    const testSet = o.test ? await load(o.test as ImageSource) : undefined;
    const testN = testSet ? Math.min(o.testImages ?? testSet.count, testSet.count) : undefined;
    const patch = model.spec.patch ?? 1;
    const val = imageBatches(valSet, pre, patch, { start: valStart, count: valN, batchSize: 250 });
    const labels = valSet.labels!.subarray(valStart, valStart + valN);
    const classes = model.spec.numLabels ?? 0;
    let cache: PrefixCache | undefined;
    /** Validation accuracy and mean cross-entropy, from the cached states entering `start` when there are some. */
    const scores = async (m: Model, start: number, opts: JobOptions): Promise<{ accuracy: number; loss: number }> => {
      if (!cache?.has(start)) return evaluateImageClassifier(m, valSet, pre, { ...opts, start: valStart, count: valN });
      let correct = 0;
      let nll = 0;
      let row = 0;
      for (const [i, b] of val.entries()) {
        const r = await cache.forward(m, start, i, { output: 'logits', ...(opts.signal ? { signal: opts.signal } : {}) });
        const pred = argmaxRows(r.logits!, classes);
        for (let j = 0; j < b.input.batch; j++, row++) {
          if (pred[j] === labels[row]) correct++;
          nll += crossEntropy(r.logits!.subarray(j * classes, (j + 1) * classes), labels[row]!);
        }
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
      dispose: async () => {
        await cache?.dispose();
        cache = undefined;
      },
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
