/** LlamaForCausalLM: the LLaMA block (llama-like.ts) with optional attention_bias / mlp_bias, full attention. */
import { fullAttention } from '../spec';
import { flag, unsupportedIf } from './config';
import { llamaLike } from './llama-like';

export const llama = llamaLike({
  modelType: 'llama',
  hfClass: 'LlamaForCausalLM',
  qkvBias: (c) => flag(c, 'attention_bias'),
  oBias: (c) => flag(c, 'attention_bias'),
  mlpBias: (c) => flag(c, 'mlp_bias'),
  windows: (_c, layers) => fullAttention(layers),
  defaults: { maxPositions: 2048, rmsNormEps: 1e-6 },
  check: (c) => unsupportedIf(c.pretraining_tp != null && c.pretraining_tp !== 1, 'pretraining_tp ≠ 1'),
});
