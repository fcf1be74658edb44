/**
 * Small random checkpoints in Hugging Face layout (config.json + model.safetensors in a temp folder), plus
 * the same weights as canonical slot tensors for test/reference/forward.ts. Lets tests cover options the
 * fixtures lack (biases, untied heads, GQA) and craft broken checkpoints.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { writeSafetensors, type TensorToWrite } from '../../lib/safetensors';

export interface Synthetic {
  dir: string;
  config: Record<string, unknown>;
  /** Canonical slot tensors (Linear layout) as the native model stores them. */
  canonical: Record<string, Float32Array>;
  /** HF-named tensors as written (Conv1D layout for GPT-2). */
  hf: Map<string, { shape: number[]; data: Float32Array }>;
}

function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return ((s >>> 0) / 4294967296) * 2 - 1;
  };
}

function rand(n: number, next: () => number, scale: number, offset = 0): Float32Array {
  return Float32Array.from({ length: n }, () => offset + next() * scale);
}

function transpose(a: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(a.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = a[r * cols + c]!;
  return out;
}

export async function writeSynthetic(s: Synthetic, drop: string[] = [], reshape: Record<string, number[]> = {}): Promise<void> {
  const tensors: TensorToWrite[] = [];
  for (const [name, t] of s.hf) {
    if (drop.includes(name)) continue;
    tensors.push({ name, dtype: 'F32', shape: Object.hasOwn(reshape, name) ? reshape[name]! : t.shape, data: t.data });
  }
  await fs.promises.writeFile(path.join(s.dir, 'config.json'), JSON.stringify(s.config, null, 1));
  await writeSafetensors(path.join(s.dir, 'model.safetensors'), tensors);
}

const created: string[] = [];

export function tempDir(tag: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `ffmerge-${tag}-`));
  created.push(dir);
  return dir;
}

/** Removes every folder made by tempDir (call from afterAll). */
export function removeSyntheticDirs(): void {
  for (const d of created.splice(0)) fs.rmSync(d, { recursive: true, force: true });
}

/** GPT-2: layers × (ln_1, c_attn, c_proj, ln_2, mlp), learned positions, tied head. */
export async function syntheticGpt2(opts: { layers?: number; d?: number; heads?: number; ff?: number; vocab?: number; positions?: number; seed?: number; tied?: boolean } = {}): Promise<Synthetic> {
  const L = opts.layers ?? 2, d = opts.d ?? 20, H = opts.heads ?? 4, F = opts.ff ?? 36, V = opts.vocab ?? 50, P = opts.positions ?? 16;
  const next = rng(opts.seed ?? 7);
  const config = { model_type: 'gpt2', n_layer: L, n_embd: d, n_head: H, n_inner: F, vocab_size: V, n_positions: P, activation_function: 'gelu_new', layer_norm_epsilon: 1e-5, tie_word_embeddings: opts.tied ?? true };
  const canonical: Record<string, Float32Array> = {};
  const hf = new Map<string, { shape: number[]; data: Float32Array }>();
  const vec = (slot: string, name: string, n: number, offset = 0) => {
    const v = rand(n, next, 0.3, offset);
    canonical[slot] = v;
    hf.set(name, { shape: [n], data: v });
  };
  const mat = (slot: string, name: string, out: number, inp: number) => {
    const w = rand(out * inp, next, 0.4);
    canonical[slot] = w;
    hf.set(name, { shape: [inp, out], data: transpose(w, out, inp) }); // Conv1D [in, out]
  };
  const emb = rand(V * d, next, 0.5);
  canonical.tok_emb = emb;
  hf.set('transformer.wte.weight', { shape: [V, d], data: emb });
  const pe = rand(P * d, next, 0.2);
  canonical.pos_emb = pe;
  hf.set('transformer.wpe.weight', { shape: [P, d], data: pe });
  for (let l = 0; l < L; l++) {
    const h = `transformer.h.${l}`, p = `layers.${l}.`;
    vec(`${p}norm1_w`, `${h}.ln_1.weight`, d, 1);
    vec(`${p}norm1_b`, `${h}.ln_1.bias`, d);
    mat(`${p}qkv_w`, `${h}.attn.c_attn.weight`, 3 * d, d);
    vec(`${p}qkv_b`, `${h}.attn.c_attn.bias`, 3 * d);
    mat(`${p}o_w`, `${h}.attn.c_proj.weight`, d, d);
    vec(`${p}o_b`, `${h}.attn.c_proj.bias`, d);
    vec(`${p}norm2_w`, `${h}.ln_2.weight`, d, 1);
    vec(`${p}norm2_b`, `${h}.ln_2.bias`, d);
    mat(`${p}ff.w_in`, `${h}.mlp.c_fc.weight`, F, d);
    vec(`${p}ff.b_in`, `${h}.mlp.c_fc.bias`, F);
    mat(`${p}ff.w_out`, `${h}.mlp.c_proj.weight`, d, F);
    vec(`${p}ff.b_out`, `${h}.mlp.c_proj.bias`, d);
  }
  vec('final_norm_w', 'transformer.ln_f.weight', d, 1);
  vec('final_norm_b', 'transformer.ln_f.bias', d);
  if (opts.tied === false) {
    // an nn.Linear [vocab, d], not a Conv1D, even in GPT-2
    const head = rand(V * d, next, 0.5);
    canonical.lm_head_w = head;
    hf.set('lm_head.weight', { shape: [V, d], data: head });
  }
  const s = { dir: tempDir('gpt2'), config, canonical, hf };
  await writeSynthetic(s);
  return s;
}

