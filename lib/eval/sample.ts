/**
 * Sequences sampled from a decoder LM itself (ancestral sampling at a temperature, seeded): calibration data
 * that follows the model's own distribution when no text of it is at hand, or more of it than the text gives
 * (self-generated calibration, as in LLM-QAT's data-free distillation). One native job on a KV cache
 * (native/core/model/sample.h): each step runs only the new position. test/reference/sample.ts is the oracle,
 * which reruns every prefix with the same draws.
 */
import { FfmergeError, showValue } from '../errors';
import { runNativeJob, type JobOptions } from '../native/job';
import { modelAddon } from '../native/model';
import type { Model } from '../model/model';

export interface SampleOptions extends JobOptions {
  /** Sequences to sample. */
  rows: number;
  /** Tokens per sequence, the start token included. */
  length: number;
  /** Softmax temperature (default 1: the model's own distribution). */
  temperature?: number | undefined;
  /** Seed of the sampler (default 1): the same seed gives the same rows. */
  seed?: number | undefined;
  /** First token of every row (default: config bos_token_id). */
  startToken: number;
}

/**
 * Rows sampled together: the oracle's logits for a group stay under ~128 MB (and the same grouping gives the
 * same sequence of draws).
 */
const LOGITS_BUDGET = 32 * 1024 * 1024;

/** Checks the options and says how many rows are sampled together (the oracle groups them the same way). */
export function samplingGroup(model: Model, o: SampleOptions): number {
  const V = model.spec.vocab;
  const temperature = o.temperature ?? 1;
  if (typeof temperature !== 'number' || !(temperature > 0) || !Number.isFinite(temperature)) throw new FfmergeError('INVALID_ARGUMENT', `the sampling temperature must be a positive number (got ${showValue(temperature)})`);
  if (!Number.isInteger(o.rows) || o.rows < 1 || !Number.isInteger(o.length) || o.length < 2) {
    throw new FfmergeError('INVALID_ARGUMENT', `sampling needs at least one row of at least 2 tokens (got ${showValue(o.rows)} × ${showValue(o.length)})`);
  }
  if (o.length > model.spec.maxPositions) throw new FfmergeError('INVALID_ARGUMENT', `sampled rows of ${o.length} tokens exceed the model's ${model.spec.maxPositions} positions`);
  if (!Number.isInteger(o.startToken) || o.startToken < 0 || o.startToken >= V) throw new FfmergeError('INVALID_ARGUMENT', `the start token ${o.startToken} is not in the vocabulary (${V} tokens)`);
  if (o.seed !== undefined && !Number.isInteger(o.seed)) throw new FfmergeError('INVALID_ARGUMENT', `the sampling seed must be an integer (got ${showValue(o.seed)})`);
  return Math.max(1, Math.min(o.rows, Math.floor(LOGITS_BUDGET / (o.length * V))));
}

/** `rows` sequences of `length` tokens sampled from the model, each starting with startToken. */
export async function sampleRows(model: Model, o: SampleOptions): Promise<Int32Array[]> {
  const group = samplingGroup(model, o);
  const args = { rows: o.rows, length: o.length, start: o.startToken, temperature: o.temperature ?? 1, seed: (o.seed ?? 1) >>> 0, group };
  const handle = model.nativeHandle();
  const ids = await runNativeJob('sample', (onProgress) => modelAddon().modelSample(handle, args, onProgress), {
    ...(o.signal ? { signal: o.signal } : {}),
    ...(o.onProgress ? { onProgress: o.onProgress } : {}),
  });
  return Array.from({ length: o.rows }, (_, r) => ids.slice(r * o.length, (r + 1) * o.length));
}
