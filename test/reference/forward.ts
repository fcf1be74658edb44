/**
 * Plain-TS transformer forward over the same canonical tensors the native model is built from (slot names
 * of native/core/model/weights.h), in float64. Slow and simple on purpose: the oracle for native forward
 * tests on synthetic models (biases, untied heads, GQA, post-norm) that the fixtures do not cover.
 */
import type { ModelSpec } from '../../lib/model/spec';
import { ropeInvFreq } from '../../lib/model/rope';

/** Float64Array tensors are read as they are (finite differences of the loss in float64: test/reference/loss.ts). */
type Vec = Float32Array | Float64Array;
type Tensors = Record<string, Vec>;

/** y[r, o] = x[r, :] · w[o, :] + b[o] (w in Linear layout [out, in]). */
export function linearRef(x: Float64Array, rows: number, inDim: number, w: Vec, b: Vec | undefined, out: number): Float64Array {
  const y = new Float64Array(rows * out);
  for (let r = 0; r < rows; r++) {
    for (let j = 0; j < out; j++) {
      let acc = b ? b[j]! : 0;
      for (let k = 0; k < inDim; k++) acc += x[r * inDim + k]! * w[j * inDim + k]!;
      y[r * out + j] = acc;
    }
  }
  return y;
}

function norm(spec: ModelSpec, x: Float64Array, rows: number, w: Vec | undefined, b: Vec | undefined): Float64Array {
  const d = spec.dModel;
  const y = new Float64Array(x.length);
  for (let r = 0; r < rows; r++) {
    const row = x.subarray(r * d, (r + 1) * d);
    let mean = 0;
    if (spec.norm === 'layernorm') mean = row.reduce((s, v) => s + v, 0) / d;
    let ss = 0;
    for (const v of row) ss += (v - mean) ** 2;
    const inv = 1 / Math.sqrt(ss / d + spec.normEps);
    for (let i = 0; i < d; i++) y[r * d + i] = (row[i]! - mean) * inv * (w ? w[i]! : 1) + (b ? b[i]! : 0);
  }
  return y;
}

export function activationRef(kind: ModelSpec['activation'], x: number): number {
  switch (kind) {
    case 'gelu_new':
      return 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3)));
    case 'gelu':
      return 0.5 * x * (1 + erf(x / Math.SQRT2));
    case 'silu':
      return x / (1 + Math.exp(-x));
    case 'relu':
      return Math.max(0, x);
  }
}

function erf(x: number): number {
  // Taylor series (converges for all x; fine for the |x| < 6 of test activations), else ±1.
  if (Math.abs(x) > 6) return Math.sign(x);
  let sum = x;
  let term = x;
  for (let n = 1; n < 200; n++) {
    term *= (-x * x) / n;
    sum += term / (2 * n + 1);
  }
  return (2 / Math.sqrt(Math.PI)) * sum;
}

export interface RefForwardResult {
  logits: Float64Array;
  /** Per layer, the FF pre-activation [batch·seq, dFF]. */
  preact: Float64Array[];
}

/** Logits [batch·seq, vocab] of ids [batch, seq] (causal; attentionMask marks padding keys). */
export function referenceForward(
  spec: ModelSpec,
  t: Tensors,
  ids: Int32Array,
  batch: number,
  seq: number,
  attentionMask?: Uint8Array,
): RefForwardResult {
  const d = spec.dModel;
  const R = batch * seq;
  const x: Float64Array = new Float64Array(R * d);
  for (let r = 0; r < R; r++) {
    for (let i = 0; i < d; i++) {
      x[r * d + i] = t.tok_emb![ids[r]! * d + i]! * spec.embedScale + (spec.positions === 'learned' ? t.pos_emb![(r % seq) * d + i]! : 0);
    }
  }
  const { hidden, preact } = referenceStack(spec, t, x, batch, seq, attentionMask);
  const logits = linearRef(hidden, R, d, t.lm_head_w ?? t.tok_emb!, t.lm_head_b, spec.vocab);
  return { logits, preact };
}

/**
 * Image classifier (ViT) logits [batch, numLabels] of preprocessed images [batch, C, H, W]: patch vectors in
 * the conv weight's (channel, ky, kx) order through patch_w, CLS first, learned positions, the stack, the
 * classifier on the CLS position.
 */
export function referenceImageLogits(spec: ModelSpec, t: Tensors, pixels: Float32Array, batch: number): Float64Array {
  const d = spec.dModel;
  const p = spec.patch;
  const C = spec.channels;
  const gw = spec.imageW / p;
  const P = (spec.imageH / p) * gw;
  const seq = 1 + P;
  const pd = C * p * p;
  const x = new Float64Array(batch * seq * d);
  for (let b = 0; b < batch; b++) {
    for (let i = 0; i < d; i++) x[b * seq * d + i] = t.cls_token![i]! + t.pos_emb![i]!;
    for (let pi = 0; pi < P; pi++) {
      const py = Math.floor(pi / gw);
      const px = pi % gw;
      for (let o = 0; o < d; o++) {
        let s = t.patch_b ? t.patch_b[o]! : 0;
        for (let c = 0; c < C; c++)
          for (let ky = 0; ky < p; ky++)
            for (let kx = 0; kx < p; kx++)
              s += t.patch_w![o * pd + (c * p + ky) * p + kx]! * pixels[((b * C + c) * spec.imageH + py * p + ky) * spec.imageW + px * p + kx]!;
        x[(b * seq + 1 + pi) * d + o] = s + t.pos_emb![(1 + pi) * d + o]!;
      }
    }
  }
  const { hidden } = referenceStack(spec, t, x, batch, seq);
  const cls = new Float64Array(batch * d);
  for (let b = 0; b < batch; b++) cls.set(hidden.subarray(b * seq * d, b * seq * d + d), b * d);
  return linearRef(cls, batch, d, t.classifier_w!, t.classifier_b, spec.numLabels);
}

