/**
 * The runnable examples in examples/ (CommonJS, ESM, an http server embedding) as a user runs them: the
 * package built (dist/, as `npm install` builds it) and resolved as `ffmerge` from a folder of their own.
 * Every JS/TS code block of README.md is one of these files verbatim, so the README cannot drift from code that
 * runs.
 */
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';

const root = path.resolve(__dirname, '..');
const examples = path.join(root, 'examples');
let app: string;

beforeAll(() => {
  // the library as installed: compiled from the current sources (a stale dist/ must not be what runs)
  const tsc = spawnSync(process.execPath, [require.resolve('typescript/bin/tsc'), '-p', 'tsconfig.build.json'], { cwd: root, encoding: 'utf8' });
  expect(tsc.stdout + tsc.stderr).toBe('');
  app = fs.mkdtempSync(path.join(os.tmpdir(), 'ffmerge-examples-'));
  fs.mkdirSync(path.join(app, 'node_modules'));
  fs.symlinkSync(root, path.join(app, 'node_modules', 'ffmerge'), 'dir');
  // transformers.js (a devDependency here) for the ONNX example, as a user's project would have it installed
  fs.symlinkSync(path.join(root, 'node_modules', '@huggingface'), path.join(app, 'node_modules', '@huggingface'), 'dir');
  for (const f of fs.readdirSync(examples)) fs.copyFileSync(path.join(examples, f), path.join(app, f));
}, 300_000);
afterAll(() => fs.rmSync(app, { recursive: true, force: true }));
jest.setTimeout(300_000);

const node = (file: string) => spawnSync(process.execPath, [file], { cwd: app, encoding: 'utf8', timeout: 240_000 });

