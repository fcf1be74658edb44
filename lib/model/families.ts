/**
 * Model families as data: for each config.json `model_type`, how to read its ModelSpec and where its tensors
 * are. The FF tensors come from ff-tensors.ts (shared with the merge and the writer). Adding a decoder that
 * reuses these options (Mistral, Qwen2, OLMo, …) is one entry here plus its FF entry in ff-tensors.ts.
 */
import { FfmergeError } from '../errors';
import { ffStacks, type FFTensorNames, type WeightLayout } from './ff-tensors';
import type { ActivationKind, ModelSpec } from './spec';

type Config = Record<string, unknown>;

export interface NormNames {
  w: string;
  b?: string;
}

/** The attention projections: one fused [q;k;v] tensor (GPT-2 c_attn) or three (LLaMA q/k/v_proj). */
export type QKVNames =
  | { fused: string; fusedBias?: string }
  | { q: string; k: string; v: string; qBias?: string; kBias?: string; vBias?: string };

/** Cross-attention of an encoder–decoder decoder block: q from the decoder, k/v from the encoder states. */
export interface CrossAttentionNames {
  norm: NormNames;
  q: string;
  k: string;
  v: string;
  qBias?: string;
  kBias?: string;
  vBias?: string;
  o: string;
  oBias?: string;
}

export interface LayerNames {
  norm1: NormNames;
  qkv: QKVNames;
  o: string;
  oBias?: string;
  norm2: NormNames;
  ff: FFTensorNames;
  xattn?: CrossAttentionNames;
}

export interface FamilyTensors {
  /** Layout of every 2-D weight ('conv1d' = stored [in, out], transposed at load). */
  layout: WeightLayout;
  /** Token embedding (absent for patch input). */
  tokEmb?: string;
  posEmb?: string;
  /** Stored shape of posEmb when it is not [maxPositions, d] (ViT keeps [1, 1 + patches, d]). */
  posEmbShape?: number[];
  /** Patch input (ViT): conv weight [d, channels, patch, patch] (read as [d, channels·patch²]), bias, CLS token [1, 1, d]. */
  patch?: { w: string; b?: string; cls: string };
  typeEmb?: string;
  embedNorm?: NormNames;
  pooler?: { w: string; b?: string };
  classifier?: { w: string; b?: string };
  /** Stored shape of lmHeadBias when it is not [vocab] (Marian's final_logits_bias is [1, vocab]). */
  lmHeadBiasShape?: number[];
  finalNorm?: NormNames;
  /** Absent = tied to tokEmb. */
  lmHead?: string;
  lmHeadBias?: string;
  /** A prefix some checkpoints of the family omit (original GPT-2 files have "h.0…", not "transformer.h.0…"). */
  optionalPrefix?: string;
  layer(l: number): LayerNames;
}

export interface Family {
  modelType: string;
  /** The main stack: the decoder of decoder-only and encoder–decoder models, the encoder of encoder-only ones. */
  spec(config: Config): ModelSpec;
  tensors(config: Config, spec: ModelSpec): FamilyTensors;
  /** Name of the main stack in the FF table (ff-tensors.ts); default 'decoder'. */
  stack?: 'decoder' | 'encoder';
  /** Encoder–decoder models: the encoder stack (its output feeds the main stack's cross-attention). */
  encoder?: {
    spec(config: Config): ModelSpec;
    tensors(config: Config, spec: ModelSpec): FamilyTensors;
  };
}

