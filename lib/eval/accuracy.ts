/**
 * Top-1 accuracy of an image classifier (ViT) on an image set, in batches, with progress and AbortSignal.
 */
import { FfmergeError, showValue } from '../errors';
import { checkLabels, checkPreprocessor, conformImages, imagesToTensor, type ImagePreprocessor, type ImageSet } from '../data/images';
import { argmaxRows } from '../metrics/accuracy';
import { checkJobOptions, throwIfAborted, withJobScope, type JobOptions } from '../native/job';
import { checkModel, type Model } from '../model/model';

export interface ClassifierEvalOptions extends JobOptions {
  /** Images per forward pass (default 256). */
  batchSize?: number | undefined;
  /** Evaluate images [start, start + count) only (default: all). */
  start?: number | undefined;
  count?: number | undefined;
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

/** Top-1 accuracy of an image classifier on an ImageSet (loadIdxImages, loadImageFolder), batched natively. */
export async function evaluateImageClassifier(
  model: Model,
  images: ImageSet,
  pre: ImagePreprocessor,
  opts: ClassifierEvalOptions = {},
): Promise<ClassifierEvalResult> {
  checkModel(model, 'evaluateImageClassifier(model, images, pre): model');
  if (typeof images !== 'object' || images === null) throw new FfmergeError('INVALID_ARGUMENT', `evaluateImageClassifier(model, images, pre): images must be an ImageSet (from loadIdxImages or loadImageFolder) (got ${showValue(images)})`);
  // the model first: images and a preprocessor are no use to a language model, whatever they hold
  if (model.spec.input !== 'patches' || model.spec.head !== 'classifier') {
    throw new FfmergeError('INVALID_ARGUMENT', `${model.spec.family} is not an image classifier (needs patch input and a classifier head)`);
  }
  checkPreprocessor(pre, 'evaluateImageClassifier(model, images, pre): pre');
  // labels are class indices: a Float32Array of 0.5 would match no prediction and index no logit (loss NaN)
  const labels: unknown = images.labels;
  if (labels !== undefined) {
    const list = (ArrayBuffer.isView(labels) && !(labels instanceof DataView)) || Array.isArray(labels) ? (labels as ArrayLike<unknown>) : undefined;
    // Array.from, not every(): every() skips the holes of a sparse array, Array.from reads them as undefined
    const bad = list ? Array.from(list).findIndex((l) => !Number.isInteger(l)) : -1;
    if (!list || bad >= 0) {
      const got = bad >= 0 ? `label ${bad} is ${showValue(list![bad])}` : `got ${showValue(labels)}`;
      throw new FfmergeError('INVALID_ARGUMENT', `evaluateImageClassifier(model, images, pre): images.labels must hold class indices (integers), one per image (${got})`);
    }
    if (list.length !== images.count) {
      throw new FfmergeError('INVALID_ARGUMENT', `evaluateImageClassifier(model, images, pre): images.labels has ${list.length} labels for ${images.count} images`);
    }
  }
  checkJobOptions(opts, 'evaluateImageClassifier(model, images, pre, options): options', ['batchSize', 'start', 'count']);
  // one job of several forward passes from here: a dispose() meanwhile lets it finish (Model.session)
  return withJobScope(opts, (opts) => model.session(async () => {
    const spec = model.spec;
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
    checkLabels(images, classes);
    const seq = 1 + (pre.height / (spec.patch ?? 1)) * (pre.width / (spec.patch ?? 1));
    const predictions = new Int32Array(count);
    let correct = 0;
    let nll = 0;
    for (let done = 0; done < count; ) {
      throwIfAborted(opts.signal);
      const n = Math.min(batchSize, count - done);
      const pixels = imagesToTensor(set, pre, start + done, n);
      const r = await model.forward({ batch: n, seq, pixels }, { output: 'logits', signal: opts.signal });
      const pred = argmaxRows(r.logits, classes);
      for (let i = 0; i < n; i++) {
        predictions[done + i] = pred[i]!;
        const label = set.labels![start + done + i]!;
        if (pred[i] === label) correct++;
        nll += crossEntropy(r.logits.subarray(i * classes, (i + 1) * classes), label);
      }
      done += n;
      // counted in images, not batches: the bar would otherwise say "10000 batches"
      opts.onProgress?.({ phase: 'evaluate', done, total: count, unit: 'images' });
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
  // the difference first: log(z) (at most log V) is lost to rounding beside logits of 1e31
  return max - logits[label]! + Math.log(z);
}
