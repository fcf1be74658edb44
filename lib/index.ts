export { FfmergeError, isFfmergeError } from './errors';
export type { ErrorCode } from './errors';
export { loadAddon } from './native/loader';
export type { BuildInfo, LoadedAddon } from './native/loader';
export type { Progress, ProgressFn, JobOptions } from './native/job';
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
export { linearSumAssignmentReference } from './reference/assignment';
export { CorrelationAccumulator, correlate } from './native/correlation';
export { pearsonReference } from './reference/correlation';
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
export type { CompressOptions, CompressFormat, TokenSource, ImageSource, ParallelSource, StackMode } from './pipeline/options';
export type { CompressResult, CandidateScore, BaselineResult, Metric } from './pipeline/result';
export type { Task, TaskKind, MetricInfo, DataCounts } from './pipeline/task';
export type { MergeMethod, RecoverMethod, Baseline, BaselineCandidate, MergeContext, MergedWindow, Edit } from './pipeline/plugins';
export { Registry } from './pipeline/registry';
export { MERGE_METHODS } from './pipeline/merge-methods';
export { RECOVER_METHODS } from './pipeline/recover';
export { BASELINES } from './pipeline/baselines';
export { TASKS } from './pipeline/tasks';
export { readTokenRows } from './data/token-rows';
export { writeCheckpoint, checkOutputDir, ffReplacements, ffTies } from './checkpoint/write';
export type { OutputFormat, WriteCheckpointOptions, WriteCheckpointResult } from './checkpoint/write';
export { CheckpointReader, readTies } from './checkpoint/ties';
export type { TieMap } from './checkpoint/ties';
export { permuteFF, permuteFFAsync, permuteFFConv1D } from './merge/permute';
export { averageFF, averageFFAsync } from './merge/average';
export { convertCheckpoint } from './checkpoint/convert';
export type { ConvertOptions } from './checkpoint/convert';
export { tokenizeFile } from './data/tokenize-file';
export type { TokenizeFileOptions } from './data/tokenize-file';
export { enumerateWindows, parseWindow, kFromFraction, anchorOffset } from './merge/windows';
export type { Window, Anchor } from './merge/windows';
export type { FFWeights as CanonicalFFWeights } from './model/ff-weights';
export { inspectModel } from './model/inspect';
export type { ModelSummary } from './model/inspect';
export { RidgeAccumulator } from './native/ridge';
export { loadModel, buildModel } from './model/load';
export type { LoadModelOptions } from './model/load';
export { Model } from './model/model';
export type { FFWeights, FFOverrides, ForwardInput, ForwardOptions, ForwardResult, StackName } from './model/model';
export type { ModelSpec } from './model/spec';
export { MODEL_TYPES, MODEL_TYPES as FORWARD_MODEL_TYPES, architectureOf, stackOf, ffStacks, ffTensorNames, mainStackOf } from './model/architectures';
export type { Architecture, StackDescription, FFStack, FFTensorNames, WeightLayout } from './model/architectures';
export { validateSpec } from './model/validate-spec';
export { perplexity } from './eval/perplexity';
export type { PerplexityOptions, PerplexityResult } from './eval/perplexity';
export { greedy } from './eval/generate';
export type { GreedyOptions } from './eval/generate';
