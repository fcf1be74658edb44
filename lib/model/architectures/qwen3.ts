/**
 * Qwen3ForCausalLM: the LLaMA block with an RMSNorm over each head of q and of k (self_attn.q_norm / k_norm,
 * head_dim wide, eps rms_norm_eps) between the projection and the rotary positions; attention_bias puts biases
 * on q/k/v and o, as in LLaMA; the sliding-window rule is Qwen2's.
 */
import { flag } from './config';
import { qwenWindows } from './qwen2';
import { llamaLike } from './llama-like';

export const qwen3 = llamaLike({
  modelType: 'qwen3',
  hfClass: 'Qwen3ForCausalLM',
  qkvBias: (c) => flag(c, 'attention_bias'),
  oBias: (c) => flag(c, 'attention_bias'),
  mlpBias: () => false,
  qkNorm: true,
  windows: qwenWindows,
  // Qwen3Config: head_dim defaults to 128, not hidden_size / num_attention_heads
  defaults: { maxPositions: 32768, rmsNormEps: 1e-6, headDim: 128, kvHeads: 32 },
});