// ---- config readers: every problem names the field ----------------------------------------------------
function bad(key: string, why: string, v: unknown): FfmergeError {
  return new FfmergeError('INVALID_CONFIG', `config.json: "${key}" ${why} (got ${JSON.stringify(v)})`);
}
function posInt(c: Config, key: string, dflt?: number): number {
  const v = c[key] ?? dflt;
  if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) throw bad(key, 'must be a positive integer', c[key]);
  return v;
}
function posNum(c: Config, key: string, dflt: number): number {
  const v = c[key] ?? dflt;
  if (typeof v !== 'number' || !(v > 0)) throw bad(key, 'must be a positive number', c[key]);
  return v;
}
function headDim(c: Config, widthKey: string, headsKey: string, explicitKey?: string): number {
  const d = posInt(c, widthKey);
  const h = posInt(c, headsKey);
  if (explicitKey && c[explicitKey] != null) return posInt(c, explicitKey);
  if (d % h !== 0) {
    throw new FfmergeError(
      'INVALID_CONFIG',
      `config.json: "${headsKey}" (${h}) does not divide "${widthKey}" (${d}); the head width must be a whole number`,
    );
  }
  return d / h;
}
function activation(c: Config, key: string): ActivationKind {
  const v = c[key];
  const map: Record<string, ActivationKind> = {
    gelu_new: 'gelu_new',
    gelu_pytorch_tanh: 'gelu_new',
    gelu: 'gelu',
    silu: 'silu',
    swish: 'silu',
    relu: 'relu',
  };
  const a = typeof v === 'string' ? map[v] : undefined;
  if (!a) throw bad(key, `must be one of ${Object.keys(map).join(', ')}`, v);
  return a;
}
function unsupportedIf(cond: boolean, what: string): void {
  if (cond) throw new FfmergeError('UNSUPPORTED_ARCHITECTURE', `config.json: ${what} is not supported by ffmerge's forward pass`);
}
function decoderFF(c: Config) {
  const stack = ffStacks(c).find((s) => s.name === 'decoder');
  if (!stack) throw new FfmergeError('UNSUPPORTED_ARCHITECTURE', 'this model has no decoder FF stack');
  return stack;
}

// ---- the families ----------------------------------------------------------------------------------------
const gpt2: Family = {
  modelType: 'gpt2',
  spec(c) {
    const dModel = posInt(c, 'n_embd');
    const nHeads = posInt(c, 'n_head');
    const hd = headDim(c, 'n_embd', 'n_head');
    unsupportedIf(c.scale_attn_by_inverse_layer_idx === true, 'scale_attn_by_inverse_layer_idx = true');
    unsupportedIf(c.scale_attn_weights === false, 'scale_attn_weights = false');
    unsupportedIf(c.add_cross_attention === true, 'add_cross_attention = true');
    return {
      family: 'gpt2',
      layers: posInt(c, 'n_layer'),
      dModel,
      nHeads,
      nKvHeads: nHeads,
      headDim: hd,
      dFF: c.n_inner == null ? 4 * dModel : posInt(c, 'n_inner'),
      vocab: posInt(c, 'vocab_size'),
      maxPositions: posInt(c, 'n_positions'),
      maxPositionsField: 'n_positions',
      norm: 'layernorm',
      normPlacement: 'pre',
      normEps: posNum(c, 'layer_norm_epsilon', 1e-5),
      finalNorm: true,
      positions: 'learned',
      activation: activation(c, 'activation_function'),
      gatedFF: false,
      causal: true,
      embedScale: 1,
      tiedEmbeddings: true, // GPT2LMHeadModel always ties lm_head to wte
    };
  },
  tensors(c) {
    const ff = decoderFF(c);
    const h = (l: number) => `transformer.h.${l}`;
    return {
      layout: 'conv1d',
      tokEmb: 'transformer.wte.weight',
      posEmb: 'transformer.wpe.weight',
      finalNorm: { w: 'transformer.ln_f.weight', b: 'transformer.ln_f.bias' },
      optionalPrefix: 'transformer.',
      layer: (l) => ({
        norm1: { w: `${h(l)}.ln_1.weight`, b: `${h(l)}.ln_1.bias` },
        qkv: { fused: `${h(l)}.attn.c_attn.weight`, fusedBias: `${h(l)}.attn.c_attn.bias` },
        o: `${h(l)}.attn.c_proj.weight`,
        oBias: `${h(l)}.attn.c_proj.bias`,
        norm2: { w: `${h(l)}.ln_2.weight`, b: `${h(l)}.ln_2.bias` },
        ff: ff.ff(l),
      }),
    };
  },
};

