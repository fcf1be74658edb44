/**
 * Every failure ffmerge reports on purpose is an FfmergeError with a stable `code` (safe to switch on in
 * scripts and servers) and a message a user can act on. Native errors arrive with the same codes.
 */
export type ErrorCode =
  // generic
  | 'INVALID_ARGUMENT'
  | 'ABORTED'
  | 'OUT_OF_MEMORY'
  | 'NATIVE_ERROR'
  | 'NATIVE_LOAD_FAILED'
  | 'IO_ERROR'
  // safetensors / checkpoints
  | 'SAFETENSORS_TRUNCATED'
  | 'SAFETENSORS_HEADER_TOO_LARGE'
  | 'SAFETENSORS_INVALID_HEADER'
  | 'SAFETENSORS_UNKNOWN_DTYPE'
  | 'SAFETENSORS_OUT_OF_BOUNDS'
  | 'SAFETENSORS_OVERLAP'
  | 'SAFETENSORS_HOLE'
  | 'SAFETENSORS_SIZE_MISMATCH'
  | 'SAFETENSORS_MISSING_SHARD'
  | 'TENSOR_NOT_FOUND'
  | 'SHAPE_MISMATCH'
  | 'INVALID_CONFIG'
  | 'UNSUPPORTED_ARCHITECTURE'
  // numerics
  /** NaN or ±Infinity in an input: a matrix handed to a kernel, or a checkpoint weight being exported. */
  | 'NON_FINITE_INPUT'
  | 'NON_FINITE_ACTIVATIONS'
  /** A metric (perplexity, accuracy, BLEU) came out NaN or infinite: the model or its data is broken. */
  | 'NON_FINITE_METRIC'
  | 'SEQUENCE_TOO_LONG'
  // pipeline
  | 'INVALID_WINDOW'
  /** An option the model's task (or stack layout) does not read: refused, never ignored. */
  | 'OPTION_NOT_APPLICABLE'
  | 'K_TOO_LARGE'
  | 'OUTPUT_EXISTS'
  /** The output folder's parent is not a folder, or cannot be written: found before any long work. */
  | 'OUTPUT_NOT_WRITABLE'
  /** The source model folder changed (a file replaced or rewritten) while a job that writes from it ran. */
  | 'SOURCE_CHANGED'
  | 'DATA_NOT_FOUND'
  | 'INVALID_DATA'
  | 'SINGULAR_MATRIX'
  /** A caller's own plug-in (merge method, recover method, baseline) threw something other than an FfmergeError. */
  | 'PLUGIN_FAILED'
  // native jobs on stateful objects
  | 'BUSY'
  | 'INVALID_STATE'
  /** An in/out typed array (matmul's `out`) whose ArrayBuffer was transferred or detached while its job ran. */
  | 'BUFFER_DETACHED';

/** Every error ffmerge raises on purpose: a stable `code` (ErrorCode) to switch on, and a sentence for people. */
export class FfmergeError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'FfmergeError';
    this.code = code;
    // V8 formats a stack trace when it is first read, and until then keeps every frame's receiver alive (a
    // model's native memory, for a kept error). Reading the traces now, this one's and its cause's, lets them go.
    void this.stack;
    formatTraces(options?.cause, 8);
  }
}

/**
 * Reads the stack of `e`, its causes and an AggregateError's errors, `depth` levels down, so that V8 lets go
 * of what their frames held.
 */
function formatTraces(e: unknown, depth: number): void {
  if (depth <= 0 || typeof e !== 'object' || e === null) return;
  try {
    void (e as { stack?: unknown }).stack;
    formatTraces((e as { cause?: unknown }).cause, depth - 1);
    const inner = (e as { errors?: unknown }).errors;
    if (Array.isArray(inner)) for (const x of inner.slice(0, 16)) formatTraces(x, depth - 1);
  } catch {
    // a getter that throws keeps what it keeps
  }
}

/** Whether `e` is an FfmergeError, with `code` when one is given (and then typed as having that code). */
export function isFfmergeError<C extends ErrorCode = ErrorCode>(e: unknown, code?: C): e is FfmergeError & { readonly code: C } {
  return e instanceof FfmergeError && (code === undefined || e.code === code);
}

/**
 * Re-types an error thrown by the native addon (a plain Error with a `code` string) as FfmergeError. A job
 * cancelled because `signal` fired knows only that it was cancelled: its ABORTED gets the caller's reason as
 * its cause, as abortError gives it.
 */
export function fromNativeError(e: unknown, signal?: AbortSignal): FfmergeError {
  if (e instanceof FfmergeError) return e;
  const err = e as { code?: unknown; message?: unknown };
  const code = typeof err?.code === 'string' ? (err.code as ErrorCode) : 'NATIVE_ERROR';
  const message = typeof err?.message === 'string' ? err.message : String(e);
  return new FfmergeError(code, message, { cause: code === 'ABORTED' && signal?.aborted ? signal.reason : e });
}

/** A whole number with thousands separators, "12,288", for messages and reports (no Intl: ICU loads slowly). */
export function groupDigits(n: number): string {
  return String(Math.round(n)).replace(/\B(?=(\d{3})+(?!\d))/g, ',');
}

/** "1 layer", "5 layers": a count with its noun. */

export function counted(n: number, noun: string): string {
  return `${groupDigits(n)} ${noun}${n === 1 ? '' : 's'}`;
}

/**
 * A value from a file or a caller, shown in an error message: JSON, cut to `max` characters. Never throws:
 * a deeply nested value (JSON.stringify overflows the stack), a cycle or a BigInt reads as a placeholder, so
 * building the message cannot turn a coded error into an uncoded one. A typed array reads as
 * "Float32Array(n)", so that a value holding a weight tensor costs nothing to show.
 */
export function showValue(v: unknown, max = 60): string {
  let text: string | undefined;
  // JSON writes NaN and ±Infinity as null (a row's 1e400 parses to Infinity): say what the value is
  if (typeof v === 'number' && !Number.isFinite(v)) return String(v);
  try {
    // A typed array reads as its kind and length, and a long list as its length: a weight tensor or an image set
    // inside an argument must not be written out whole (seconds of blocked event loop for a message cut to 60
    // characters). The holder's value is read, not x: JSON has already replaced a Buffer by its toJSON() there.
    text = JSON.stringify(v, function (this: Record<string, unknown>, key: string, x: unknown) {
      const raw = this[key];
      if (ArrayBuffer.isView(raw)) return `${raw.constructor.name}(${(raw as unknown as ArrayLike<number>).length ?? raw.byteLength})`;
      return Array.isArray(raw) && raw.length > max ? `Array(${raw.length})` : x;
    });
  } catch {
    text = Array.isArray(v) ? '[…]' : typeof v === 'object' && v !== null ? '{…}' : String(typeof v);
  }
  if (text === undefined) text = String(v);
  return text.length > max ? `${text.slice(0, max)}…` : text;
}

/**
 * ABORTED, with the signal's reason as its `cause` when a signal is given: a server tells its own timeout
 * (`AbortSignal.timeout`, a TimeoutError) from a client that went away (`ac.abort(new Error('client gone'))`).
 */
export function abortError(signal?: AbortSignal): FfmergeError {
  return new FfmergeError('ABORTED', 'the operation was aborted', signal?.aborted ? { cause: signal.reason } : undefined);
}
