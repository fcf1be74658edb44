/**
 * Running an exported decoder LM in onnxruntime-node the way a text-generation runtime does: Optimum's input
 * names, an empty KV cache on the first call, the present tensors fed back as the next call's past.
 */
import * as ort from 'onnxruntime-node';

export interface LmDims {
  layers: number;
  kvHeads: number;
  headDim: number;
  vocab: number;
}

export type Cache = { key: ort.Tensor; value: ort.Tensor }[];

const i64 = (v: number[], dims: number[]) => new ort.Tensor('int64', BigInt64Array.from(v, (x) => BigInt(x)), dims);

/** Runs `ids` (one sequence) after the cached positions; → logits [seq, vocab] and the grown cache. */
export async function runLm(s: ort.InferenceSession, d: LmDims, ids: number[], cache?: Cache): Promise<{ logits: Float32Array; cache: Cache }> {
  const past = cache ? (cache[0]!.key.dims[2] as number) : 0;
  const feeds: Record<string, ort.Tensor> = {
    input_ids: i64(ids, [1, ids.length]),
    attention_mask: i64(new Array<number>(past + ids.length).fill(1), [1, past + ids.length]),
    position_ids: i64(ids.map((_, i) => past + i), [1, ids.length]),
  };
  for (let l = 0; l < d.layers; l++) {
    const empty = () => new ort.Tensor('float32', new Float32Array(0), [1, d.kvHeads, 0, d.headDim]);
    feeds[`past_key_values.${l}.key`] = cache?.[l]!.key ?? empty();
    feeds[`past_key_values.${l}.value`] = cache?.[l]!.value ?? empty();
  }
  const out = await s.run(feeds);
  const next: Cache = Array.from({ length: d.layers }, (_, l) => ({ key: out[`present.${l}.key`]!, value: out[`present.${l}.value`]! }));
  return { logits: out.logits!.data as Float32Array, cache: next };
}

function argmaxLast(logits: Float32Array, vocab: number): number {
  const row = logits.subarray(logits.length - vocab);
  let best = 0;
  for (let j = 1; j < vocab; j++) if (row[j]! > row[best]!) best = j;
  return best;
}

/** Greedy continuation with the KV cache: the prompt once, then one token per call. */
export async function greedyOrt(s: ort.InferenceSession, d: LmDims, prompt: number[], maxNew: number): Promise<number[]> {
  const ids = [...prompt];
  let r = await runLm(s, d, prompt);
  for (let i = 0; i < maxNew; i++) {
    const t = argmaxLast(r.logits, d.vocab);
    ids.push(t);
    if (i + 1 < maxNew) r = await runLm(s, d, [t], r.cache);
  }
  return ids;
}

/** Sum of next-token NLL (nats, float64 log-softmax) over positions 1..n-1 of one sequence, and its count. */
export async function nllOrt(s: ort.InferenceSession, d: LmDims, ids: number[]): Promise<{ sum: number; count: number }> {
  const { logits } = await runLm(s, d, ids);
  let sum = 0;
  for (let t = 0; t + 1 < ids.length; t++) {
    const row = logits.subarray(t * d.vocab, (t + 1) * d.vocab);
    let max = -Infinity;
    for (let j = 0; j < d.vocab; j++) max = Math.max(max, row[j]!);
    let z = 0;
    for (let j = 0; j < d.vocab; j++) z += Math.exp(row[j]! - max);
    sum += max + Math.log(z) - row[ids[t + 1]!]!;
  }
  return { sum, count: ids.length - 1 };
}