function ropeTheta(c: Config): number {
  // transformers ≥ 5 nests RoPE settings in rope_parameters; older configs have rope_theta / rope_scaling.
  const params = (c.rope_parameters ?? c.rope_scaling) as Record<string, unknown> | null | undefined;
  const type = params?.rope_type ?? params?.type;
  unsupportedIf(type != null && type !== 'default', `rope type ${JSON.stringify(type)}`);
  const theta = params?.rope_theta ?? c.rope_theta ?? 10000;
  if (typeof theta !== 'number' || !(theta > 0)) throw bad('rope_theta', 'must be a positive number', theta);
  return theta;
}

const llama: Family = {
  modelType: 'llama',
  spec(c) {
    const nHeads = posInt(c, 'num_attention_heads');
    const nKvHeads = posInt(c, 'num_key_value_heads', nHeads);
    if (nHeads % nKvHeads !== 0) {
      throw new FfmergeError(
        'INVALID_CONFIG',
        `config.json: "num_key_value_heads" (${nKvHeads}) must divide "num_attention_heads" (${nHeads})`,
      );
    }
    unsupportedIf(c.pretraining_tp != null && c.pretraining_tp !== 1, 'pretraining_tp ≠ 1');
    return {
      family: 'llama',
      layers: posInt(c, 'num_hidden_layers'),
      dModel: posInt(c, 'hidden_size'),
      nHeads,
      nKvHeads,
      headDim: headDim(c, 'hidden_size', 'num_attention_heads', 'head_dim'),
      dFF: posInt(c, 'intermediate_size'),
      vocab: posInt(c, 'vocab_size'),
      maxPositions: posInt(c, 'max_position_embeddings', 2048),
      maxPositionsField: 'max_position_embeddings',
      norm: 'rmsnorm',
      normPlacement: 'pre',
      normEps: posNum(c, 'rms_norm_eps', 1e-6),
      finalNorm: true,
      positions: 'rotary',
      ropeTheta: ropeTheta(c),
      activation: activation({ hidden_act: c.hidden_act ?? 'silu' }, 'hidden_act'),
      gatedFF: true,
      causal: true,
      embedScale: 1,
      tiedEmbeddings: c.tie_word_embeddings === true, // LlamaConfig defaults to untied
    };
  },
  tensors(c, spec) {
    const ff = decoderFF(c);
    const bias = c.attention_bias === true;
    const a = (l: number) => `model.layers.${l}.self_attn`;
    return {
      layout: 'linear',
      tokEmb: 'model.embed_tokens.weight',
      finalNorm: { w: 'model.norm.weight' },
      ...(spec.tiedEmbeddings ? {} : { lmHead: 'lm_head.weight' }),
      layer: (l) => ({
        norm1: { w: `model.layers.${l}.input_layernorm.weight` },
        qkv: {
          q: `${a(l)}.q_proj.weight`,
          k: `${a(l)}.k_proj.weight`,
          v: `${a(l)}.v_proj.weight`,
          ...(bias ? { qBias: `${a(l)}.q_proj.bias`, kBias: `${a(l)}.k_proj.bias`, vBias: `${a(l)}.v_proj.bias` } : {}),
        },
        o: `${a(l)}.o_proj.weight`,
        ...(bias ? { oBias: `${a(l)}.o_proj.bias` } : {}),
        norm2: { w: `model.layers.${l}.post_attention_layernorm.weight` },
        ff: ff.ff(l),
      }),
    };
  },
};

function stackFF(c: Config, name: 'encoder' | 'decoder') {
  const stack = ffStacks(c).find((s) => s.name === name);
  if (!stack) throw new FfmergeError('UNSUPPORTED_ARCHITECTURE', `this model has no ${name} FF stack`);
  return stack;
}

