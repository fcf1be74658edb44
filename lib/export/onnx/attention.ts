/**
 * Multi-head (and grouped-query) self-attention as standard ONNX ops, with an optional KV cache in Hugging
 * Face Optimum's layout (past/present [batch, kv_heads, length, head_dim]), rotary positions in the
 * rotate-half layout transformers uses, and a boolean "may attend" mask.
 */
import type { Graph } from './graph';
import { DT } from './graph';
import { rmsNorm } from './ops';

/** Dynamic batch and sequence sizes, from Shape(token ids or patches), and the shapes built from them. */
export class SeqShape {
  private readonly cache = new Map<string, string>();

  constructor(
    private readonly g: Graph,
    /** int64 [2]: batch, sequence length. */
    readonly bs: string,
  ) {}

  /** int64 [batch, seq, ...tail] for Reshape. */
  with(...tail: number[]): string {
    const key = tail.join(',');
    if (!this.cache.has(key)) this.cache.set(key, this.g.op('Concat', [this.bs, this.g.i64(tail)], { axis: 0 }, 'shape'));
    return this.cache.get(key)!;
  }

  /** int64 scalar: dimension i (0 = batch, 1 = seq). */
  dim(i: 0 | 1): string {
    const key = `dim${i}`;
    if (!this.cache.has(key)) this.cache.set(key, this.g.op('Gather', [this.bs, this.g.i64([i], [])], { axis: 0 }, i === 0 ? 'batch' : 'seq'));
    return this.cache.get(key)!;
  }
}

/** A boolean mask, broadcastable to [batch, 1, seq, total]; its 5-D form for grouped-query attention is made once. */
export class AttentionMask {
  private five?: string;
  constructor(readonly value: string) {}
  grouped(g: Graph): string {
    this.five ??= g.op('Unsqueeze', [this.value, g.i64([1])], undefined, 'mask5');
    return this.five;
  }
}

export interface AttentionDims {
  nHeads: number;
  nKvHeads: number;
  headDim: number;
}

export interface AttentionArgs {
  /** Projections, 2-D: q [N, nHeads·headDim], k/v [N, nKvHeads·headDim] (N = batch·seq). */
  q: string;
  k: string;
  v: string;
  /** Cached keys/values of earlier positions, [batch, nKvHeads, past, headDim]. */
  past?: { key: string; value: string } | undefined;
  /** Omitted: every position attends to every position. */
  mask?: AttentionMask | undefined;
  /** Rotary tables [batch, 1, seq, headDim] (cos and sin, halves repeated). */
  rope?: { cos: string; sin: string } | undefined;
  /** Qwen3: each head of q and of k RMS-normalised before the rotation (q, k: the [headDim] weights' values). */
  qkNorm?: { q: string; k: string; eps: number } | undefined;
}

/** [batch, heads, seq, headDim] rotated: x·cos + rotate_half(x)·sin, rotate_half(x) = [−x₂, x₁]. */
function applyRope(g: Graph, x: string, headDim: number, rope: { cos: string; sin: string }): string {
  const half = headDim / 2;
  const [x1, x2] = g.node('Split', [x, g.i64([half, half])], { outputs: 2, attrs: { axis: -1 }, hint: 'half' }) as [string, string];
  const rotated = g.op('Concat', [g.op('Neg', [x2]), x1], { axis: -1 });
  return g.op('Add', [g.op('Mul', [x, rope.cos]), g.op('Mul', [rotated, rope.sin])], undefined, 'rope');
}

/** [N, h·Dh] → [batch, h, seq, Dh] (N = batch·seq, the sizes `shape` gives). */
export function toHeads(g: Graph, shape: SeqShape, x: string, h: number, Dh: number): string {
  return g.op('Transpose', [g.op('Reshape', [x, shape.with(h, Dh)])], { perm: [0, 2, 1, 3] }, 'heads');
}

