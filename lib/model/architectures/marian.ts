/**
 * MarianMTModel: sinusoidal positions, embeddings scaled by sqrt(d) (scale_embedding), post-LN, swish FF,
 * shared tied embeddings, final_logits_bias. Two stacks: the encoder runs first; the decoder (causal
 * self-attention + cross-attention + LM head) is the main one.
 */
import { NO_ROPE, TOKEN_LM_IO, fullAttention, type ModelSpec } from '../spec';
import { activation, flag, headDim, posInt, tiedEmbeddings, unsupportedIf } from './config';
import type { Architecture, Config, FFTensorNames, SizeKeys, StackDescription, StackName, StackTensors } from './types';

const L = (stack: StackName, l: number) => `model.${stack}.layers.${l}`;

function ff(stack: StackName, l: number): FFTensorNames {
  return {
    wIn: `${L(stack, l)}.fc1.weight`,
    bIn: `${L(stack, l)}.fc1.bias`,
    wOut: `${L(stack, l)}.fc2.weight`,
    bOut: `${L(stack, l)}.fc2.bias`,
    layout: 'linear',
  };
}

function sizes(stack: StackName): SizeKeys {
  return {
    layers: `${stack}_layers`,
    dModel: 'd_model',
    nHeads: `${stack}_attention_heads`,
    dFF: `${stack}_ffn_dim`,
    vocab: 'vocab_size',
    maxPositions: 'max_position_embeddings',
  };
}

function spec(c: Config, stack: StackName): ModelSpec {
  unsupportedIf(flag(c, 'normalize_before'), 'pre-norm Marian (normalize_before = true)');
  unsupportedIf(flag(c, 'add_final_layer_norm'), 'add_final_layer_norm = true');
  unsupportedIf(flag(c, 'normalize_embedding'), 'normalize_embedding = true');
  unsupportedIf(!flag(c, 'share_encoder_decoder_embeddings', true), 'separate encoder/decoder embeddings');
  const S = sizes(stack);
  const dModel = posInt(c, S.dModel);
  const heads = posInt(c, S.nHeads);
  const layers = posInt(c, S.layers);
  const decoder = stack === 'decoder';
  return {
    ...TOKEN_LM_IO,
    family: 'marian',
    layers,
    dModel,
    nHeads: heads,
    nKvHeads: heads,
    headDim: headDim(c, S.dModel, S.nHeads),
    dFF: posInt(c, S.dFF),
    vocab: posInt(c, S.vocab!),
    maxPositions: posInt(c, S.maxPositions!, 1024),
    maxPositionsField: S.maxPositions!,
    norm: 'layernorm',
    normPlacement: 'post',
    normEps: 1e-5,
    finalNorm: false,
    positions: 'sinusoidal',
    ...NO_ROPE,
    activation: activation(c, 'activation_function', 'gelu'), // MarianConfig's default
    gatedFF: false,
    causal: decoder,
    slidingWindow: fullAttention(layers),
    embedScale: flag(c, 'scale_embedding') ? Math.sqrt(dModel) : 1,
    // the decoder's head is the shared embedding unless tie_word_embeddings is false (then lm_head.weight)
    tiedEmbeddings: tiedEmbeddings(c, true),
    head: decoder ? 'lm' : 'none',
    crossAttention: decoder,
  };
}

function tensors(s: ModelSpec, stack: StackName): StackTensors {
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
    ...(stack === 'decoder' ? { lmHeadBias: 'final_logits_bias', lmHeadBiasShape: [1, s.vocab], ...(s.tiedEmbeddings ? {} : { lmHead: 'lm_head.weight' }) } : {}),
    layer: (l) => ({
      norm1: { w: `${L(stack, l)}.self_attn_layer_norm.weight`, b: `${L(stack, l)}.self_attn_layer_norm.bias` },
      qkv: attn(`${L(stack, l)}.self_attn`),
      o: `${L(stack, l)}.self_attn.out_proj.weight`,
      oBias: `${L(stack, l)}.self_attn.out_proj.bias`,
      norm2: { w: `${L(stack, l)}.final_layer_norm.weight`, b: `${L(stack, l)}.final_layer_norm.bias` },
      ff: ff(stack, l),
      ...(stack === 'decoder'
        ? {
            xattn: {
              norm: { w: `${L(stack, l)}.encoder_attn_layer_norm.weight`, b: `${L(stack, l)}.encoder_attn_layer_norm.bias` },
              ...attn(`${L(stack, l)}.encoder_attn`),
              o: `${L(stack, l)}.encoder_attn.out_proj.weight`,
              oBias: `${L(stack, l)}.encoder_attn.out_proj.bias`,
            },
          }
        : {}),
    }),
  };
}

const stack = (name: StackName): StackDescription => ({
  name,
  sizes: sizes(name),
  ff: (_c, l) => ff(name, l),
  spec: (c) => spec(c, name),
  tensors: (_c, s) => tensors(s, name),
});

export const marian: Architecture = {
  modelType: 'marian',
  hfClass: 'MarianMTModel',
  classes: /(ForConditionalGeneration|^[A-Za-z0-9]+Model)$/,
  mainStack: 'decoder',
  stacks: [stack('encoder'), stack('decoder')],
};
