/**
 * Peak memory of `compress --k 4` on a GPT-2-small-shaped checkpoint with random weights (12 layers, d 768,
 * d_ff 3072, vocab 50257; benchmarks/synthetic/gpt2.ts, as benchmarks/compress.ts small), per phase. With
 * FFMERGE_ROOT the compress under test comes from that checkout; the checkpoint is written by this one.
 *
 *   npx ts-node --transpile-only benchmarks/compress-rss.ts [--cal 10240] [--val 1024] [--search 256]
 *   FFMERGE_ROOT=/path/to/other/checkout npx ts-node --transpile-only benchmarks/compress-rss.ts   (before/after)
 *
 * Prints VmRSS sampled at every progress report and every 200 ms, the largest per phase, and the process's
 * VmHWM (/proc/self/status) at the end: the peak of the whole run, model generation included.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { writeSyntheticGpt2Small } from './synthetic/gpt2';

const root = process.env.FFMERGE_ROOT ?? path.resolve(__dirname, '..');
/* eslint-disable @typescript-eslint/no-require-imports */
const { compress } = require(path.join(root, 'lib/pipeline/compress')) as typeof import('../lib/pipeline/compress');
/* eslint-enable @typescript-eslint/no-require-imports */

const args = process.argv.slice(2);
const flag = (name: string, dflt: number) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : dflt;
};

function status(key: 'VmRSS' | 'VmHWM'): number {
  const m = new RegExp(`${key}:\\s+(\\d+) kB`).exec(fs.readFileSync('/proc/self/status', 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

async function main(): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ffmerge-bench-rss-'));
  try {
    const { block } = await writeSyntheticGpt2Small(dir);
    const cal = Array.from({ length: Math.ceil(flag('cal', 10240) / 256) }, block);
    const val = Array.from({ length: Math.ceil(flag('val', 1024) / 256) }, block);
    const afterSetup = status('VmHWM');
    const peak = new Map<string, number>();
    let phase = 'load';
    const sample = () => peak.set(phase, Math.max(peak.get(phase) ?? 0, status('VmRSS')));
    const timer = setInterval(sample, 200);
    const t0 = performance.now();
    const r = await compress(dir, {
      k: 4,
      calibration: cal,
      validation: val,
      validationTokens: 1e9,
      calibrationTokens: 1e9,
      searchTokens: flag('search', 256),
      onProgress: (p: { phase: string }) => {
        sample();
        phase = p.phase;
        sample();
      },
    });
    clearInterval(timer);
    console.log(`compress-rss (${root}): ${os.cpus().length} CPUs, k=${r.k}, window ${r.windows.map((w: { window: string }) => w.window).join(',')}, calibration ${r.data.calibration} tokens, ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    console.log(`peak VmRSS per phase (MB): ${[...peak].map(([p, v]) => `${p} ${v.toFixed(0)}`).join(', ')}`);
    console.log(`VmHWM: after generating the checkpoint ${afterSetup.toFixed(0)} MB, whole run ${status('VmHWM').toFixed(0)} MB`);
    console.log(`timings: ${Object.entries(r.timings).map(([p, s]) => `${p} ${(s as number).toFixed(1)} s`).join(', ')}`);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
