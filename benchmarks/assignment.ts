/**
 * Dense linear assignment, maximising total correlation on correlation-like matrices (what the merge
 * solves): ffmerge native vs the pure-TS reference vs npm `munkres` and `linear-sum-assignment` vs
 * scipy.optimize.linear_sum_assignment (python3 subprocess, matrix passed as a binary file). Every solver
 * gets the same float32 matrix; all objectives must agree to 1e-6 relative.
 *
 *   npx ts-node --transpile-only benchmarks/assignment.ts [sizes...]     (default 768 1024 3072 4096 8192)
 *
 * Env: BENCH_JS_LIMIT_S (default 60): a JS solver is skipped at a size where its time at the previous size,
 * scaled by n³, predicts more than this. BENCH_NATIVE_ONLY_ABOVE (default 4096): sizes above it run only
 * native and scipy. BENCH_SCIPY_MAX (default 8192): scipy is not run above this size. BENCH_CONSTANT=1 also times native on a constant matrix of each size (ties everywhere).
 *
 * Times are wall-clock (best of 3 for native, one run for the others) and, because the machine may be
 * shared, also CPU time of the process (all threads; for scipy, python's process_time).
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { assignmentKernels, linearSumAssignment } from '../lib/native/assignment';
import { linearSumAssignmentReference } from '../lib/reference/assignment';
import { mulberry32, normalFrom } from '../test/reference/random';

type Solver = (c: Float32Array, n: number) => Promise<number> | number;

function cpuSeconds(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
}

// Deterministic uniform (mulberry32) and normal (Box–Muller) generators.
const uniformGen = mulberry32;
const normalGen = normalFrom;

/**
 * A correlation-like n×n matrix in [-1, 1]: a shared low-rank part (units of both layers respond to a few
 * common directions), noise, and a hidden partial permutation (60% of units have a partner with correlation
 * 0.2–0.8), shaped like the FF-unit correlations between two layers.
 */
function correlationLike(n: number, seed: number): Float32Array {
  const u = uniformGen(seed);
  const g = normalGen(u);
  const rank = 8;
  const U = Float64Array.from({ length: n * rank }, g);
  const V = Float64Array.from({ length: n * rank }, g);
  const perm = Int32Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(u() * (i + 1));
    [perm[i], perm[j]] = [perm[j] as number, perm[i] as number];
  }
  const c = new Float32Array(n * n);
  for (let a = 0; a < n; a++) {
    for (let b = 0; b < n; b++) {
      let s = 0;
      for (let q = 0; q < rank; q++) s += (U[a * rank + q] as number) * (V[b * rank + q] as number);
      c[a * n + b] = (0.15 / Math.sqrt(rank)) * s + 0.05 * g();
    }
    if (a % 5 < 3) c[a * n + (perm[a] as number)]! += 0.2 + 0.3 * Math.abs(g());
  }
  for (let k = 0; k < c.length; k++) c[k] = Math.max(-1, Math.min(1, c[k] as number));
  return c;
}

function objectiveOf(c: Float32Array, n: number, colOfRow: ArrayLike<number>): number {
  let s = 0;
  const seen = new Uint8Array(n);
  for (let r = 0; r < n; r++) {
    const q = colOfRow[r] as number;
    if (seen[q]) throw new Error('solver returned a non-permutation');
    seen[q] = 1;
    s += c[r * n + q] as number;
  }
  return s;
}

const solvers: Record<string, Solver> = {
  native: async (c, n) => (await linearSumAssignment(c, n, n, { maximize: true })).objective,
  'pure TS (SAP)': (c, n) => linearSumAssignmentReference(c, n, n, { maximize: true }).objective,
  'npm munkres': (c, n) => {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const { munkres } = require('munkres') as typeof import('munkres');
    const rows = Array.from({ length: n }, (_, r) => {
      const row = new Float64Array(n);
      for (let q = 0; q < n; q++) row[q] = -(c[r * n + q] as number); // munkres minimises
      return row;
    });
    const pairs = munkres(rows);
    const colOfRow = new Int32Array(n);
    for (const [r, q] of pairs) colOfRow[r] = q;
    return objectiveOf(c, n, colOfRow);
  },
  'npm linear-sum-assignment': (c, n) => {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const { linearSumAssignment: lsa } = require('linear-sum-assignment') as {
      linearSumAssignment(m: Float64Array[], o: { maximaze: boolean }): { rowAssignments: Float64Array };
    };
    const rows = Array.from({ length: n }, (_, r) => Float64Array.from(c.subarray(r * n, (r + 1) * n)));
    return objectiveOf(c, n, lsa(rows, { maximaze: true }).rowAssignments);
  },
};

