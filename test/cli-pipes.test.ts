/**
 * The CLI in a pipeline whose reader leaves early (`ffmerge inspect m | head -1`, `| true`): what is left to print
 * is dropped, with no EPIPE stack trace and the command's own exit code (tester X: a 15-line trace and exit 1).
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';

const BIN = path.join(__dirname, '..', 'bin', 'ffmerge.js');
const MODEL = path.join(__dirname, '..', 'models', 'llama-stories260k');

function closedStdout(args: string[]): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [BIN, ...args], { env: { ...process.env, FFMERGE_FROM_SOURCE: '1' }, stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout.destroy(); // the reader is gone before anything is written
    let stderr = '';
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    child.on('close', (code) => resolve({ code, stderr }));
  });
}

test.each([
  [['inspect', MODEL]],
  [['inspect', MODEL, '--json']],
  [['compress', '--help']],
])('ffmerge %j with its stdout closed: exit 0, no trace', async (args) => {
  const r = await closedStdout(args);
  expect(r.stderr).not.toMatch(/EPIPE|at .*\(/);
  expect(r.code).toBe(0);
}, 60_000);

test('a result that cannot be written (stdout a file on a full disk) is one error line and a failing exit, not a stack trace (tester DL)', async () => {
  for (const args of [['inspect', MODEL], ['inspect', MODEL, '--json']]) {
    const r = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
      const full = fs.openSync('/dev/full', 'w');
      const child = spawn(process.execPath, [BIN, ...args], { env: { ...process.env, FFMERGE_FROM_SOURCE: '1' }, stdio: ['ignore', full, 'pipe'] });
      fs.closeSync(full);
      let stderr = '';
      child.stderr!.on('data', (b: Buffer) => (stderr += b.toString()));
      child.on('close', (code) => resolve({ code, stderr }));
    });
    expect(r.stderr).toMatch(/^ffmerge: the result could not be written to standard output: ENOSPC.*\[IO_ERROR\]\n$/);
    expect(r.code).toBe(3);
  }
  // stderr that cannot be written loses messages, not the result: the run keeps its own exit code (tester DM: 3)
  for (const [args, code] of [[['inspect', MODEL], 0], [['inspect', MODEL, '--bogus'], 2]] as const) {
    const r = await new Promise<number | null>((resolve) => {
      const full = fs.openSync('/dev/full', 'w');
      const child = spawn(process.execPath, [BIN, ...args], { env: { ...process.env, FFMERGE_FROM_SOURCE: '1' }, stdio: ['ignore', 'ignore', full] });
      fs.closeSync(full);
      child.on('close', resolve);
    });
    expect(r).toBe(code);
  }
}, 60_000);
