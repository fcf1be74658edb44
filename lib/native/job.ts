/**
 * Glue between native jobs ({promise, cancel}) and the library's async conventions: an AbortSignal stops
 * the job promptly, progress arrives as {phase, done, total}, native errors become FfmergeErrors.
 */
import { abortError, fromNativeError } from '../errors';

export interface Progress {
  phase: string;
  done: number;
  total: number;
  /** A short status shown next to the bar (e.g. fine-tuning's loss and tokens/s). */
  detail?: string;
}

export type ProgressFn = (p: Progress) => void;

export interface JobOptions {
  signal?: AbortSignal;
  onProgress?: ProgressFn;
}

export interface NativeJobHandle<T> {
  promise: Promise<T>;
  cancel(): void;
}

/** Starts a native job and ties it to an AbortSignal and a progress callback. */
export async function runNativeJob<T>(
  phase: string,
  start: (onProgress: ((done: number, total: number) => void) | undefined) => NativeJobHandle<T>,
  opts: JobOptions = {},
): Promise<T> {
  const { signal, onProgress } = opts;
  if (signal?.aborted) throw abortError();
  let handle: NativeJobHandle<T>;
  try {
    handle = start(onProgress ? (done, total) => onProgress({ phase, done, total }) : undefined);
  } catch (e) {
    throw fromNativeError(e);
  }
  const onAbort = () => handle.cancel();
  signal?.addEventListener('abort', onAbort, { once: true });
  try {
    return await handle.promise;
  } catch (e) {
    throw fromNativeError(e);
  } finally {
    signal?.removeEventListener('abort', onAbort);
  }
}

export function throwIfAborted(signal?: AbortSignal): void {
  if (signal?.aborted) throw abortError();
}
