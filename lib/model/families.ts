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

export interface LayerNames {
  norm1: NormNames;
  qkv: QKVNames;
  o: string;
  oBias?: string;
  norm2: NormNames;
  ff: FFTensorNames;
}

export interface FamilyTensors {
  /** Layout of every 2-D weight ('conv1d' = stored [in, out], transposed at load). */
  layout: WeightLayout;
  tokEmb: string;
  posEmb?: string;
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
  spec(config: Config): ModelSpec;
  tensors(config: Config, spec: ModelSpec): FamilyTensors;
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

const FAMILIES: Record<string, Family> = { gpt2, llama };

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
