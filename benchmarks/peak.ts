/**
 * The GEMM peak other benchmarks compare against in the same run (e.g. a forward pass reports its share of it):
 * GFLOP/s of the default (best) sgemm kernel on a large square multiply with all of the addon's threads.
 */
import { matmul } from '../lib/native/gemm';

/** Best-of-`reps` GFLOP/s of op() (after one warm-up run) for `flops` floating-point operations per call. */
export async function bestGflops(flops: number, reps: number, op: () => Promise<unknown>): Promise<number> {
  await op();
  let best = Infinity;
  for (let r = 0; r < reps; r++) {
    const t0 = process.hrtime.bigint();
    await op();
    best = Math.min(best, Number(process.hrtime.bigint() - t0) / 1e9);
  }
  return flops / best / 1e9;
}

export function randomFloats(n: number): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = Math.random() * 2 - 1;
  return out;
}

/** GFLOP/s of the best kernel, all threads, on a 2048³ single-precision multiply (best of 3). */
export async function measureKernelPeak(size = 2048): Promise<number> {
  const a = randomFloats(size * size);
  const b = randomFloats(size * size);
  const out = new Float32Array(size * size);
  return bestGflops(2 * size ** 3, 3, () => matmul(a, b, { m: size, n: size, k: size }, { out }));
}

if (require.main === module) {
  void measureKernelPeak().then((g) => console.log(`sgemm peak (best kernel, all threads, 2048³): ${g.toFixed(1)} GFLOP/s`));
}
