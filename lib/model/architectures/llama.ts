/** LlamaForCausalLM: the LLaMA block (llama-like.ts) with optional attention_bias / mlp_bias, full attention. */
import { fullAttention } from '../spec';
import { unsupportedIf } from './config';
import { llamaLike } from './llama-like';

export const llama = llamaLike({
  modelType: 'llama',
  hfClass: 'LlamaForCausalLM',
  qkvBias: (c) => c.attention_bias === true,
  oBias: (c) => c.attention_bias === true,
  mlpBias: (c) => c.mlp_bias === true,
  windows: (_c, layers) => fullAttention(layers),
  defaults: { maxPositions: 2048, rmsNormEps: 1e-6 },
  check: (c) => unsupportedIf(c.pretraining_tp != null && c.pretraining_tp !== 1, 'pretraining_tp ≠ 1'),
});
