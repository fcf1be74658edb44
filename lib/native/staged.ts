/**
 * Large float arrays moved into native memory without holding the event loop (native/binding/staged_floats.cc
 * says why): the pages are allocated and faulted in a job on the pool, then the main thread copies the array
 * in slices of STAGE_SLICE floats (a few ms each) with a yield between them. A model view takes the result in
 * place of the array and shares it (modelWithFF), so the copy is made once and not again in one long call.
 */
import { FfmergeError } from '../errors';
import { forSlices } from '../merge/slices';
import { isFloat32Array } from '../typed-arrays';
import { type JobOptions, nativeCall, type NativeJobHandle, type NativeProgress, runNativeJob } from './job';
import { addonModule } from './loader';

/** Arrays shorter than this are copied by the model call itself: a plain copy of 4 MiB takes about 1 ms. */
export const STAGE_MIN = 1 << 20;
/** Floats copied between yields: 16 MiB, 2–4 ms of memcpy on this machine. */
export const STAGE_SLICE = 1 << 22;

/** The options of a call that may stage its arrays (withStaged). */
export type StageOptions = JobOptions & { stage?: boolean | undefined };

/** The binding's object (opaque to everything but the native model calls that take it). */
export interface StagedFloatsHandle {
  alloc(onProgress: NativeProgress): NativeJobHandle<void>;
  write(offset: number, values: Float32Array): void;
  dispose(): void;
}

interface StagedAddon {
  StagedFloats: new (length: number) => StagedFloatsHandle;
}

/** Whether v is a staged handle (what the native model calls take in place of a Float32Array). */
export function isStagedFloats(v: unknown): v is StagedFloatsHandle {
  return typeof v === 'object' && v !== null && v instanceof addonModule<StagedAddon>().StagedFloats;
}

/** `handle` once `work` on it has succeeded; disposed if it fails. */
export async function disposedOnFailure<H extends { dispose(): void }>(handle: H, work: (h: H) => Promise<unknown>): Promise<H> {
  try {
    await work(handle);
  } catch (e) {
    handle.dispose();
    throw e;
  }
  return handle;
}

/** A handle of `length` floats, allocated (and its pages faulted) by a job on the pool. */
async function allocated(length: number, opts: JobOptions): Promise<StagedFloatsHandle> {
  const handle = nativeCall(() => new (addonModule<StagedAddon>().StagedFloats)(length));
  return disposedOnFailure(handle, (h) => runNativeJob('stage', (cb) => h.alloc(cb), { signal: opts.signal }));
}

/**
 * Throws BUFFER_DETACHED unless `values` still holds the `length` floats it held when a sliced copy began: an
 * array whose buffer was transferred away meanwhile reads as empty, and a copy must never take less.
 */
export function checkAttached(values: { readonly length: number }, length: number): void {
  if (values.length < length) {
    throw new FfmergeError('BUFFER_DETACHED', 'an array being copied into native memory was detached (transferred) before the copy finished; keep it until the call settles');
  }
}

/** Copies `values` (`length` floats when the handle was made) into the handle a slice at a time, yielding between slices. */
function fill(handle: StagedFloatsHandle, values: Float32Array, length: number, opts: JobOptions): Promise<void> {
  return forSlices(
    length,
    STAGE_SLICE,
    (i0, i1) => {
      checkAttached(values, length);
      nativeCall(() => handle.write(i0, values.subarray(i0, i1)));
    },
    opts.signal,
  );
}

/** `values` copied into native memory; dispose() the handle once a model has taken it (the model keeps its own reference). */
export async function stageFloats(values: Float32Array, opts: JobOptions = {}): Promise<StagedFloatsHandle> {
  const length = values.length;
  return disposedOnFailure(await allocated(length, opts), (h) => fill(h, values, length, opts));
}

/**
 * The arrays of `objects` (each a record of Float32Arrays) of STAGE_MIN floats or more, staged once each: the
 * same memory (one ArrayBuffer, offset and length) met twice is staged once, so a tie stays one native copy.
 * The allocations run as concurrent jobs (faulting pages is most of the cost), the copies one after another.
 * Returns the records with those arrays replaced by their handles, and a function that disposes the handles.
 */
export async function stageLarge<T extends object>(objects: T[], opts: JobOptions = {}): Promise<{ staged: T[]; release: () => void }> {
  const key = (v: Float32Array) => `${v.byteOffset}:${v.length}`;
  const unique = new Map<ArrayBufferLike, Map<string, Float32Array>>();
  for (const o of objects) {
    for (const v of Object.values(o as Record<string, unknown>)) {
      if (!isFloat32Array(v) || v.length < STAGE_MIN) continue;
      const same = unique.get(v.buffer) ?? new Map<string, Float32Array>();
      unique.set(v.buffer, same);
      same.set(key(v), v);
    }
  }
  const arrays = [...unique.values()].flatMap((m) => [...m.values()]);
  const lengths = arrays.map((v) => v.length);
  const settled = await Promise.allSettled(lengths.map((n) => allocated(n, opts)));
  const handles = settled.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
  const release = () => {
    for (const h of handles) h.dispose();
  };
  try {
    const failed = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
    for (const [i, v] of arrays.entries()) await fill(handles[i]!, v, lengths[i]!, opts);
    const handleOf = new Map(arrays.map((v, i) => [v, handles[i]!]));
    const staged = objects.map((o) => {
      const copy: Record<string, unknown> = { ...(o as Record<string, unknown>) };
      for (const [k, v] of Object.entries(copy)) {
        if (isFloat32Array(v) && v.length >= STAGE_MIN) copy[k] = handleOf.get(unique.get(v.buffer)!.get(key(v))!);
      }
      return copy as unknown as T;
    });
    return { staged, release };
  } catch (e) {
    release();
    throw e;
  }
}

/**
 * run(objects), with their arrays of STAGE_MIN floats or more staged first (stageLarge) when `opts.stage` is
 * set, as given otherwise; the handles are disposed once run settles. The arrays must not change until then.
 */
export async function withStaged<T extends object, R>(
  objects: T[],
  opts: StageOptions,
  run: (staged: T[]) => Promise<R>,
  /** Arrays the call reads besides `objects` (an `out`), checked as those are. */
  others: (Float32Array | undefined)[] = [],
): Promise<R> {
  if (!opts.stage) return run(objects);
  // The arrays left unstaged are read only once staging is done: one detached meanwhile is BUFFER_DETACHED, as
  // at the call, not a SHAPE_MISMATCH from the native call
  const arrays = [...objects.flatMap((o) => Object.values(o as Record<string, unknown>)), ...others].filter((v): v is ArrayBufferView & { length: number } => ArrayBuffer.isView(v) && !(v instanceof DataView));
  const lengths = arrays.map((v) => v.length);
  const { staged, release } = await stageLarge(objects, opts);
  try {
    arrays.forEach((v, i) => checkAttached(v, lengths[i]!));
    return await run(staged);
  } finally {
    release();
  }
}
