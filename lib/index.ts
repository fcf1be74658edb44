export { FfmergeError, isFfmergeError } from './errors';
export type { ErrorCode } from './errors';
export { loadAddon } from './native/loader';
export type { BuildInfo, LoadedAddon } from './native/loader';
export type { Progress, ProgressFn, JobOptions } from './native/job';
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
export type { DType, TensorInfo, TensorToWrite, TensorData, ReadRawOptions, ReadF32Options } from './safetensors';
export { loadTokenizer } from './tokenizer';
export type { Tokenizer, EncodeOptions, DecodeOptions, SpecialTokenIds } from './tokenizer';
export { readLines, readDocuments, readText } from './data/text';
export type { TextSourceOptions } from './data/text';
export { cutBlocks, tokenizeToBlocks, loadSplitBlocks, countPredictions, MIN_BLOCK_TOKENS } from './data/blocks';
export type { TokenBlocks } from './data/blocks';
export { readParallel, streamParallel, readParallelTsv, streamParallelTsv } from './data/parallel';
export type { SentencePair } from './data/parallel';