/**
 * LLaMA with every option on: GQA, attention_bias, mlp_bias, untied LM head. `family` writes the same block
 * as Qwen2 (q/k/v biases only, whatever `bias` says), Mistral (no biases) or Qwen3 (q/k norms; `bias` puts
 * biases on q/k/v and o, as attention_bias does; head_dim always written, since Qwen3Config defaults it to 128);
 * `headDim` sets an explicit head_dim; `config` adds or overrides config.json keys (sliding windows).
 */
export async function syntheticLlama(opts: {
  layers?: number; d?: number; heads?: number; kvHeads?: number; ff?: number; vocab?: number; seed?: number; tied?: boolean; bias?: boolean;
  family?: 'llama' | 'qwen2' | 'qwen3' | 'mistral'; headDim?: number; config?: Record<string, unknown>;
} = {}): Promise<Synthetic> {
  const L = opts.layers ?? 2, d = opts.d ?? 24, H = opts.heads ?? 4, KV = opts.kvHeads ?? 2, F = opts.ff ?? 34, V = opts.vocab ?? 40;
  const bias = opts.bias ?? true, tied = opts.tied ?? false;
  const family = opts.family ?? 'llama';
  const qkvBias = family === 'qwen2' || ((family === 'llama' || family === 'qwen3') && bias);
  const oBias = (family === 'llama' || family === 'qwen3') && bias, mlpBias = family === 'llama' && bias;
  const hd = opts.headDim ?? d / H;
  const next = rng(opts.seed ?? 11);
  const config = {
    model_type: family, num_hidden_layers: L, hidden_size: d, num_attention_heads: H, num_key_value_heads: KV, intermediate_size: F,
    vocab_size: V, max_position_embeddings: 64, rms_norm_eps: 1e-5, rope_theta: 500.0, hidden_act: 'silu', tie_word_embeddings: tied,
    ...(family === 'llama' ? { attention_bias: bias, mlp_bias: bias } : {}),
    ...(family === 'qwen3' ? { attention_bias: bias, head_dim: hd } : {}),
    ...(opts.headDim ? { head_dim: opts.headDim } : {}),
    ...opts.config,
  };
  const canonical: Record<string, Float32Array> = {};
  const hf = new Map<string, { shape: number[]; data: Float32Array }>();
  const put = (name: string, shape: number[], data: Float32Array) => hf.set(name, { shape, data });
  const emb = rand(V * d, next, 0.5);
  canonical.tok_emb = emb;
  put('model.embed_tokens.weight', [V, d], emb);
  for (let l = 0; l < L; l++) {
    const a = `model.layers.${l}.self_attn`, m = `model.layers.${l}.mlp`, p = `layers.${l}.`;
    const n1 = rand(d, next, 0.3, 1), n2 = rand(d, next, 0.3, 1);
    canonical[`${p}norm1_w`] = n1;
    canonical[`${p}norm2_w`] = n2;
    put(`model.layers.${l}.input_layernorm.weight`, [d], n1);
    put(`model.layers.${l}.post_attention_layernorm.weight`, [d], n2);
    const q = rand(H * hd * d, next, 0.4), k = rand(KV * hd * d, next, 0.4), v = rand(KV * hd * d, next, 0.4);
    put(`${a}.q_proj.weight`, [H * hd, d], q);
    put(`${a}.k_proj.weight`, [KV * hd, d], k);
    put(`${a}.v_proj.weight`, [KV * hd, d], v);
    canonical[`${p}qkv_w`] = Float32Array.from([...q, ...k, ...v]);
    if (family === 'qwen3') {
      const qn = rand(hd, next, 0.3, 1), kn = rand(hd, next, 0.3, 1);
      put(`${a}.q_norm.weight`, [hd], qn);
      put(`${a}.k_norm.weight`, [hd], kn);
      canonical[`${p}q_norm_w`] = qn;
      canonical[`${p}k_norm_w`] = kn;
    }
    const o = rand(d * H * hd, next, 0.4);
    put(`${a}.o_proj.weight`, [d, H * hd], o);
    canonical[`${p}o_w`] = o;
    const up = rand(F * d, next, 0.4), gate = rand(F * d, next, 0.4), down = rand(d * F, next, 0.4);
    put(`${m}.up_proj.weight`, [F, d], up);
    put(`${m}.gate_proj.weight`, [F, d], gate);
    put(`${m}.down_proj.weight`, [d, F], down);
    Object.assign(canonical, { [`${p}ff.w_in`]: up, [`${p}ff.w_gate`]: gate, [`${p}ff.w_out`]: down });
    if (qkvBias) {
      const qb = rand(H * hd, next, 0.2), kb = rand(KV * hd, next, 0.2), vb = rand(KV * hd, next, 0.2);
      put(`${a}.q_proj.bias`, [H * hd], qb);
      put(`${a}.k_proj.bias`, [KV * hd], kb);
      put(`${a}.v_proj.bias`, [KV * hd], vb);
      canonical[`${p}qkv_b`] = Float32Array.from([...qb, ...kb, ...vb]);
    }
    if (oBias) {
      const ob = rand(d, next, 0.2);
      put(`${a}.o_proj.bias`, [d], ob);
      canonical[`${p}o_b`] = ob;
    }
    if (mlpBias) {
      const ub = rand(F, next, 0.2), gb = rand(F, next, 0.2), db = rand(d, next, 0.2);
      put(`${m}.up_proj.bias`, [F], ub);
      put(`${m}.gate_proj.bias`, [F], gb);
      put(`${m}.down_proj.bias`, [d], db);
      Object.assign(canonical, { [`${p}ff.b_in`]: ub, [`${p}ff.b_gate`]: gb, [`${p}ff.b_out`]: db });
    }
  }
  const fn = rand(d, next, 0.3, 1);
  canonical.final_norm_w = fn;
  put('model.norm.weight', [d], fn);
  if (!tied) {
    const head = rand(V * d, next, 0.5);
    canonical.lm_head_w = head;
    put('lm_head.weight', [V, d], head);
  }
  const s = { dir: tempDir(family), config, canonical, hf };
  await writeSynthetic(s);
  return s;
}

