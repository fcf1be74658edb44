/**
 * GEMM benchmark: GFLOP/s of the native sgemm (every kernel this CPU supports, 1 thread and all threads) on
 * square and FF-like shapes, against numpy's float32 matmul (OpenBLAS) on the same shapes and the pure-TS
 * reference matmul on a smaller one. Ratios are against peers measured in this same run.
 *
 *   npx ts-node --transpile-only benchmarks/gemm.ts [--quick]
 *
 * Single-thread native numbers come from a child process started with FFMERGE_THREADS=1 (the pool size is
 * fixed when the addon loads). Best-of-N wall-clock timings: on a shared machine the best run is the one least
 * disturbed by other load.
 */
import { spawnSync } from 'node:child_process';
import * as os from 'node:os';
import { gemmKernels, matmul, type GemmKernel } from '../lib/native/gemm';
import { loadAddon } from '../lib/native/loader';
import { matmulReference } from '../lib/reference/matmul';
import { bestGflops, type Gflops, randomFloats } from './peak';

interface Shape {
  name: string;
  m: number;
  n: number;
  k: number;
  transB?: boolean;
}

const quick = process.argv.includes('--quick');
const shapes: Shape[] = [
  { name: 'square 1024', m: 1024, n: 1024, k: 1024 },
  { name: 'square 2048', m: 2048, n: 2048, k: 2048 },
  { name: 'FF up 2048×3072×768', m: 2048, n: 3072, k: 768 },
  { name: 'FF down 2048×768×3072', m: 2048, n: 768, k: 3072 },
  { name: 'FF up, Bᵀ (Linear weight)', m: 2048, n: 3072, k: 768, transB: true },
  // Shapes of the small fixture models and of decoding one token at a time.
  { name: 'small model 4096×512×128, Bᵀ', m: 4096, n: 512, k: 128, transB: true },
  { name: 'one token 1×3072×768, Bᵀ', m: 1, n: 3072, k: 768, transB: true },
];
const reps = quick ? 2 : 6;

type Row = Record<string, Gflops>; // kernel -> GFLOP/s, per shape name

async function nativeRows(): Promise<Record<string, Row>> {
  const out: Record<string, Row> = {};
  for (const s of shapes) {
    const a = randomFloats(s.m * s.k);
    const b = randomFloats(s.k * s.n);
    const c = new Float32Array(s.m * s.n);
    const row: Row = {};
    for (const kernel of gemmKernels()) {
      // The portable kernel is ~3× slower; one timed run is enough to place it. Tiny shapes get more runs.
      const small = s.m * s.n * s.k < 1e8;
      const r = small ? 20 : kernel === 'portable' ? 1 : reps;
      row[kernel] = await bestGflops(2 * s.m * s.n * s.k, r, () =>
        matmul(a, b, { m: s.m, n: s.n, k: s.k, transB: s.transB }, { kernel: kernel as GemmKernel, out: c }),
      );
    }
    out[s.name] = row;
  }
  return out;
}

function numpyRows(threads: 'all' | 1): { rows: Record<string, Gflops>; info: string } | { error: string } {
  const script = `
import json, sys, time
import numpy as np
info = {}
try:
    from threadpoolctl import threadpool_info
    info = threadpool_info()
except Exception as e:
    info = 'threadpoolctl not available (%s); numpy %s' % (e.__class__.__name__, np.__version__)
shapes = json.loads(sys.argv[1]); reps = int(sys.argv[2])
rows = {}
rng = np.random.default_rng(0)
for s in shapes:
    a = rng.standard_normal((s['m'], s['k']), dtype=np.float32)
    b = rng.standard_normal((s['n'], s['k']) if s.get('transB') else (s['k'], s['n']), dtype=np.float32)
    bb = b.T if s.get('transB') else b
    c = np.empty((s['m'], s['n']), dtype=np.float32)
    np.matmul(a, bb, out=c)
    wall = cpu = 1e9
    for _ in range(20 if s['m'] * s['n'] * s['k'] < 1e8 else reps):
        t = time.perf_counter(); p = time.process_time()
        np.matmul(a, bb, out=c)
        wall = min(wall, time.perf_counter() - t); cpu = min(cpu, time.process_time() - p)
    flops = 2 * s['m'] * s['n'] * s['k']
    rows[s['name']] = {'wall': flops / wall / 1e9, 'cpu': flops / max(cpu, 1e-9) / 1e9}
print(json.dumps({'rows': rows, 'info': info}))
`;
  const env = { ...process.env };
  delete env.OPENBLAS_CORETYPE;
  delete env.OPENBLAS_L2_SIZE;
  if (threads === 1) env.OPENBLAS_NUM_THREADS = env.OMP_NUM_THREADS = '1';
  const r = spawnSync('python3', ['-c', script, JSON.stringify(shapes), String(reps)], { env, encoding: 'utf8' });
  if (r.status !== 0) return { error: (r.stderr || r.error?.message || 'python3 failed').trim().split('\n').pop() ?? '' };
  const parsed = JSON.parse(r.stdout) as { rows: Record<string, Gflops>; info: unknown };
  return { rows: parsed.rows, info: typeof parsed.info === 'string' ? parsed.info : JSON.stringify(parsed.info) };
}