function numLabels(c: Config): number {
  if (c.num_labels != null) return posInt(c, 'num_labels');
  const id2label = c.id2label;
  if (id2label && typeof id2label === 'object' && Object.keys(id2label).length > 0) return Object.keys(id2label).length;
  return 2; // transformers' PretrainedConfig default
}

// ViTForImageClassification: conv patch embedding, CLS first, learned positions, pre-LN, erf GELU, final
// LayerNorm, classifier on CLS.
const vit: Family = {
  modelType: 'vit',
  stack: 'encoder',
  spec(c) {
    const dModel = posInt(c, 'hidden_size');
    const imageSize = posInt(c, 'image_size', 224);
    const patch = posInt(c, 'patch_size', 16);
    if (imageSize % patch !== 0) throw bad('image_size', `must be a multiple of patch_size (${patch})`, c.image_size);
    unsupportedIf(c.num_labels === 0, 'a ViT without classifier (num_labels = 0)');
    const patches = (imageSize / patch) ** 2;
    return {
      family: 'vit',
      layers: posInt(c, 'num_hidden_layers'),
      dModel,
      nHeads: posInt(c, 'num_attention_heads'),
      nKvHeads: posInt(c, 'num_attention_heads'),
      headDim: headDim(c, 'hidden_size', 'num_attention_heads'),
      dFF: posInt(c, 'intermediate_size'),
      vocab: 0,
      maxPositions: 1 + patches,
      norm: 'layernorm',
      normPlacement: 'pre',
      normEps: posNum(c, 'layer_norm_eps', 1e-12),
      finalNorm: true,
      positions: 'learned',
      activation: activation({ hidden_act: c.hidden_act ?? 'gelu' }, 'hidden_act'),
      gatedFF: false,
      causal: false,
      embedScale: 1,
      tiedEmbeddings: false,
      input: 'patches',
      channels: posInt(c, 'num_channels', 3),
      imageH: imageSize,
      imageW: imageSize,
      patch,
      head: 'classifier',
      numLabels: numLabels(c),
    };
  },
  tensors(c, spec) {
    const ff = stackFF(c, 'encoder');
    const bias = c.qkv_bias !== false;
    const L = (l: number) => `vit.encoder.layer.${l}`;
    return {
      layout: 'linear',
      posEmb: 'vit.embeddings.position_embeddings',
      posEmbShape: [1, spec.maxPositions, spec.dModel],
      patch: {
        w: 'vit.embeddings.patch_embeddings.projection.weight',
        b: 'vit.embeddings.patch_embeddings.projection.bias',
        cls: 'vit.embeddings.cls_token',
      },
      finalNorm: { w: 'vit.layernorm.weight', b: 'vit.layernorm.bias' },
      classifier: { w: 'classifier.weight', b: 'classifier.bias' },
      layer: (l) => {
        const a = `${L(l)}.attention.attention`;
        return {
          norm1: { w: `${L(l)}.layernorm_before.weight`, b: `${L(l)}.layernorm_before.bias` },
          qkv: {
            q: `${a}.query.weight`,
            k: `${a}.key.weight`,
            v: `${a}.value.weight`,
            ...(bias ? { qBias: `${a}.query.bias`, kBias: `${a}.key.bias`, vBias: `${a}.value.bias` } : {}),
          },
          o: `${L(l)}.attention.output.dense.weight`,
          oBias: `${L(l)}.attention.output.dense.bias`,
          norm2: { w: `${L(l)}.layernorm_after.weight`, b: `${L(l)}.layernorm_after.bias` },
          ff: ff.ff(l),
        };
      },
    };
  },
};

