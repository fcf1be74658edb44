/**
 * Runs the benchmarks one after another (each in its own process, so one's memory and threads don't colour
 * the next):   npm run bench [-- name ...]      names: gemm correlation assignment forward encoders compress fixtures safetensors-io onnx-memory event-loop finetune
 * Each benchmark prints its own table with ratios against peers measured in the same run.
 */
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';

const ALL = ['gemm', 'correlation', 'assignment', 'forward', 'encoders', 'compress', 'fixtures', 'safetensors-io', 'onnx-memory', 'event-loop', 'finetune'];
const asked = process.argv.slice(2);
const unknown = asked.filter((n) => !ALL.includes(n));
if (unknown.length) {
  process.stderr.write(`unknown benchmark(s): ${unknown.join(', ')}; choose from ${ALL.join(', ')}\n`);
  process.exit(2);
}
let failed = 0;
for (const name of asked.length ? asked : ALL) {
  process.stdout.write(`\n### ${name}\n`);
  const r = spawnSync(process.execPath, ['-r', 'ts-node/register/transpile-only', path.join(__dirname, `${name}.ts`)], {
    stdio: 'inherit',
  });
  if (r.status !== 0) {
    failed++;
    process.stderr.write(`benchmark ${name} exited with ${r.status ?? r.signal}\n`);
  }
}
process.exit(failed ? 1 : 0);
