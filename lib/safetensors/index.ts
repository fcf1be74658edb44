/**
 * safetensors checkpoints: validated reading (one file or sharded, tensors read on demand) and atomic
 * writing (eager or lazily produced tensor data). One job per file:
 *   dtype.ts  — element types, conversions to float32 and F32 → F16/BF16 (round to nearest even)
 *   header.ts — header parsing and validation (every malformed case has its own error code)
 *   source.ts — where the bytes come from (a held file handle, or memory)
 *   reader.ts — SafetensorsReader
 *   writer.ts — writeSafetensors
 */
export type { DType } from './dtype';
export { DTYPE_SIZE, FLOAT_DTYPES, checkWeightDType, toF32, f32ToF16, f32ToBF16, f16BitsToF32, f32ToF16Bits, f32ToBF16Bits } from './dtype';
export { MAX_HEADER_BYTES } from './header';
export { SafetensorsReader, INDEX_FILE_NAME } from './reader';
export type { TensorInfo, ReadRawOptions, ReadF32Options, TypedTensorData } from './reader';
export { writeSafetensors } from './writer';
export type { TensorToWrite, TensorData } from './writer';