export function relErr(got: ArrayLike<number>, want: ArrayLike<number>): number {
  if (got.length !== want.length) throw new Error(`length ${got.length} vs ${want.length}`);
  let num = 0, den = 0;
  for (let i = 0; i < want.length; i++) {
    num += (got[i]! - want[i]!) ** 2;
    den += want[i]! ** 2;
  }
  return Math.sqrt(num / den);
}

/**
 * ViTForImageClassification: conv patch embedding, CLS token, learned positions, pre-LN blocks with q/k/v
 * biases, erf GELU, final LayerNorm, classifier on CLS; writes preprocessor_config.json (rescale 1/255,
 * normalize with mean = std = 0.5 per channel) so the CLI can read images for it.
 */
export async function syntheticVit(opts: { layers?: number; d?: number; heads?: number; ff?: number; image?: number; patch?: number; channels?: number; labels?: number; seed?: number } = {}): Promise<Synthetic> {
  const L = opts.layers ?? 2, d = opts.d ?? 12, H = opts.heads ?? 3, F = opts.ff ?? 19, S = opts.image ?? 8, p = opts.patch ?? 4, C = opts.channels ?? 1, K = opts.labels ?? 4;
  const next = rng(opts.seed ?? 9);
  const id2label = Object.fromEntries(Array.from({ length: K }, (_, i) => [String(i), `class${i}`]));
  const config = {
    model_type: 'vit', architectures: ['ViTForImageClassification'], image_size: S, patch_size: p, num_channels: C, hidden_size: d,
    num_hidden_layers: L, num_attention_heads: H, intermediate_size: F, hidden_act: 'gelu', layer_norm_eps: 1e-12, qkv_bias: true, id2label,
    label2id: Object.fromEntries(Object.entries(id2label).map(([k, v]) => [v, Number(k)])),
  };
  const canonical: Record<string, Float32Array> = {};
  const hf = new Map<string, { shape: number[]; data: Float32Array }>();
  const put = (slot: string | undefined, name: string, shape: number[], scale: number, offset = 0) => {
    const v = rand(shape.reduce((a, b) => a * b, 1), next, scale, offset);
    if (slot) canonical[slot] = v;
    hf.set(name, { shape, data: v });
    return v;
  };
  const T = 1 + (S / p) ** 2;
  put('patch_w', 'vit.embeddings.patch_embeddings.projection.weight', [d, C, p, p], 0.3);
  put('patch_b', 'vit.embeddings.patch_embeddings.projection.bias', [d], 0.2);
  put('cls_token', 'vit.embeddings.cls_token', [1, 1, d], 0.5);
  put('pos_emb', 'vit.embeddings.position_embeddings', [1, T, d], 0.2);
  for (let l = 0; l < L; l++) {
    const h = `vit.encoder.layer.${l}`, s = `layers.${l}.`, a = `${h}.attention.attention`;
    put(`${s}norm1_w`, `${h}.layernorm_before.weight`, [d], 0.3, 1);
    put(`${s}norm1_b`, `${h}.layernorm_before.bias`, [d], 0.3);
    // q, k, v are fused into one slot [q; k; v] by the loader
    const q = put(undefined, `${a}.query.weight`, [d, d], 0.4), k = put(undefined, `${a}.key.weight`, [d, d], 0.4), v = put(undefined, `${a}.value.weight`, [d, d], 0.4);
    const qb = put(undefined, `${a}.query.bias`, [d], 0.3), kb = put(undefined, `${a}.key.bias`, [d], 0.3), vb = put(undefined, `${a}.value.bias`, [d], 0.3);
    canonical[`${s}qkv_w`] = Float32Array.from([...q, ...k, ...v]);
    canonical[`${s}qkv_b`] = Float32Array.from([...qb, ...kb, ...vb]);
    put(`${s}o_w`, `${h}.attention.output.dense.weight`, [d, d], 0.4);
    put(`${s}o_b`, `${h}.attention.output.dense.bias`, [d], 0.3);
    put(`${s}norm2_w`, `${h}.layernorm_after.weight`, [d], 0.3, 1);
    put(`${s}norm2_b`, `${h}.layernorm_after.bias`, [d], 0.3);
    put(`${s}ff.w_in`, `${h}.intermediate.dense.weight`, [F, d], 0.4);
    put(`${s}ff.b_in`, `${h}.intermediate.dense.bias`, [F], 0.3);
    put(`${s}ff.w_out`, `${h}.output.dense.weight`, [d, F], 0.4);
    put(`${s}ff.b_out`, `${h}.output.dense.bias`, [d], 0.3);
  }
  put('final_norm_w', 'vit.layernorm.weight', [d], 0.3, 1);
  put('final_norm_b', 'vit.layernorm.bias', [d], 0.3);
  put('classifier_w', 'classifier.weight', [K, d], 0.5);
  put('classifier_b', 'classifier.bias', [K], 0.3);
  const s = { dir: tempDir('vit'), config, canonical, hf };
  await writeSynthetic(s);
  const pre = { do_resize: false, do_rescale: true, rescale_factor: 1 / 255, do_normalize: true, image_mean: Array(C).fill(0.5), image_std: Array(C).fill(0.5), size: { height: S, width: S } };
  await fs.promises.writeFile(path.join(s.dir, 'preprocessor_config.json'), JSON.stringify(pre, null, 1));
  return s;
}
