#!/usr/bin/env node
'use strict';
// The ffmerge CLI entry. An installed package runs the compiled dist/ (built by `npm run build`, which
// `prepare` runs on install from git); a source checkout runs lib/ through ts-node in transpile-only mode (a dev
// dependency) when it has no dist/, or when a source file is newer than dist/: a clone edited after
// `npm install` must not run the code it had then. FFMERGE_FROM_SOURCE=1 forces the source path (the tests).
const fs = require('node:fs');
const path = require('node:path');
const tty = require('node:tty');

// Node restores the modes of each standard stream that was a terminal when it started as it exits (see below).
const onTerminal = [0, 1, 2].some((fd) => tty.isatty(fd));

const root = path.resolve(__dirname, '..');
const dist = path.join(root, 'dist', 'lib', 'cli', 'main.js');

/** The newest modification time under dir (0 when it does not exist: an installed package ships no lib/). */
function newest(dir) {
  let t = 0;
  let entries;
  try {
    entries = fs.readdirSync(dir, { withFileTypes: true });
  } catch {
    return 0;
  }
  for (const e of entries) {
    const p = path.join(dir, e.name);
    t = Math.max(t, e.isDirectory() ? newest(p) : fs.statSync(p).mtimeMs);
  }
  return t;
}

const distIsCurrent = () => fs.existsSync(dist) && newest(path.join(root, 'lib')) <= fs.statSync(dist).mtimeMs;
let cli;
if (process.env.FFMERGE_FROM_SOURCE !== '1' && distIsCurrent()) {
  cli = require(dist);
} else {
  require('ts-node').register({ transpileOnly: true, project: path.join(root, 'tsconfig.json') });
  cli = require(path.join(root, 'lib', 'cli', 'main.ts'));
}
cli.main(process.argv).then(async (code) => {
  process.exitCode = code;
  // SIGHUP (the terminal was closed) ended the run, cleaned up: the process ends by that signal, as a shell
  // reports it (129). An exit would crash instead: Node 20 restores the terminal's modes on exit and aborts
  // when the terminal is gone (nodejs/node#51519, fixed in later lines), a segfault where ABORTED was meant.
  if (code === 129 && onTerminal && process.listenerCount('SIGHUP') === 0) process.kill(process.pid, 'SIGHUP');
  // The run is over: what is left alive (a --plugins module's timer, after an abort raced past it) must not
  // keep the process, nor make a second Ctrl-C the only way out. Once what was printed is out (a slow reader
  // of a large --json report), a timer ends it; unref'd, so a process that ends by itself does.
  // A terminal that hung up while the run went on (a shell that ignores SIGHUP) would crash the exit as above;
  // released first, since what is still queued for it would never drain.
  if (onTerminal) cli.releaseLostTerminal();
  const drained = (s) => (s.writableLength > 0 ? new Promise((resolve) => s.once('drain', resolve)) : undefined);
  await Promise.all([drained(process.stdout), drained(process.stderr)]);
  setTimeout(() => process.exit(), 2000).unref(); // process.exitCode: a failed write to stdout set it after the run (IO_ERROR)
});
