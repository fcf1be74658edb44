/**
 * A write that JS cannot clean up after leaves no temporary output: a worker terminated while it writes, and
 * process.exit() while a write is under way (native/binding/temp_outputs.h). Before, the half-written temp
 * folder stayed beside the output, and a server whose process lives on never swept it (tester DA).
 * In child processes: the process ends as each case needs, and a crash fails the test, not jest.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

const root = path.join(__dirname, '..');
const model = path.join(root, 'models', 'llama-stories260k');
let work: string;
beforeEach(() => (work = fs.mkdtempSync(path.join(os.tmpdir(), 'ffmerge-temps-'))));
afterEach(() => fs.rmSync(work, { recursive: true, force: true }));

/** Runs a script (CommonJS, ts-node) in a child process in the repository root; returns its stdout lines. */
function child(script: string): { status: number | null; lines: string[]; stderr: string } {
  const r = spawnSync(process.execPath, ['-r', 'ts-node/register/transpile-only', '-e', script], { cwd: root, encoding: 'utf8', timeout: 120_000 });
  return { status: r.status, lines: r.stdout.trim().split('\n'), stderr: r.stderr };
}

// What a writer, stopped inside its first 'save' report (the temp holds part of the checkpoint), does next:
// `STOP` is replaced by the case's way of ending.
const writer = (out: string, stop: string) => `
  const { writeCheckpoint } = require('./lib/checkpoint/write');
  const fs = require('node:fs'); const path = require('node:path');
  const temps = () => fs.readdirSync(${JSON.stringify(path.dirname(out))}).filter((n) => n.includes('.ffmerge-tmp-'));
  const written = writeCheckpoint({ source: ${JSON.stringify(model)}, out: ${JSON.stringify(out)}, format: 'tied', onProgress: (p) => {
    if (p.done === 0) return;
    console.log(JSON.stringify({ tempsWhileWriting: temps().length }));
    ${stop}
  } });`;

test('a worker terminated while it writes a checkpoint leaves no temp folder, and the process goes on', () => {
  const out = path.join(work, 'out');
  const r = child(`
    const { Worker } = require('node:worker_threads');
    const w = new Worker(\`require('ts-node/register/transpile-only'); ${writer(out, "require('node:worker_threads').parentPort.postMessage('saving'); Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0);").replace(/[`\\$]/g, '\\$&')}\`, { eval: true });
    w.on('message', async () => {
      await w.terminate();
      console.log(JSON.stringify({ left: fs.readdirSync(${JSON.stringify(work)}) }));
    });
    const fs = require('node:fs');`);
  expect({ status: r.status, stderr: r.stderr }).toEqual({ status: 0, stderr: '' });
  // the temp existed when the worker was stopped, so the test saw the case it is about
  expect(r.lines.map((l) => JSON.parse(l))).toEqual([{ tempsWhileWriting: 1 }, { left: [] }]);
});

test('process.exit() while a checkpoint is written leaves no temp folder', () => {
  const out = path.join(work, 'out');
  const r = child(writer(out, 'process.exit(3);'));
  expect({ status: r.status, lines: r.lines, left: fs.readdirSync(work) }).toEqual({ status: 3, lines: [JSON.stringify({ tempsWhileWriting: 1 })], left: [] });
});

test('a finished write keeps its output; only what was held is removed at exit', () => {
  const out = path.join(work, 'out');
  const r = child(`${writer(out, '')} written.then(() => process.exit(0));`);
  expect(r.status).toBe(0);
  expect(fs.readdirSync(work)).toEqual(['out']);
  expect(fs.readdirSync(out)).toContain('model.safetensors');
});

// An --overwrite run stopped just after the old output was moved aside, before the new one took its place: the
// old output goes back (before: the new temp was removed, and the old output sat in a hidden `-old` folder that
// a live process's sweep never restores; tester DC).
const overwriter = (out: string, stop: string) => `
  const fs = require('node:fs');
  const { writeCheckpoint } = require('./lib/checkpoint/write');
  const rename = fs.renameSync;
  fs.renameSync = (from, to) => {
    rename(from, to);
    if (from === ${JSON.stringify(out)} && to.endsWith('-old')) { ${stop} }
  };
  writeCheckpoint({ source: ${JSON.stringify(model)}, out: ${JSON.stringify(out)}, format: 'tied', overwrite: true });`;

test.each([
  ['a worker terminated', 'worker'],
  ['process.exit()', 'exit'],
])('%s between the two renames of an overwrite puts the old output back, and leaves no temp', (_, how) => {
  const out = path.join(work, 'out');
  fs.mkdirSync(out);
  for (const f of ['config.json', 'model.safetensors']) fs.copyFileSync(path.join(model, f), path.join(out, f));
  fs.writeFileSync(path.join(out, 'old-marker.txt'), 'the earlier output');
  const r =
    how === 'worker'
      ? child(`
          const { Worker } = require('node:worker_threads');
          const w = new Worker(\`require('ts-node/register/transpile-only'); ${overwriter(out, "require('node:worker_threads').parentPort.postMessage('aside'); Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0);").replace(/[`\\$]/g, '\\$&')}\`, { eval: true });
          w.on('message', async () => { await w.terminate(); console.log('terminated'); });`)
      : child(overwriter(out, 'console.log("exiting"); process.exit(0);'));
  expect({ status: r.status, stderr: r.stderr, lines: r.lines }).toEqual({ status: 0, stderr: '', lines: [how === 'worker' ? 'terminated' : 'exiting'] });
  expect(fs.readdirSync(work)).toEqual(['out']);
  expect(fs.readFileSync(path.join(out, 'old-marker.txt'), 'utf8')).toBe('the earlier output');
});

test('an overwrite whose new output cannot be moved into place (EIO) puts the old output back and says why', () => {
  // before: the old output was removed with the failed one, and the path was left empty
  const out = path.join(work, 'out');
  fs.mkdirSync(out);
  for (const f of ['config.json', 'model.safetensors']) fs.copyFileSync(path.join(model, f), path.join(out, f));
  fs.writeFileSync(path.join(out, 'old-marker.txt'), 'the earlier output');
  const r = child(`
    const fs = require('node:fs');
    const { writeCheckpoint } = require('./lib/checkpoint/write');
    const rename = fs.renameSync;
    fs.renameSync = (from, to) => {
      if (to === ${JSON.stringify(out)} && from.includes('.ffmerge-tmp-') && !from.endsWith('-old')) throw Object.assign(new Error('EIO: i/o error, rename'), { code: 'EIO' });
      rename(from, to);
    };
    writeCheckpoint({ source: ${JSON.stringify(model)}, out: ${JSON.stringify(out)}, format: 'tied', overwrite: true }).then(
      () => console.log('written'), (e) => console.log(e.code));`);
  expect({ status: r.status, lines: r.lines }).toEqual({ status: 0, lines: ['IO_ERROR'] });
  expect(fs.readdirSync(work)).toEqual(['out']);
  expect(fs.readFileSync(path.join(out, 'old-marker.txt'), 'utf8')).toBe('the earlier output');
});
