/**
 * The ridge solve behind every training-free fit (RidgeAccumulator.solve: core/ridge.cc → core/cholesky.cc),
 * at the sizes compress meets: GPT-2-small (3,072 hidden units, 768 outputs) and Llama-2-7B (11,008, 4,096).
 *
 *   node -r ts-node/register/transpile-only benchmarks/ridge-solve.ts [--sizes 3072x768,11008x4096] [--rows 2048]
 *
 * Peers in the same run:
 *   scipy:   cho_factor + cho_solve in float64 on the same-sized system (LAPACK dpotrf/dpotrs through numpy's
 *            OpenBLAS, which uses fused multiply-adds); skipped when python3 lacks scipy
 *   pure TS: test/reference/ridge.ts (float64 sums and Gaussian elimination; it accumulates and solves in
 *            one call), against the native accumulate + solve, at 320 × 768 only (it is O(n·p² + p³))
 * Each side builds its own random system of the size (G from `rows` random rows plus the ridge), so only the
 * times compare; correctness is native/tests/test_ridge.cc's.
 */
import { spawnSync } from 'node:child_process';
import { loadAddon } from '../lib/native/loader';
import { RidgeAccumulator } from '../lib/native/ridge';
import { mulberry32 } from '../test/reference/random';
import { ridgeReference } from '../test/reference/ridge';

const args = process.argv.slice(2);
const flag = (name: string, dflt: string): string => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1]! : dflt;
};
const SIZES = flag('sizes', '3072x768,11008x4096').split(',').map((s) => s.split('x').map(Number) as [number, number]);
const ROWS = Number(flag('rows', '2048'));
const TS_P = 320;

function random(n: number, seed: number): Float32Array {
  const next = mulberry32(seed);
  return Float32Array.from({ length: n }, () => next() - 0.5);
}

/** Seconds of the solve alone, and of accumulate + solve. */
async function nativeSeconds(p: number, m: number): Promise<{ solve: number; total: number }> {
  const acc = new RidgeAccumulator(p, m);
  const H = random(ROWS * p, 1);
  const Y = random(ROWS * m, 2);
  const t0 = performance.now();
  await acc.add(H, Y, ROWS);
  const t1 = performance.now();
  await acc.solve(1e-3);
  const t2 = performance.now();
  return { solve: (t2 - t1) / 1000, total: (t2 - t0) / 1000 };
}

function tsSeconds(p: number, m: number): number {
  const H = random(ROWS * p, 1);
  const Y = random(ROWS * m, 2);
  const t = performance.now();
  ridgeReference(H, Y, ROWS, p, m, 1e-3);
  return (performance.now() - t) / 1000;
}

function scipySeconds(p: number, m: number): number | string {
  const script = `
import json, time
import numpy as np
from scipy.linalg import cho_factor, cho_solve
rng = np.random.default_rng(0)
p, m, n = ${p}, ${m}, ${ROWS}
H = np.hstack([rng.standard_normal((n, p), dtype=np.float32), np.ones((n, 1), np.float32)])
Y = rng.standard_normal((n, m), dtype=np.float32)
G = (H.T @ H).astype(np.float64)
C = (H.T @ Y).astype(np.float64)
G[np.arange(p), np.arange(p)] += 1e-3 * np.trace(G[:p, :p]) / p
t = time.perf_counter()
X = cho_solve(cho_factor(G, lower=True), C)
print(json.dumps({'seconds': time.perf_counter() - t}))
`;
  const r = spawnSync('python3', ['-c', script], { encoding: 'utf8', maxBuffer: 1 << 20 });
  if (r.error || r.status !== 0) return `skipped (${(r.error?.message ?? r.stderr).trim().split('\n').pop()})`;
  return (JSON.parse(r.stdout.trim().split('\n').pop()!) as { seconds: number }).seconds;
}

async function main(): Promise<void> {
  const info = loadAddon().info;
  console.log(`ridge solve: ${ROWS} rows, λ = 1e-3 × mean diagonal; native ${info.variant}, ${info.threads} threads`);
  console.log('| unknowns × outputs | native solve | scipy cho_factor + cho_solve | native / scipy |');
  console.log('|---|---|---|---|');
  for (const [p, m] of SIZES) {
    const native = (await nativeSeconds(p, m)).solve;
    const scipy = scipySeconds(p, m);
    const sp = typeof scipy === 'number' ? `${scipy.toFixed(2)} s` : scipy;
    const ratio = typeof scipy === 'number' ? `${(native / scipy).toFixed(2)}×` : '–';
    console.log(`| ${p} × ${m} | ${native.toFixed(2)} s | ${sp} | ${ratio} |`);
  }
  // best of three: one call this small is dominated by first-touch allocation after the large runs
  let small = await nativeSeconds(TS_P, 768);
  for (let r = 0; r < 2; r++) {
    const t = await nativeSeconds(TS_P, 768);
    if (t.total < small.total) small = t;
  }
  const ts = tsSeconds(TS_P, 768);
  console.log(`\naccumulate + solve at ${TS_P} × 768, ${ROWS} rows: native ${small.total.toFixed(3)} s, pure TS ${ts.toFixed(2)} s (${(ts / small.total).toFixed(0)}× the native time)`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
