/** Fixed position tables that enter an exported graph as constants (they are not checkpoint tensors). */

/**
 * Marian's sinusoidal table [maxPositions, d], row-major: sin(pos·ω_i) in the first half of a row, cos in
 * the second, ω_i = 10000^(−2i/d). Computed in double and rounded once to float32, as transformers builds it
 * (numpy float64) and as ffmerge's native forward does (sinusoidal_row in forward.cc): the exported model
 * then adds exactly the values the reference adds, where Sin/Cos ops in float32 would drift at large angles.
 */
export function sinusoidalTable(maxPositions: number, d: number): Float32Array {
  const half = Math.floor((d + 1) / 2);
  const out = new Float32Array(maxPositions * d);
  for (let pos = 0; pos < maxPositions; pos++) {
    for (let j = 0; j < d; j++) {
      const i = j < half ? j : j - half;
      const angle = pos / Math.pow(10000, (2 * i) / d);
      out[pos * d + j] = j < half ? Math.sin(angle) : Math.cos(angle);
    }
  }
  return out;
}