/** The blocks and the final norm over embedded input x [batch·seq, d] (attention causal iff spec.causal). */
export function referenceStack(
  spec: ModelSpec,
  t: Tensors,
  input: Float64Array,
  batch: number,
  seq: number,
  attentionMask?: Uint8Array,
): { hidden: Float64Array; preact: Float64Array[] } {
  const d = spec.dModel;
  const R = batch * seq;
  const hd = spec.headDim;
  const qw = spec.nHeads * hd;
  const kw = spec.nKvHeads * hd;
  const W = qw + 2 * kw;
  let x = input;
  const preact: Float64Array[] = [];
  for (let l = 0; l < spec.layers; l++) {
    const p = `layers.${l}.`;
    const window = spec.slidingWindow?.[l] ?? 0; // sliding-window attention: key j visible iff i − j < window
    const attn = (h: Float64Array) => {
      const qkv = linearRef(h, R, d, t[`${p}qkv_w`]!, t[`${p}qkv_b`], W);
      if (spec.qkNorm) {
        // Qwen3: each head of q (heads 0…nHeads−1 of a row) and of k (the nKvHeads after them) RMS-normalised
        for (let r = 0; r < R; r++) {
          for (let h2 = 0; h2 < spec.nHeads + spec.nKvHeads; h2++) {
            const g = t[h2 < spec.nHeads ? `${p}q_norm_w` : `${p}k_norm_w`]!;
            const head = qkv.subarray(r * W + h2 * hd, r * W + (h2 + 1) * hd);
            const inv = 1 / Math.sqrt(head.reduce((s, v) => s + v * v, 0) / hd + spec.normEps);
            for (let i = 0; i < hd; i++) head[i] = head[i]! * inv * g[i]!;
          }
        }
      }
      if (spec.positions === 'rotary') {
        const half = hd / 2;
        const invFreq = ropeInvFreq(spec.ropeTheta ?? 10000, hd, spec.ropeScaling, (x) => x); // float64
        for (let r = 0; r < R; r++) {
          const pos = r % seq;
          for (let h2 = 0; h2 < spec.nHeads + spec.nKvHeads; h2++) {
            const base = r * W + h2 * hd;
            for (let i = 0; i < half; i++) {
              const ang = pos * invFreq[i]!;
              const a = qkv[base + i]!;
              const b = qkv[base + i + half]!;
              qkv[base + i] = a * Math.cos(ang) - b * Math.sin(ang);
              qkv[base + i + half] = b * Math.cos(ang) + a * Math.sin(ang);
            }
          }
        }
      }
      const out = new Float64Array(R * qw);
      const group = spec.nHeads / spec.nKvHeads;
      for (let b = 0; b < batch; b++) {
        for (let h2 = 0; h2 < spec.nHeads; h2++) {
          const g = Math.floor(h2 / group);
          for (let i = 0; i < seq; i++) {
            const s: number[] = [];
            for (let j = 0; j < seq; j++) {
              const outsideWindow = window > 0 && i - j >= window;
              if ((spec.causal && j > i) || outsideWindow || (attentionMask && !attentionMask[b * seq + j])) {
                s.push(-Infinity);
                continue;
              }
              let acc = 0;
              for (let c = 0; c < hd; c++) acc += qkv[(b * seq + i) * W + h2 * hd + c]! * qkv[(b * seq + j) * W + qw + g * hd + c]!;
              s.push(acc / Math.sqrt(hd));
            }
            const mx = Math.max(...s);
            if (mx === -Infinity) continue;
            const e = s.map((v) => Math.exp(v - mx));
            const sum = e.reduce((a, v) => a + v, 0);
            for (let j = 0; j < seq; j++) {
              for (let c = 0; c < hd; c++) {
                const o = (b * seq + i) * qw + h2 * hd + c;
                out[o] = out[o]! + (e[j]! / sum) * qkv[(b * seq + j) * W + qw + kw + g * hd + c]!;
              }
            }
          }
        }
      }
      return linearRef(out, R, qw, t[`${p}o_w`]!, t[`${p}o_b`], d);
    };
    const ff = (h: Float64Array) => {
      const up = linearRef(h, R, d, t[`${p}ff.w_in`]!, t[`${p}ff.b_in`], spec.dFF);
      preact.push(Float64Array.from(up));
      if (spec.gatedFF) {
        const gate = linearRef(h, R, d, t[`${p}ff.w_gate`]!, t[`${p}ff.b_gate`], spec.dFF);
        for (let i = 0; i < up.length; i++) up[i] = activationRef(spec.activation, gate[i]!) * up[i]!;
      } else {
        for (let i = 0; i < up.length; i++) up[i] = activationRef(spec.activation, up[i]!);
      }
      return linearRef(up, R, spec.dFF, t[`${p}ff.w_out`]!, t[`${p}ff.b_out`], d);
    };
    const add = (a: Float64Array, b: Float64Array) => a.map((v, i) => v + b[i]!);
    if (spec.normPlacement === 'pre') {
      x = add(x, attn(norm(spec, x, R, t[`${p}norm1_w`], t[`${p}norm1_b`])));
      x = add(x, ff(norm(spec, x, R, t[`${p}norm2_w`], t[`${p}norm2_b`])));
    } else {
      x = norm(spec, add(x, attn(x)), R, t[`${p}norm1_w`], t[`${p}norm1_b`]);
      x = norm(spec, add(x, ff(x)), R, t[`${p}norm2_w`], t[`${p}norm2_b`]);
    }
  }
  if (spec.finalNorm) x = norm(spec, x, R, t.final_norm_w, t.final_norm_b);
  return { hidden: x, preact };
}
