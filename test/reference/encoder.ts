/**
 * Plain float64 reference forward passes of the encoder families (BERT, ViT), straight from the Hugging Face
 * tensor names: the test oracle for the native engine on models without a fixture (BERT, random ViT shapes)
 * and the "pure JS" side of benchmarks/encoders.ts. Readable loops, no speed tricks.
 */
import { linearRef } from './forward';

type Tensors = ReadonlyMap<string, Float32Array>;
type Config = Record<string, unknown>;

function get(t: Tensors, name: string): Float32Array {
  const v = t.get(name);
  if (!v) throw new Error(`reference: missing tensor ${name}`);
  return v;
}

export function layerNormRef(x: Float64Array, rows: number, d: number, g: Float32Array, b: Float32Array, eps: number): Float64Array {
  const y = new Float64Array(rows * d);
  for (let r = 0; r < rows; r++) {
    let mean = 0;
    for (let i = 0; i < d; i++) mean += x[r * d + i]!;
    mean /= d;
    let v = 0;
    for (let i = 0; i < d; i++) v += (x[r * d + i]! - mean) ** 2;
    const inv = 1 / Math.sqrt(v / d + eps);
    for (let i = 0; i < d; i++) y[r * d + i] = (x[r * d + i]! - mean) * inv * g[i]! + b[i]!;
  }
  return y;
}

/** Abramowitz–Stegun 7.1.26 is too coarse for a 1e-4 oracle; this series/continued-fraction erf is ~1e-15. */
export function erfRef(x: number): number {
  const ax = Math.abs(x);
  if (ax < 2.5) {
    // Maclaurin series
    let term = ax;
    let sum = ax;
    for (let n = 1; n < 200; n++) {
      term *= (-ax * ax) / n;
      const add = term / (2 * n + 1);
      sum += add;
      if (Math.abs(add) < 1e-17 * Math.abs(sum)) break;
    }
    const v = (2 / Math.sqrt(Math.PI)) * sum;
    return x < 0 ? -v : v;
  }
  // continued fraction for erfc
  let f = 0;
  for (let n = 60; n >= 1; n--) f = n / 2 / (ax + f);
  const erfc = Math.exp(-ax * ax) / Math.sqrt(Math.PI) / (ax + f);
  return x < 0 ? erfc - 1 : 1 - erfc;
}

export function geluErfRef(x: number): number {
  return 0.5 * x * (1 + erfRef(x / Math.SQRT2));
}

/** Multi-head self-attention over [batch, seq, d] (fused q/k/v given separately), key padding mask, no causality. */
function attentionRef(
  x: Float64Array,
  batch: number,
  seq: number,
  d: number,
  heads: number,
  w: { q: Float32Array; qb?: Float32Array; k: Float32Array; kb?: Float32Array; v: Float32Array; vb?: Float32Array },
  mask: Uint8Array | undefined,
): Float64Array {
  const R = batch * seq;
  const q = linearRef(x, R, d, w.q, w.qb, d);
  const k = linearRef(x, R, d, w.k, w.kb, d);
  const v = linearRef(x, R, d, w.v, w.vb, d);
  const hd = d / heads;
  const out = new Float64Array(R * d);
  const p = new Float64Array(seq);
  for (let b = 0; b < batch; b++) {
    for (let h = 0; h < heads; h++) {
      for (let i = 0; i < seq; i++) {
        let mx = -Infinity;
        for (let j = 0; j < seq; j++) {
          if (mask && !mask[b * seq + j]) {
            p[j] = -Infinity;
            continue;
          }
          let s = 0;
          for (let e = 0; e < hd; e++) s += q[(b * seq + i) * d + h * hd + e]! * k[(b * seq + j) * d + h * hd + e]!;
          p[j] = s / Math.sqrt(hd);
          mx = Math.max(mx, p[j]!);
        }
        let sum = 0;
        for (let j = 0; j < seq; j++) {
          p[j] = p[j] === -Infinity ? 0 : Math.exp(p[j]! - mx);
          sum += p[j]!;
        }
        for (let e = 0; e < hd; e++) {
          let s = 0;
          for (let j = 0; j < seq; j++) s += p[j]! * v[(b * seq + j) * d + h * hd + e]!;
          out[(b * seq + i) * d + h * hd + e] = sum > 0 ? s / sum : 0;
        }
      }
    }
  }
  return out;
}