const SCIPY = `
import json, sys, time
import numpy as np
from scipy.optimize import linear_sum_assignment
n = int(sys.argv[2])
c = np.fromfile(sys.argv[1], dtype=np.float32).reshape(n, n)
t0, p0 = time.perf_counter(), time.process_time()
r, q = linear_sum_assignment(c, maximize=True)
t, p = time.perf_counter() - t0, time.process_time() - p0
print(json.dumps({"seconds": t, "cpu": p, "objective": float(c[r, q].astype(np.float64).sum())}))
`;

function scipy(c: Float32Array, n: number): { seconds: number; cpu: number; objective: number } | string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ffm-lap-'));
  try {
    const file = path.join(dir, 'c.f32');
    fs.writeFileSync(file, c);
    const res = spawnSync('python3', ['-c', SCIPY, file, String(n)], { encoding: 'utf8' });
    if (res.status !== 0) return `scipy unavailable (${(res.stderr || String(res.error)).trim().split('\n').pop()})`;
    return JSON.parse(res.stdout) as { seconds: number; cpu: number; objective: number };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const args = process.argv.slice(2).map(Number).filter((x) => x > 0);
  const sizes = args.length ? args : [768, 1024, 3072, 4096, 8192];
  const jsLimit = Number(process.env.BENCH_JS_LIMIT_S ?? 60);
  const nativeOnlyAbove = Number(process.env.BENCH_NATIVE_ONLY_ABOVE ?? 4096);
  const scipyMax = Number(process.env.BENCH_SCIPY_MAX ?? 8192);
  const last = new Map<string, { n: number; seconds: number }>();
  const constant = process.env.BENCH_CONSTANT === '1';
  console.log(`assignment benchmark, ${new Date().toISOString()}, ${os.cpus().length} CPUs (${os.cpus()[0]?.model ?? '?'}), load average ${os.loadavg()[0]?.toFixed(1)}`);
  console.log(`native kernel: ${assignmentKernels().auto}; maximize=True on correlation-like float32 matrices`);
  for (const n of sizes) {
    const c = correlationLike(n, n);
    const times: Record<string, number> = {};
    const cpu: Record<string, number> = {};
    const objectives: Record<string, number> = {};
    const skipped: Record<string, string> = {};
    for (const [name, solve] of Object.entries(solvers)) {
      if (name !== 'native') {
        if (n > nativeOnlyAbove) {
          skipped[name] = 'native-only size';
          continue;
        }
        const prev = last.get(name);
        const predicted = prev ? prev.seconds * (n / prev.n) ** 3 : 0;
        if (predicted > jsLimit) {
          skipped[name] = `predicted ${predicted.toFixed(0)} s from n = ${prev?.n} (limit ${jsLimit} s)`;
          continue;
        }
      }
      const reps = name === 'native' ? 3 : 1;
      let best = Infinity;
      let bestCpu = Infinity;
      for (let k = 0; k < reps; k++) {
        const t0 = process.hrtime.bigint();
        const c0 = cpuSeconds();
        objectives[name] = await solve(c, n);
        const t = Number(process.hrtime.bigint() - t0) / 1e9;
        if (t < best) {
          best = t;
          bestCpu = cpuSeconds() - c0;
        }
      }
      times[name] = best;
      cpu[name] = bestCpu;
      last.set(name, { n, seconds: best });
    }
    const sp = n > scipyMax ? `scipy not run above n = ${scipyMax}` : scipy(c, n);
    if (typeof sp === 'string') console.log(sp);
    else {
      times['scipy'] = sp.seconds;
      cpu['scipy'] = sp.cpu;
      objectives['scipy'] = sp.objective;
    }
    const ref = objectives['native'] as number;
    console.log(`\nn = ${n}`);
    console.log('| solver | wall (s) | wall / native | CPU (s) | CPU / native | objective | rel. diff to native |');
    console.log('|---|---:|---:|---:|---:|---:|---:|');
    for (const name of Object.keys(times)) {
      const t = times[name] as number;
      const o = objectives[name] as number;
      const rel = Math.abs(o - ref) / Math.abs(ref);
      console.log(
        `| ${name} | ${t.toFixed(3)} | ${(t / (times['native'] as number)).toFixed(1)}× | ${(cpu[name] as number).toFixed(3)} | ${((cpu[name] as number) / (cpu['native'] as number)).toFixed(1)}× | ${o.toFixed(6)} | ${rel.toExponential(1)}${rel > 1e-6 ? ' MISMATCH' : ''} |`,
      );
    }
    for (const [name, why] of Object.entries(skipped)) console.log(`| ${name} | not run: ${why} | | | | | |`);
    if (constant) {
      const k = new Float32Array(n * n).fill(0.25);
      const t0 = process.hrtime.bigint();
      const res = await linearSumAssignment(k, n, n, { maximize: true });
      const t = Number(process.hrtime.bigint() - t0) / 1e9;
      console.log(`constant ${n}×${n} matrix: native ${t.toFixed(3)} s, objective ${res.objective} (expected ${0.25 * n})`);
    }
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