// BertModel / BertForSequenceClassification: word + position + token-type embeddings, embedding LayerNorm,
// post-LN blocks, erf GELU; the classifier (when the checkpoint has one) runs on tanh-pooled CLS.
const bert: Family = {
  modelType: 'bert',
  stack: 'encoder',
  spec(c) {
    unsupportedIf(c.position_embedding_type != null && c.position_embedding_type !== 'absolute', `position_embedding_type ${JSON.stringify(c.position_embedding_type)}`);
    unsupportedIf(c.is_decoder === true, 'BERT as a decoder (is_decoder = true)');
    const arch = Array.isArray(c.architectures) ? (c.architectures as unknown[]) : [];
    const classifier = arch.includes('BertForSequenceClassification');
    return {
      family: 'bert',
      layers: posInt(c, 'num_hidden_layers'),
      dModel: posInt(c, 'hidden_size'),
      nHeads: posInt(c, 'num_attention_heads'),
      nKvHeads: posInt(c, 'num_attention_heads'),
      headDim: headDim(c, 'hidden_size', 'num_attention_heads'),
      dFF: posInt(c, 'intermediate_size'),
      vocab: posInt(c, 'vocab_size'),
      maxPositions: posInt(c, 'max_position_embeddings', 512),
      norm: 'layernorm',
      normPlacement: 'post',
      normEps: posNum(c, 'layer_norm_eps', 1e-12),
      finalNorm: false,
      positions: 'learned',
      activation: activation({ hidden_act: c.hidden_act ?? 'gelu' }, 'hidden_act'),
      gatedFF: false,
      causal: false,
      embedScale: 1,
      tiedEmbeddings: false,
      typeVocab: posInt(c, 'type_vocab_size', 2),
      embedNorm: true,
      head: classifier ? 'classifier' : 'none',
      ...(classifier ? { numLabels: numLabels(c), pooler: true } : {}),
    };
  },
  tensors(c, spec) {
    const ff = stackFF(c, 'encoder');
    const L = (l: number) => `bert.encoder.layer.${l}`;
    return {
      layout: 'linear',
      optionalPrefix: 'bert.',
      tokEmb: 'bert.embeddings.word_embeddings.weight',
      posEmb: 'bert.embeddings.position_embeddings.weight',
      typeEmb: 'bert.embeddings.token_type_embeddings.weight',
      embedNorm: { w: 'bert.embeddings.LayerNorm.weight', b: 'bert.embeddings.LayerNorm.bias' },
      ...(spec.head === 'classifier'
        ? {
            pooler: { w: 'bert.pooler.dense.weight', b: 'bert.pooler.dense.bias' },
            classifier: { w: 'classifier.weight', b: 'classifier.bias' },
          }
        : {}),
      layer: (l) => {
        const a = `${L(l)}.attention`;
        return {
          norm1: { w: `${a}.output.LayerNorm.weight`, b: `${a}.output.LayerNorm.bias` },
          qkv: {
            q: `${a}.self.query.weight`,
            k: `${a}.self.key.weight`,
            v: `${a}.self.value.weight`,
            qBias: `${a}.self.query.bias`,
            kBias: `${a}.self.key.bias`,
            vBias: `${a}.self.value.bias`,
          },
          o: `${a}.output.dense.weight`,
          oBias: `${a}.output.dense.bias`,
          norm2: { w: `${L(l)}.output.LayerNorm.weight`, b: `${L(l)}.output.LayerNorm.bias` },
          ff: ff.ff(l),
        };
      },
    };
  },
};

