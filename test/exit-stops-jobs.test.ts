/**
 * process.exit() while native jobs run ends the process promptly. Node waits for every job still running on
 * its threads before a process (or a worker thread) ends, so a fine-tune of minutes used to keep a process
 * that had called process.exit() alive for minutes (and a long forward for seconds); each addon instance now
 * stops its jobs from an 'exit' listener (native/binding/addon.cc). In a child process: the exit under test is
 * the child's. The bounds are generous for a loaded 2-core machine: the child's fine-tune alone would take
 * the better part of an hour.
 */
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';

function runChild(mode: 'main' | 'worker'): { status: number | null; signal: string | null; stdout: string; stderr: string; ended: number } {
  const r = spawnSync(process.execPath, ['-r', 'ts-node/register/transpile-only', path.join(__dirname, 'helpers', 'exit-child.ts'), mode], {
    cwd: path.join(__dirname, '..'),
    encoding: 'utf8',
    timeout: 90_000,
  });
  return { status: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr, ended: Date.now() };
}

test('process.exit() on the main thread does not wait for a running fine-tune or forward pass', () => {
  const r = runChild('main');
  expect({ status: r.status, signal: r.signal, stderr: r.stderr.slice(-500) }).toEqual({ status: 0, signal: null, stderr: '' });
  const m = /^exiting (\d+)$/m.exec(r.stdout);
  expect(m).not.toBeNull();
  expect(r.ended - Number(m![1])).toBeLessThan(10_000);
});

test('process.exit() in a worker thread does not wait for its running jobs', () => {
  const r = runChild('worker');
  expect({ status: r.status, signal: r.signal, stderr: r.stderr.slice(-500) }).toEqual({ status: 0, signal: null, stderr: '' });
  expect(r.stdout.trim().endsWith('done')).toBe(true);
  const m = /^worker exited after (\d+) ms with code 0$/m.exec(r.stdout);
  expect(m).not.toBeNull();
  expect(Number(m![1])).toBeLessThan(10_000);
});
