/**
 * The shape of an architecture description (one file per family in this folder, registered in index.ts).
 * A description says, from config.json alone: which stacks the model has and which one is the output, the
 * config keys giving each size, the ModelSpec (norms, activation, attention kind, positions, …) and where
 * every tensor is stored and in which layout. The loader, the checkpoint writer, inspect and the merge all
 * read it; nothing else knows tensor names.
 *
 * Canonical FF layout used everywhere inside ffmerge ("Linear" layout, like torch.nn.Linear):
 *   wIn   [dFF, d]   first FF matrix (c_fc / fc1 / intermediate.dense / up_proj) — its output is the feature
 *   bIn   [dFF]
 *   wGate [dFF, d]   SwiGLU gate (LLaMA gate_proj), absent otherwise
 *   bGate [dFF]
 *   wOut  [d, dFF]   second FF matrix (c_proj / fc2 / output.dense / down_proj)
 *   bOut  [d]
 * GPT-2 stores its Conv1D weights transposed ([in, out]); `layout: 'conv1d'` says so and the loader/writer
 * transpose at the boundary.
 */
import type { ModelSpec } from '../spec';

export type Config = Record<string, unknown>;

/** How 2-D weights are stored: 'linear' = [out, in] (torch.nn.Linear); 'conv1d' = [in, out] (GPT-2 Conv1D). */
export type WeightLayout = 'linear' | 'conv1d';

export type StackName = 'decoder' | 'encoder';

/** One FF sublayer's stored tensor names. */
export interface FFTensorNames {
  wIn: string;
  bIn?: string;
  wGate?: string;
  bGate?: string;
  wOut: string;
  bOut?: string;
  layout: WeightLayout;
}

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
  /** The per-head RMSNorm weights of q and k, [headDim] each (spec.qkNorm: Qwen3). */
  qkNorm?: { q: string; k: string };
  o: string;
  oBias?: string;
  norm2: NormNames;
  ff: FFTensorNames;
  xattn?: CrossAttentionNames;
}

/** Every tensor of one stack (the non-layer ones are present only where the stack has them). */
export interface StackTensors {
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

/**
 * The config.json keys that give a stack's sizes (read by its spec(); listed here so messages, docs and
 * tools can say where a number comes from). A size absent from the map is derived (e.g. ViT's positions
 * from image_size / patch_size) or fixed by the family.
 */
export interface SizeKeys {
  layers: string;
  dModel: string;
  nHeads: string;
  nKvHeads?: string;
  headDim?: string;
  dFF: string;
  vocab?: string;
  maxPositions?: string;
}

export interface StackDescription {
  name: StackName;
  sizes: SizeKeys;
  /** The stored FF tensors of one layer; needs only the config, so inspect and the writer never build a spec. */
  ff(config: Config, layer: number): FFTensorNames;
  /** The complete ModelSpec of this stack (every field set; see validate-spec.ts). */
  spec(config: Config): ModelSpec;
  tensors(config: Config, spec: ModelSpec): StackTensors;
}

export interface Architecture {
  /** config.json model_type. */
  modelType: string;
  /** The Hugging Face class(es) ffmerge runs for this model_type. */
  hfClass: string;
  /**
   * The classes config.json's `architectures` may name, by their head (absent: any). A checkpoint saved from
   * another head (Qwen3ForSequenceClassification) holds that head's weights, not the one ffmerge would run.
   */
  classes?: RegExp;
  /** Stacks in the order they run (an encoder–decoder's encoder first). */
  stacks: readonly StackDescription[];
  /** The stack whose output is the model's output: the decoder of decoder-only and encoder–decoder models,
   * the encoder of encoder-only ones. */
  mainStack: StackName;
}
