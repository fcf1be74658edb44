/**
 * One transformer block (self-attention, cross-attention for encoder–decoder decoders, FF; pre- or
 * post-norm) on hidden states [N, d], from the layer's tensor names in the architecture description. Shared
 * by every stack the exporter builds.
 */
import { FfmergeError } from '../../errors';
import type { LayerNames } from '../../model/architectures';
import { attend, attention, toHeads, type AttentionMask, type SeqShape } from './attention';
import { feedForward, linear, norm, weight, type StackContext } from './ops';

export interface BlockArgs {
  shape: SeqShape;
  mask?: AttentionMask | undefined;
  rope?: { cos: string; sin: string } | undefined;
  past?: { key: string; value: string } | undefined;
  /** Cross-attention (decoder blocks with `xattn` names): the encoder's keys/values for this layer, [batch, heads, enc_seq, Dh]. */
  cross?: { key: string; value: string; mask?: AttentionMask } | undefined;
}

/** One decoder layer's cross-attention keys/values from the encoder states [N_enc, d]: → [batch, heads, enc_seq, Dh] each. */
export function crossKeyValues(c: StackContext, encoderStates: string, encShape: SeqShape, L: LayerNames): { key: string; value: string } {
  const x = L.xattn;
  if (!x) throw new FfmergeError('TENSOR_NOT_FOUND', `${c.spec.family}: the description names no cross-attention for this layer`);
  const { dModel: d, nKvHeads: Hkv, headDim: Dh } = c.spec;
  const k = linear(c, encoderStates, x.k, d, Hkv * Dh, c.layout, x.kBias);
  const v = linear(c, encoderStates, x.v, d, Hkv * Dh, c.layout, x.vBias);
  return { key: toHeads(c.g, encShape, k, Hkv, Dh), value: toHeads(c.g, encShape, v, Hkv, Dh) };
}

/** → the block's output [N, d] and the keys/values it attended over (for `present.N.*`). */
export function block(c: StackContext, x: string, L: LayerNames, a: BlockArgs): { x: string; key: string; value: string } {
  const { g, spec } = c;
  const d = spec.dModel;
  const qw = spec.nHeads * spec.headDim;
  const kw = spec.nKvHeads * spec.headDim;
  const pre = spec.normPlacement === 'pre';
  const h = pre ? norm(c, x, L.norm1) : x;
  let q: string, k: string, v: string;
  if ('fused' in L.qkv) {
    const fused = linear(c, h, L.qkv.fused, d, qw + 2 * kw, c.layout, L.qkv.fusedBias);
    [q, k, v] = g.node('Split', [fused, g.i64([qw, kw, kw])], { outputs: 3, attrs: { axis: -1 }, hint: 'qkv' }) as [string, string, string];
  } else {
    const lay = c.layout;
    q = linear(c, h, L.qkv.q, d, qw, lay, L.qkv.qBias);
    k = linear(c, h, L.qkv.k, d, kw, lay, L.qkv.kBias);
    v = linear(c, h, L.qkv.v, d, kw, lay, L.qkv.vBias);
  }
  const att = attention(g, a.shape, spec, {
    q,
    k,
    v,
    past: a.past,
    mask: a.mask,
    rope: a.rope,
    qkNorm: spec.qkNorm && L.qkNorm ? { q: weight(c, L.qkNorm.q, [spec.headDim]), k: weight(c, L.qkNorm.k, [spec.headDim]), eps: spec.normEps } : undefined,
  });
  const o = linear(c, att.out, L.o, qw, d, c.layout, L.oBias);
  let y = g.op('Add', [x, o], undefined, 'resid');
  if (!pre) y = norm(c, y, L.norm1);
  if (a.cross) {
    const X = L.xattn;
    if (!X) throw new FfmergeError('TENSOR_NOT_FOUND', `${spec.family}: the description names no cross-attention for this layer`);
    const hq = pre ? norm(c, y, X.norm) : y;
    const cq = toHeads(g, a.shape, linear(c, hq, X.q, d, qw, c.layout, X.qBias), spec.nHeads, spec.headDim);
    const co = linear(c, attend(g, spec, cq, a.cross.key, a.cross.value, a.cross.mask), X.o, qw, d, c.layout, X.oBias);
    y = g.op('Add', [y, co], undefined, 'resid');
    if (!pre) y = norm(c, y, X.norm);
  }
  const f = feedForward(c, pre ? norm(c, y, L.norm2) : y, L.ff);
  let out = g.op('Add', [y, f], undefined, 'resid');
  if (!pre) out = norm(c, out, L.norm2);
  return { x: out, key: att.key, value: att.value };
}

