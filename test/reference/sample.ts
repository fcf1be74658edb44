/**
 * The oracle of the native sampler (native/core/model/sample.h): the same draws, made the plain way, each step
 * rerunning every row's whole prefix through model.forward (no KV cache) and drawing in double precision from
 * a seeded mulberry32. Groups of rows, steps and rows within a step come in the native order, so with equal
 * logits both give the same rows.
 */
import { throwIfAborted } from '../../lib/native/job';
import type { Model } from '../../lib/model/model';
import { samplingGroup, type SampleOptions } from '../../lib/eval/sample';
import { mulberry32 } from './random';

/** One token drawn from softmax(logits / temperature) for the uniform u (p: scratch of the vocabulary's size). */
export function drawToken(logits: ArrayLike<number>, temperature: number, u: number, p: Float64Array): number {
  let max = -Infinity;
  for (let j = 0; j < logits.length; j++) if (logits[j]! > max) max = logits[j]!;
  let z = 0;
  for (let j = 0; j < logits.length; j++) z += p[j] = Math.exp((logits[j]! - max) / temperature);
  let left = u * z;
  for (let j = 0; j < logits.length - 1; j++) if ((left -= p[j]!) <= 0) return j;
  return logits.length - 1;
}

/** sampleRows the plain way: `rows` sequences of `length` tokens, each starting with startToken. */
export async function sampleRowsReference(model: Model, o: SampleOptions): Promise<Int32Array[]> {
  const group = samplingGroup(model, o);
  const V = model.spec.vocab;
  const temperature = o.temperature ?? 1;
  const random = mulberry32(o.seed ?? 1);
  const p = new Float64Array(V);
  const out: Int32Array[] = [];
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
      for (let b = 0; b < n; b++) ids[b * o.length + s] = drawToken(r.logits.subarray((b * s + s - 1) * V, (b * s + s) * V), temperature, random(), p);
    }
    for (let b = 0; b < n; b++) out.push(ids.slice(b * o.length, (b + 1) * o.length));
  }
  return out;
}
