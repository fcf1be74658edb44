/**
 * Plain TypeScript FF sublayer (float64 arithmetic), the oracle for the merge ops and the refit: given rows
 * of FF inputs x [n, d], returns the hidden activations after the nonlinearity H [n, dFF] and the FF output
 * Y [n, d]. Slow on purpose: one loop nest, nothing clever.
 */
import { FfmergeError } from '../../lib/errors';
import type { FFWeights } from '../../lib/model/ff-weights';

import type { Activation } from '../../lib/model/activation';

export type { Activation } from '../../lib/model/activation';

/** erf by Abramowitz–Stegun 7.1.26 (absolute error < 1.5e-7, below the float32 rounding compared against). */
export function erf(x: number): number {
  const a = Math.abs(x);
  const t = 1 / (1 + 0.3275911 * a);
  const y = 1 - ((((1.061405429 * t - 1.453152027) * t + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t * Math.exp(-a * a);
  return x < 0 ? -y : y;
}

/** The FF nonlinearities as scalar functions (float64), for the oracles. */
export function activate(kind: Activation, x: number): number {
  switch (kind) {
    case 'gelu_new':
      return 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x * x * x)));
    case 'gelu':
      return 0.5 * x * (1 + erf(x / Math.SQRT2));
    case 'relu':
      return x > 0 ? x : 0;
    case 'silu':
    case 'swish':
      return x / (1 + Math.exp(-x));
  }
}

export interface FFOutputs {
  /** Hidden activations after the nonlinearity (times the up projection for SwiGLU), [n, dFF]. */
  hidden: Float64Array;
  /** FF output, [n, d]. */
  out: Float64Array;
}

/**
 * Canonical-layout FF on n rows of x. With a gate (SwiGLU): h = act(W_gate x + b_gate) ⊙ (W_in x + b_in);
 * otherwise h = act(W_in x + b_in). out = W_out h + b_out.
 */
export function ffForwardReference(ff: FFWeights, x: ArrayLike<number>, n: number, act: Activation): FFOutputs {
  const { d, dFF } = ff;
  if (x.length !== n * d) throw new FfmergeError('SHAPE_MISMATCH', `FF input has ${x.length} values, expected ${n}×${d}`);
  const hidden = new Float64Array(n * dFF);
  const out = new Float64Array(n * d);
  for (let r = 0; r < n; r++) {
    for (let j = 0; j < dFF; j++) {
      let up = ff.bIn ? ff.bIn[j]! : 0;
      for (let i = 0; i < d; i++) up += ff.wIn[j * d + i]! * x[r * d + i]!;
      let h: number;
      if (ff.wGate) {
        let g = ff.bGate ? ff.bGate[j]! : 0;
        for (let i = 0; i < d; i++) g += ff.wGate[j * d + i]! * x[r * d + i]!;
        h = activate(act, g) * up;
      } else {
        h = activate(act, up);
      }
      hidden[r * dFF + j] = h;
    }
    for (let o = 0; o < d; o++) {
      let s = ff.bOut ? ff.bOut[o]! : 0;
      for (let j = 0; j < dFF; j++) s += ff.wOut[o * dFF + j]! * hidden[r * dFF + j]!;
      out[r * d + o] = s;
    }
  }
  return { hidden, out };
}
