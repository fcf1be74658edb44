/**
 * The environment variables ffmerge reads are checked when the addon loads (lib/native/env.ts): a value it
 * cannot read is INVALID_ARGUMENT naming the variable (tester X: FFMERGE_THREADS=abc ran on every core, =4x on
 * 4, FFMERGE_BACKEND=foo chose automatically, FFMERGE_NO_MMAP=yes kept mapping, FFMERGE_DEBUG=0 turned it on).
 */
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { checkEnvironment, envFlag } from '../lib/native/env';

test.each([
  ['FFMERGE_THREADS', 'abc', 'a whole number from 1 to 4095'],
  ['FFMERGE_THREADS', '0', 'a whole number from 1 to 4095'],
  ['FFMERGE_THREADS', '4x', 'a whole number from 1 to 4095'],
  ['FFMERGE_JOB_THREADS', '-1', 'a whole number from 1 to 4095'],
  ['FFMERGE_BACKEND', 'foo', 'cpu, cuda or auto'],
  ['FFMERGE_NO_MMAP', 'yes', '0 or 1'],
  ['FFMERGE_DEBUG', 'true', '0 or 1'],
  // tester AY: refused only by a job's first product; --version and inspect ran
  ['FFMERGE_GEMM_KERNEL', 'foo', 'auto, portable, avx2 or avx512'],
])('%s=%s is refused', (name, value, what) => {
  expect(() => checkEnvironment({ [name]: value })).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT', message: expect.stringContaining(`${name} must be ${what} (got "${value}")`) }));
});

test('unset, empty and valid values pass; a flag is on only at 1', () => {
  expect(() => checkEnvironment({ FFMERGE_THREADS: '2', FFMERGE_JOB_THREADS: '', FFMERGE_BACKEND: 'CPU', FFMERGE_NO_MMAP: '0', FFMERGE_DEBUG: '1' })).not.toThrow();
  expect(envFlag('FFMERGE_DEBUG', { FFMERGE_DEBUG: '0' })).toBe(false);
  expect(envFlag('FFMERGE_DEBUG', { FFMERGE_DEBUG: '1' })).toBe(true);
});

test('the CLI says so with exit 2 before any work', () => {
  const bin = path.join(__dirname, '..', 'bin', 'ffmerge.js');
  const model = path.join(__dirname, '..', 'models', 'llama-stories260k');
  const r = spawnSync(process.execPath, [bin, 'eval', model, '--data', path.join(model, 'calibration.txt'), '--tokens', '256'], {
    encoding: 'utf8',
    env: { ...process.env, FFMERGE_FROM_SOURCE: '1', FFMERGE_THREADS: 'abc' },
    timeout: 60_000,
  });
  expect(r.stderr).toMatch(/FFMERGE_THREADS must be a whole number.*\[INVALID_ARGUMENT\]/);
  expect(r.status).toBe(2);
  // commands that load no addon, and --version (before: their normal output, exit 0)
  for (const args of [['inspect', model], ['--version']]) {
    const x = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', env: { ...process.env, FFMERGE_FROM_SOURCE: '1', FFMERGE_BACKEND: 'gpu' }, timeout: 60_000 });
    expect({ args, status: x.status, stderr: x.stderr }).toEqual({ args, status: 2, stderr: expect.stringMatching(/FFMERGE_BACKEND must be cpu, cuda or auto.*\[INVALID_ARGUMENT\]/) });
  }
});
