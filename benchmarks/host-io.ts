/**
 * What running native jobs cost the host's own I/O and its worker threads, ours against a peer checkout in the
 * same run (an older one whose jobs ran on libuv's thread pool):
 *   - read: fs.promises.readFile of a small file issued right after six matrix products of 3072² start (more
 *     jobs than libuv's four threads): the time until the read returns, and how many products ended first;
 *   - terminate: worker.terminate() of a worker running three such products, 300 ms after they start: the time
 *     until it returns, against one product alone.
 * Each checkout runs in a child process of its own (FFMERGE_ROOT), 3 runs each, one after the other.
 *
 *   node -r ts-node/register/transpile-only benchmarks/host-io.ts [--peer /path/to/other/checkout] [--runs 3]
 *
 * The peer is optional (a checkout with its addon built); without it only ours is measured.
 */
import { spawnSync } from 'node:child_process';
import * as os from 'node:os';
import * as path from 'node:path';

const args = process.argv.slice(2);
const flag = (name: string, dflt: string): string => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1]! : dflt;
};

const CHILD = `
  const fs = require('node:fs');
  const path = require('node:path');
  const { Worker } = require('node:worker_threads');
  const root = process.env.FFMERGE_ROOT;
  const { matmul } = require(path.join(root, 'lib/native/gemm'));
  const n = 3072;
  const a = new Float32Array(n * n).fill(1);
  (async () => {
    let t = performance.now();
    await matmul(a, a, { m: n, n, k: n });
    const one = performance.now() - t;
    const ended = [];
    const jobs = Array.from({ length: 6 }, (_, i) => matmul(a, a, { m: n, n, k: n }).then(() => void ended.push(i)));
    t = performance.now();
    await fs.promises.readFile(path.join(root, 'package.json'));
    const read = performance.now() - t;
    const endedFirst = ended.length;
    await Promise.all(jobs);
    const w = new Worker(\`
      require(\${JSON.stringify(path.join(root, 'node_modules/ts-node/register/transpile-only'))});
      const { parentPort } = require('node:worker_threads');
      const { matmul } = require(\${JSON.stringify(path.join(root, 'lib/native/gemm'))});
      const a = new Float32Array(\${n * n}).fill(1);
      for (let i = 0; i < 3; i++) void matmul(a, a, { m: \${n}, n: \${n}, k: \${n} }).catch(() => {});
      setTimeout(() => parentPort.postMessage('running'), 300);
    \`, { eval: true });
    await new Promise((r) => w.once('message', r));
    t = performance.now();
    await w.terminate();
    const terminate = performance.now() - t;
    console.log(JSON.stringify({ one, read, endedFirst, terminate }));
  })();`;

function run(root: string): { one: number; read: number; endedFirst: number; terminate: number } {
  const r = spawnSync(process.execPath, ['-r', path.join(root, 'node_modules/ts-node/register/transpile-only'), '-e', CHILD], {
    cwd: root,
    encoding: 'utf8',
    env: { ...process.env, FFMERGE_ROOT: root },
    timeout: 300_000,
  });
  const line = r.stdout.trim().split('\n').pop() ?? '';
  if (r.status !== 0 || !line.startsWith('{')) throw new Error(`${root}: exit ${r.status}\n${r.stderr.slice(-1000)}`);
  return JSON.parse(line);
}

function main(): void {
  const ours = path.join(__dirname, '..');
  const peer = args.includes('--peer') ? path.resolve(flag('peer', '')) : undefined;
  const runs = Number(flag('runs', '3'));
  console.log(`${os.cpus().length} cores, ${os.cpus()[0]?.model ?? '?'}; ${runs} runs per checkout`);
  console.log('checkout  one product  read during 6 jobs  jobs ended before the read  terminate() during 3 jobs');
  for (const [name, root] of [['ours', ours], ...(peer ? [['peer', peer]] : [])] as const) {
    for (let i = 0; i < runs; i++) {
      const o = run(root);
      console.log(`${name.padEnd(8)}  ${o.one.toFixed(0).padStart(7)} ms  ${o.read.toFixed(0).padStart(10)} ms  ${String(o.endedFirst).padStart(16)}  ${o.terminate.toFixed(0).padStart(16)} ms`);
    }
  }
}

main();