describe('examples/', () => {
  it('compress.cjs (require) compresses the bundled model and runs the result', () => {
    const r = node('compress.cjs');
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/^window \d-\d: perplexity \d+\.\d\d -> \d+\.\d\d, 33024 of 260032 parameters removed\n/);
    expect(r.stdout).toMatch(/next token after "Once upon a time": ".+"/);
  });

  it('finetune.cjs fine-tunes the merged checkpoint and saves it at the same size', () => {
    const r = node('finetune.cjs');
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const m = /^validation loss (\d+\.\d{3}) -> (\d+\.\d{3}) in 30 steps; (\d+) -> (\d+) bytes \(ties kept\)\n$/.exec(r.stdout);
    expect(m).not.toBeNull();
    expect(Number(m![2])).toBeLessThan(Number(m![1]));
    expect(m![4]).toBe(m![3]);
  });

  it('onnx-transformers-js.mjs compresses to ONNX and transformers.js generates from the folder, offline', () => {
    const r = node('onnx-transformers-js.mjs');
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/^onnx\/model\.onnx: (\d+) bytes as it is, (\d+) merged\nOnce upon a time.{10,}\n$/s);
    const [, plain, merged] = /(\d+) bytes as it is, (\d+) merged/.exec(r.stdout)!;
    expect(Number(plain) - Number(merged)).toBeGreaterThan(33024 * 4 * 0.99); // one FF sublayer's fp32 bytes
  });

  it("plugins.mjs runs compress with a recover method of its own, which the CLI's --plugins loads from the same file", () => {
    const r = node('plugins.mjs');
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/^window \d-\d, recover halve-out: perplexity \d+\.\d\d -> \d+\.\d\d\n$/);
    const cli = spawnSync(process.execPath, [path.join('node_modules', 'ffmerge', 'bin', 'ffmerge.js'), 'compress', '--plugins', 'plugins.mjs', '--method', 'permute', '--recover', 'halve-out', '--window', '1-2', '--json', '--out', 'out'], { cwd: app, encoding: 'utf8', timeout: 240_000 });
    expect(cli.status).toBe(0);
    expect(JSON.parse(cli.stdout)).toMatchObject({ recover: 'halve-out', plugins: ['halve-out'] });
  });

  it("task.mjs scores the merge by a task of its own, which the CLI's --plugins loads from the same file", () => {
    const r = node('task.mjs');
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/^task next-token: window \d-\d, next-token accuracy \d+\.\d% -> \d+\.\d%\n$/);
    const cli = spawnSync(process.execPath, [path.join('node_modules', 'ffmerge', 'bin', 'ffmerge.js'), 'compress', '--plugins', 'task.mjs', '--k', '2', '--window', '1-2', '--json', '--out', 'out-task'], { cwd: app, encoding: 'utf8', timeout: 240_000 });
    expect(cli.status).toBe(0);
    expect(JSON.parse(cli.stdout)).toMatchObject({ task: 'next-token', metric: { name: 'next-token accuracy' }, windows: [expect.objectContaining({ window: '1-2' })] });
  });

  it('merge-by-hand.mjs (import) runs the method step by step', () => {
    const r = node('merge-by-hand.mjs');
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/^layers 3-4 merged: perplexity 4\.\d{3} -> \d+\.\d{3}\n$/);
  });

  it('server.cjs answers other requests while a job runs, and a client that leaves aborts its job', async () => {
    const server = spawn(process.execPath, ['server.cjs'], { cwd: app });
    let stderr = '';
    server.stderr.on('data', (d) => (stderr += d));
    try {
      const port = await new Promise<number>((resolve, reject) => {
        server.stdout.on('data', (d) => {
          const m = /listening on (\d+)/.exec(String(d));
          if (m) resolve(Number(m[1]));
        });
        server.on('exit', (c) => reject(new Error(`server exited ${c}: ${stderr}`)));
      });
      const get = (p: string) =>
        new Promise<{ status: number; body: string; at: number }>((resolve, reject) => {
          http.get({ port, path: p }, (res) => {
            let body = '';
            res.on('data', (d) => (body += d));
            res.on('end', () => resolve({ status: res.statusCode!, body, at: performance.now() }));
          }).on('error', reject);
        });
      const job = get('/compress?k=2');
      await new Promise((r) => setTimeout(r, 200));
      const health = await get('/health');
      const done = await job;
      expect(health.body).toBe('ok\n');
      expect(health.at).toBeLessThan(done.at); // answered while the job was still running
      expect(done.status).toBe(200);
      expect(JSON.parse(done.body)).toMatchObject({ removed: 33024 });

      // a client that goes away: its job is aborted
      const req = http.get({ port, path: '/compress?k=2' });
      req.on('error', () => {});
      await new Promise((r) => setTimeout(r, 500));
      req.destroy();
      for (let i = 0; i < 100 && !/job ended: ABORTED/.test(stderr); i++) await new Promise((r) => setTimeout(r, 100));
      expect(stderr).toMatch(/job ended: ABORTED/);
    } finally {
      server.kill();
    }
  });

  it("in a clone, the examples' `ffmerge` resolves to the package itself (self-reference through package.json exports)", () => {
    // README's run line is `node examples/<file>` from the clone: there is no node_modules/ffmerge, and Node
    // resolves a package's own name from inside it only when package.json has "exports"
    const cjs = spawnSync(process.execPath, ['-e', "process.stdout.write(require.resolve('ffmerge') + '\\n' + require.resolve('ffmerge/package.json'))"], { cwd: examples, encoding: 'utf8' });
    expect(cjs.stderr).toBe('');
    expect(cjs.stdout).toBe(`${path.join(root, 'dist', 'lib', 'index.js')}\n${path.join(root, 'package.json')}`);
    const esm = spawnSync(process.execPath, ['--input-type=module', '-e', "process.stdout.write(import.meta.resolve('ffmerge'))"], { cwd: examples, encoding: 'utf8' });
    expect(esm.stderr).toBe('');
    expect(esm.stdout).toBe(`file://${path.join(root, 'dist', 'lib', 'index.js')}`);
    // the plain references are their own entry, out of the main one
    const ref = spawnSync(process.execPath, ['-e', "process.stdout.write(require.resolve('ffmerge/reference'))"], { cwd: examples, encoding: 'utf8' });
    expect(ref.stderr).toBe('');
    expect(ref.stdout).toBe(path.join(root, 'dist', 'lib', 'reference', 'index.js'));
  });

  it('every JS/TS code block in README.md is one of the examples, verbatim', () => {
    const readme = fs.readFileSync(path.join(root, 'README.md'), 'utf8');
    const blocks = [...readme.matchAll(/```(js|javascript|ts|typescript|mjs|cjs)\n([\s\S]*?)```/g)].map((m) => m[2]!.trim());
    const files = fs.readdirSync(examples).map((f) => fs.readFileSync(path.join(examples, f), 'utf8').trim());
    expect(blocks.length).toBeGreaterThanOrEqual(3);
    for (const b of blocks) expect(files).toContain(b);
  });
});
