/** GPT2LMHeadModel: Conv1D weights, fused q/k/v, learned positions, pre-LN, tanh GELU, head tied to wte unless the config unties it. */
import { NO_ROPE, TOKEN_LM_IO, fullAttention } from '../spec';
import { LM_CLASSES, activation, flag, headDim, posInt, posNum, tiedEmbeddings, unsupportedIf } from './config';
import type { Architecture, FFTensorNames, SizeKeys } from './types';

const sizes: SizeKeys = { layers: 'n_layer', dModel: 'n_embd', nHeads: 'n_head', dFF: 'n_inner', vocab: 'vocab_size', maxPositions: 'n_positions' };
const h = (l: number) => `transformer.h.${l}`;

function ff(_c: unknown, l: number): FFTensorNames {
  return {
    wIn: `${h(l)}.mlp.c_fc.weight`,
    bIn: `${h(l)}.mlp.c_fc.bias`,
    wOut: `${h(l)}.mlp.c_proj.weight`,
    bOut: `${h(l)}.mlp.c_proj.bias`,
    layout: 'conv1d',
  };
}

export const gpt2: Architecture = {
  modelType: 'gpt2',
  hfClass: 'GPT2LMHeadModel',
  classes: LM_CLASSES,
  mainStack: 'decoder',
  stacks: [
    {
      name: 'decoder',
      sizes,
      ff,
      spec(c) {
        const dModel = posInt(c, sizes.dModel);
        const nHeads = posInt(c, sizes.nHeads);
        unsupportedIf(flag(c, 'scale_attn_by_inverse_layer_idx'), 'scale_attn_by_inverse_layer_idx = true');
        unsupportedIf(!flag(c, 'scale_attn_weights', true), 'scale_attn_weights = false');
        unsupportedIf(flag(c, 'add_cross_attention'), 'add_cross_attention = true');
        const layers = posInt(c, sizes.layers);
        return {
          ...TOKEN_LM_IO,
          family: 'gpt2',
          layers,
          dModel,
          nHeads,
          nKvHeads: nHeads,
          headDim: headDim(c, sizes.dModel, sizes.nHeads),
          dFF: c[sizes.dFF] == null ? 4 * dModel : posInt(c, sizes.dFF),
          vocab: posInt(c, 'vocab_size'),
          maxPositions: posInt(c, 'n_positions'),
          maxPositionsField: 'n_positions',
          norm: 'layernorm',
          normPlacement: 'pre',
          normEps: posNum(c, 'layer_norm_epsilon', 1e-5),
          finalNorm: true,
          positions: 'learned',
          ...NO_ROPE,
          activation: activation(c, 'activation_function', 'gelu_new'), // GPT2Config's default
          gatedFF: false,
          causal: true,
          slidingWindow: fullAttention(layers),
          embedScale: 1,
          // GPT2Config leaves tie_word_embeddings at PretrainedConfig's true; false loads lm_head.weight as the head
          tiedEmbeddings: tiedEmbeddings(c, true),
        };
      },
      tensors(c, spec) {
        return {
          layout: 'conv1d',
          tokEmb: 'transformer.wte.weight',
          ...(spec.tiedEmbeddings ? {} : { lmHead: 'lm_head.weight' }),
          posEmb: 'transformer.wpe.weight',
          finalNorm: { w: 'transformer.ln_f.weight', b: 'transformer.ln_f.bias' },
          optionalPrefix: 'transformer.',
          layer: (l) => ({
            norm1: { w: `${h(l)}.ln_1.weight`, b: `${h(l)}.ln_1.bias` },
            qkv: { fused: `${h(l)}.attn.c_attn.weight`, fusedBias: `${h(l)}.attn.c_attn.bias` },
            o: `${h(l)}.attn.c_proj.weight`,
            oBias: `${h(l)}.attn.c_proj.bias`,
            norm2: { w: `${h(l)}.ln_2.weight`, b: `${h(l)}.ln_2.bias` },
            ff: ff(c, l),
          }),
        };
      },
    },
  ],
};
