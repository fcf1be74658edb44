/**
 * The CLI in a pipeline whose reader leaves early (`ffmerge inspect m | head -1`, `| true`): what is left to print
 * is dropped, with no EPIPE stack trace and the command's own exit code (tester X: a 15-line trace and exit 1).
 */
import { spawn } from 'node:child_process';
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
