/**
 * Memory of a long-lived host that runs the same compress over and over (a server's pipeline): RSS, JS heap,
 * open file descriptors and threads after each run, with two forced GCs first, so growth per run shows. On
 * llama-stories260k, window 2-3, 2,048 calibration and 1,024 validation tokens from the fixture's jsonl rows.
 *
 *   node --expose-gc -r ts-node/register/transpile-only benchmarks/repeated-jobs.ts [--runs 40] [--recover none|refit|finetune]
 *   MALLOC_ARENA_MAX=1 node --expose-gc -r ts-node/register/transpile-only benchmarks/repeated-jobs.ts --recover finetune
 *
 * Needs ../shared (FFMERGE_SHARED overrides); skipped, saying so, when the fixture is missing.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { compress } from '../lib';

const SHARED = path.resolve(process.env.FFMERGE_SHARED ?? path.join(__dirname, '..', '..', 'shared'));
const MODEL = path.join(SHARED, 'fixtures', 'llama-stories260k');
const VALID = path.join(SHARED, 'data', 'lm', 'stories260k-samples-valid.jsonl');
const args = process.argv.slice(2);
const arg = (name: string, dflt: string) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 && args[i + 1] !== undefined ? args[i + 1]! : dflt;
};

function sample(): { rss: number; heap: number; fds: number; threads: number } {
  const gc = (globalThis as { gc?: () => void }).gc;
  gc?.();
  gc?.();
  const m = process.memoryUsage();
  return { rss: m.rss / 2 ** 20, heap: m.heapUsed / 2 ** 20, fds: fs.readdirSync('/proc/self/fd').length, threads: fs.readdirSync('/proc/self/task').length };
}

async function main(): Promise<void> {
  if (!fs.existsSync(MODEL) || !fs.existsSync(VALID)) {
    console.log(`skipped: ${MODEL} or ${VALID} is missing (set FFMERGE_SHARED)`);
    return;
  }
  if (!(globalThis as { gc?: unknown }).gc) console.log('note: run with node --expose-gc for comparable numbers');
  const runs = Number(arg('runs', '40'));
  const recover = arg('recover', 'finetune');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ffmerge-repeated-'));
  console.log(`compress llama-stories260k ×${runs}, permute + ${recover}, MALLOC_ARENA_MAX=${process.env.MALLOC_ARENA_MAX ?? '(unset)'}, ${os.cpus().length} cores`);
  const show = (label: string, s: ReturnType<typeof sample>) =>
    console.log(`${label.padStart(5)}  rss ${s.rss.toFixed(1).padStart(6)} MB  heap ${s.heap.toFixed(1).padStart(5)} MB  fds ${s.fds}  threads ${s.threads}`);
  show('start', sample());
  try {
    for (let i = 1; i <= runs; i++) {
      const out = path.join(dir, 'out');
      await compress(MODEL, { k: 2, window: '2-3', method: 'permute', recover, calibration: VALID, calibrationTokens: 2048, validationTokens: 1024, out });
      fs.rmSync(out, { recursive: true, force: true });
      const s = sample();
      if (i <= 3 || i % 5 === 0 || i === runs) show(String(i), s);
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
