/**
 * Glue between native jobs ({promise, cancel}) and the library's async conventions: an AbortSignal stops
 * the job promptly, progress arrives as {phase, done, total}, native errors become FfmergeErrors.
 */
import { defaultMaxListeners, getEventListeners, getMaxListeners, setMaxListeners } from 'node:events';
import { FfmergeError, abortError, fromNativeError, showValue } from '../errors';
import { checkOptions } from '../arguments';

/**
 * The phases compress, eval, export and finetune report, each with its own count (the CLI draws a bar for each).
 * Native steps inside them (`correlation.finalize`, `assignment`, `permute`, …) report under their own names.
 */
export type PipelinePhase =
  | 'load' | 'inspect' | 'tokenize' | 'images' | 'sample' | 'features' | 'prefix' | 'validate' | 'validate-merged' | 'search'
  | 'merge' | 'baselines' | 'test' | 'save' | 'onnx' | 'evaluate' | 'perplexity' | 'translate' | 'finetune';

export interface Progress {
  /** A PipelinePhase, or the name of a native step inside one. (`string & {}` keeps the names offered by an editor.) */
  phase: PipelinePhase | (string & {});
  done: number;
  total: number;
  /** A short status shown next to the bar (e.g. fine-tuning's loss and tokens/s). */
  detail?: string;
  /**
   * What done and total count, where one phase name counts different things ('evaluate': batches of text,
   * or images); absent, the phase's usual unit.
   */
  unit?: string;
  /** How much of the unit after `done` is done already (0 to 1), where one unit takes long: the CLI's ETA counts it. */
  within?: number;
}

export type ProgressFn = (p: Progress) => void;

/**
 * One phase's count over calls that each count from 0 (a task's files read one after another): a call's
 * reports of `phase` are added to the totals of the calls before it, so the count never goes back; `next()`
 * after each call. Other phases pass as they are.
 */
export function runningCount(phase: string, onProgress: ProgressFn | undefined): { onProgress?: ProgressFn; next(): void } {
  let before = 0;
  let last = 0;
  return {
    ...(onProgress
      ? {
          onProgress: (p: Progress) => {
            if (p.phase !== phase) return onProgress(p);
            last = p.total;
            onProgress({ ...p, done: before + p.done, total: before + p.total });
          },
        }
      : {}),
    next() {
      before += last;
      last = 0;
    },
  };
}

export interface JobOptions {
  signal?: AbortSignal | undefined;
  onProgress?: ProgressFn | undefined;
}

/** The progress callback a native job calls, if any. */
export type NativeProgress = ((done: number, total: number) => void) | undefined;

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

/** The listener limit onAbort last gave a signal: raised again when reached, while it is still ours. */
const RAISED = Symbol('ffmerge.raisedMaxListeners');

/**
 * Listens once for the signal's abort and returns the function that stops listening. Each running job holds one
 * listener, so one AbortSignal handed to more than ten jobs at once makes Node warn (MaxListenersExceededWarning)
 * without a leak. Where the signal has Node's default limit, or the one this function gave it, and is at it, the
 * limit is doubled (as undici does); a limit the caller set is left alone. A signal from another realm
 * (duck-typed) may refuse these calls: then it only warns.
 */
export function onAbort(signal: AbortSignal | undefined, listener: () => void): () => void {
  if (!signal) return () => {};
  try {
    const max = getMaxListeners(signal);
    const held = getEventListeners(signal, 'abort').length;
    const ours = max === defaultMaxListeners || (signal as { [RAISED]?: number })[RAISED] === max;
    if (ours && held >= max) {
      setMaxListeners(2 * Math.max(held, 1), signal);
      (signal as { [RAISED]?: number })[RAISED] = 2 * Math.max(held, 1);
    }
  } catch {
    // not a Node EventTarget: nothing to raise
  }
  signal.addEventListener('abort', listener, { once: true });
  return () => signal.removeEventListener('abort', listener);
}

/**
 * The caller's progress callback, safe to call from an event handler: an exception it throws there would
 * escape into the event loop (crashing the host, or dropped by Node-API with a warning). The first one is
 * handed to `fail` instead, which stops the job so that the call rejects with the callback's own error.
 */
export function guardProgress<P>(onProgress: (p: P) => void, fail: (error: unknown) => void): (p: P) => void {
  let failed = false;
  const failOnce = (error: unknown) => {
    if (failed) return;
    failed = true;
    fail(error);
  };
  return (p: P) => {
    if (failed) return;
    try {
      // an async callback's rejection too: left alone it is an unhandled rejection, which ends the host
      whenRejected(onProgress(p), failOnce);
    } catch (error) {
      failOnce(error);
    }
  };
}

