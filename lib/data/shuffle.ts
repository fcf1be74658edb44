/**
 * A fixed pseudo-random order of n items (Fisher–Yates driven by a seeded LCG): the same n and seed give the
 * same order on every machine, so data drawn across a file is reproducible.
 */
export function seededOrder(n: number, seed: number): Int32Array {
  let s = seed >>> 0;
  const rand = () => ((s = (s * 1664525 + 1013904223) >>> 0) / 2 ** 32);
  const order = Int32Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [order[i], order[j]] = [order[j]!, order[i]!];
  }
  return order;
}
