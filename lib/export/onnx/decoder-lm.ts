/**
 * The graph of a decoder-only language model (GPT-2, LLaMA, Qwen2, Qwen3, Mistral) with a KV cache, named as
 * Hugging Face Optimum names its text-generation exports, so runtimes that load those load this:
 *   input_ids [batch, seq], attention_mask [batch, past + seq], position_ids [batch, seq],
 *   past_key_values.N.key / .value [batch, kv_heads, past, head_dim]
 *   → logits [batch, seq, vocab], present.N.key / .value [batch, kv_heads, past + seq, head_dim].
 * The first call passes past tensors of length 0. Everything comes from the architecture description
 * (spec + tensor names) that loadModel uses.
 */
import { FfmergeError } from '../../errors';
import type { StackTensors } from '../../model/architectures';
import type { ModelSpec } from '../../model/spec';
import { AttentionMask, SeqShape, causalMask } from './attention';
import { block } from './block';
import { DT, type Graph } from './graph';
import { linear, norm, stackContext, weight } from './ops';
import type { ExportWeights } from './weights';
import { ropeInvFreq } from '../../model/rope';

const B = 'batch_size';
const S = 'sequence_length';
const P = 'past_sequence_length';
const T = 'total_sequence_length';

/** Why a decoder-only spec cannot be exported (undefined = it can). */
function decoderLmUnsupported(spec: ModelSpec): string | undefined {
  if (spec.input !== 'tokens' || spec.head !== 'lm' || spec.crossAttention) return 'it is not a decoder-only language model';
  if (!spec.causal) return 'its attention is not causal';
  if (spec.positions !== 'learned' && spec.positions !== 'rotary' && spec.positions !== 'none') return `${spec.positions} positions are not supported`;
  if (spec.positions === 'rotary' && spec.ropeDim !== 0 && spec.ropeDim !== spec.headDim) return 'partial rotary embeddings are not supported';
  if (spec.typeVocab > 0 || spec.embedNorm) return 'token-type embeddings and embedding norms are not supported in decoders';
  if (spec.nHeads % spec.nKvHeads !== 0) return 'the query heads are not a multiple of the key/value heads';
  return undefined;
}


export function buildDecoderLm(g: Graph, w: ExportWeights, spec: ModelSpec, t: StackTensors): void {
  const why = decoderLmUnsupported(spec);
  if (why) throw new FfmergeError('UNSUPPORTED_ARCHITECTURE', `ONNX export of ${spec.family}: ${why}`);
  const c = stackContext(g, w, spec, t);
  const { dModel: d, vocab: V, nKvHeads: Hkv, headDim: Dh } = spec;

  const ids = g.input('input_ids', DT.INT64, [B, S]);
  const attentionMask = g.input('attention_mask', DT.INT64, [B, T]);
  const positionIds = g.input('position_ids', DT.INT64, [B, S]);
  const past = Array.from({ length: spec.layers }, (_, l) => ({
    key: g.input(`past_key_values.${l}.key`, DT.FLOAT, [B, Hkv, P, Dh]),
    value: g.input(`past_key_values.${l}.value`, DT.FLOAT, [B, Hkv, P, Dh]),
  }));
  const shape = new SeqShape(g, g.op('Shape', [ids], undefined, 'ids_shape'));

  if (!t.tokEmb) throw new FfmergeError('TENSOR_NOT_FOUND', `${spec.family}: the description names no token embedding`);
  let x = g.op('Gather', [weight(c, t.tokEmb, [V, d]), ids], { axis: 0 }, 'tok');
  if (spec.embedScale !== 1) x = g.op('Mul', [x, g.f32([spec.embedScale], [])]);
  if (spec.positions === 'learned') {
    if (!t.posEmb) throw new FfmergeError('TENSOR_NOT_FOUND', `${spec.family}: learned positions need a position table`);
    x = g.op('Add', [x, g.op('Gather', [weight(c, t.posEmb, t.posEmbShape ?? [spec.maxPositions, d]), positionIds], { axis: 0 }, 'pos')]);
  }
  x = g.op('Reshape', [x, g.i64([-1, d])], undefined, 'h');

  let rope: { cos: string; sin: string } | undefined;
  if (spec.positions === 'rotary') {
    // angles [batch, seq, Dh/2] = position · inv_freq (float32 product, as torch), halves repeated → [batch, 1, seq, Dh]
    const pos = g.op('Unsqueeze', [g.op('Cast', [positionIds], { to: DT.FLOAT }), g.i64([2])]);
    const ang = g.op('Mul', [pos, g.f32(ropeInvFreq(spec.ropeTheta, Dh, spec.ropeScaling))], undefined, 'angles');
    const table = (op: 'Cos' | 'Sin') => {
      const half = g.op(op, [ang]);
      return g.op('Unsqueeze', [g.op('Concat', [half, half], { axis: -1 }), g.i64([1])], undefined, op.toLowerCase());
    };
    rope = { cos: table('Cos'), sin: table('Sin') };
  }

  // one mask per distinct attention window (full attention is window 0)
  const masks = new Map<number, AttentionMask>();
  const maskFor = (win: number) => {
    let m = masks.get(win);
    if (!m) masks.set(win, (m = causalMask(g, shape, attentionMask, win)));
    return m;
  };

  const present: { key: string; value: string }[] = [];
  for (let l = 0; l < spec.layers; l++) {
    const r = block(c, x, t.layer(l), { shape, mask: maskFor(spec.slidingWindow[l] ?? 0), past: past[l]!, rope });
    x = r.x;
    present.push(r);
  }
  if (spec.finalNorm) {
    if (!t.finalNorm) throw new FfmergeError('TENSOR_NOT_FOUND', `${spec.family}: the description names no final norm`);
    x = norm(c, x, t.finalNorm);
  }
  // Tied head: the embedding table itself, [vocab, d], read by Gemm with transB (no transposed copy).
  let logits: string;
  if (t.lmHead) {
    logits = linear(c, x, t.lmHead, d, V, 'linear'); // nn.Linear in every family (GPT-2's Conv1D layout included)
  } else {
    logits = g.op('Gemm', [x, weight(c, t.tokEmb, [V, d])], { transB: 1 }, 'lm_head');
  }
  if (t.lmHeadBias) logits = g.op('Add', [logits, weight(c, t.lmHeadBias, t.lmHeadBiasShape ?? [V])]);
  g.output('logits', g.op('Reshape', [logits, shape.with(V)]), DT.FLOAT, [B, S, V]);
  present.forEach((r, l) => {
    g.output(`present.${l}.key`, r.key, DT.FLOAT, [B, Hkv, T, Dh]);
    g.output(`present.${l}.value`, r.value, DT.FLOAT, [B, Hkv, T, Dh]);
  });
}
