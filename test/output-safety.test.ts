/**
 * The output folder under concurrency and SIGKILL, with real CLI processes (a crash fails the test, not jest):
 *  - four `compress` runs started at the same instant to one absent --out: exactly one succeeds, the others
 *    fail with OUTPUT_EXISTS, and the output that stays is complete;
 *  - `compress` killed with SIGKILL at random moments of its work, 30 times: the output path is always absent
 *    or a complete output, the input folder is byte-identical, and the next run leaves no temp folder.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { SafetensorsReader } from '../lib/safetensors';

const root = path.join(__dirname, '..');
const BUNDLED = path.join(root, 'models', 'llama-stories260k');

interface Warm {
  child: ChildProcess;
  ready: Promise<void>;
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string }>;
}

/**
 * The CLI compiled once into a throw-away package (dist + links to this checkout's build/ and node_modules/):
 * each of the 35 processes below then starts in a fraction of a second instead of paying ts-node's start-up,
 * which on 2 cores was most of this file's time. Same sources, the package's own build config.
 */
let childScript: string;
function buildPackage(dir: string): void {
  const tsc = require.resolve('typescript/bin/tsc');
  execFileSync(process.execPath, [tsc, '-p', path.join(root, 'tsconfig.build.json'), '--outDir', path.join(dir, 'dist'), '--declaration', 'false', '--sourceMap', 'false', '--inlineSources', 'false'], { stdio: 'inherit' });
  fs.copyFileSync(path.join(root, 'package.json'), path.join(dir, 'package.json'));
  fs.symlinkSync(path.join(root, 'build'), path.join(dir, 'build'));
  fs.symlinkSync(path.join(root, 'node_modules'), path.join(dir, 'node_modules'));
  // loads the CLI, prints "ready", runs `ffmerge <args>` for the one JSON line of args it reads on stdin
  childScript = path.join(dir, 'cli-child.js');
  fs.writeFileSync(
    childScript,
    `const { main } = require(${JSON.stringify(path.join(dir, 'dist', 'lib', 'cli', 'main.js'))});
process.stdout.write('ready\\n');
let buf = '';
process.stdin.setEncoding('utf8');
process.stdin.on('data', (chunk) => {
  buf += chunk;
  const nl = buf.indexOf('\\n');
  if (nl < 0) return;
  process.stdin.pause();
  void main(['node', 'ffmerge', ...JSON.parse(buf.slice(0, nl))]).then((code) => { process.exitCode = code; process.stdin.destroy(); });
});
`,
  );
}

function warm(): Warm {
  const child = spawn(process.execPath, [childScript], {
    cwd: root,
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let stdout = '';
  let resolveReady!: () => void;
  const ready = new Promise<void>((r) => (resolveReady = r));
  child.stdout!.on('data', (b: Buffer) => {
    stdout += b.toString();
    if (stdout.startsWith('ready\n')) resolveReady();
  });
  child.stderr!.resume();
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string }>((r) =>
    child.on('exit', (code, signal) => r({ code, signal, stdout: stdout.replace(/^ready\n/, '') })),
  );
  return { child, ready, exit };
}

function go(w: Warm, args: string[]): void {
  w.child.stdin!.write(JSON.stringify(args) + '\n');
}

function hashFolder(dir: string): string {
  const h = crypto.createHash('sha256');
  for (const name of fs.readdirSync(dir).sort()) {
    h.update(name);
    h.update(fs.readFileSync(path.join(dir, name)));
  }
  return h.digest('hex');
}

/** A finished output: config.json with the ffmerge record, report.json, a readable model.safetensors. */
async function isComplete(out: string): Promise<boolean> {
  try {
    const config = JSON.parse(fs.readFileSync(path.join(out, 'config.json'), 'utf8')) as { ffmerge?: unknown };
    JSON.parse(fs.readFileSync(path.join(out, 'report.json'), 'utf8'));
    const r = await SafetensorsReader.open(path.join(out, 'model.safetensors'));
    const n = r.names().length;
    await r.close();
    return config.ffmerge !== undefined && n > 0;
  } catch {
    return false;
  }
}

const temps = (dir: string, base: string) => fs.readdirSync(dir).filter((n) => n.startsWith(`.${base}.ffmerge-tmp-`));

let tmp: string;
let input: string;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ffmerge-outsafety-'));
  input = path.join(tmp, 'input');
  fs.cpSync(BUNDLED, input, { recursive: true });
  buildPackage(path.join(tmp, 'pkg'));
}, 120_000);
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const compressArgs = (out: string, extra: string[] = []) => [
  'compress', input, '--data', path.join(input, 'calibration.txt'), '--calibration-tokens', '512', '--validation-tokens', '512',
  '--block-size', '64', '--k', '2', '--method', 'permute', '--out', out, '--json', ...extra,
];

