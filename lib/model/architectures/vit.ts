/**
 * ViTForImageClassification: conv patch embedding, CLS first, learned positions, pre-LN, erf GELU, final
 * LayerNorm, classifier on CLS. One stack, the encoder.
 */
import { NO_ROPE, fullAttention } from '../spec';
import { activation, intermediateOutputFF, bad, flag, headDim, numLabels, posInt, posNum, squareSide, unsupportedIf } from './config';
import type { Architecture, SizeKeys } from './types';

const sizes: SizeKeys = { layers: 'num_hidden_layers', dModel: 'hidden_size', nHeads: 'num_attention_heads', dFF: 'intermediate_size' };
const L = (l: number) => `vit.encoder.layer.${l}`;

const ff = intermediateOutputFF(L);

export const vit: Architecture = {
  modelType: 'vit',
  hfClass: 'ViTForImageClassification',
  classes: /ForImageClassification$/,
  mainStack: 'encoder',
  stacks: [
    {
      name: 'encoder',
      sizes,
      ff,
      spec(c) {
        const imageSize = squareSide(c, 'image_size', 224);
        const patch = squareSide(c, 'patch_size', 16);
        if (imageSize % patch !== 0) throw bad('image_size', `must be a multiple of patch_size (${patch})`, c.image_size);
        unsupportedIf(c.num_labels === 0, 'a ViT without classifier (num_labels = 0)');
        const layers = posInt(c, sizes.layers);
        return {
          family: 'vit',
          layers,
          dModel: posInt(c, sizes.dModel),
          nHeads: posInt(c, sizes.nHeads),
          nKvHeads: posInt(c, sizes.nHeads),
          headDim: headDim(c, sizes.dModel, sizes.nHeads),
          dFF: posInt(c, sizes.dFF),
          vocab: 0,
          maxPositions: 1 + (imageSize / patch) ** 2,
          maxPositionsField: 'image_size',
          norm: 'layernorm',
          normPlacement: 'pre',
          normEps: posNum(c, 'layer_norm_eps', 1e-12),
          finalNorm: true,
          positions: 'learned',
          ...NO_ROPE,
          activation: activation(c, 'hidden_act', 'gelu'),
          gatedFF: false,
          causal: false,
          slidingWindow: fullAttention(layers),
          embedScale: 1,
          tiedEmbeddings: false,
          input: 'patches',
          channels: posInt(c, 'num_channels', 3),
          imageH: imageSize,
          imageW: imageSize,
          patch,
          typeVocab: 0,
          embedNorm: false,
          head: 'classifier',
          numLabels: numLabels(c),
          pooler: false,
          crossAttention: false,
        };
      },
      tensors(c, spec) {
        const bias = flag(c, 'qkv_bias', true);
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
              ff: ff(c, l),
            };
          },
        };
      },
    },
  ],
};
