/**
 * The FF nonlinearities as scalar functions (float64), for the TypeScript parts of the merge (refit) and the
 * reference oracles. The native forward pass has its own vectorised versions (native/core/nn).
 */
export type Activation = 'gelu_new' | 'gelu' | 'relu' | 'silu' | 'swish';

/** erf by Abramowitz–Stegun 7.1.26 (absolute error < 1.5e-7, below the float32 rounding compared against). */
export function erf(x: number): number {
  const a = Math.abs(x);
  const t = 1 / (1 + 0.3275911 * a);
  const y = 1 - ((((1.061405429 * t - 1.453152027) * t + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t * Math.exp(-a * a);
  return x < 0 ? -y : y;
}

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
