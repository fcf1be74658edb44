/**
 * The shape and kind of one transformer stack, as the native forward pass reads it (native/core/model/spec.h,
 * parsed by native/binding/spec_binding.cc). Every field is required: the architecture descriptions
 * (lib/model/architectures/) fill all of them from config.json and validateSpec (validate-spec.ts) checks
 * them, so the native side has no defaults of its own.
 */
export type NormKind = 'layernorm' | 'rmsnorm';
export type PositionKind = 'learned' | 'rotary' | 'sinusoidal' | 'none';
export type ActivationKind = 'gelu_new' | 'gelu' | 'silu' | 'relu';

/**
 * RoPE scaling, as transformers' rope init functions read config.json's rope_scaling (rope_parameters in
 * transformers ≥ 5): 'linear' divides every frequency by factor; 'llama3' (Llama 3.1+) divides the low
 * frequencies, keeps the high ones and blends between, by wavelength against originalMaxPositions. The fields
 * a type does not read hold NO_ROPE_SCALING's values.
 */
export interface RopeScaling {
  type: 'none' | 'linear' | 'llama3';
  factor: number;
  lowFreqFactor: number;
  highFreqFactor: number;
  originalMaxPositions: number;
}

export const NO_ROPE_SCALING: Readonly<RopeScaling> = Object.freeze({ type: 'none', factor: 1, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositions: 8192 });

/** The rotary fields of a stack without rotary positions. */
export const NO_ROPE = { ropeTheta: 0, ropeDim: 0, ropeScaling: NO_ROPE_SCALING } as const satisfies Partial<ModelSpec>;

export interface ModelSpec {
  /** config.json model_type. */
  family: string;
  layers: number;
  dModel: number;
  nHeads: number;
  /** Key/value heads: nHeads for multi-head attention, fewer for grouped-query attention. */
  nKvHeads: number;
  headDim: number;
  dFF: number;
  /** Token-embedding / LM-head rows (0 for patch-input models without an LM head). */
  vocab: number;
  /** Longest sequence the model accepts (the learned position table; for rotary models, the config's value). */
  maxPositions: number;
  /** The config.json field maxPositions came from, for messages. */
  maxPositionsField: string;
  norm: NormKind;
  normPlacement: 'pre' | 'post';
  normEps: number;
  finalNorm: boolean;
  positions: PositionKind;
  /** Rotary base (ignored unless positions = 'rotary'). */
  ropeTheta: number;
  /** Rotated dims per head (0 = headDim). */
  ropeDim: number;
  /**
   * How the rotary frequencies are stretched past the trained context (config.json rope_scaling). The one field
   * that may be left out (no scaling): it came after specs were public, and a spec written for buildModel before
   * it stays valid.
   */
  ropeScaling?: RopeScaling;
  /**
   * Qwen3: an RMSNorm over each head of q and of k (weights `layers.N.q_norm_w` / `k_norm_w`, headDim wide,
   * eps normEps) after the projection and before the rotary positions. May be left out (none), as ropeScaling.
   */
  qkNorm?: boolean;
  activation: ActivationKind;
  /** SwiGLU-style FF: act(x·W_gateᵀ) ⊙ (x·W_inᵀ). */
  gatedFF: boolean;
  causal: boolean;
  /**
   * Per layer: 0 = full attention, w > 0 = sliding-window attention where query i sees key j only when
   * i − j < w (Mistral, Qwen2/Qwen3's upper layers). Length = layers.
   */
  slidingWindow: number[];
  /** Token embeddings are multiplied by this (1 for GPT-2/LLaMA, sqrt(d) for Marian). */
  embedScale: number;
  tiedEmbeddings: boolean;
  /** What enters the stack: token ids or images cut into patches (ViT; seq = 1 + patches, CLS first). */
  input: 'tokens' | 'patches';
  /** Patch input only (0 otherwise). */
  channels: number;
  imageH: number;
  imageW: number;
  patch: number;
  /** BERT token-type embeddings (0 = none) and the norm after summing the embeddings. */
  typeVocab: number;
  embedNorm: boolean;
  /** Output head: LM head on every position, classifier on the first (CLS) position, or none. */
  head: 'lm' | 'classifier' | 'none';
  /** Classifier head only (0 otherwise). */
  numLabels: number;
  /** BERT pooler (tanh dense on CLS) before the classifier. */
  pooler: boolean;
  /** Decoder blocks of encoder–decoder models: cross-attention over the encoder states. */
  crossAttention: boolean;
}

/** The input/output fields of a plain token-in, LM-head-out stack (decoder-only language models); other token-input stacks override what differs. */
export const TOKEN_LM_IO = {
  input: 'tokens',
  channels: 0,
  imageH: 0,
  imageW: 0,
  patch: 0,
  typeVocab: 0,
  embedNorm: false,
  head: 'lm',
  numLabels: 0,
  pooler: false,
  crossAttention: false,
} as const satisfies Partial<ModelSpec>;

/** Per-layer windows of a stack with full attention everywhere. */
export function fullAttention(layers: number): number[] {
  return new Array<number>(layers).fill(0);
}