/** → out [N, nHeads·headDim] and the keys/values to cache (past + new), [batch, nKvHeads, total, headDim]. */
export function attention(g: Graph, shape: SeqShape, d: AttentionDims, a: AttentionArgs): { out: string; key: string; value: string } {
  const { nHeads: H, nKvHeads: Hkv, headDim: Dh } = d;
  let q = toHeads(g, shape, a.q, H, Dh);
  let k = toHeads(g, shape, a.k, Hkv, Dh);
  const v0 = toHeads(g, shape, a.v, Hkv, Dh);
  if (a.qkNorm) {
    q = rmsNorm(g, q, a.qkNorm.q, a.qkNorm.eps);
    k = rmsNorm(g, k, a.qkNorm.k, a.qkNorm.eps);
  }
  if (a.rope) {
    q = applyRope(g, q, Dh, a.rope);
    k = applyRope(g, k, Dh, a.rope);
  }
  const key = a.past ? g.op('Concat', [a.past.key, k], { axis: 2 }, 'key') : k;
  const value = a.past ? g.op('Concat', [a.past.value, v0], { axis: 2 }, 'value') : v0;
  return { out: attend(g, d, q, key, value, a.mask), key, value };
}

/**
 * Scaled dot-product attention of query heads q [batch, nHeads, seq, Dh] over keys/values
 * [batch, nKvHeads, total, Dh] (self-attention's cache, or cross-attention's encoder states) → [N, nHeads·Dh].
 */
export function attend(g: Graph, d: AttentionDims, q: string, key: string, value: string, m?: AttentionMask): string {
  const { nHeads: H, nKvHeads: Hkv, headDim: Dh } = d;
  const groups = H / Hkv;
  let qs = q;
  let ks = key;
  let vs = value;
  let mask = m?.value;
  if (groups > 1) {
    // Query head h uses kv head ⌊h / groups⌋ (transformers' repeat_kv): view the queries as
    // [batch, kv_heads, groups, seq, Dh] and let MatMul broadcast each kv head over its group, so the
    // cache is never repeated in memory.
    qs = g.op('Reshape', [q, g.i64([0, Hkv, groups, -1, Dh])]);
    ks = g.op('Unsqueeze', [key, g.i64([2])]);
    vs = g.op('Unsqueeze', [value, g.i64([2])]);
    mask = m?.grouped(g);
  }
  const kT = g.op('Transpose', [ks], { perm: groups > 1 ? [0, 1, 2, 4, 3] : [0, 1, 3, 2] });
  let scores = g.op('Mul', [g.op('MatMul', [qs, kT]), g.f32([1 / Math.sqrt(Dh)], [])], undefined, 'scores');
  // Masked scores get the lowest float (not −inf), so a row with nothing to attend to stays finite.
  if (mask) scores = g.op('Where', [mask, scores, g.f32([-3.4028234663852886e38], [])], undefined, 'masked');
  let ctx = g.op('MatMul', [g.op('Softmax', [scores], { axis: -1 }), vs], undefined, 'ctx');
  if (groups > 1) ctx = g.op('Reshape', [ctx, g.i64([0, H, -1, Dh])]);
  return g.op('Reshape', [g.op('Transpose', [ctx], { perm: [0, 2, 1, 3] }), g.i64([-1, H * Dh])], undefined, 'attn');
}

/** Keys whose padding mask (int64 [batch, total], 1 = real) is 0 are never attended: bool [batch, 1, 1, total]. */
export function paddingMask(g: Graph, attentionMask: string): AttentionMask {
  return new AttentionMask(g.op('Unsqueeze', [g.op('Cast', [attentionMask], { to: DT.BOOL }), g.i64([1, 2])], undefined, 'keymask'));
}

/**
 * Which cached positions each new query may see: causal over absolute indices (the new queries are the last
 * `seq` of `total`), keys whose attention_mask is 0 never, and with a sliding window w only keys less than
 * w positions back. → bool [batch, 1, seq, total].
 */
export function causalMask(g: Graph, shape: SeqShape, attentionMask: string, window = 0): AttentionMask {
  const total = g.op('Gather', [g.op('Shape', [attentionMask]), g.i64([1], [])], { axis: 0 }, 'total');
  const past = g.op('Sub', [total, shape.dim(1)], undefined, 'past_len');
  const one = g.i64([1], []);
  const kpos = g.op('Range', [g.i64([0], []), total, one], undefined, 'kpos'); // [total]
  const qpos = g.op('Unsqueeze', [g.op('Range', [past, total, one], undefined, 'qpos'), g.i64([1])]); // [seq, 1]
  let allowed = g.op('LessOrEqual', [kpos, qpos], undefined, 'causal'); // [seq, total]
  if (window > 0) allowed = g.op('And', [allowed, g.op('Less', [g.op('Sub', [qpos, kpos]), g.i64([window], [])])], undefined, 'window');
  return new AttentionMask(g.op('And', [allowed, paddingMask(g, attentionMask).value], undefined, 'mask'));
}
