/**
 * An FF's input side (W_in, b_in, W_gate, b_gate) held in native memory (native/binding/ff_binding.cc).
 *
 * Why: a job that reads an FF from JS copies it first (async_job.h says why), on the main thread, every
 * call. select's pool of k FFs is 3.2 GB at Llama-2-7B width with k = 9, and its passes feed it to a job for
 * every calibration batch of every layer: that was seconds of copying per call, with the host's event loop
 * stalled through each. A NativeFF is filled once, a layer at a time, and jobs share it without a copy; it
 * refuses set() while a job reads it, so what a job reads never changes under it.
 */
import { FfmergeError } from '../errors';
import type { FFWeights } from '../model/ff-weights';
import { type JobOptions, nativeCall, type NativeJobHandle, type NativeProgress, runNativeJob } from './job';
import { addonModule } from './loader';
import { forSlices } from '../merge/slices';
import { checkAttached, disposedOnFailure, STAGE_SLICE } from './staged';

type FFInputs = Pick<FFWeights, 'wIn' | 'bIn' | 'wGate' | 'bGate'>;

interface NativeFFHandle {
  set(offset: number, ff: FFInputs): void;
  touch(offset: number, units: number, onProgress: NativeProgress): NativeJobHandle<void>;
  rows(units: Int32Array, onProgress: NativeProgress): NativeJobHandle<FFInputs>;
  dispose(): void;
}

interface NativeFFAddon {
  NativeFF: new (units: number, d: number, parts: { bIn: boolean; gate: boolean; bGate: boolean }) => NativeFFHandle;
}

export class NativeFF {
  /** The binding's object: jobs that take an FF take this in its place (ridge.ts, correlation.ts). */
  readonly handle: NativeFFHandle;

  /** units × d, with the pieces `parts` names (zero until set). */
  constructor(
    readonly dFF: number,
    readonly d: number,
    readonly parts: { bIn: boolean; gate: boolean; bGate: boolean },
  ) {
    this.handle = nativeCall(() => new (addonModule<NativeFFAddon>().NativeFF)(dFF, d, parts));
  }

  /** A NativeFF holding `ff`'s input side (copied once). */
  static async of(ff: FFWeights, opts: JobOptions = {}): Promise<NativeFF> {
    const n = new NativeFF(ff.dFF, ff.d, { bIn: Boolean(ff.bIn), gate: Boolean(ff.wGate), bGate: Boolean(ff.bGate) });
    return disposedOnFailure(n, () => n.set(0, ff, opts));
  }

  /**
   * Copies `ff`'s units into units offset… (BUSY while a job reads this FF). The rows' pages are first
   * faulted in by a job on the pool, so the main thread only copies: at 7B width one layer's W_in and gate
   * rows are 360 MB, and faulting fresh pages for them held the event loop about 1.4 s. The copy itself is
   * made STAGE_SLICE floats at a time with a yield between (those 360 MB in one call held it 30–42 ms).
   * An abort between slices leaves the rows partly written; a detached array is BUFFER_DETACHED.
   */
  async set(offset: number, ff: FFInputs, opts: JobOptions = {}): Promise<void> {
    const inputs = { ...ff }; // the arrays given at the call, whatever happens to `ff` during the touch below
    // checked before the pages are touched (which zeroes the rows): a refused set leaves the rows as they were
    const units = ff.wIn.length / this.d;
    if (!Number.isInteger(units) || !Number.isInteger(offset) || offset < 0 || offset + units > this.dFF) {
      throw new FfmergeError('SHAPE_MISMATCH', `set(): wIn must hold whole rows of width ${this.d} that fit in ${this.dFF} units from offset ${offset}`);
    }
    const want = { bIn: this.parts.bIn, wGate: this.parts.gate, bGate: this.parts.bGate };
    for (const k of ['bIn', 'wGate', 'bGate'] as const) {
      if (Boolean(ff[k]) !== want[k]) throw new FfmergeError('INVALID_ARGUMENT', `set(): the FF ${ff[k] ? 'has' : 'lacks'} ${k}, unlike this NativeFF`);
      if (ff[k] && ff[k]!.length !== units * (k === 'wGate' ? this.d : 1)) throw new FfmergeError('SHAPE_MISMATCH', `set(): ${k} has the wrong length`);
    }
    if (units > 0) await runNativeJob('ff.touch', (cb) => this.handle.touch(offset, units, cb), opts);
    const perUnit = this.d * (inputs.wGate ? 2 : 1);
    await forSlices(
      units,
      STAGE_SLICE / perUnit,
      (u0, u1) => {
        // every piece is checked before any is written
        const part: Partial<FFInputs> = {};
        for (const k of ['wIn', 'bIn', 'wGate', 'bGate'] as const) {
          const width = k === 'wIn' || k === 'wGate' ? this.d : 1;
          if (!inputs[k]) continue;
          checkAttached(inputs[k], units * width);
          part[k] = inputs[k].subarray(u0 * width, u1 * width);
        }
        nativeCall(() => this.handle.set(offset + u0, part as FFInputs));
      },
      opts.signal,
    );
  }

  /** Units `units` (in that order) as a JS FF of units.length units, W_out left empty for the caller. */
  async rows(units: ArrayLike<number>, opts: JobOptions = {}): Promise<FFWeights> {
    const idx = Int32Array.from(units);
    if (idx.length === 0) throw new FfmergeError('INVALID_ARGUMENT', 'rows() needs at least one unit');
    const got = await runNativeJob('ff.rows', (cb) => this.handle.rows(idx, cb), opts);
    return { d: this.d, dFF: idx.length, ...got, wOut: new Float32Array(this.d * idx.length) };
  }

  /** Frees the native memory now (a job still reading keeps its own reference until it ends). */
  dispose(): void {
    this.handle.dispose();
  }
}
