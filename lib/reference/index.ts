/**
 * `ffmerge/reference`: the plain implementations the native kernels are tested against, for a user who wants
 * to check or time the native core against pure JS as benchmarks/ does. Kept out of the main entry: no
 * production path runs them.
 */
export { linearSumAssignmentReference } from './assignment';
export { pearsonReference } from './correlation';
export { matmulReference } from './matmul';
