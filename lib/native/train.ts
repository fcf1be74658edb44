/** Typed view of the native fine-tuning functions (native/binding/train_binding.cc). */
import { loadAddon } from './loader';
import type { NativeJobHandle } from './job';
import type { NativeModelHandle } from './model';

export interface NativeFinetuneArgs {
  tokens: Int32Array;
  validation?: Int32Array;
  validationSeq?: number;
  steps: number;
  batch: number;
  seq: number;
  micro?: number;
  lr: number;
  warmup?: number;
  weightDecay?: number;
  clip?: number;
  seed?: number;
  evalEvery?: number;
  schedule?: 'constant' | 'cosine';
  trainable?: 'all' | 'ff';
}

export interface NativeStepLog {
  step: number;
  loss: number;
  lr: number;
  gradNorm: number;
  seconds: number;
  tokensPerSecond: number;
  valLoss?: number;
}

export interface NativeFinetuneResult {
  model: NativeModelHandle;
  /** One entry per step in each column; valLoss is NaN where not evaluated. */
  log: Record<'step' | 'loss' | 'lr' | 'gradNorm' | 'seconds' | 'tokensPerSecond' | 'valLoss', Float64Array>;
  valBefore?: number;
  valAfter?: number;
}

export interface NativeLossAndGrad {
  loss: number;
  /** Unique parameter name (the first slot using it) → gradient of the mean loss. */
  grads: Record<string, Float32Array>;
  /** Every slot → the parameter it uses (tied slots name one parameter). */
  slots: Record<string, string>;
}

interface TrainAddon {
  modelFinetune(
    m: NativeModelHandle,
    args: NativeFinetuneArgs,
    onProgress: ((done: number, total: number) => void) | undefined,
  ): NativeJobHandle<NativeFinetuneResult> & { latest(): NativeStepLog | undefined };
  modelLossAndGrad(
    m: NativeModelHandle,
    args: { ids: Int32Array; targets: Int32Array; batch: number; seq: number },
    onProgress: ((done: number, total: number) => void) | undefined,
  ): NativeJobHandle<NativeLossAndGrad>;
  modelSlotTensors(m: NativeModelHandle): Record<string, Float32Array>;
}

export function trainAddon(): TrainAddon {
  return loadAddon().module as unknown as TrainAddon;
}