function add(a: Float64Array, b: Float64Array): Float64Array {
  const y = new Float64Array(a.length);
  for (let i = 0; i < a.length; i++) y[i] = a[i]! + b[i]!;
  return y;
}

export interface EncoderReferenceResult {
  /** [batch, numLabels] when the model has a classifier, else undefined. */
  logits?: Float64Array;
  /** Last hidden state [batch, seq, d]. */
  hidden: Float64Array;
  /** FF pre-activation per layer, [batch, seq, dFF] (every position). */
  ff: Float64Array[];
}

/** BertModel / BertForSequenceClassification forward (post-LN, erf GELU, token types, padding mask). */
export function bertForwardReference(
  config: Config,
  t: Tensors,
  input: { ids: Int32Array; batch: number; seq: number; attentionMask?: Uint8Array; tokenTypeIds?: Int32Array },
): EncoderReferenceResult {
  const d = config.hidden_size as number;
  const L = config.num_hidden_layers as number;
  const heads = config.num_attention_heads as number;
  const dff = config.intermediate_size as number;
  const eps = (config.layer_norm_eps as number | undefined) ?? 1e-12;
  const { ids, batch, seq } = input;
  const R = batch * seq;
  const we = get(t, 'bert.embeddings.word_embeddings.weight');
  const pe = get(t, 'bert.embeddings.position_embeddings.weight');
  const te = get(t, 'bert.embeddings.token_type_embeddings.weight');
  let x: Float64Array = new Float64Array(R * d);
  for (let r = 0; r < R; r++) {
    const pos = r % seq;
    const tt = input.tokenTypeIds?.[r] ?? 0;
    for (let i = 0; i < d; i++) x[r * d + i] = we[ids[r]! * d + i]! + pe[pos * d + i]! + te[tt * d + i]!;
  }
  x = layerNormRef(x, R, d, get(t, 'bert.embeddings.LayerNorm.weight'), get(t, 'bert.embeddings.LayerNorm.bias'), eps);
  const ff: Float64Array[] = [];
  for (let l = 0; l < L; l++) {
    const p = `bert.encoder.layer.${l}`;
    const a = attentionRef(
      x,
      batch,
      seq,
      d,
      heads,
      {
        q: get(t, `${p}.attention.self.query.weight`),
        qb: get(t, `${p}.attention.self.query.bias`),
        k: get(t, `${p}.attention.self.key.weight`),
        kb: get(t, `${p}.attention.self.key.bias`),
        v: get(t, `${p}.attention.self.value.weight`),
        vb: get(t, `${p}.attention.self.value.bias`),
      },
      input.attentionMask,
    );
    const o = linearRef(a, R, d, get(t, `${p}.attention.output.dense.weight`), get(t, `${p}.attention.output.dense.bias`), d);
    x = layerNormRef(add(x, o), R, d, get(t, `${p}.attention.output.LayerNorm.weight`), get(t, `${p}.attention.output.LayerNorm.bias`), eps);
    const up = linearRef(x, R, d, get(t, `${p}.intermediate.dense.weight`), get(t, `${p}.intermediate.dense.bias`), dff);
    ff.push(up);
    const act = up.map(geluErfRef);
    const down = linearRef(act, R, dff, get(t, `${p}.output.dense.weight`), get(t, `${p}.output.dense.bias`), d);
    x = layerNormRef(add(x, down), R, d, get(t, `${p}.output.LayerNorm.weight`), get(t, `${p}.output.LayerNorm.bias`), eps);
  }
  const res: EncoderReferenceResult = { hidden: x, ff };
  if (t.has('classifier.weight')) {
    const cls = new Float64Array(batch * d);
    for (let b = 0; b < batch; b++) cls.set(x.subarray(b * seq * d, b * seq * d + d), b * d);
    const pooled = linearRef(cls, batch, d, get(t, 'bert.pooler.dense.weight'), get(t, 'bert.pooler.dense.bias'), d).map(Math.tanh);
    const w = get(t, 'classifier.weight');
    res.logits = linearRef(pooled, batch, d, w, t.get('classifier.bias'), w.length / d);
  }
  return res;
}

