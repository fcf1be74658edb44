/**
 * An FfmergeError a caller keeps (a server's history of failed jobs) must not keep alive what was on the stack
 * when it was made: V8 holds every frame's receiver until the trace is formatted, and an aborted compress's
 * error held its Model's native memory, 0.3-1 MB per error (tester EN). In a child under --expose-gc, so that
 * collection can be forced.
 */
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';

test('a kept error, and its cause, let go of the objects on the stack when they were made', () => {
  const r = spawnSync(process.execPath, ['--expose-gc', '-r', 'ts-node/register/transpile-only', path.join(__dirname, 'helpers', 'error-frames-child.ts')], {
    cwd: path.join(__dirname, '..'),
    encoding: 'utf8',
    timeout: 60_000,
  });
  expect({ status: r.status, stderr: r.stderr.slice(-500) }).toEqual({ status: 0, stderr: '' });
  expect(JSON.parse(r.stdout.trim())).toEqual({ own: false, cause: false, deeper: false, aggregate: false, kept: 4 });
});
