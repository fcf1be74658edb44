/**
 * The greedy unit selection behind the `select` merge (RidgeAccumulator.select: core/select.cc), alone, at the
 * pool sizes compress meets: GPT-2-small with k = 4 (cut to 4,095 units, 768 outputs, d_ff 3,072) and
 * Llama-2-7B width (cut to 13,760 units, 4,096 outputs, d_ff 11,008). It takes d_ff + 1 columns (the
 * intercept forced first) or, with fewer rows than that, as many as the rows can tell apart.
 *
 *   node -r ts-node/register/transpile-only benchmarks/select.ts [--sizes 4095x768x3072,13760x4096x11008]
 *        [--rows 4096] [--numpy-max 4095]
 *
 * Peer in the same run: numpy, the same forward stepwise selection written the plain way (a rank-one update
 * of the residual targets per unit taken, vectorised; numpy's OpenBLAS for the products), on its own random
 * system of the same size, at pools of up to --numpy-max units (it is slow beyond). Skipped, saying so, when
 * python3 lacks numpy. Correctness is native/tests/test_select.cc's; here only times compare, with the
 * number of units each side took.
 */
import { spawnSync } from 'node:child_process';
import { loadAddon } from '../lib/native/loader';
import { RidgeAccumulator } from '../lib/native/ridge';
import { mulberry32 } from '../test/reference/random';

const args = process.argv.slice(2);
const flag = (name: string, dflt: string): string => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1]! : dflt;
};
const SIZES = flag('sizes', '4095x768x3072,13760x4096x11008').split(',').map((s) => s.split('x').map(Number) as [number, number, number]);
const ROWS = Number(flag('rows', '4096'));
const NUMPY_MAX = Number(flag('numpy-max', '4095'));

/** Seconds of the selection alone, and how many units it took. */
async function nativeSeconds(p: number, m: number, dFF: number): Promise<{ seconds: number; taken: number }> {
  const acc = new RidgeAccumulator(p, m);
  const next = mulberry32(1);
  // rows in chunks, so the benchmark's own arrays stay small beside the sums
  for (let r = 0; r < ROWS; r += 1024) {
    const n = Math.min(1024, ROWS - r);
    const H = Float32Array.from({ length: n * p }, () => next() - 0.5);
    const Y = Float32Array.from({ length: n * m }, () => next() - 0.5);
    await acc.add(H, Y, n);
  }
  const t = performance.now();
  const taken = await acc.select(dFF + 1, { forced: [p] });
  return { seconds: (performance.now() - t) / 1000, taken: taken.length };
}

function numpySeconds(p: number, m: number, dFF: number): { seconds: number; taken: number } | string {
  const script = `
import json, time
import numpy as np
rng = np.random.default_rng(0)
p, m, rows, count, lam_rel = ${p}, ${m}, ${ROWS}, ${dFF + 1}, 1e-3
H = np.hstack([rng.random((rows, p), dtype=np.float32) - 0.5, np.ones((rows, 1), np.float32)])
Y = rng.random((rows, m), dtype=np.float32) - 0.5
G = H.T.astype(np.float64) @ H.astype(np.float64)
C = H.T.astype(np.float64) @ Y.astype(np.float64)
del H, Y
t = time.perf_counter()
n = p + 1
lam = np.full(n, lam_rel * np.trace(G[:p, :p]) / p); lam[p] = 0
gdiag = np.diag(G).copy(); d = gdiag.copy(); R = C.copy(); rr = np.einsum('ij,ij->i', R, R)
L = np.zeros((count, n)); taken = np.zeros(n, bool); out = []
while len(out) < count:
    if not out:
        j = p
    else:
        ok = ~taken & (d > 1e-10 * gdiag) & (d > 0)
        if not ok.any(): break
        g = np.where(ok, rr / (d + lam), -1.0); j = int(np.argmax(g))
    t_ = len(out); taken[j] = True; out.append(j)
    root = np.sqrt(d[j]); z = R[j] / root
    l = (G[j] - L[:t_, j] @ L[:t_]) / root; L[t_] = l
    d -= l * l; R -= np.outer(l, z); rr = np.einsum('ij,ij->i', R, R); d[j] = 0
print(json.dumps({'seconds': time.perf_counter() - t, 'taken': len(out)}))
`;
  const r = spawnSync('python3', ['-c', script], { encoding: 'utf8', maxBuffer: 1 << 20 });
  if (r.error || r.status !== 0) return `skipped (${(r.error?.message ?? r.stderr).trim().split('\n').pop()})`;
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as { seconds: number; taken: number };
}

async function main(): Promise<void> {
  const info = loadAddon().info;
  console.log(`greedy select: ${ROWS} random rows, intercept forced first; native ${info.variant}, ${info.threads} threads`);
  console.log('| pool × outputs (d_ff) | native | units taken | numpy (plain stepwise) | units taken | native / numpy |');
  console.log('|---|---|---|---|---|---|');
  for (const [p, m, dFF] of SIZES) {
    const native = await nativeSeconds(p, m, dFF);
    const numpy = p <= NUMPY_MAX ? numpySeconds(p, m, dFF) : `not run (pool > --numpy-max ${NUMPY_MAX})`;
    const np = typeof numpy === 'string' ? numpy : `${numpy.seconds.toFixed(2)} s`;
    const npTaken = typeof numpy === 'string' ? '–' : String(numpy.taken);
    const ratio = typeof numpy === 'string' ? '–' : `${(native.seconds / numpy.seconds).toFixed(2)}×`;
    console.log(`| ${p} × ${m} (${dFF}) | ${native.seconds.toFixed(2)} s | ${native.taken} | ${np} | ${npTaken} | ${ratio} |`);
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
