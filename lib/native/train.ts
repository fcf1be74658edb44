/** Typed view of the native fine-tuning functions (native/binding/train_binding.cc). */
import { addonModule } from './loader';
import type { NativeJobHandle, NativeProgress } from './job';
import type { NativeModelHandle } from './model';

/** The optimizer options both kinds of data share. */
interface NativeTrainOptions {
  steps: number;
  batch: number;
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

/** Language models: windows of seq + 1 tokens drawn from one stream. */
export interface NativeFinetuneArgs extends NativeTrainOptions {
  tokens: Int32Array;
  validation?: Int32Array | undefined;
  validationSeq?: number | undefined;
  seq: number;
}

/** Image classifiers: preprocessed images [n, C, H, W] and their labels. */
export interface NativeImageFinetuneArgs extends NativeTrainOptions {
  images: Float32Array;
  labels: Int32Array;
  validationImages?: Float32Array | undefined;
  validationLabels?: Int32Array | undefined;
}

export interface NativeStepLog {
  step: number;
  loss: number;
  lr: number;
  gradNorm: number;
  seconds: number;
  tokensPerSecond: number;
  imagesPerSecond: number;
  valLoss?: number;
  valAccuracy?: number;
}

export interface NativeFinetuneResult {
  model: NativeModelHandle;
  /** One entry per step in each column; valLoss / valAccuracy are NaN where not evaluated. */
  log: Record<'step' | 'loss' | 'lr' | 'gradNorm' | 'seconds' | 'tokensPerSecond' | 'imagesPerSecond' | 'valLoss' | 'valAccuracy', Float64Array>;
  valBefore?: number;
  valAfter?: number;
  /** Image classifiers with validation images: top-1 accuracy before and after. */
  accuracyBefore?: number;
  accuracyAfter?: number;
}

export interface NativeLossAndGrad {
  loss: number;
  /** Unique parameter name (the first slot using it) → gradient of the mean loss. */
  grads: Record<string, Float32Array>;
  /** Every slot → the parameter it uses (tied slots name one parameter). */
  slots: Record<string, string>;
}

interface TrainAddon {
  modelCheckTrainable(m: NativeModelHandle): void;
  modelFinetune(
    m: NativeModelHandle,
    args: NativeFinetuneArgs | NativeImageFinetuneArgs,
    /** partDone/partTotal: during a validation pass, the sequences (or images) it has scored. */
    onProgress: ((done: number, total: number, partDone?: number, partTotal?: number) => void) | undefined,
  ): NativeJobHandle<NativeFinetuneResult> & { latest(): NativeStepLog | undefined };
  modelLossAndGrad(
    m: NativeModelHandle,
    args: { ids: Int32Array; targets: Int32Array; batch: number; seq: number } | { pixels: Float32Array; labels: Int32Array; batch: number },
    onProgress: NativeProgress,
  ): NativeJobHandle<NativeLossAndGrad>;
  modelSlotTensors(m: NativeModelHandle, onProgress: NativeProgress): NativeJobHandle<Record<string, Float32Array>>;
}

export const trainAddon = addonModule<TrainAddon>;
