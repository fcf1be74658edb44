/**
 * Sequences sampled from a decoder LM itself (ancestral sampling at a temperature, seeded): calibration data
 * that follows the model's own distribution when no text of it is at hand, or more of it than the text gives
 * (self-generated calibration, as in LLM-QAT's data-free distillation). Each step reruns the batch's whole
 * prefix (no KV cache), so the cost grows with length²: meant for calibration budgets of tens of thousands of
 * tokens, not for serving.
 */
import { FfmergeError, showValue } from '../errors';
import { throwIfAborted, type JobOptions } from '../native/job';
import type { Model } from '../model/model';

export interface SampleOptions extends JobOptions {
  /** Sequences to sample. */
  rows: number;
  /** Tokens per sequence, the start token included. */
  length: number;
  /** Softmax temperature (default 1: the model's own distribution). */
  temperature?: number;
  /** Seed of the sampler (default 1): the same seed gives the same rows. */
  seed?: number;
  /** First token of every row (default: config bos_token_id). */
  startToken: number;
}

/** Logits held at once (floats): rows are sampled in groups so one step's logits stay under ~128 MB. */
const LOGITS_BUDGET = 32 * 1024 * 1024;

/** A small seeded generator (mulberry32): each call of sampleRows owns its own, no shared state. */
function generator(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** One token drawn from softmax(logits / temperature). */
function draw(logits: Float32Array, temperature: number, u: number, p: Float64Array): number {
  let max = -Infinity;
  for (let j = 0; j < logits.length; j++) if (logits[j]! > max) max = logits[j]!;
  let z = 0;
  for (let j = 0; j < logits.length; j++) z += p[j] = Math.exp((logits[j]! - max) / temperature);
  let left = u * z;
  for (let j = 0; j < logits.length - 1; j++) if ((left -= p[j]!) <= 0) return j;
  return logits.length - 1;
}

/** `rows` sequences of `length` tokens sampled from the model, each starting with startToken. */
export async function sampleRows(model: Model, o: SampleOptions): Promise<Int32Array[]> {
  const V = model.spec.vocab;
  const temperature = o.temperature ?? 1;
  if (typeof temperature !== 'number' || !(temperature > 0) || !Number.isFinite(temperature)) throw new FfmergeError('INVALID_ARGUMENT', `the sampling temperature must be a positive number (got ${showValue(temperature)})`);
  if (!Number.isInteger(o.rows) || o.rows < 1 || !Number.isInteger(o.length) || o.length < 2) {
    throw new FfmergeError('INVALID_ARGUMENT', `sampling needs at least one row of at least 2 tokens (got ${showValue(o.rows)} × ${showValue(o.length)})`);
  }
  if (o.length > model.spec.maxPositions) throw new FfmergeError('INVALID_ARGUMENT', `sampled rows of ${o.length} tokens exceed the model's ${model.spec.maxPositions} positions`);
  if (!Number.isInteger(o.startToken) || o.startToken < 0 || o.startToken >= V) throw new FfmergeError('INVALID_ARGUMENT', `the start token ${o.startToken} is not in the vocabulary (${V} tokens)`);
  const random = generator(o.seed ?? 1);
  const group = Math.max(1, Math.min(o.rows, Math.floor(LOGITS_BUDGET / (o.length * V))));
  const p = new Float64Array(V);
  const out: Int32Array[] = [];
  const total = o.rows * (o.length - 1);
  for (let first = 0; first < o.rows; first += group) {
    const n = Math.min(group, o.rows - first);
    const ids = new Int32Array(n * o.length);
    for (let b = 0; b < n; b++) ids[b * o.length] = o.startToken;
    for (let s = 1; s < o.length; s++) {
      throwIfAborted(o.signal);
      // the prefix [0, s) of every row, packed [n, s]
      const prefix = new Int32Array(n * s);
      for (let b = 0; b < n; b++) prefix.set(ids.subarray(b * o.length, b * o.length + s), b * s);
      const r = await model.forward({ ids: prefix, batch: n, seq: s }, { output: 'logits', ...(o.signal ? { signal: o.signal } : {}) });
      for (let b = 0; b < n; b++) ids[b * o.length + s] = draw(r.logits.subarray((b * s + s - 1) * V, (b * s + s) * V), temperature, random(), p);
      o.onProgress?.({ phase: 'sample', done: first * (o.length - 1) + n * s, total });
    }
    for (let b = 0; b < n; b++) out.push(ids.slice(b * o.length, (b + 1) * o.length));
  }
  return out;
}