/** ViTForImageClassification forward on preprocessed images [batch, channels, H, W]. */
export function vitForwardReference(config: Config, t: Tensors, pixels: Float32Array, batch: number): EncoderReferenceResult {
  const d = config.hidden_size as number;
  const L = config.num_hidden_layers as number;
  const heads = config.num_attention_heads as number;
  const dff = config.intermediate_size as number;
  const eps = (config.layer_norm_eps as number | undefined) ?? 1e-12;
  const size = config.image_size as number;
  const p = config.patch_size as number;
  const C = (config.num_channels as number | undefined) ?? 3;
  const g = size / p;
  const P = g * g;
  const seq = 1 + P;
  const R = batch * seq;
  const pw = get(t, 'vit.embeddings.patch_embeddings.projection.weight');
  const pb = get(t, 'vit.embeddings.patch_embeddings.projection.bias');
  const cls = get(t, 'vit.embeddings.cls_token');
  const pos = get(t, 'vit.embeddings.position_embeddings');
  let x: Float64Array = new Float64Array(R * d);
  for (let b = 0; b < batch; b++) {
    for (let i = 0; i < d; i++) x[b * seq * d + i] = cls[i]! + pos[i]!;
    for (let pi = 0; pi < P; pi++) {
      const py = Math.floor(pi / g);
      const px = pi % g;
      for (let o = 0; o < d; o++) {
        let s = pb[o]!;
        for (let c = 0; c < C; c++)
          for (let ky = 0; ky < p; ky++)
            for (let kx = 0; kx < p; kx++)
              s += pw[((o * C + c) * p + ky) * p + kx]! * pixels[((b * C + c) * size + py * p + ky) * size + px * p + kx]!;
        x[(b * seq + 1 + pi) * d + o] = s + pos[(1 + pi) * d + o]!;
      }
    }
  }
  const ff: Float64Array[] = [];
  for (let l = 0; l < L; l++) {
    const q = `vit.encoder.layer.${l}`;
    const h1 = layerNormRef(x, R, d, get(t, `${q}.layernorm_before.weight`), get(t, `${q}.layernorm_before.bias`), eps);
    const at = `${q}.attention.attention`;
    const a = attentionRef(h1, batch, seq, d, heads, {
      q: get(t, `${at}.query.weight`),
      qb: t.get(`${at}.query.bias`),
      k: get(t, `${at}.key.weight`),
      kb: t.get(`${at}.key.bias`),
      v: get(t, `${at}.value.weight`),
      vb: t.get(`${at}.value.bias`),
    }, undefined);
    x = add(x, linearRef(a, R, d, get(t, `${q}.attention.output.dense.weight`), get(t, `${q}.attention.output.dense.bias`), d));
    const h2 = layerNormRef(x, R, d, get(t, `${q}.layernorm_after.weight`), get(t, `${q}.layernorm_after.bias`), eps);
    const up = linearRef(h2, R, d, get(t, `${q}.intermediate.dense.weight`), get(t, `${q}.intermediate.dense.bias`), dff);
    ff.push(up);
    x = add(x, linearRef(up.map(geluErfRef), R, dff, get(t, `${q}.output.dense.weight`), get(t, `${q}.output.dense.bias`), d));
  }
  const hN = layerNormRef(x, R, d, get(t, 'vit.layernorm.weight'), get(t, 'vit.layernorm.bias'), eps);
  const clsRows = new Float64Array(batch * d);
  for (let b = 0; b < batch; b++) clsRows.set(hN.subarray(b * seq * d, b * seq * d + d), b * d);
  const w = get(t, 'classifier.weight');
  return { logits: linearRef(clsRows, batch, d, w, t.get('classifier.bias'), w.length / d), hidden: x, ff };
}
