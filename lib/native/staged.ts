/**
 * Large float arrays moved into native memory without holding the event loop (native/binding/staged_floats.cc
 * says why): the pages are allocated and faulted in a job on the pool, then the main thread copies the array
 * in slices of STAGE_SLICE floats (a few ms each) with a yield between them. A model view takes the result in
 * place of the array and shares it (modelWithFF), so the copy is made once and not again in one long call.
 */
import { abortError, fromNativeError } from '../errors';
import { type JobOptions, type NativeJobHandle, runNativeJob } from './job';
import { loadAddon } from './loader';

/** Arrays shorter than this are copied by the model call itself: a plain copy of 4 MiB takes about 1 ms. */
export const STAGE_MIN = 1 << 20;
/** Floats copied between yields: 16 MiB, 2–4 ms of memcpy on this machine. */
export const STAGE_SLICE = 1 << 22;

/** The binding's object (opaque to everything but the native model calls that take it). */
export interface StagedFloatsHandle {
  alloc(onProgress: ((done: number, total: number) => void) | undefined): NativeJobHandle<void>;
  write(offset: number, values: Float32Array): void;
  dispose(): void;
}

interface StagedAddon {
  StagedFloats: new (length: number) => StagedFloatsHandle;
}

const yieldToLoop = () => new Promise<void>((resolve) => setImmediate(resolve));

/** `values` copied into native memory; dispose() the handle once a model has taken it (the model keeps its own reference). */
export async function stageFloats(values: Float32Array, opts: JobOptions = {}): Promise<StagedFloatsHandle> {
  let handle: StagedFloatsHandle;
  try {
    handle = new (loadAddon().module as unknown as StagedAddon).StagedFloats(values.length);
  } catch (e) {
    throw fromNativeError(e);
  }
  try {
    await runNativeJob('stage', (cb) => handle.alloc(cb), { ...(opts.signal ? { signal: opts.signal } : {}) });
    for (let i = 0; i < values.length; i += STAGE_SLICE) {
      if (i > 0) await yieldToLoop();
      if (opts.signal?.aborted) throw abortError();
      handle.write(i, values.subarray(i, Math.min(values.length, i + STAGE_SLICE)));
    }
  } catch (e) {
    handle.dispose();
    throw fromNativeError(e);
  }
  return handle;
}

/**
 * The arrays of `objects` (each a record of Float32Arrays) of STAGE_MIN floats or more, staged once each: the
 * same memory (one ArrayBuffer, offset and length) met twice is staged once, so a tie stays one native copy.
 * Returns the records with those arrays replaced by their handles, and a function that disposes the handles.
 */
export async function stageLarge<T extends object>(objects: T[], opts: JobOptions = {}): Promise<{ staged: T[]; release: () => void }> {
  const byBuffer = new Map<ArrayBufferLike, Map<string, StagedFloatsHandle>>();
  const handles: StagedFloatsHandle[] = [];
  const release = () => {
    for (const h of handles) h.dispose();
  };
  try {
    const staged: T[] = [];
    for (const o of objects) {
      const copy: Record<string, unknown> = { ...(o as Record<string, unknown>) };
      for (const [key, v] of Object.entries(copy)) {
        if (!(v instanceof Float32Array) || v.length < STAGE_MIN) continue;
        const same = byBuffer.get(v.buffer) ?? new Map<string, StagedFloatsHandle>();
        byBuffer.set(v.buffer, same);
        const at = `${v.byteOffset}:${v.length}`;
        let h = same.get(at);
        if (!h) {
          h = await stageFloats(v, opts);
          handles.push(h);
          same.set(at, h);
        }
        copy[key] = h;
      }
      staged.push(copy as unknown as T);
    }
    return { staged, release };
  } catch (e) {
    release();
    throw e;
  }
}
