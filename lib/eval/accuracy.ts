/**
 * Top-1 accuracy of an image classifier (ViT) on an image set, in batches, with progress and AbortSignal.
 */
import { FfmergeError, showValue } from '../errors';
import { conformImages, imagesToTensor, type ImagePreprocessor, type ImageSet } from '../data/images';
import { argmaxRows } from '../metrics/accuracy';
import { checkJobOptions, throwIfAborted, withJobScope, type JobOptions } from '../native/job';
import { checkModel, type Model } from '../model/model';

export interface ClassifierEvalOptions extends JobOptions {
  /** Images per forward pass (default 256). */
  batchSize?: number;
  /** Evaluate images [start, start + count) only (default: all). */
  start?: number;
  count?: number;
}

export interface ClassifierEvalResult {
  correct: number;
  total: number;
  accuracy: number;
  /** Mean cross-entropy of the true labels (nats): a smoother score than accuracy on the same images. */
  loss: number;
  /** Predicted class per evaluated image. */
  predictions: Int32Array;
}

export async function evaluateImageClassifier(
  model: Model,
  images: ImageSet,
  pre: ImagePreprocessor,
  opts: ClassifierEvalOptions = {},
): Promise<ClassifierEvalResult> {
  checkModel(model, 'evaluateImageClassifier(model, images, pre): model');
  if (typeof images !== 'object' || images === null) throw new FfmergeError('INVALID_ARGUMENT', `evaluateImageClassifier(model, images, pre): images must be an ImageSet (from loadIdxImages or loadImageFolder) (got ${showValue(images)})`);
  if (typeof pre !== 'object' || pre === null) throw new FfmergeError('INVALID_ARGUMENT', `evaluateImageClassifier(model, images, pre): pre must be an ImagePreprocessor (from loadPreprocessor) (got ${showValue(pre)})`);
  checkJobOptions(opts, 'evaluateImageClassifier(model, images, pre, options): options', ['batchSize', 'start', 'count']);
  // one job of several forward passes from here: a dispose() meanwhile lets it finish (Model.session)
  return withJobScope(opts, (opts) => model.session(async () => {
    const spec = model.spec;
    if (spec.input !== 'patches' || spec.head !== 'classifier') {
      throw new FfmergeError('INVALID_ARGUMENT', `${spec.family} is not an image classifier (needs patch input and a classifier head)`);
    }
    if (!images.labels) throw new FfmergeError('INVALID_DATA', 'the image set has no labels to score against');
    if (pre.channels !== spec.channels || pre.height !== spec.imageH || pre.width !== spec.imageW) {
      throw new FfmergeError(
        'SHAPE_MISMATCH',
        `the preprocessor makes ${pre.width}x${pre.height}x${pre.channels} images but the model takes ${spec.imageW}x${spec.imageH}x${spec.channels}`,
      );
    }
    const set = await conformImages(images, pre);
    if (set.count === 0) throw new FfmergeError('INVALID_DATA', 'the image data holds no images: nothing to evaluate');
    const start = opts.start ?? 0;
    const count = opts.count ?? set.count - start;
    if (!Number.isInteger(start) || !Number.isInteger(count) || start < 0 || count <= 0 || start + count > set.count) {
      throw new FfmergeError('INVALID_ARGUMENT', `image range [${start}, ${start + count}) is not within the ${set.count} images`);
    }
    const batchSize = opts.batchSize ?? 256;
    if (!Number.isInteger(batchSize) || batchSize <= 0) throw new FfmergeError('INVALID_ARGUMENT', 'batchSize must be a positive integer');
    const classes = spec.numLabels ?? 0;
    const bad = images.labels.find((l) => l < 0 || l >= classes);
    if (bad !== undefined) {
      throw new FfmergeError(
        'INVALID_DATA',
        `label ${bad} is outside the model's ${classes} classes${images.classNames ? ` (image folder classes: ${images.classNames.join(', ')})` : ''}`,
      );
    }
    const seq = 1 + (pre.height / (spec.patch ?? 1)) * (pre.width / (spec.patch ?? 1));
    const predictions = new Int32Array(count);
    let correct = 0;
    let nll = 0;
    for (let done = 0; done < count; ) {
      throwIfAborted(opts.signal);
      const n = Math.min(batchSize, count - done);
      const pixels = imagesToTensor(set, pre, start + done, n);
      const r = await model.forward({ batch: n, seq, pixels }, { output: 'logits', ...(opts.signal ? { signal: opts.signal } : {}) });
      const pred = argmaxRows(r.logits!, classes);
      for (let i = 0; i < n; i++) {
        predictions[done + i] = pred[i]!;
        const label = set.labels![start + done + i]!;
        if (pred[i] === label) correct++;
        nll += crossEntropy(r.logits!.subarray(i * classes, (i + 1) * classes), label);
      }
      done += n;
      opts.onProgress?.({ phase: 'evaluate', done, total: count });
    }
    return { correct, total: count, accuracy: correct / count, loss: nll / count, predictions };
  }));
}

/** −log softmax(logits)[label], computed stably. */
export function crossEntropy(logits: Float32Array, label: number): number {
  let max = -Infinity;
  for (const v of logits) if (v > max) max = v;
  let z = 0;
  for (const v of logits) z += Math.exp(v - max);
  return Math.log(z) + max - logits[label]!;
}
