/**
 * Time-sliced loops for merge arithmetic on the JS thread. Averaging and permuting a large FF (GPT-2 small:
 * 4 × 2.4 M values per window) takes 100+ ms in one go, which would stall an embedding host's event loop; cut
 * into slices with a yield between them, no single stretch exceeds a few milliseconds and the result is
 * bit-identical to the plain loop.
 */
import { setImmediate as yieldToLoop } from 'node:timers/promises';
import { abortError } from '../errors';

/** Elements handled between yields: ~1 ms of the simple loops here. */
export const SLICE_ELEMENTS = 1 << 17;

/** Runs body(i0, i1) over [0, n) in slices of about `per` units, yielding to the event loop between slices. */
export async function forSlices(n: number, per: number, body: (i0: number, i1: number) => void, signal?: AbortSignal): Promise<void> {
  const step = Math.max(1, Math.floor(per));
  for (let i0 = 0; i0 < n; i0 += step) {
    if (signal?.aborted) throw abortError(signal);
    body(i0, Math.min(n, i0 + step));
    if (i0 + step < n) await yieldToLoop();
  }
}
