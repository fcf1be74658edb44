/**
 * Zeroed arrays for the merge's JS arithmetic, in native memory when they are large
 * (native/binding/external_floats.cc says why): a job allocates them and faults their pages in on the pool,
 * and the reaper frees them once they are collected. Small arrays are plain JS ones.
 */
import { type JobOptions, type NativeJobHandle, type NativeProgress, runNativeJob } from './job';
import { addonModule } from './loader';
import { STAGE_MIN } from './staged';

interface ExternalAddon {
  externalFloats(length: number, f64: boolean, onProgress: NativeProgress): NativeJobHandle<Float32Array | Float64Array>;
}

const external = (length: number, f64: boolean, opts: JobOptions) =>
  runNativeJob('alloc', (cb) => addonModule<ExternalAddon>().externalFloats(length, f64, cb), { signal: opts.signal });

/** A zeroed Float32Array of `length`: native memory from STAGE_MIN floats on. */
export async function zerosF32(length: number, opts: JobOptions = {}): Promise<Float32Array> {
  return length < STAGE_MIN ? new Float32Array(length) : ((await external(length, false, opts)) as Float32Array);
}

/** A zeroed Float64Array of `length`: native memory from STAGE_MIN values on. */
export async function zerosF64(length: number, opts: JobOptions = {}): Promise<Float64Array> {
  return length < STAGE_MIN ? new Float64Array(length) : ((await external(length, true, opts)) as Float64Array);
}
