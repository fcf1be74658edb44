/**
 * Gradient vs float64 central differences, shared by the training gradient tests: `count` random entries
 * spread over every parameter (h = 1e-5), returned as ‖g − g_fd‖ / ‖g_fd‖.
 */
export function finiteDifferenceError(
  ref: () => number,
  t64: Record<string, Float64Array>,
  grads: Record<string, Float32Array>,
  count: number,
  next: () => number,
): number {
  const names = Object.keys(grads);
  const h = 1e-5;
  let num = 0;
  let den = 0;
  for (let i = 0; i < count; i++) {
    const name = names[i % names.length]!;
    const w = t64[name]!;
    const k = Math.floor(next() * w.length);
    const keep = w[k]!;
    w[k] = keep + h;
    const up = ref();
    w[k] = keep - h;
    const down = ref();
    w[k] = keep;
    const fd = (up - down) / (2 * h);
    num += (grads[name]![k]! - fd) ** 2;
    den += fd ** 2;
  }
  return Math.sqrt(num / den);
}

/** A seeded xorshift stream of numbers in [0, 1), for picking entries and random batches reproducibly. */
export function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 4294967296;
  };
}