/** Hands the rejection of a callback's returned promise (if it returned one) to `fail`. */
function whenRejected(r: unknown, fail: (error: unknown) => void): void {
  if (typeof r === 'object' && r !== null && typeof (r as PromiseLike<unknown>).then === 'function') {
    (r as PromiseLike<unknown>).then(undefined, fail);
  }
}

/** What a multi-step job tells its scope (withJobScope). */
export interface JobScope {
  /**
   * The job's output is in place (renamed into its folder): from now on a progress callback's error no longer
   * fails the call, since failing it would leave a written output behind a rejected call.
   */
  commit(): void;
}

/** `p`, or ABORTED as soon as `signal` fires, whether or not `p` ever settles. */
export function raceAbort<T>(p: T | Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (signal?.aborted) {
    // `p` is still handled: its rejection, left alone, would end the host
    Promise.resolve(p).catch(() => {});
    return Promise.reject(abortError(signal));
  }
  return new Promise<T>((resolve, reject) => {
    const stop = onAbort(signal, () => reject(abortError(signal)));
    Promise.resolve(p).then(resolve, reject).finally(stop);
  });
}

/**
 * Runs a multi-step job (one that calls the caller's progress callback itself, not only through native jobs)
 * with its own signal and a callback safe for async callbacks. An `async (p) => db.update(p)` that rejects
 * would otherwise be an unhandled rejection, which ends the host process. Its rejection, while the job runs,
 * aborts the job through the job's own signal, and the call rejects with the callback's error, as a throw
 * does; once the job has committed its output, or settled, the rejection is dropped. Callers have checked
 * the options (checkJobOptions) with their own keys first.
 */
export async function withJobScope<O extends JobOptions, T>(opts: O, run: (o: O, scope: JobScope) => Promise<T>): Promise<T> {
  const { onProgress, signal } = opts;
  let committed = false;
  const scope: JobScope = { commit: () => void (committed = true) };
  if (!onProgress) return run(opts, scope);
  const ac = new AbortController();
  let failure: { error: unknown } | undefined;
  let settled = false;
  const fail = (error: unknown) => {
    if (failure || settled || committed) return;
    failure = { error };
    ac.abort();
  };
  // the caller's reason goes on, so that ABORTED's cause is theirs (abortError)
  const stopListening = signal?.aborted ? (ac.abort(signal.reason), () => {}) : onAbort(signal, () => ac.abort(signal!.reason));
  const report: ProgressFn = (p) => {
    // settled: the caller has its answer, so a step still running (a plug-in that ignores the signal) is not heard
    if (settled) return;
    if (failure) throw failure.error; // the job is stopping: the caller hears nothing more
    let returned: unknown;
    try {
      returned = onProgress(p);
    } catch (e) {
      // a throw is the call's failure too: code that catches it on the way out (a writer's catch that makes
      // every error IO_ERROR) no longer decides what the call rejects with
      fail(e);
      throw e;
    }
    whenRejected(returned, fail);
  };
  try {
    const result = await run({ ...opts, signal: ac.signal, onProgress: report }, scope);
    if (failure && !committed) throw failure.error;
    return result;
  } catch (e) {
    if (failure) throw failure.error;
    throw e;
  } finally {
    settled = true;
    stopListening();
  }
}

/** Starts a native job and ties it to an AbortSignal and a progress callback. */
export async function runNativeJob<T>(
  phase: string,
  start: (onProgress: NativeProgress) => NativeJobHandle<T>,
  opts: JobOptions = {},
): Promise<T> {
  checkJobOptions(opts);
  const { signal, onProgress } = opts;
  throwIfAborted(signal);
  let handle: NativeJobHandle<T>;
  let failure: { error: unknown } | undefined;
  const report = onProgress
    ? guardProgress(onProgress, (error) => {
        failure = { error };
        handle.cancel();
      })
    : undefined;
  handle = nativeCall(() => start(report ? (done, total) => report({ phase, done, total }) : undefined));
  const stopListening = onAbort(signal, () => handle.cancel());
  try {
    const result = await handle.promise;
    if (failure) throw failure.error;
    return result;
  } catch (e) {
    if (failure) throw failure.error;
    throw fromNativeError(e, signal);
  } finally {
    stopListening();
  }
}

/** `f()`, a native exception it throws made an FfmergeError. */
export function nativeCall<T>(f: () => T): T {
  try {
    return f();
  } catch (e) {
    throw fromNativeError(e);
  }
}

export function throwIfAborted(signal?: AbortSignal): void {
  if (signal?.aborted) throw abortError(signal);
}
