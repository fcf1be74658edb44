/**
 * The graphs of an encoder–decoder translation model (Marian), named as Hugging Face Optimum names its
 * text2text-generation exports, so onnxruntime and transformers.js load them as they load Optimum's:
 *
 *   encoder_model.onnx:  input_ids, attention_mask [batch, enc_seq] → last_hidden_state [batch, enc_seq, d]
 *   decoder_model_merged.onnx (the one file transformers.js runs for every decoding step):
 *     input_ids [batch, seq], encoder_attention_mask [batch, enc_seq], encoder_hidden_states [batch, enc_seq, d],
 *     past_key_values.N.decoder.key / .value [batch, heads, past, Dh],
 *     past_key_values.N.encoder.key / .value [batch, heads, enc_seq, Dh], use_cache_branch bool [1]
 *     → logits [batch, seq, vocab], present.N.decoder.* [batch, heads, past + seq, Dh], present.N.encoder.*
 *
 * The first step passes past tensors of length 0 and use_cache_branch = false (transformers.js does): the
 * cross-attention keys/values are computed from encoder_hidden_states; later steps pass use_cache_branch =
 * true and the cached ones are used as they are (present.N.encoder.* is then the past passed through).
 * Optimum's merged file holds two whole decoders, one per branch; here only that choice is an If, so each
 * weight is one initializer and the self-attention cache needs no branch (a length-0 past concatenates).
 */
import { FfmergeError } from '../../errors';
import type { StackTensors } from '../../model/architectures';
import type { ModelSpec } from '../../model/spec';
import { SeqShape, causalMask, paddingMask } from './attention';
import { block, crossKeyValues } from './block';
import { DT, type Graph } from './graph';
import { linear, stackContext, weight, type StackContext } from './ops';
import { sinusoidalTable } from './positions';
import type { ExportWeights } from './weights';

const B = 'batch_size';
const S = 'decoder_sequence_length';
const E = 'encoder_sequence_length';
const P = 'past_decoder_sequence_length';
const T = 'past_decoder_sequence_length + 1';

export const ENCODER_FILE = 'encoder_model.onnx';
export const DECODER_MERGED_FILE = 'decoder_model_merged.onnx';

/** Why an encoder–decoder stack pair cannot be exported (undefined = it can). */
export function seq2seqUnsupported(enc: ModelSpec, dec: ModelSpec): string | undefined {
  if (enc.input !== 'tokens' || enc.head !== 'none' || enc.causal || enc.crossAttention) return 'its encoder is not a token encoder';
  if (dec.input !== 'tokens' || dec.head !== 'lm' || !dec.causal || !dec.crossAttention) return 'its decoder is not a causal LM with cross-attention';
  for (const s of [enc, dec]) {
    if (s.positions !== 'sinusoidal') return `${s.positions} positions are not supported (only sinusoidal)`;
    if (s.typeVocab > 0 || s.embedNorm || s.finalNorm) return 'token types, embedding norms and final norms are not supported';
    if (s.nHeads !== s.nKvHeads) return 'grouped-query attention is not supported';
  }
  if (enc.dModel !== dec.dModel) return 'the encoder and decoder widths differ';
  return undefined;
}

/** Token embeddings · embedScale + the sinusoidal rows of `positions` (int64 [seq]) → [N, d]. */
function embed(c: StackContext, t: StackTensors, ids: string, positions: string): string {
  const { g, spec } = c;
  const d = spec.dModel;
  if (!t.tokEmb) throw new FfmergeError('TENSOR_NOT_FOUND', `${spec.family}: the description names no token embedding`);
  let x = g.op('Gather', [weight(c, t.tokEmb, [spec.vocab, d]), ids], { axis: 0 }, 'tok'); // [batch, seq, d]
  if (spec.embedScale !== 1) x = g.op('Mul', [x, g.f32([spec.embedScale], [])]);
  const table = g.f32(Array.from(sinusoidalTable(spec.maxPositions, d)), [spec.maxPositions, d]);
  x = g.op('Add', [x, g.op('Gather', [table, positions], { axis: 0 }, 'pos')]); // + [seq, d], broadcast over the batch
  return g.op('Reshape', [x, g.i64([-1, d])], undefined, 'h');
}

export function buildSeq2SeqEncoder(g: Graph, w: ExportWeights, spec: ModelSpec, t: StackTensors): void {
  const c = stackContext(g, w, spec, t);
  const ids = g.input('input_ids', DT.INT64, [B, E]);
  const attentionMask = g.input('attention_mask', DT.INT64, [B, E]);
  const shape = new SeqShape(g, g.op('Shape', [ids], undefined, 'ids_shape'));
  const positions = g.op('Range', [g.i64([0], []), shape.dim(1), g.i64([1], [])], undefined, 'positions');
  let x = embed(c, t, ids, positions);
  // padded source tokens are never attended to (their own rows are computed and ignored downstream)
  const mask = paddingMask(g, attentionMask);
  for (let l = 0; l < spec.layers; l++) x = block(c, x, t.layer(l), { shape, mask }).x;
  g.output('last_hidden_state', g.op('Reshape', [x, shape.with(spec.dModel)]), DT.FLOAT, [B, E, spec.dModel]);
}