function singleThreadChild(): Record<string, Row> {
  const r = spawnSync(process.execPath, [...process.execArgv, __filename, '--child', ...(quick ? ['--quick'] : [])], {
    env: { ...process.env, FFMERGE_THREADS: '1' },
    encoding: 'utf8',
    maxBuffer: 1 << 20,
  });
  if (r.status !== 0) throw new Error(`single-thread child failed: ${r.stderr}`);
  return JSON.parse(r.stdout) as Record<string, Row>;
}

async function pureTs(): Promise<{ size: number; ts: Gflops; native: Gflops }> {
  const size = 256;
  const a = randomFloats(size * size);
  const b = randomFloats(size * size);
  const shape = { m: size, n: size, k: size };
  const flops = 2 * size ** 3;
  const ts = await bestGflops(flops, 2, async () => matmulReference(a, b, shape));
  const native = await bestGflops(flops, 20, () => matmul(a, b, shape));
  return { size, ts, native };
}

// "wall (per CPU-second)" GFLOP/s, and the ratio of each.
const f1 = (x: Gflops | undefined) => (x === undefined ? '—' : `${x.wall.toFixed(1)} (${x.cpu.toFixed(1)})`);
const ratio = (x: Gflops | undefined, y: Gflops | undefined) =>
  x === undefined || y === undefined ? '—' : `${(x.wall / y.wall).toFixed(2)}× (${(x.cpu / y.cpu).toFixed(2)}×)`;

async function main(): Promise<void> {
  if (process.argv.includes('--child')) {
    process.stdout.write(JSON.stringify(await nativeRows()));
    return;
  }
  const addon = loadAddon();
  const kernels = gemmKernels();
  const best = kernels[kernels.length - 1] ?? 'portable';
  console.log(`# sgemm benchmark — ${new Date().toISOString()}`);
  console.log(`CPU: ${os.cpus()[0]?.model ?? 'unknown'}, ${os.cpus().length} logical cores; load average ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}`);
  console.log(`addon: ${addon.info.variant}, ${addon.info.threads} threads, kernels ${kernels.join(', ')} (default ${addon.info.gemmKernel})`);

  const np1 = numpyRows(1);
  const single = singleThreadChild();
  const all = await nativeRows();
  const npAll = numpyRows('all');
  if ('info' in npAll) console.log(`numpy/OpenBLAS: ${npAll.info}`);
  else console.log(`numpy unavailable: ${npAll.error}`);

  for (const [label, native, np] of [
    ['1 thread', single, np1],
    [`all threads (${addon.info.threads})`, all, npAll],
  ] as const) {
    console.log(`\n## GFLOP/s, ${label}: wall-clock (per CPU-second in parentheses)`);
    console.log(`| shape | ${kernels.join(' | ')} | numpy | ${best} / numpy |`);
    console.log(`|---|${kernels.map(() => '---:').join('|')}|---:|---:|`);
    for (const s of shapes) {
      const row = native[s.name] ?? {};
      const npv = 'rows' in np ? np.rows[s.name] : undefined;
      console.log(`| ${s.name} | ${kernels.map((k) => f1(row[k])).join(' | ')} | ${f1(npv)} | ${ratio(row[best], npv)} |`);
    }
  }
  const t = await pureTs();
  console.log(`\n## pure TypeScript reference (float64 accumulation), ${t.size}³`);
  console.log(`pure TS ${f1(t.ts)} GFLOP/s; native ${best}, all threads, same size: ${f1(t.native)} GFLOP/s; native/TS ${ratio(t.native, t.ts)}`);
  const big = all['square 2048']?.[best];
  if (big !== undefined) console.log(`native at 2048³ vs pure TS at ${t.size}³: ${ratio(big, t.ts)}`);
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
