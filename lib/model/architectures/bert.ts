/**
 * BertModel / BertForSequenceClassification: word + position + token-type embeddings, embedding LayerNorm,
 * post-LN blocks, erf GELU; the classifier (when the checkpoint has one) runs on tanh-pooled CLS. One stack,
 * the encoder.
 */
import { showValue } from '../../errors';
import { NO_ROPE, TOKEN_LM_IO, fullAttention } from '../spec';
import { activation, flag, intermediateOutputFF, headDim, numLabels, posInt, posNum, unsupportedIf } from './config';
import type { Architecture, SizeKeys } from './types';

const sizes: SizeKeys = {
  layers: 'num_hidden_layers',
  dModel: 'hidden_size',
  nHeads: 'num_attention_heads',
  dFF: 'intermediate_size',
  vocab: 'vocab_size',
  maxPositions: 'max_position_embeddings',
};
const L = (l: number) => `bert.encoder.layer.${l}`;

// BertModel checkpoints may or may not carry the "bert." prefix; the loader resolves which (optionalPrefix).
const ff = intermediateOutputFF(L);

export const bert: Architecture = {
  modelType: 'bert',
  hfClass: 'BertModel / BertForSequenceClassification',
  mainStack: 'encoder',
  stacks: [
    {
      name: 'encoder',
      sizes,
      ff,
      spec(c) {
        unsupportedIf(
          c.position_embedding_type != null && c.position_embedding_type !== 'absolute',
          `position_embedding_type ${showValue(c.position_embedding_type)}`,
        );
        unsupportedIf(flag(c, 'is_decoder'), 'BERT as a decoder (is_decoder = true)');
        const arch = Array.isArray(c.architectures) ? (c.architectures as unknown[]) : [];
        const classifier = arch.includes('BertForSequenceClassification');
        const layers = posInt(c, sizes.layers);
        return {
          ...TOKEN_LM_IO,
          family: 'bert',
          layers,
          dModel: posInt(c, sizes.dModel),
          nHeads: posInt(c, sizes.nHeads),
          nKvHeads: posInt(c, sizes.nHeads),
          headDim: headDim(c, sizes.dModel, sizes.nHeads),
          dFF: posInt(c, sizes.dFF),
          vocab: posInt(c, sizes.vocab!),
          maxPositions: posInt(c, sizes.maxPositions!, 512),
          maxPositionsField: sizes.maxPositions!,
          norm: 'layernorm',
          normPlacement: 'post',
          normEps: posNum(c, 'layer_norm_eps', 1e-12),
          finalNorm: false,
          positions: 'learned',
          ...NO_ROPE,
          activation: activation(c, 'hidden_act', 'gelu'),
          gatedFF: false,
          causal: false,
          slidingWindow: fullAttention(layers),
          embedScale: 1,
          tiedEmbeddings: false,
          typeVocab: posInt(c, 'type_vocab_size', 2),
          embedNorm: true,
          head: classifier ? 'classifier' : 'none',
          numLabels: classifier ? numLabels(c) : 0,
          pooler: classifier,
        };
      },
      tensors(c, spec) {
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
              ff: ff(c, l),
            };
          },
        };
      },
    },
  ],
};
