/** MistralForCausalLM: the LLaMA block without biases; sliding-window attention on every layer unless null. */
import { fullAttention } from '../spec';
import { posInt } from './config';
import { llamaLike } from './llama-like';
import type { Config } from './types';

// MistralConfig defaults sliding_window to 4096 when the key is absent; null (Mistral v0.2+) means full
// attention.
function windows(c: Config, layers: number): number[] {
  if (c.sliding_window === null) return fullAttention(layers);
  return new Array<number>(layers).fill(posInt(c, 'sliding_window', 4096));
}

export const mistral = llamaLike({
  modelType: 'mistral',
  hfClass: 'MistralForCausalLM',
  qkvBias: () => false,
  oBias: () => false,
  mlpBias: () => false,
  windows,
  defaults: { maxPositions: 4096 * 32, rmsNormEps: 1e-6, kvHeads: 8 },
});