export function buildSeq2SeqDecoderMerged(g: Graph, w: ExportWeights, spec: ModelSpec, t: StackTensors): void {
  const c = stackContext(g, w, spec, t);
  const { dModel: d, vocab: V, nHeads: H, headDim: Dh } = spec;
  const encoderMask = g.input('encoder_attention_mask', DT.INT64, [B, E]);
  const ids = g.input('input_ids', DT.INT64, [B, S]);
  const encoderStates = g.input('encoder_hidden_states', DT.FLOAT, [B, E, d]);
  const past = Array.from({ length: spec.layers }, (_, l) => ({
    key: g.input(`past_key_values.${l}.decoder.key`, DT.FLOAT, [B, H, P, Dh]),
    value: g.input(`past_key_values.${l}.decoder.value`, DT.FLOAT, [B, H, P, Dh]),
  }));
  const pastCross = Array.from({ length: spec.layers }, (_, l) => ({
    key: g.input(`past_key_values.${l}.encoder.key`, DT.FLOAT, [B, H, 'encoder_sequence_length_out', Dh]),
    value: g.input(`past_key_values.${l}.encoder.value`, DT.FLOAT, [B, H, 'encoder_sequence_length_out', Dh]),
  }));
  const useCache = g.input('use_cache_branch', DT.BOOL, [1]);

  const shape = new SeqShape(g, g.op('Shape', [ids], undefined, 'ids_shape'));
  // positions continue after the cached ones: past … past + seq − 1
  const pastLen = g.op('Gather', [g.op('Shape', [past[0]!.key]), g.i64([2], [])], { axis: 0 }, 'past_len');
  const total = g.op('Add', [pastLen, shape.dim(1)], undefined, 'total');
  const positions = g.op('Range', [pastLen, total, g.i64([1], [])], undefined, 'positions');
  let x = embed(c, t, ids, positions);

  // decoder self-attention: causal over past + new positions (Optimum's decoder takes no decoder mask)
  const ones = g.op('Expand', [g.i64([1], [1, 1]), g.op('Concat', [g.op('Unsqueeze', [shape.dim(0), g.i64([0])]), g.op('Unsqueeze', [total, g.i64([0])])], { axis: 0 })], undefined, 'self_mask_ones');
  const selfMask = causalMask(g, shape, ones);
  const encShape = new SeqShape(g, g.op('Slice', [g.op('Shape', [encoderStates]), g.i64([0]), g.i64([2])], undefined, 'enc_bs'));
  const enc2d = g.op('Reshape', [encoderStates, g.i64([-1, d])], undefined, 'enc_h');
  const crossMask = paddingMask(g, encoderMask);

  // Cross-attention keys/values, as Optimum's merged decoder chooses them: the cached ones on the cache
  // branch, else computed from encoder_hidden_states (the first step). Only this choice is branched; the
  // rest of the decoder is one graph for both, so every weight stays one initializer.
  const withPast = g.sub('use_cache_branch_true');
  const first = g.sub('use_cache_branch_false');
  const firstCtx: StackContext = { ...c, g: first };
  for (let l = 0; l < spec.layers; l++) {
    withPast.output(`cached_cross.${l}.key`, pastCross[l]!.key, DT.FLOAT);
    withPast.output(`cached_cross.${l}.value`, pastCross[l]!.value, DT.FLOAT);
    const kv = crossKeyValues(firstCtx, enc2d, encShape, t.layer(l));
    first.output(`new_cross.${l}.key`, kv.key, DT.FLOAT);
    first.output(`new_cross.${l}.value`, kv.value, DT.FLOAT);
  }
  const crossKV = g.node('If', [useCache], { outputs: 2 * spec.layers, attrs: { then_branch: { graph: withPast }, else_branch: { graph: first } }, hint: 'cross_kv' });

  const present: { key: string; value: string; crossKey: string; crossValue: string }[] = [];
  for (let l = 0; l < spec.layers; l++) {
    const cross = { key: crossKV[2 * l]!, value: crossKV[2 * l + 1]! };
    const r = block(c, x, t.layer(l), { shape, mask: selfMask, past: past[l]!, cross: { ...cross, mask: crossMask } });
    x = r.x;
    present.push({ key: r.key, value: r.value, crossKey: cross.key, crossValue: cross.value });
  }
  // tied head: the shared embedding table read by Gemm with transB (no transposed copy), then final_logits_bias
  // (embed, above, has refused a description without a token embedding)
  let logits = t.lmHead ? linear(c, x, t.lmHead, d, V, 'linear') : g.op('Gemm', [x, weight(c, t.tokEmb!, [V, d])], { transB: 1 }, 'lm_head');
  if (t.lmHeadBias) logits = g.op('Add', [logits, weight(c, t.lmHeadBias, t.lmHeadBiasShape ?? [V])]);
  g.output('logits', g.op('Reshape', [logits, shape.with(V)]), DT.FLOAT, [B, S, V]);
  present.forEach((r, l) => {
    g.output(`present.${l}.decoder.key`, r.key, DT.FLOAT, [B, H, T, Dh]);
    g.output(`present.${l}.decoder.value`, r.value, DT.FLOAT, [B, H, T, Dh]);
    g.output(`present.${l}.encoder.key`, r.crossKey, DT.FLOAT, [B, H, E, Dh]);
    g.output(`present.${l}.encoder.value`, r.crossValue, DT.FLOAT, [B, H, E, Dh]);
  });
}
