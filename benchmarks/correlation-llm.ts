/**
 * Correlation of one layer pair at LLM widths (issue 9): time and peak RSS of this build's native accumulator
 * against numpy float32 doing the same math, each in its own process of the same run.
 *
 *   npx ts-node --transpile-only benchmarks/correlation-llm.ts
 *   BENCH_DS=3072,11008 BENCH_N=4096 BENCH_REPS=1 BENCH_BASE_ADDON=/path/to/main/ffmerge.node npx ts-node ...
 *
 * native: CorrelationAccumulator, one add() of all N rows plus finalize() (benchmarks/correlation-child.js on
 *         the raw addon, so the process holds only the data and the addon). BENCH_BASE_ADDON adds the same
 *         run on another build of the addon (main's, for before/after).
 * numpy:  float32 (X−mean)ᵀ(Y−mean) / outer(std), the script of benchmarks/correlation.ts (skipped, with the
 *         reason printed, when `python3 -c 'import numpy'` fails).
 * Peak RSS is each process's VmHWM (/proc/<pid>/status), inputs included (both sides hold X and Y).
 * ratio = numpy seconds / native seconds (≥ 1: native is as fast); memory = native VmHWM / numpy VmHWM.
 */
import { spawnSync } from 'node:child_process';
import * as os from 'node:os';
import * as path from 'node:path';
import { NUMPY_PEARSON } from './numpy-pearson';

const N = Number(process.env.BENCH_N ?? 4096);
const DS = (process.env.BENCH_DS ?? '3072,11008,14336').split(',').map(Number);
const REPS = Number(process.env.BENCH_REPS ?? 1);
const BASE = process.env.BENCH_BASE_ADDON;

interface Run {
  seconds: number;
  cpuSeconds: number;
  hwmKb: number;
}

function current(): string {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return (require('node-gyp-build') as { resolve(dir: string): string }).resolve(path.resolve(__dirname, '..'));
}

function native(addon: string, d: number): Run | { error: string } {
  const r = spawnSync(process.execPath, [path.join(__dirname, 'correlation-child.js'), addon, String(N), String(d), String(REPS)], {
    encoding: 'utf8',
    maxBuffer: 1 << 20,
  });
  if (r.status !== 0) return { error: (r.stderr || String(r.error)).trim().split('\n').pop() ?? 'failed' };
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as Run;
}

function numpy(d: number): Run | { error: string } {
  const script = `
import json, time, resource, os
import numpy as np
N, d, reps = ${N}, ${d}, ${REPS}
${NUMPY_PEARSON}best = (float('inf'), 0.0)
for _ in range(reps):
    t, c = time.perf_counter(), time.process_time()
    corr(X, Y)
    best = min(best, (time.perf_counter() - t, time.process_time() - c))
hwm = int([l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')][0])
print(json.dumps({'seconds': best[0], 'cpuSeconds': best[1], 'hwmKb': hwm}))
`;
  const env = { ...process.env };
  delete env.OPENBLAS_CORETYPE;
  delete env.OPENBLAS_L2_SIZE;
  const r = spawnSync('python3', ['-c', script], { env, encoding: 'utf8', maxBuffer: 1 << 20 });
  if (r.error || r.status !== 0) return { error: (r.error?.message ?? r.stderr).trim().split('\n').pop() ?? 'failed' };
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as Run;
}

const gb = (kb: number) => (kb / 1024 / 1024).toFixed(2);
const show = (r: Run | { error: string }) => ('error' in r ? `failed: ${r.error}` : `${r.seconds.toFixed(2)} s (cpu ${r.cpuSeconds.toFixed(1)} s), ${gb(r.hwmKb)} GB`);

function main(): void {
  const np = spawnSync('python3', ['-c', 'import numpy'], { encoding: 'utf8' });
  const npReason = np.error ? np.error.message : np.status !== 0 ? np.stderr.trim().split('\n').pop() : undefined;
  console.log(`correlation at LLM widths: N=${N} tokens, one pair, best of ${REPS}; ${os.cpus().length} cores (${os.cpus()[0]?.model ?? '?'}), ${gb(os.totalmem() / 1024)} GB`);
  if (npReason) console.log(`numpy: skipped (${npReason})`);
  console.log('\n| d_ff | native (this build) | native (base) | numpy float32 | numpy s / native s | native / numpy peak RSS | base / numpy s |\n|---|---|---|---|---|---|---|');
  for (const d of DS) {
    const cur = native(current(), d);
    const base = BASE ? native(BASE, d) : undefined;
    const ref = npReason ? undefined : numpy(d);
    const ok = (r: Run | { error: string } | undefined): r is Run => r !== undefined && !('error' in r);
    const speed = ok(cur) && ok(ref) ? (ref.seconds / cur.seconds).toFixed(2) + '×' : '–';
    const mem = ok(cur) && ok(ref) ? (cur.hwmKb / ref.hwmKb).toFixed(2) + '×' : '–';
    const baseSpeed = ok(base) && ok(ref) ? (ref.seconds / base.seconds).toFixed(2) + '×' : '–';
    console.log(`| ${d} | ${show(cur)} | ${base ? show(base) : '–'} | ${ref ? show(ref) : 'skipped'} | ${speed} | ${mem} | ${baseSpeed} |`);
  }
}

main();
