/**
 * Peak memory of `compress --k 4` on a GPT-2-small-shaped checkpoint with random weights (12 layers, d 768,
 * d_ff 3072, vocab 50257; benchmarks/synthetic/gpt2.ts, as benchmarks/compress.ts small), per phase. The
 * checkpoint and the token data (a .jsonl of input_ids) are written first; the compress then runs alone in a
 * fresh child process, so its VmHWM (/proc/self/status) is the compress's peak and nothing else's. With
 * FFMERGE_ROOT the compress under test comes from that checkout.
 *
 *   npx ts-node --transpile-only benchmarks/compress-rss.ts                       (the defaults: 10,240 calibration,
 *                                                                                  10,240 validation tokens, search on all)
 *   npx ts-node --transpile-only benchmarks/compress-rss.ts [--cal N] [--val N] [--search N]
 *   FFMERGE_ROOT=/path/to/other/checkout npx ts-node --transpile-only benchmarks/compress-rss.ts   (before/after)
 *   ... [--method permute|auto|select ...] [--window a-b] [--k 4]   (default: compress's own default, method auto, k 4)
 *   (--search applies to a search only: with --window, nothing is searched and compress refuses it)
 *
 * Prints VmRSS sampled at every progress report and every 200 ms, the largest per phase, and the child's VmHWM.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { writeSyntheticGpt2Small } from './synthetic/gpt2';

const root = process.env.FFMERGE_ROOT ?? path.resolve(__dirname, '..');
const args = process.argv.slice(2);
const text = (name: string): string | undefined => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : undefined;
};
const flag = (name: string): number | undefined => {
  const v = text(name);
  return v !== undefined ? Number(v) : undefined;
};
type ChildOptions = { cal?: number; val?: number; search?: number; method?: string; window?: string; k?: number };

function status(key: 'VmRSS' | 'VmHWM'): number {
  const m = new RegExp(`${key}:\\s+(\\d+) kB`).exec(fs.readFileSync('/proc/self/status', 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

/** The measured process: compress only, options from argv (JSON). */
async function child(dir: string, data: string, opts: ChildOptions): Promise<void> {
  /* eslint-disable @typescript-eslint/no-require-imports */
  const { compress } = require(path.join(root, 'lib/pipeline/compress')) as typeof import('../lib/pipeline/compress');
  /* eslint-enable @typescript-eslint/no-require-imports */
  const peak = new Map<string, number>();
  const buffers = new Map<string, number>(); // JS ArrayBuffers alive (V8 frees them only when it collects)
  let phase = 'load';
  const sample = () => {
    peak.set(phase, Math.max(peak.get(phase) ?? 0, status('VmRSS')));
    buffers.set(phase, Math.max(buffers.get(phase) ?? 0, process.memoryUsage().arrayBuffers / 2 ** 20));
  };
  const timer = setInterval(sample, 200);
  const t0 = performance.now();
  const r = await compress(dir, {
    k: opts.k ?? 4,
    calibration: data,
    ...(opts.method !== undefined ? { method: opts.method } : {}),
    ...(opts.window !== undefined ? { window: opts.window } : {}),
    ...(opts.cal !== undefined ? { calibrationTokens: opts.cal } : {}),
    ...(opts.val !== undefined ? { validationTokens: opts.val } : {}),
    ...(opts.search !== undefined ? { searchTokens: opts.search } : {}),
    onProgress: (p: { phase: string }) => {
      sample();
      phase = p.phase;
      sample();
    },
  });
  clearInterval(timer);
  console.log(`compress-rss (${root}): ${os.cpus().length} CPUs, method ${opts.method ?? '(default)'} → ${r.method}+${r.recover}, k=${r.k}, window ${r.windows.map((w: { window: string }) => w.window).join(',')}, calibration ${r.data.calibration}, validation ${r.data.validation}, ${r.windowsGiven ? 'windows given, no search' : `search ${r.data.search} tokens`}, ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  console.log(`peak VmRSS per phase (MB): ${[...peak].map(([p, v]) => `${p} ${v.toFixed(0)}`).join(', ')}`);
  console.log(`peak JS ArrayBuffers per phase (MB): ${[...buffers].map(([p, v]) => `${p} ${v.toFixed(0)}`).join(', ')}`);
  console.log(`VmHWM of the compress process: ${status('VmHWM').toFixed(0)} MB`);
  console.log(`timings: ${Object.entries(r.timings).map(([p, s]) => `${p} ${(s as number).toFixed(1)} s`).join(', ')}`);
  // random weights: only whether two runs agree means anything
  const scores = r.candidates.map((c: { method?: string; score: number }) => `${c.method ?? ''} ${c.score.toFixed(4)}`).join(', ');
  console.log(`validation ${r.base.validation.toFixed(4)} → ${r.merged.validation.toFixed(4)}; candidates: ${scores}`);
}

async function main(): Promise<void> {
  if (args[0] === '--child') {
    await child(args[1]!, args[2]!, JSON.parse(args[3]!) as ChildOptions);
    return;
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ffmerge-bench-rss-'));
  try {
    const model = path.join(dir, 'model');
    fs.mkdirSync(model);
    const { block } = await writeSyntheticGpt2Small(model);
    // enough blocks for the calibration and validation budgets, split from one file as the CLI does
    const opts: ChildOptions = { cal: flag('cal'), val: flag('val'), search: flag('search'), method: text('method'), window: text('window'), k: flag('k') };
    const blocks = Math.ceil(((opts.cal ?? 10240) + (opts.val ?? 10240)) / 256) + 1;
    const data = path.join(dir, 'tokens.jsonl');
    fs.writeFileSync(data, Array.from({ length: blocks }, () => JSON.stringify({ input_ids: [...block()] })).join('\n') + '\n');
    const r = spawnSync(process.execPath, ['-r', 'ts-node/register/transpile-only', __filename, '--child', model, data, JSON.stringify(opts)], { stdio: 'inherit', env: process.env });
    if (r.status !== 0) throw new Error(`the compress child failed (status ${r.status}, signal ${r.signal})`);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