test('four concurrent compress runs to one absent --out: one succeeds, three get OUTPUT_EXISTS, nothing lost', async () => {
  const out = path.join(tmp, 'race-out');
  const ws = [warm(), warm(), warm(), warm()];
  await Promise.all(ws.map((w) => w.ready));
  for (const w of ws) go(w, compressArgs(out));
  const results = await Promise.all(ws.map((w) => w.exit));
  const codes = results.map((r) => {
    const line = r.stdout.split('\n').find((l) => l.startsWith('{'));
    return r.code === 0 ? 'ok' : `${r.code} ${line ? (JSON.parse(r.stdout.slice(r.stdout.indexOf('{'))) as { error?: { code: string } }).error?.code : r.signal}`;
  });
  // Before: all four reported success and three outputs were silently replaced.
  expect(codes.sort()).toEqual(['2 OUTPUT_EXISTS', '2 OUTPUT_EXISTS', '2 OUTPUT_EXISTS', 'ok']);
  expect(await isComplete(out)).toBe(true);
  expect(temps(tmp, 'race-out')).toEqual([]);
}, 120_000);

test('SIGKILL at random moments: the output is absent or complete, the input untouched, no temp folder survives the next run', async () => {
  const out = path.join(tmp, 'killed-out');
  const before = hashFolder(input);
  // One full run first: how long the work takes after start-up (kill moments are drawn within it).
  let spare = warm();
  await spare.ready;
  const t0 = performance.now();
  go(spare, compressArgs(out));
  let next = warm();
  const first = await spare.exit;
  // Updated by every run that finishes before its kill: the machine's load changes while the test runs (other
  // test files, other jobs), and kill moments drawn from a stale duration can all fall after the run's end.
  let work = performance.now() - t0;
  expect(first.code).toBe(0);
  // the share of the run spent writing the output (report.json's phase times), at least 5%
  const timings = (JSON.parse(first.stdout.slice(first.stdout.indexOf('{'))) as { timings: Record<string, number> }).timings;
  const writing = Math.min(0.5, Math.max(0.05, (2 * 1000 * (timings.save ?? 0)) / work));
  let seed = 12345;
  const random = () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648);
  const kills = 30;
  let killedMidRun = 0;
  let killedWhileWriting = 0;
  /**
   * One run killed `delay` ms after it starts, or (`'writing'`) as soon as its temp output folder appears:
   * the output is absent or complete, the input untouched.
   */
  const killAfter = async (i: number, delay: number | 'writing') => {
    spare = next;
    await spare.ready;
    // a third of the runs write to an absent path, the rest replace the previous output (--overwrite)
    if (i % 3 === 0) fs.rmSync(out, { recursive: true, force: true });
    const started = performance.now();
    go(spare, compressArgs(out, ['--overwrite']));
    const ended = spare.exit.then(() => performance.now());
    next = warm(); // starts up while this one works
    if (delay === 'writing') {
      // polled every millisecond: the write phase of this tiny model lasts ~30 ms
      const running = spare;
      let done = false;
      void running.exit.then(() => (done = true));
      while (!done && temps(tmp, 'killed-out').length === 0) await new Promise((r) => setTimeout(r, 1));
    } else {
      await new Promise((r) => setTimeout(r, delay));
    }
    spare.child.kill('SIGKILL');
    const r = await spare.exit;
    if (r.signal === 'SIGKILL') killedMidRun++;
    else if (r.code === 0) work = (await ended) - started; // finished before the kill: its real duration
    if (temps(tmp, 'killed-out').length > 0) killedWhileWriting++; // left a temp folder: died inside the writer
    if (fs.existsSync(out)) expect({ i, complete: await isComplete(out) }).toEqual({ i, complete: true });
    expect(hashFolder(input)).toBe(before);
  };
  // Until 30 runs were killed mid-run (a run that finished before its kill moment does not count). Every other
  // kill lands in the last stretch of the run, where the output is written: a uniform draw over the whole run
  // reaches that short phase too rarely to count on.
  let i = 0;
  for (; killedMidRun < kills && i < kills * 3; i++) await killAfter(i, (i % 2 === 0 ? random() : 1 - writing * random()) * work);
  // Run times vary with the machine's load and the write is a few percent of the run, so timed kills may all
  // have missed it: kill runs the moment their temp folder appears, until one died inside the writer.
  for (let j = 0; killedWhileWriting === 0 && j < 10; j++, i++) await killAfter(i, 'writing');
  expect(killedMidRun).toBeGreaterThanOrEqual(kills);
  expect(killedWhileWriting).toBeGreaterThan(0); // the kills reached the output phase, not only the start
  // The next run sweeps what the killed ones left and completes.
  spare = next;
  await spare.ready;
  go(spare, compressArgs(out, ['--overwrite']));
  const last = await spare.exit;
  expect(last.code).toBe(0);
  expect(await isComplete(out)).toBe(true);
  expect(temps(tmp, 'killed-out')).toEqual([]);
  expect(hashFolder(input)).toBe(before);
}, 300_000);
