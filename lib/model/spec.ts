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
}
