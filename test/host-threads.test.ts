/**
 * Native jobs run on the addon's own job threads (native/core/job_runner.h), not on libuv's thread pool, whose
 * four threads also serve the host's fs, dns.lookup, crypto and zlib calls:
 * - the host's file reads go on while more jobs run than libuv has threads (before: a read waited until a job ended);
 * - worker.terminate() stops a worker's running jobs instead of waiting for them (before: it waited for each to end).
 * Orderings, not timings: what must happen first, measured against the work itself.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { type NativeJobHandle, runNativeJob } from '../lib/native/job';
import { loadAddon } from '../lib/native/loader';
import { stageFloats } from '../lib/native/staged';

const root = path.join(__dirname, '..');

test("the host's file reads are not queued behind running jobs", async () => {
  const n = 3072; // each multiply holds its job thread far longer than a small read takes
  // Staged once and shared by every job, so that no call copies its inputs on the main thread: through matmul()
  // each call copied 75 MB (~280 ms here), and six in a row let the first jobs end before the read was even
  // asked for (a loaded CI counted 3).
  const a = await stageFloats(new Float32Array(n * n).fill(1));
  const sgemm = (loadAddon().module as unknown as { sgemm: (...args: unknown[]) => NativeJobHandle<Float32Array> }).sgemm;
  const finished: number[] = [];
  // six at once: more than the four threads (libuv's before, the addon's now)
  const jobs = Array.from({ length: 6 }, (_, i) =>
    runNativeJob('matmul', (onProgress) => sgemm(a, a, null, n, n, n, false, false, 1, 0, undefined, onProgress)).then(() => void finished.push(i)),
  );
  // Before: the read's first step (open) queued on libuv's pool behind the fifth and sixth jobs, so it ran only
  // once three jobs had ended, whatever the load. Now it needs no job's thread: 0 ended, unless the read waits for
  // a core longer than four multiplies sharing the machine take (~1.7 s here; a loaded machine slows both).
  await fs.promises.readFile(__filename);
  const doneAtRead = finished.length;
  await Promise.all(jobs);
  a.dispose();
  expect(doneAtRead).toBeLessThan(3);
});

test('worker.terminate() stops the jobs a worker is running instead of waiting for them', () => {
  // In a child process: a teardown that hangs or crashes fails this test, not jest.
  const script = `
    const { Worker } = require('node:worker_threads');
    const { matmul } = require('./lib/native/gemm');
    (async () => {
      const n = 3072;
      const a = new Float32Array(n * n).fill(1);
      let t = performance.now();
      await matmul(a, a, { m: n, n, k: n });
      const one = performance.now() - t; // one multiply alone, on this machine, now
      const w = new Worker(\`
        require('ts-node/register/transpile-only');
        const { parentPort } = require('node:worker_threads');
        const { matmul } = require('./lib/native/gemm');
        const n = \${n};
        const a = new Float32Array(n * n).fill(1);
        // three lanes of multiplies, each starting the next as one ends, well under way when the parent hears:
        // the worker is never idle, so it cannot exit by itself before terminate() (a CI run whose parent heard
        // late found the three single multiplies finished and the worker gone, exit code 0)
        const lane = () => matmul(a, a, { m: n, n, k: n }).then(lane, () => {});
        for (let i = 0; i < 3; i++) void lane();
        setTimeout(() => parentPort.postMessage('running'), 300);
      \`, { eval: true });
      await new Promise((resolve) => w.on('message', resolve));
      t = performance.now();
      const code = await w.terminate();
      const took = performance.now() - t;
      console.log(JSON.stringify({ one, took, code }));
    })();`;
  const r = spawnSync(process.execPath, ['-r', 'ts-node/register/transpile-only', '-e', script], { cwd: root, encoding: 'utf8', timeout: 120_000 });
  const line = r.stdout.trim().split('\n').pop() ?? '';
  expect({ status: r.status, signal: r.signal, json: line.startsWith('{') }).toEqual({ status: 0, signal: null, json: true });
  const o = JSON.parse(line) as { one: number; took: number; code: number };
  // Before: terminate() returned once the running multiplies had ended (measured: 413 ms against one of 470 ms);
  // now once each has reached its next cancellation check (52 ms against 814 ms).
  expect({ code: o.code, stoppedEarly: o.took < o.one / 3 }).toEqual({ code: 1, stoppedEarly: true });
});

test('how many jobs run at once: FFMERGE_JOB_THREADS, else UV_THREADPOOL_SIZE (their bound on libuv), else 4', () => {
  const jobThreads = (env: Record<string, string>) => {
    const r = spawnSync(process.execPath, ['-r', 'ts-node/register/transpile-only', '-e', "console.log(require('./lib/native/loader').loadAddon().module.buildInfo().jobThreads)"], {
      cwd: root,
      encoding: 'utf8',
      env: { ...Object.fromEntries(Object.entries(process.env).filter(([k]) => k !== 'FFMERGE_JOB_THREADS' && k !== 'UV_THREADPOOL_SIZE')), ...env },
    });
    return Number(r.stdout.trim().split('\n').pop());
  };
  expect([jobThreads({}), jobThreads({ UV_THREADPOOL_SIZE: '9' }), jobThreads({ FFMERGE_JOB_THREADS: '7', UV_THREADPOOL_SIZE: '9' })]).toEqual([4, 9, 7]);
});

test('a job aborted while it waits for a job thread rejects at once, not when a thread frees; the queue goes on', () => {
  // One job thread, held by a long multiply: the second job waits in the queue when it is aborted.
  const script = `
    const { matmul } = require('./lib/native/gemm');
    (async () => {
      const n = 3072;
      const a = new Float32Array(n * n).fill(1);
      const events = [];
      const long = matmul(a, a, { m: n, n, k: n }).then(() => events.push('long done'));
      const ac = new AbortController();
      const queued = matmul(a, a, { m: n, n, k: n }, { signal: ac.signal }).then(() => events.push('queued done'), (e) => events.push('queued ' + e.code));
      setTimeout(() => ac.abort(), 50);
      await Promise.all([long, queued]);
      // the thread still serves the queue: a later job runs, with the right answer
      const c = await matmul(Float32Array.of(1, 2, 3, 4), Float32Array.of(5, 6, 7, 8), { m: 2, n: 2, k: 2 });
      console.log(JSON.stringify({ events, c: Array.from(c) }));
    })();`;
  const r = spawnSync(process.execPath, ['-r', 'ts-node/register/transpile-only', '-e', script], {
    cwd: root,
    encoding: 'utf8',
    timeout: 120_000,
    env: { ...process.env, FFMERGE_JOB_THREADS: '1' },
  });
  const line = r.stdout.trim().split('\n').pop() ?? '';
  expect({ status: r.status, signal: r.signal, json: line.startsWith('{') }).toEqual({ status: 0, signal: null, json: true });
  // Before: the abort took effect only when the long multiply ended and the thread took the queued job
  // (tester AW: 7.3 s behind four fine-tunes), so 'long done' came first.
  expect(JSON.parse(line)).toEqual({ events: ['queued ABORTED', 'long done'], c: [19, 22, 43, 50] });
});
