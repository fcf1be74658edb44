/**
 * Forward-pass batches for collecting FF features (calibration) and evaluating image and translation models:
 *  - images: preprocessed NCHW pixels; every patch and the CLS position is a feature;
 *  - translation pairs: source ids (padded, masked) for the encoder, and teacher forcing on the reference
 *    translation for the decoder (input = decoder_start + target[:-1], as transformers' shift_tokens_right);
 *    the decoder's padded positions are not features (featureMask), the encoder's come from encoderMask.
 */
import { FfmergeError, showValue } from '../errors';
import type { ForwardInput } from '../model/model';
import type { Tokenizer } from '../tokenizer';
import { encodePairs } from './encode-sentences';
import { imagesToTensor, type ImagePreprocessor, type ImageSet } from './images';

export interface FeatureBatch {
  input: ForwardInput;
  /** Positions of the main stack that are features (absent: every position). */
  featureMask?: Uint8Array;
  /** Real (non-padding) positions per stack in this batch. */
  featureRows: number;
  encoderFeatureRows?: number;
  /** Image batches of a labelled set: each image's class (what fine-tuning as a recover method trains on). */
  labels?: Int32Array;
  /** Translation batches: pairs of this batch whose source or target was cut to maxSourceTokens / maxTargetTokens. */
  truncated?: number;
}

/** A batch size: a positive integer (perplexity checks its own with it too). */
export function checkBatchSize(n: number): void {
  if (!Number.isInteger(n) || n <= 0) throw new FfmergeError('INVALID_ARGUMENT', `batchSize must be a positive integer (got ${showValue(n)})`);
}

/** Images [start, start+count) of a set (already conformed to `pre`) as forward batches for a patch model. */
export function imageBatches(
  set: ImageSet,
  pre: ImagePreprocessor,
  patch: number,
  opts: { start?: number; count?: number; batchSize?: number } = {},
): FeatureBatch[] {
  if (typeof set !== 'object' || set === null || !(set.pixels instanceof Uint8Array)) {
    throw new FfmergeError('INVALID_ARGUMENT', `imageBatches: set must be an image set (loadIdxImages, loadImageFolder) (got ${showValue(set)})`);
  }
  if (typeof pre !== 'object' || pre === null) throw new FfmergeError('INVALID_ARGUMENT', `imageBatches: pre must be an image preprocessor (loadPreprocessor) (got ${showValue(pre)})`);
  const start = opts.start ?? 0;
  const count = opts.count ?? set.count - start;
  const batchSize = opts.batchSize ?? 64;
  checkBatchSize(batchSize);
  if (pre.height % patch !== 0 || pre.width % patch !== 0) {
    throw new FfmergeError('SHAPE_MISMATCH', `images of ${pre.width}x${pre.height} do not split into ${patch}x${patch} patches`);
  }
  const seq = 1 + (pre.height / patch) * (pre.width / patch);
  const out: FeatureBatch[] = [];
  for (let i = 0; i < count; i += batchSize) {
    const n = Math.min(batchSize, count - i);
    const labels = set.labels?.slice(start + i, start + i + n);
    out.push({ input: { batch: n, seq, pixels: imagesToTensor(set, pre, start + i, n) }, featureRows: n * seq, ...(labels ? { labels } : {}) });
  }
  return out;
}

export interface TranslationBatchOptions {
  decoderStartTokenId: number;
  padTokenId: number;
  /**
   * Tokens kept per side, special tokens included; each batch counts the pairs cut (`truncated`). Default: no
   * cut, so a side longer than the model's positions fails in the forward pass (SEQUENCE_TOO_LONG). Pass the
   * model's positions to cut such sentences instead.
   */
  maxSourceTokens?: number | undefined;
  maxTargetTokens?: number | undefined;
  batchSize?: number | undefined;
}

/** Teacher-forcing batches of sentence pairs for an encoder–decoder model (input order kept). */
export function translationBatches(
  pairs: readonly { source: string; target: string }[],
  tokenizer: Tokenizer,
  opts: TranslationBatchOptions,
): FeatureBatch[] {
  const batchSize = opts.batchSize ?? 32;
  checkBatchSize(batchSize);
  if (pairs.length === 0) throw new FfmergeError('INVALID_DATA', 'the parallel corpus is empty');
  const out: FeatureBatch[] = [];
  for (let i = 0; i < pairs.length; i += batchSize) {
    const { src, tgt, encoder, truncated } = encodePairs(tokenizer, pairs.slice(i, i + batchSize), opts.padTokenId, opts.maxSourceTokens, opts.maxTargetTokens);
    const B = tgt.length;
    const T = Math.max(1, ...tgt.map((t) => t.length));
    const ids = new Int32Array(B * T).fill(opts.padTokenId);
    const featureMask = new Uint8Array(B * T);
    tgt.forEach((t, b) => {
      ids[b * T] = opts.decoderStartTokenId;
      // as shift_tokens_right: the target shifted one right (a shorter target's eos lands on a padding position)
      ids.set(t.slice(0, T - 1), b * T + 1);
      featureMask.fill(1, b * T, b * T + t.length);
    });
    out.push({
      input: { ids, batch: B, seq: T, ...encoder },
      featureMask,
      featureRows: tgt.reduce((n, t) => n + t.length, 0),
      encoderFeatureRows: src.reduce((n, s) => n + s.length, 0),
      truncated,
    });
  }
  return out;
}
