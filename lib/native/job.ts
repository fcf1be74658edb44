/**
 * Glue between native jobs ({promise, cancel}) and the library's async conventions: an AbortSignal stops
 * the job promptly, progress arrives as {phase, done, total}, native errors become FfmergeErrors.
 */
import { FfmergeError, abortError, fromNativeError, showValue } from '../errors';
import { checkOptions } from '../arguments';

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

/**
 * Options that are not an object (null, a string), a signal that is not an AbortSignal, or a progress callback
 * that is not a function: INVALID_ARGUMENT. `what` names the options argument in the message. With `keys`
 * (the call's own options; signal and onProgress are added), a misspelt option is refused, not ignored.
 */
export function checkJobOptions(opts: { signal?: unknown; onProgress?: unknown } | undefined, what = 'options', keys?: readonly string[]): void {
  checkOptions(opts, what, keys ? [...keys, 'signal', 'onProgress'] : undefined);
  const { signal, onProgress } = opts ?? {};
  // duck-typed: an AbortSignal from another realm (a vm context, jest) is still one
  const s = signal as { aborted?: unknown; addEventListener?: unknown } | null | undefined;
  if (signal !== undefined && (typeof s !== 'object' || s === null || typeof s.aborted !== 'boolean' || typeof s.addEventListener !== 'function')) {
    throw new FfmergeError('INVALID_ARGUMENT', `signal must be an AbortSignal (got ${showValue(signal)})`);
  }
  if (onProgress !== undefined && typeof onProgress !== 'function') {
    throw new FfmergeError('INVALID_ARGUMENT', `onProgress must be a function (got ${showValue(onProgress)})`);
  }
}

/**
 * The caller's progress callback, safe to call from an event handler: an exception it throws there would
 * escape into the event loop (crashing the host, or dropped by Node-API with a warning). The first one is
 * handed to `fail` instead, which stops the job so that the call rejects with the callback's own error.
 */
export function guardProgress<P>(onProgress: (p: P) => void, fail: (error: unknown) => void): (p: P) => void {
  let failed = false;
  return (p: P) => {
    if (failed) return;
    try {
      onProgress(p);
    } catch (error) {
      failed = true;
      fail(error);
    }
  };
}

/** Starts a native job and ties it to an AbortSignal and a progress callback. */
export async function runNativeJob<T>(
  phase: string,
  start: (onProgress: ((done: number, total: number) => void) | undefined) => NativeJobHandle<T>,
  opts: JobOptions = {},
): Promise<T> {
  checkJobOptions(opts);
  const { signal, onProgress } = opts;
  if (signal?.aborted) throw abortError();
  let handle: NativeJobHandle<T>;
  let failure: { error: unknown } | undefined;
  const report = onProgress
    ? guardProgress(onProgress, (error) => {
        failure = { error };
        handle.cancel();
      })
    : undefined;
  try {
    handle = start(report ? (done, total) => report({ phase, done, total }) : undefined);
  } catch (e) {
    throw fromNativeError(e);
  }
  const onAbort = () => handle.cancel();
  signal?.addEventListener('abort', onAbort, { once: true });
  try {
    const result = await handle.promise;
    if (failure) throw failure.error;
    return result;
  } catch (e) {
    if (failure) throw failure.error;
    throw fromNativeError(e);
  } finally {
    signal?.removeEventListener('abort', onAbort);
  }
}

export function throwIfAborted(signal?: AbortSignal): void {
  if (signal?.aborted) throw abortError();
}
