/**
 * The shape and kind of a transformer, as the native forward pass reads it (native/core/model/spec.h).
 * Filled from config.json by the family table (families.ts).
 */
export type NormKind = 'layernorm' | 'rmsnorm';
export type PositionKind = 'learned' | 'rotary' | 'sinusoidal' | 'none';
export type ActivationKind = 'gelu_new' | 'gelu' | 'silu' | 'relu';

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
  vocab: number;
  /** Longest sequence the model accepts (the learned position table; for rotary models, the config's value). */
  maxPositions: number;
  /** The config.json field maxPositions came from, for messages. */
  maxPositionsField?: string;
  norm: NormKind;
  normPlacement: 'pre' | 'post';
  normEps: number;
  finalNorm: boolean;
  positions: PositionKind;
  ropeTheta?: number;
  /** Rotated dims per head (defaults to headDim). */
  ropeDim?: number;
  activation: ActivationKind;
  /** SwiGLU-style FF: act(x·W_gateᵀ) ⊙ (x·W_inᵀ). */
  gatedFF: boolean;
  causal: boolean;
  /** Token embeddings are multiplied by this (1 for GPT-2/LLaMA, sqrt(d) for Marian). */
  embedScale: number;
  tiedEmbeddings: boolean;
  /** What enters the stack: token ids (default) or images cut into patches (ViT; seq = 1 + patches, CLS first). */
  input?: 'tokens' | 'patches';
  channels?: number;
  imageH?: number;
  imageW?: number;
  patch?: number;
  /** BERT token-type embeddings (0/absent = none) and the norm after summing the embeddings. */
  typeVocab?: number;
  embedNorm?: boolean;
  /** Output head: LM head on every position (default), classifier on the first (CLS) position, or none. */
  head?: 'lm' | 'classifier' | 'none';
  numLabels?: number;
  /** BERT pooler (tanh dense on CLS) before the classifier. */
  pooler?: boolean;
  /** Decoder blocks of encoder–decoder models: cross-attention over the encoder states. */
  crossAttention?: boolean;
}
