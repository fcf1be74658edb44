/**
 * Qwen2ForCausalLM: the LLaMA block with biases on q/k/v (never on o or the FF), and sliding-window
 * attention on some layers when use_sliding_window is set.
 */
import { fullAttention } from '../spec';
import { bad, flag, posInt } from './config';
import { llamaLike } from './llama-like';
import type { Config } from './types';

// transformers' Qwen2Config (and Qwen3Config): sliding_window (4096 when left out, none when null) only counts
// when use_sliding_window is true; then the layers listed as "sliding_attention" in layer_types use it, or,
// without layer_types, layers ≥ max_window_layers.
export function qwenWindows(c: Config, layers: number): number[] {
  if (!flag(c, 'use_sliding_window') || c.sliding_window === null) return fullAttention(layers);
  const w = posInt(c, 'sliding_window', 4096);
  const types = c.layer_types;
  if (types != null) {
    if (!Array.isArray(types) || types.length !== layers || !types.every((t) => t === 'sliding_attention' || t === 'full_attention')) {
      throw bad('layer_types', `must list "sliding_attention" or "full_attention" for each of the ${layers} layers`, types);
    }
    return types.map((t) => (t === 'sliding_attention' ? w : 0));
  }
  const from = c.max_window_layers ?? 28;
  if (typeof from !== 'number' || !Number.isInteger(from) || from < 0) throw bad('max_window_layers', 'must be a non-negative integer', from);
  return Array.from({ length: layers }, (_, l) => (l >= from ? w : 0));
}

export const qwen2 = llamaLike({
  modelType: 'qwen2',
  hfClass: 'Qwen2ForCausalLM',
  qkvBias: () => true,
  oBias: () => false,
  mlpBias: () => false,
  windows: qwenWindows,
  defaults: { maxPositions: 32768, rmsNormEps: 1e-6, kvHeads: 32 },
});
