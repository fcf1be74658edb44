/**
 * Correlation throughput in GFLOP/s (2·N·d² per XᵀY of one layer pair; the O(N·d) and O(d²) extras are not
 * counted), native vs pure TS vs numpy float32, all measured in this run.
 *
 *   npx ts-node --transpile-only benchmarks/correlation.ts            N = 16384 tokens, d = 3072
 *   BENCH_N=4096 BENCH_D=1024 BENCH_REPS=3 npx ts-node --transpile-only benchmarks/correlation.ts
 *
 * native: CorrelationAccumulator, one add() of all N rows plus finalize(), wall time.
 * pure TS: the float64 two-pass reference (lib/reference/correlation.ts) on BENCH_TS_N rows (default 32):
 *          its cost is linear in N, so its GFLOP/s carry over to the full N (reported as such).
 * numpy:  float32 (X−mean)ᵀ(Y−mean) / outer(std) through python3, OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE unset
 *         in that subprocess only.
 */
import * as os from 'node:os';
import { spawnSync } from 'node:child_process';
import { CorrelationAccumulator } from '../lib/native/correlation';
import { loadAddon } from '../lib/native/loader';
import { pearsonReference } from '../lib/reference/correlation';
import { NUMPY_PEARSON } from './numpy-pearson';

const N = Number(process.env.BENCH_N ?? 16384);
const D = Number(process.env.BENCH_D ?? 3072);
const REPS = Number(process.env.BENCH_REPS ?? 2);
const TS_N = Number(process.env.BENCH_TS_N ?? 32);

function gflop(rows: number, d: number): number {
  return (2 * rows * d * d) / 1e9;
}

function randomMatrix(rows: number, d: number, seed: number): Float32Array {
  // xorshift32 uniforms in [-1, 1) plus a per-unit offset: content does not change the work.
  let s = seed >>> 0 || 1;
  const out = new Float32Array(rows * d);
  for (let k = 0; k < out.length; k++) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    out[k] = (s >>> 0) / 2147483648 - 1 + (k % d) * 1e-3;
  }
  return out;
}

async function nativeSeconds(x: Float32Array, y: Float32Array): Promise<{ total: number; add: number; backend: string }> {
  const acc = new CorrelationAccumulator([D, D], [[0, 1]]);
  const t0 = performance.now();
  await acc.add([x, y], N);
  const t1 = performance.now();
  const c = await acc.finalize(0);
  const t2 = performance.now();
  if (c.length !== D * D) throw new Error('unexpected result size');
  return { total: (t2 - t0) / 1e3, add: (t1 - t0) / 1e3, backend: acc.backend };
}

function tsSeconds(): number {
  const x = randomMatrix(TS_N, D, 7);
  const y = randomMatrix(TS_N, D, 8);
  const t0 = performance.now();
  pearsonReference(x, y, TS_N, D, D);
  return (performance.now() - t0) / 1e3;
}

function numpySeconds(): { seconds: number; blas: string } | { error: string } {
  const script = `
import json, sys, time
import numpy as np
N, d, reps = ${N}, ${D}, ${REPS}
${NUMPY_PEARSON}best = float('inf')
for _ in range(reps):
    t = time.perf_counter(); corr(X, Y); best = min(best, time.perf_counter() - t)
try:
    cfg = np.show_config(mode='dicts')['Build Dependencies']['blas']
    blas = f"{cfg.get('name')} {cfg.get('version')}"
except Exception:
    blas = 'unknown'
print(json.dumps({'seconds': best, 'blas': blas}))
`;
  const env = { ...process.env };
  delete env.OPENBLAS_CORETYPE;
  delete env.OPENBLAS_L2_SIZE;
  const r = spawnSync('python3', ['-c', script], { env, encoding: 'utf8', maxBuffer: 1 << 20 });
  if (r.error || r.status !== 0) return { error: (r.error?.message ?? r.stderr).trim().split('\n').pop() ?? 'failed' };
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as { seconds: number; blas: string };
}

async function main(): Promise<void> {
  const info = loadAddon().info;
  console.log(`correlation benchmark: N=${N} tokens, d=${D}, one pair XᵀY, best of ${REPS}`);
  // the machine and the hour, as the other benchmarks record them (tester EQ)
  console.log(`machine: ${os.cpus()[0]?.model ?? '?'}, ${os.cpus().length} logical CPUs, load ${os.loadavg().map((v) => v.toFixed(1)).join(' ')}, ${new Date().toISOString()}`);
  console.log(`native build: ${info.variant}, ${info.threads} threads, sgemm kernel ${info.gemmKernel}`);
  const x = randomMatrix(N, D, 1);
  const y = randomMatrix(N, D, 2);
  let best = { total: Infinity, add: Infinity, backend: 'cpu' };
  for (let r = 0; r < REPS; r++) {
    const t = await nativeSeconds(x, y);
    if (t.total < best.total) best = t;
  }
  const nativeRate = gflop(N, D) / best.total;
  const tsRate = gflop(TS_N, D) / tsSeconds();
  const np = numpySeconds();

  const rows: [string, string, string][] = [
    [`native (${best.backend})`, `${best.total.toFixed(2)} s (add ${best.add.toFixed(2)} s)`, nativeRate.toFixed(1)],
    [`pure TS float64 (N=${TS_N}, rate extrapolated)`, `${((gflop(N, D) / tsRate)).toFixed(0)} s (extrapolated)`, tsRate.toFixed(2)],
  ];
  if ('seconds' in np) rows.push([`numpy float32 (${np.blas})`, `${np.seconds.toFixed(2)} s`, (gflop(N, D) / np.seconds).toFixed(1)]);
  console.log('\n| implementation | time | GFLOP/s |\n|---|---|---|');
  for (const [name, time, rate] of rows) console.log(`| ${name} | ${time} | ${rate} |`);
  console.log(`\nnative / pure TS: ${(nativeRate / tsRate).toFixed(1)}x`);
  if ('seconds' in np) {
    console.log(`native / numpy float32: ${(nativeRate / (gflop(N, D) / np.seconds)).toFixed(2)}x (target >= 0.8x)`);
  } else {
    console.log(`numpy: not measured (${np.error})`);
  }
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
