/**
 * Running an exported encoder–decoder (encoder_model.onnx + decoder_model_merged.onnx) in onnxruntime-node
 * the way transformers.js does: the encoder once, then the merged decoder per step with Optimum's input names,
 * empty past tensors and use_cache_branch = false on the first call, the present tensors fed back after.
 */
import * as ort from 'onnxruntime-node';

export interface Seq2SeqDims {
  layers: number;
  heads: number;
  headDim: number;
  vocab: number;
}

export interface Seq2SeqSessions {
  encoder: ort.InferenceSession;
  decoder: ort.InferenceSession;
}

/** The decoder's cache: past_key_values.N.{decoder,encoder}.{key,value} by name. */
export type Seq2SeqCache = Record<string, ort.Tensor>;

const i64 = (v: ArrayLike<number>, dims: number[]) => new ort.Tensor('int64', BigInt64Array.from(Array.from(v), (x) => BigInt(x)), dims);

/** Source ids [batch, seq] and their mask (1 = real) → encoder_hidden_states [batch, seq, d]. */
export async function runEncoder(s: Seq2SeqSessions, ids: ArrayLike<number>, mask: ArrayLike<number>, batch: number): Promise<ort.Tensor> {
  const seq = ids.length / batch;
  const out = await s.encoder.run({ input_ids: i64(ids, [batch, seq]), attention_mask: i64(mask, [batch, seq]) });
  return out.last_hidden_state!;
}

/** One decoder call on `ids` [batch, seq] after the cached positions → logits [batch, seq, vocab] and the grown cache. */
export async function runDecoder(
  s: Seq2SeqSessions,
  d: Seq2SeqDims,
  enc: { states: ort.Tensor; mask: ArrayLike<number> },
  ids: ArrayLike<number>,
  batch: number,
  cache?: Seq2SeqCache,
): Promise<{ logits: Float32Array; cache: Seq2SeqCache }> {
  const seq = ids.length / batch;
  const encSeq = enc.states.dims[1] as number;
  const feeds: Record<string, ort.Tensor> = {
    input_ids: i64(ids, [batch, seq]),
    encoder_attention_mask: i64(enc.mask, [batch, encSeq]),
    encoder_hidden_states: enc.states,
    use_cache_branch: new ort.Tensor('bool', Uint8Array.from([cache ? 1 : 0]), [1]),
  };
  const empty = () => new ort.Tensor('float32', new Float32Array(0), [batch, d.heads, 0, d.headDim]);
  for (let l = 0; l < d.layers; l++) {
    for (const part of ['decoder', 'encoder']) {
      for (const kv of ['key', 'value']) {
        const name = `past_key_values.${l}.${part}.${kv}`;
        feeds[name] = cache?.[name] ?? empty();
      }
    }
  }
  const out = await s.decoder.run(feeds);
  const next: Seq2SeqCache = {};
  for (const [name, t] of Object.entries(out)) if (name.startsWith('present.')) next[name.replace('present.', 'past_key_values.')] = t;
  return { logits: out.logits!.data as Float32Array, cache: next };
}

export interface GreedyOptions {
  decoderStartTokenId: number;
  eosTokenId: number;
  maxLength: number;
  /** Single tokens never produced (generation_config's one-token bad_words_ids). */
  banned?: number[];
  forcedEosTokenId?: number;
}

/** Greedy decoding of one source sentence with the KV cache → generated ids after the start token, eos included. */
export async function greedyTranslateOrt(s: Seq2SeqSessions, d: Seq2SeqDims, source: ArrayLike<number>, o: GreedyOptions): Promise<number[]> {
  const mask = new Array<number>(source.length).fill(1);
  const enc = { states: await runEncoder(s, source, mask, 1), mask };
  const out: number[] = [];
  let r = await runDecoder(s, d, enc, [o.decoderStartTokenId], 1);
  for (let len = 1; len < o.maxLength; len++) {
    const row = Float32Array.from(r.logits.subarray(r.logits.length - d.vocab));
    for (const b of o.banned ?? []) row[b] = -Infinity;
    let next = 0;
    for (let j = 1; j < d.vocab; j++) if (row[j]! > row[next]!) next = j;
    if (len === o.maxLength - 1 && o.forcedEosTokenId !== undefined) next = o.forcedEosTokenId;
    out.push(next);
    if (next === o.eosTokenId) break;
    r = await runDecoder(s, d, enc, [next], 1, r.cache);
  }
  return out;
}
