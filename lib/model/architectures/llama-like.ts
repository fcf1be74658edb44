/**
 * The LLaMA block shape shared by LLaMA, Qwen2, Qwen3 and Mistral: RMSNorm pre-norm, rotary positions, grouped-query
 * attention with separate q/k/v/o projections, SwiGLU FF (gate_proj, up_proj, down_proj), optional untied
 * head. The families differ only in which projections carry biases, Qwen3's per-head q/k norm, the
 * sliding-window rule and the transformers config defaults, which are the options here.
 */
import { TOKEN_LM_IO } from '../spec';
import { LM_CLASSES, activation, checkWholeHeadRope, headDim, kvHeads, posInt, posNum, ropeScaling, ropeTheta, rotaryHeadDim, tiedEmbeddings } from './config';
import type { Architecture, Config, FFTensorNames, SizeKeys } from './types';

export interface LlamaLikeOptions {
  modelType: string;
  hfClass: string;
  /** Whether q/k/v and o carry biases, and the FF matrices. */
  qkvBias(c: Config): boolean;
  oBias(c: Config): boolean;
  mlpBias(c: Config): boolean;
  /** Qwen3: an RMSNorm over each head of q and k (self_attn.q_norm / k_norm), ModelSpec.qkNorm. */
  qkNorm?: boolean | undefined;
  /** Per-layer attention windows (0 = full), see ModelSpec.slidingWindow. */
  windows(c: Config, layers: number): number[];
  /**
   * The transformers config class defaults for keys a config.json may omit. headDim: the class's head_dim default
   * (Qwen3: 128), else hidden_size / num_attention_heads; kvHeads: its num_key_value_heads default (Mistral 8,
   * Qwen 32), else num_attention_heads.
   */
  defaults: { maxPositions: number; rmsNormEps: number; headDim?: number; kvHeads?: number };
  /** Family-specific refusals (typed UNSUPPORTED_ARCHITECTURE errors). */
  check?(c: Config): void;
}

const sizes: SizeKeys = {
  layers: 'num_hidden_layers',
  dModel: 'hidden_size',
  nHeads: 'num_attention_heads',
  nKvHeads: 'num_key_value_heads',
  headDim: 'head_dim',
  dFF: 'intermediate_size',
  vocab: 'vocab_size',
  maxPositions: 'max_position_embeddings',
};

export function llamaLike(o: LlamaLikeOptions): Architecture {
  const ff = (c: Config, l: number): FFTensorNames => {
    const p = `model.layers.${l}.mlp`;
    return {
      wIn: `${p}.up_proj.weight`,
      wGate: `${p}.gate_proj.weight`,
      wOut: `${p}.down_proj.weight`,
      ...(o.mlpBias(c) ? { bIn: `${p}.up_proj.bias`, bGate: `${p}.gate_proj.bias`, bOut: `${p}.down_proj.bias` } : {}),
      layout: 'linear',
    };
  };
  return {
    modelType: o.modelType,
    hfClass: o.hfClass,
    classes: LM_CLASSES,
    mainStack: 'decoder',
    stacks: [
      {
        name: 'decoder',
        sizes,
        ff,
        spec(c) {
          o.check?.(c);
          checkWholeHeadRope(c);
          const layers = posInt(c, sizes.layers);
          return {
            ...TOKEN_LM_IO,
            family: o.modelType,
            layers,
            dModel: posInt(c, sizes.dModel),
            nHeads: posInt(c, sizes.nHeads),
            nKvHeads: kvHeads(c, sizes.nKvHeads!, sizes.nHeads, o.defaults.kvHeads),
            headDim: rotaryHeadDim(headDim(c, sizes.dModel, sizes.nHeads, sizes.headDim, o.defaults.headDim), c[sizes.headDim!] != null ? `"${sizes.headDim}"` : `"${sizes.dModel}" / "${sizes.nHeads}"`),
            dFF: posInt(c, sizes.dFF),
            vocab: posInt(c, sizes.vocab!),
            maxPositions: posInt(c, sizes.maxPositions!, o.defaults.maxPositions),
            maxPositionsField: sizes.maxPositions!,
            norm: 'rmsnorm',
            normPlacement: 'pre',
            normEps: posNum(c, 'rms_norm_eps', o.defaults.rmsNormEps),
            finalNorm: true,
            positions: 'rotary',
            ropeTheta: ropeTheta(c),
            ropeDim: 0,
            ropeScaling: ropeScaling(c),
            ...(o.qkNorm ? { qkNorm: true } : {}),
            activation: activation(c, 'hidden_act', 'silu'),
            gatedFF: true,
            causal: true,
            slidingWindow: o.windows(c, layers),
            embedScale: 1,
            tiedEmbeddings: tiedEmbeddings(c), // all three config classes default to untied
          };
        },
        tensors(c, spec) {
          const qkvBias = o.qkvBias(c);
          const oBias = o.oBias(c);
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
                ...(qkvBias ? { qBias: `${a(l)}.q_proj.bias`, kBias: `${a(l)}.k_proj.bias`, vBias: `${a(l)}.v_proj.bias` } : {}),
              },
              ...(o.qkNorm ? { qkNorm: { q: `${a(l)}.q_norm.weight`, k: `${a(l)}.k_norm.weight` } } : {}),
              o: `${a(l)}.o_proj.weight`,
              ...(oBias ? { oBias: `${a(l)}.o_proj.bias` } : {}),
              norm2: { w: `model.layers.${l}.post_attention_layernorm.weight` },
              ff: ff(c, l),
            }),
          };
        },
      },
    ],
  };
}
