/**
 * The addon's per-instance threads (its compute pool and the reaper that frees large native memory off the
 * main thread, native/binding/reaper.h) under worker threads that load it, drop memory both ways (dispose()
 * and the garbage collector), and end or are terminated mid-job: every worker must exit, and the process must
 * neither crash nor hang in an instance's teardown. In a child process, so a crash fails this test, not jest.
 * Before NODE_API_SWALLOW_UNTHROWABLE_EXCEPTIONS (async_job.h), a worker terminated mid-job aborted the process.
 * And what the reaper takes must still be freed: the process's RSS falls once a large NativeFF is disposed.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { NativeFF } from '../lib/native/native-ff';
import { hasShared, sharedPath } from './helpers/shared';

test('worker threads that use the addon end, or are terminated mid-job, without a crash or a hang', () => {
  const r = spawnSync(process.execPath, ['--expose-gc', '-r', 'ts-node/register/transpile-only', path.join(__dirname, 'helpers', 'teardown-child.ts')], {
    cwd: path.join(__dirname, '..'),
    encoding: 'utf8',
    timeout: 120_000,
  });
  const lines = r.stdout.split('\n').filter((l) => l.startsWith('{'));
  const results = lines.map((l) => JSON.parse(l) as { worker: number; how: string; ok: boolean; detail: string });
  expect({ status: r.status, signal: r.signal, stderr: r.stderr.slice(-500) }).toEqual({ status: 0, signal: null, stderr: '' });
  expect(r.stdout.trim().endsWith('done')).toBe(true);
  expect(results.map((x) => [x.worker, x.how, x.ok, x.detail])).toEqual([
    [0, 'ends', true, 'finished; exit 0'],
    [1, 'terminated', true, 'running; exit 1'],
    [2, 'ends', true, 'finished; exit 0'],
    [3, 'ends', true, 'finished; exit 0'],
  ]);
});

test('memory handed to the reaper is freed (off the main thread, but freed)', async () => {
  const rss = () => {
    if (!fs.existsSync('/proc/self/status')) return NaN;
    const m = /^VmRSS:\s+(\d+) kB/m.exec(fs.readFileSync('/proc/self/status', 'utf8'));
    return m ? Number(m[1]) * 1024 : NaN;
  };
  if (Number.isNaN(rss())) return; // no /proc (not Linux): nothing to measure
  const d = 1024;
  const units = 65536; // W_in alone: 256 MiB
  const wIn = new Float32Array(units * d).fill(0.5);
  const ff = await NativeFF.of({ d, dFF: units, wIn, wOut: new Float32Array(0) });
  const held = rss();
  ff.dispose();
  let now = rss();
  for (let i = 0; i < 100 && held - now < 200 * 2 ** 20; i++) {
    await new Promise((r) => setTimeout(r, 20));
    now = rss();
  }
  expect((held - now) / 2 ** 20).toBeGreaterThan(200);
});

// A model handle is a few bytes to V8: unless told what native memory it holds (AdjustExternalMemory), V8
// let undisposed models pile up before collecting one: 400 loads of gpt2-sotu without dispose() peaked at
// 509 MB, 232–284 MB once told (tester GC). The count is not in process.memoryUsage().external (Node 20's V8
// leaves it out), so the peak is what is measured, in a child process of its own.
(hasShared('fixtures', 'gpt2-sotu') && fs.existsSync('/proc/self/status') ? test : test.skip)(
  'undisposed models are collected before they pile up: their native weights count as V8 external memory (needs ../shared, Linux)',
  () => {
    const script = `
      const fs = require('node:fs');
      const { loadModel } = require('./lib/model/load');
      const rss = () => Number(/^VmRSS:\\s+(\\d+)/m.exec(fs.readFileSync('/proc/self/status', 'utf8'))[1]) / 1024;
      (async () => {
        let peak = 0;
        for (let i = 0; i < 400; i++) {
          await loadModel(${JSON.stringify(sharedPath('fixtures', 'gpt2-sotu'))});
          peak = Math.max(peak, rss());
        }
        process.stdout.write(JSON.stringify({ peak }));
      })();`;
    const r = spawnSync(process.execPath, ['-r', 'ts-node/register/transpile-only', '-e', script], { cwd: path.join(__dirname, '..'), encoding: 'utf8', timeout: 300_000 });
    expect({ status: r.status, stderr: r.stderr.slice(-500) }).toEqual({ status: 0, stderr: '' });
    const { peak } = JSON.parse(r.stdout) as { peak: number };
    // about 12 MB of weights each: before, ~35 models were alive at once
    expect(peak).toBeLessThan(400);
  },
  300_000,
);
