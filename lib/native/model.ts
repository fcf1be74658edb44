/** Typed view of the native model functions (native/binding/model_binding.cc). */
import { addonModule } from './loader';
import type { NativeJobHandle, NativeProgress } from './job';
import type { StagedFloatsHandle } from './staged';
import type { ModelSpec } from '../model/spec';
import type { LoadPlan } from '../model/load';

/** Opaque handle to a native Model (weights in native memory). */
export type NativeModelHandle = { readonly __nativeModel: unique symbol };

export interface NativeFF {
  wIn: Float32Array;
  bIn?: Float32Array;
  wGate?: Float32Array;
  bGate?: Float32Array;
  wOut: Float32Array;
  bOut?: Float32Array;
}

export interface NativeForwardArgs {
  ids?: Int32Array | undefined;
  batch: number;
  seq: number;
  attentionMask?: Uint8Array | undefined;
  featureMask?: Uint8Array | undefined;
  hidden?: Float32Array | StagedFloatsHandle | undefined;
  output: 'logits' | 'nll' | 'hidden';
  fromLayer?: number | undefined;
  toLayer?: number | undefined;
  captureLayers?: number[] | undefined;
  /** Layers whose FF input (what the first FF matrix reads) is returned as ffInputs, feature rows only. */
  inputLayers?: number[] | undefined;
  /** Layers whose FF output (what the FF sublayer adds to the stream) is returned as ffOutputs, feature rows only. */
  outputLayers?: number[] | undefined;
  /**
   * A native CorrelationAccumulator (CorrelationAccumulator.nativeAccumulator) to add the pre-activations of
   * the layers it uses to, inside the job (no copy to JS); claimed for the job, so other jobs on it get BUSY.
   */
  accumulator?: unknown | undefined;
  /** Patch input: [batch, channels, imageH, imageW]. */
  pixels?: Float32Array | undefined;
  tokenTypeIds?: Int32Array | undefined;
  /** Cross-attention: encoder states [batch, encoderSeq, d] and their padding mask. */
  encoderHidden?: Float32Array | undefined;
  encoderSeq?: number | undefined;
  encoderMask?: Uint8Array | undefined;
}

export interface NativeGenerateArgs {
  ids: Int32Array;
  batch: number;
  seq: number;
  attentionMask?: Uint8Array | undefined;
  decoderStart: number;
  eos: number;
  pad: number;
  forcedEos: number;
  maxLength: number;
  badWords: number[][];
  numBeams: number;
  lengthPenalty: number;
  renormalize: boolean;
  earlyStopping: boolean;
}

export interface NativeForwardResult {
  logits?: Float32Array;
  nll?: Float32Array;
  nllSum?: number;
  nllCount?: number;
  hidden?: Float32Array;
  ff?: Float32Array[];
  ffInputs?: Float32Array[];
  ffOutputs?: Float32Array[];
}

interface ModelAddon {
  modelCreate(spec: ModelSpec, tensors: Record<string, Float32Array>): NativeModelHandle;
  /** Reads (or maps: `map`, 16-bit matrices) a model's tensors from safetensors files into native memory (model_load_binding.cc). */
  modelLoad(
    spec: ModelSpec,
    plan: LoadPlan & { stream?: boolean; map?: boolean },
    onProgress: NativeProgress,
  ): NativeJobHandle<NativeModelHandle>;
  /** The resident dtype of the top-level and layer-0 matrices, by slot. */
  modelWeightDtypes(m: NativeModelHandle): Record<string, 'F32' | 'F16' | 'BF16' | 'streamed'>;
  modelWithFF(base: NativeModelHandle, ffs: NativeFF[], layers: number[], which: number[]): NativeModelHandle;
  modelFFWeights(m: NativeModelHandle, layer: number): NativeFF;
  /** modelFFWeights as a job (a streamed layer is read and widened on the pool). */
  modelFFWeightsAsync(m: NativeModelHandle, layer: number, onProgress: NativeProgress): NativeJobHandle<NativeFF>;
  modelSharesFF(a: NativeModelHandle, layerA: number, b: NativeModelHandle, layerB: number): boolean;
  modelDispose(m: NativeModelHandle): void;
  /** A view without the listed layers (model_view_binding.cc). */
  modelWithoutLayers(m: NativeModelHandle, layers: number[]): NativeModelHandle;
  /** Parameters one layer stores. */
  modelLayerParams(m: NativeModelHandle, layer: number): number;
  modelGenerate(
    encoder: NativeModelHandle,
    decoder: NativeModelHandle,
    args: NativeGenerateArgs,
    onProgress: NativeProgress,
  ): NativeJobHandle<{ ids: Int32Array; length: number }>;
  /** Ancestral sampling on a KV cache (core/model/sample.h): rows × length ids, row-major. */
  modelSample(
    m: NativeModelHandle,
    args: { rows: number; length: number; start: number; temperature: number; seed: number; group: number },
    onProgress: NativeProgress,
  ): NativeJobHandle<Int32Array>;
  /** Seconds per ffm::sgemm call (C[M×N] = A[M×K]·op(B)), on the addon's pool; for benchmarks. */
  benchSgemmSeconds(M: number, N: number, K: number, transB: boolean, reps: number): number;
  modelForward(
    m: NativeModelHandle,
    args: NativeForwardArgs,
    onProgress: NativeProgress,
  ): NativeJobHandle<NativeForwardResult>;
}

export const modelAddon = addonModule<ModelAddon>;
