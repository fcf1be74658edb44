/**
 * One transformer block (self-attention + FF, pre- or post-norm) on hidden states [N, d], from the layer's
 * tensor names in the architecture description. Shared by every stack the exporter builds.
 */
import type { LayerNames } from '../../model/architectures';
import { attention, type AttentionMask, type SeqShape } from './attention';
import { feedForward, linear, norm, type StackContext } from './ops';

export interface BlockArgs {
  shape: SeqShape;
  mask?: AttentionMask;
  rope?: { cos: string; sin: string };
  past?: { key: string; value: string };
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
    ...(a.past ? { past: a.past } : {}),
    ...(a.mask ? { mask: a.mask } : {}),
    ...(a.rope ? { rope: a.rope } : {}),
  });
  const o = linear(c, att.out, L.o, qw, d, c.layout, L.oBias);
  let y = g.op('Add', [x, o], undefined, 'resid');
  if (!pre) y = norm(c, y, L.norm1);
  const f = feedForward(c, pre ? norm(c, y, L.norm2) : y, L.ff);
  let out = g.op('Add', [y, f], undefined, 'resid');
  if (!pre) out = norm(c, out, L.norm2);
  return { x: out, key: att.key, value: att.value };
}

