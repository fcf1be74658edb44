/**
 * Runs the benchmarks one after another (each in its own process, so one's memory and threads don't colour
 * the next):   npm run bench [-- name ... [--flag value ...]]      names: gemm correlation assignment forward encoders compress fixtures safetensors-io onnx-memory event-loop finetune
 * Everything from the first argument that starts with "-" is passed to each benchmark named (`gemm --quick`).
 * Each benchmark prints its own table with ratios against peers measured in the same run.
 */
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';

const ALL = ['gemm', 'correlation', 'assignment', 'forward', 'encoders', 'compress', 'fixtures', 'safetensors-io', 'onnx-memory', 'event-loop', 'finetune'];
const args = process.argv.slice(2);
const firstFlag = args.findIndex((a) => a.startsWith('-'));
const asked = firstFlag < 0 ? args : args.slice(0, firstFlag);
// flags go to the benchmarks (tester EQ: "--quick" was refused as a benchmark's name)
const flags = firstFlag < 0 ? [] : args.slice(firstFlag);
const unknown = asked.filter((n) => !ALL.includes(n));
if (unknown.length) {
  process.stderr.write(`unknown benchmark(s): ${unknown.join(', ')}; choose from ${ALL.join(', ')}\n`);
  process.exit(2);
}
let failed = 0;
for (const name of asked.length ? asked : ALL) {
  process.stdout.write(`\n### ${name}\n`);
  const r = spawnSync(process.execPath, ['-r', 'ts-node/register/transpile-only', path.join(__dirname, `${name}.ts`), ...flags], {
    stdio: 'inherit',
  });
  if (r.status !== 0) {
    failed++;
    process.stderr.write(`benchmark ${name} exited with ${r.status ?? r.signal}\n`);
  }
}
process.exit(failed ? 1 : 0);
