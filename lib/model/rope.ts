/**
 * The rotary frequencies inv_freq[0 .. dim/2) of a model, its RoPE scaling applied, as transformers' rope init
 * functions compute them (the default; _compute_linear_scaling_rope_parameters; _compute_llama3_parameters).
 * `round` is each step's rounding: Math.fround gives the float32 values torch and the native core use (the ONNX
 * graph's constants), the identity the float64 values of the plain reference forward.
 */
import { NO_ROPE_SCALING, type RopeScaling } from './spec';

export function ropeInvFreq(theta: number, dim: number, scaling: RopeScaling = NO_ROPE_SCALING, round: (x: number) => number = Math.fround): number[] {
  const f = round;
  const inv = Array.from({ length: dim / 2 }, (_, i) => f(1 / f(Math.pow(theta, f((2 * i) / dim)))));
  if (scaling.type === 'linear') return inv.map((x) => f(x / scaling.factor));
  if (scaling.type !== 'llama3') return inv;
  const { factor, lowFreqFactor: low, highFreqFactor: high, originalMaxPositions: old } = scaling;
  // the bounds as Python computes them (double), compared against float32 wavelengths as torch compares them
  const [lowWavelen, highWavelen] = [f(old / low), f(old / high)];
  // a Python number divided by a tensor is torch's __rtruediv__, reciprocal() * number: two roundings
  return inv.map((x) => {
    const wavelen = f(f(1 / x) * f(2 * Math.PI));
    if (wavelen > lowWavelen) return f(x / factor); // low frequency: interpolated
    if (wavelen < highWavelen) return x; // high frequency: kept
    const smooth = f(f(f(f(1 / wavelen) * old) - low) / f(high - low));
    return f(f(f(f(1 - smooth) * x) / factor) + f(smooth * x)); // between: blended
  });
}
