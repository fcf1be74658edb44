/**
 * The GEMM peak other benchmarks compare against in the same run (e.g. a forward pass reports its share of it):
 * GFLOP/s of the default (best) sgemm kernel on a large square multiply with all of the addon's threads.
 */
import { matmul } from '../lib/native/gemm';

export interface Gflops {
  /** flops / best wall-clock time. */
  wall: number;
  /** flops / CPU time (all threads of this process) of the same best run: on a machine shared with other
   * load this stays close to what an idle machine gives per core, where wall-clock numbers do not. */
  cpu: number;
}

/** Best-of-`reps` GFLOP/s of op() (after one warm-up run) for `flops` floating-point operations per call. */
export async function bestGflops(flops: number, reps: number, op: () => Promise<unknown>): Promise<Gflops> {
  await op();
  let bestWall = Infinity;
  let bestCpu = Infinity;
  for (let r = 0; r < reps; r++) {
    const c0 = process.cpuUsage();
    const t0 = process.hrtime.bigint();
    await op();
    const wall = Number(process.hrtime.bigint() - t0) / 1e9;
    const cu = process.cpuUsage(c0);
    bestWall = Math.min(bestWall, wall);
    bestCpu = Math.min(bestCpu, (cu.user + cu.system) / 1e6);
  }
  return { wall: flops / bestWall / 1e9, cpu: flops / bestCpu / 1e9 };
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
  const g = await bestGflops(2 * size ** 3, 3, () => matmul(a, b, { m: size, n: size, k: size }, { out }));
  return g.wall;
}

if (require.main === module) {
  void measureKernelPeak().then((g) => console.log(`sgemm peak (best kernel, all threads, 2048³): ${g.toFixed(1)} GFLOP/s`));
}
