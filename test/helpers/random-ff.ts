/** Seeded random FFs for the native FF tests (ff-apply, native-ff): the same draws for the same seed. */
import type { FFWeights } from '../../lib/model/ff-weights';

/** A linear congruential generator of values in [-1, 1). */
export function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return (s / 2 ** 32 - 0.5) * 2;
  };
}

/** An FF of d × dFF with values from r: biases and a gate as asked. */
export function randomFF(r: () => number, d: number, dFF: number, gated: boolean, biased: boolean): FFWeights {
  const f = (n: number) => Float32Array.from({ length: n }, r);
  return {
    d,
    dFF,
    wIn: f(dFF * d),
    wOut: f(d * dFF),
    ...(biased ? { bIn: f(dFF), bOut: f(d) } : {}),
    ...(gated ? { wGate: f(dFF * d), ...(biased ? { bGate: f(dFF) } : {}) } : {}),
  };
}
