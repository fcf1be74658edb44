export { FfmergeError, isFfmergeError } from './errors';
export type { ErrorCode } from './errors';
export { loadAddon } from './native/loader';
export type { BuildInfo, LoadedAddon } from './native/loader';
export type { Progress, ProgressFn, JobOptions } from './native/job';
export { matmul, gemmKernels } from './native/gemm';
export type { GemmKernel, MatmulOptions, MatmulShape } from './native/gemm';