// MarianMTModel: sinusoidal positions, embeddings scaled by sqrt(d) (scale_embedding), post-LN, swish FF,
// shared tied embeddings, final_logits_bias. The main stack is the decoder (causal self-attention +
// cross-attention + LM head); the encoder runs first.
function marianSpec(c: Config, stack: 'encoder' | 'decoder'): ModelSpec {
  unsupportedIf(c.normalize_before === true, 'pre-norm Marian (normalize_before = true)');
  unsupportedIf(c.add_final_layer_norm === true, 'add_final_layer_norm = true');
  unsupportedIf(c.normalize_embedding === true, 'normalize_embedding = true');
  unsupportedIf(c.share_encoder_decoder_embeddings === false, 'separate encoder/decoder embeddings');
  const dModel = posInt(c, 'd_model');
  const heads = posInt(c, `${stack}_attention_heads`);
  return {
    family: 'marian',
    layers: posInt(c, `${stack}_layers`),
    dModel,
    nHeads: heads,
    nKvHeads: heads,
    headDim: headDim(c, 'd_model', `${stack}_attention_heads`),
    dFF: posInt(c, `${stack}_ffn_dim`),
    vocab: posInt(c, 'vocab_size'),
    maxPositions: posInt(c, 'max_position_embeddings', 1024),
    norm: 'layernorm',
    normPlacement: 'post',
    normEps: 1e-5,
    finalNorm: false,
    positions: 'sinusoidal',
    activation: activation(c, 'activation_function'),
    gatedFF: false,
    causal: stack === 'decoder',
    embedScale: c.scale_embedding === true ? Math.sqrt(dModel) : 1,
    tiedEmbeddings: true,
    head: stack === 'decoder' ? 'lm' : 'none',
    crossAttention: stack === 'decoder',
  };
}

function marianTensors(c: Config, spec: ModelSpec, stack: 'encoder' | 'decoder'): FamilyTensors {
  const ff = stackFF(c, stack);
  const L = (l: number) => `model.${stack}.layers.${l}`;
  const attn = (p: string) => ({
    q: `${p}.q_proj.weight`,
    k: `${p}.k_proj.weight`,
    v: `${p}.v_proj.weight`,
    qBias: `${p}.q_proj.bias`,
    kBias: `${p}.k_proj.bias`,
    vBias: `${p}.v_proj.bias`,
  });
  return {
    layout: 'linear',
    tokEmb: 'model.shared.weight',
    ...(stack === 'decoder' ? { lmHeadBias: 'final_logits_bias', lmHeadBiasShape: [1, spec.vocab] } : {}),
    layer: (l) => ({
      norm1: { w: `${L(l)}.self_attn_layer_norm.weight`, b: `${L(l)}.self_attn_layer_norm.bias` },
      qkv: attn(`${L(l)}.self_attn`),
      o: `${L(l)}.self_attn.out_proj.weight`,
      oBias: `${L(l)}.self_attn.out_proj.bias`,
      norm2: { w: `${L(l)}.final_layer_norm.weight`, b: `${L(l)}.final_layer_norm.bias` },
      ff: ff.ff(l),
      ...(stack === 'decoder'
        ? {
            xattn: {
              norm: { w: `${L(l)}.encoder_attn_layer_norm.weight`, b: `${L(l)}.encoder_attn_layer_norm.bias` },
              ...attn(`${L(l)}.encoder_attn`),
              o: `${L(l)}.encoder_attn.out_proj.weight`,
              oBias: `${L(l)}.encoder_attn.out_proj.bias`,
            },
          }
        : {}),
    }),
  };
}

const marian: Family = {
  modelType: 'marian',
  spec: (c) => marianSpec(c, 'decoder'),
  tensors: (c, spec) => marianTensors(c, spec, 'decoder'),
  encoder: {
    spec: (c) => marianSpec(c, 'encoder'),
    tensors: (c, spec) => marianTensors(c, spec, 'encoder'),
  },
};

const FAMILIES: Record<string, Family> = { gpt2, llama, vit, bert, marian };

/** model_types the forward pass runs. */
export const FORWARD_MODEL_TYPES = Object.keys(FAMILIES);

/** The family of a config.json; an unknown model_type is a typed error listing the supported ones. */
export function familyOf(config: Config): Family {
  const type = config.model_type;
  const f = typeof type === 'string' ? FAMILIES[type] : undefined;
  if (!f) {
    throw new FfmergeError(
      'UNSUPPORTED_ARCHITECTURE',
      `model_type ${JSON.stringify(type)} is not supported by the forward pass; supported: ${FORWARD_MODEL_TYPES.join(', ')}`,
    );
  }
  return f;
}
