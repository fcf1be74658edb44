export { FfmergeError, isFfmergeError } from './errors';
export type { ErrorCode } from './errors';
export { loadAddon } from './native/loader';
export type { BuildInfo, LoadedAddon } from './native/loader';
export type { Progress, ProgressFn, JobOptions } from './native/job';
export { linearSumAssignment, permutationFromCorrelation, assignmentKernels } from './native/assignment';
export type { AssignmentOptions, AssignmentKernel, AssignmentResult } from './native/assignment';
export { linearSumAssignmentReference } from './reference/assignment';
