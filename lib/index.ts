/// <reference types="node" preserve="true" />
// (kept in the declarations: their AbortSignal, Buffer and NodeJS types come from @types/node, which a consumer
// whose tsconfig lists no "types" — TypeScript 6 and later by default — would otherwise not load)
export { FfmergeError, isFfmergeError } from './errors';
export type { ErrorCode } from './errors';
export { loadAddon } from './native/loader';
export type { BuildInfo, LoadedAddon } from './native/loader';
export type { Progress, ProgressFn, PipelinePhase, JobOptions } from './native/job';
export { corpusBleu, sentenceBleu, computeBleu } from './metrics/bleu';
export type { BleuOptions, BleuResult } from './metrics/bleu';
export { corpusChrf, sentenceChrf } from './metrics/chrf';
export type { ChrfOptions, ChrfResult } from './metrics/chrf';
export { tokenize13a } from './metrics/tokenizer-13a';
export { top1Accuracy, argmaxRows } from './metrics/accuracy';
export { loadIdxImages, loadImageFolder, loadPreprocessor, preprocessorFromConfig, conformImages, imagesToTensor, classNamesFromConfig } from './data/images';
export type { ImageSet, ImagePreprocessor } from './data/images';
export { matmul, gemmKernels } from './native/gemm';
export type { GemmKernel, MatmulOptions, MatmulShape } from './native/gemm';
export { linearSumAssignment, permutationFromCorrelation, assignmentKernels } from './native/assignment';
export type { AssignmentOptions, AssignmentKernel, AssignmentResult } from './native/assignment';
export { CorrelationAccumulator, correlate } from './native/correlation';
export {
  SafetensorsReader,
  writeSafetensors,
  toF32,
  f32ToF16,
  f32ToBF16,
  DTYPE_SIZE,
  MAX_HEADER_BYTES,
} from './safetensors';
export type { DType, TensorInfo, TensorToWrite, TensorData, ReadRawOptions, ReadF32Options, TypedTensorData } from './safetensors';
export { loadTokenizer } from './tokenizer';
export type { Tokenizer, EncodeOptions, DecodeOptions, SpecialTokenIds } from './tokenizer';
export { readLines, readDocuments, readText } from './data/text';
export type { TextSourceOptions } from './data/text';
export { cutBlocks, tokenizeToBlocks, loadSplitBlocks, countPredictions, MIN_BLOCK_TOKENS } from './data/blocks';
export type { TokenBlocks } from './data/blocks';
export { readParallel, streamParallel, readParallelTsv, streamParallelTsv } from './data/parallel';
export type { SentencePair } from './data/parallel';
export { evaluateImageClassifier } from './eval/accuracy';
export type { ClassifierEvalOptions, ClassifierEvalResult } from './eval/accuracy';
export { translate, evaluateTranslation, loadGenerationConfig } from './eval/translate';
export type { TranslateOptions, Translation, TranslationEval } from './eval/translate';
export { generationConfigFrom } from './model/model';
export type { GenerationConfig } from './model/model';
export { imageBatches, translationBatches } from './data/feature-batches';
export type { FeatureBatch, TranslationBatchOptions } from './data/feature-batches';
export { compress } from './pipeline/compress';
export { exportOnnx, checkOnnxExportable } from './export/onnx/export';
export type { ExportOnnxOptions, ExportOnnxResult } from './export/onnx/export';
export { DEFAULT_FRACTION } from './pipeline/options';
export type { CompressOptions, CompressFormat, TokenSource, SampledSource, ImageSource, ParallelSource, StackMode, MergeMethodName, RecoverMethodName, BaselineName, TaskName, Plugins } from './pipeline/options';
export type { CompressResult, CandidateScore, BaselineResult, Metric } from './pipeline/result';
export type { Task, TaskKind, MetricInfo, DataCounts, SelectionInfo } from './pipeline/task';
export type { MergeMethod, RecoverMethod, Baseline, BaselineCandidate, BaselineContext, MergeContext, MergedWindow, Edit } from './pipeline/plugins';
export type { PairCorrelations } from './pipeline/features';
export type { EntryStates } from './pipeline/ff-inputs';
export type { BatchStore } from './pipeline/spill';
export { Registry } from './pipeline/registry';
export type { Named, RegistryKind } from './pipeline/registry';
export { MERGE_METHODS } from './pipeline/merge-methods';
export { RECOVER_METHODS } from './pipeline/recover';
export { BASELINES } from './pipeline/baselines';
export { TASKS } from './pipeline/tasks';
export { readTokenRows } from './data/token-rows';
export { writeCheckpoint, checkOutputDir, ffReplacements, ffTies } from './checkpoint/write';
export type { OutputFormat, WriteCheckpointOptions, WriteCheckpointResult } from './checkpoint/write';
export { CheckpointReader, readTies } from './checkpoint/ties';
export type { TieMap } from './checkpoint/ties';
export { permuteFF, permuteFFAsync } from './merge/permute';
export { averageFF, averageFFAsync } from './merge/average';
export { convertCheckpoint } from './checkpoint/convert';
export type { ConvertOptions } from './checkpoint/convert';
export { tokenizeFile } from './data/tokenize-file';
export type { TokenizeFileOptions } from './data/tokenize-file';
export { enumerateWindows, parseWindow, kFromFraction, anchorOffset } from './merge/windows';
export type { Window, Anchor } from './merge/windows';
// what model.ffWeights() returns and averageFF/permuteFF take
export type { FFWeights } from './model/ff-weights';
export { inspectModel } from './model/inspect';
export type { InspectOptions, ModelSummary } from './model/inspect';
export { RidgeAccumulator } from './native/ridge';
export { loadModel, buildModel } from './model/load';
export type { LoadModelOptions } from './model/load';
export { Model } from './model/model';
export type { FFOverrides, ForwardInput, ForwardOptions, ForwardOutput, ForwardResult, StackName } from './model/model';
export type { ModelSpec } from './model/spec';
export { MODEL_TYPES, architectureOf, stackOf, ffStacks, ffTensorNames } from './model/architectures';
export type { Architecture, StackDescription, FFStack, FFTensorNames, WeightLayout } from './model/architectures';
export { validateSpec } from './model/validate-spec';
export { checkFinetunable, finetune } from './train/finetune';
export type { FinetuneOptions, FinetuneResult, FinetuneProgress, FinetuneLogEntry, LabelledImages } from './train/finetune';
export { saveTrained } from './train/save';
export type { SaveTrainedOptions } from './train/save';
export { perplexity } from './eval/perplexity';
export type { PerplexityOptions, PerplexityResult } from './eval/perplexity';
export { greedy } from './eval/generate';
export type { GreedyOptions } from './eval/generate';

// Types the signatures above name, so that a caller can name them too
export type { RecordedWindow } from './checkpoint/earlier-merges';
export type { ExtraFile } from './checkpoint/write';
export type { WeightDType } from './export/onnx/weights';
export type { UnsharedWindow } from './export/onnx/export';
export type { StackSummary, MergeWindow, MergeSummary, KSaving } from './model/inspect';
export type { AccuracyCounts } from './metrics/accuracy';
export type { BleuSmoothing, BleuTokenizer } from './metrics/bleu';
export type { TokenRowOptions } from './data/token-rows';
export type { FFInput, RidgeSolution } from './native/ridge';
export type { Activation } from './model/activation';
export type { NormKind, PositionKind, ActivationKind, RopeScaling } from './model/spec';
export { NO_ROPE_SCALING } from './model/spec';
export type { LayerNames, NormNames, QKVNames, StackTensors, SizeKeys, CrossAttentionNames, Config as ModelConfig } from './model/architectures/types';
