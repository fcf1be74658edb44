/**
 * A fuzz worker (forked by harness.ts): builds each case it is sent and runs the real CLI entry point on it,
 * in this process — `inspect`, then (when the checkpoint inspects) `eval` and a tiny `compress` — reporting
 * every command's exit code, its error code, and this process's peak RSS. The harness watches from outside:
 * a crash of this process or a command that does not answer within its time limit is found there.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { main } from '../../lib/cli/main';
import { buildCase, makeBase, type BaseFiles } from './mutate';

export interface CommandResult {
  command: string;
  exit: number;
  /** The error code printed with --json (undefined on success). */
  code?: string;
  message?: string;
  ms: number;
}

export type FromWorker =
  | { type: 'ready' }
  | { type: 'start'; index: number; command: string }
  | { type: 'done'; index: number; kind: string; results: CommandResult[]; maxRssMB: number };

export type ToWorker = { type: 'case'; seed: number; index: number } | { type: 'exit' };

function send(m: FromWorker): void {
  process.send!(m);
}

/** Runs the CLI with stdout/stderr captured (the worker's own output stays quiet). */
async function cli(args: string[]): Promise<{ exit: number; out: string }> {
  let out = '';
  const stdout = process.stdout.write.bind(process.stdout);
  const stderr = process.stderr.write.bind(process.stderr);
  const capture = ((chunk: string | Uint8Array) => {
    out += typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8');
    return true;
  }) as typeof process.stdout.write;
  process.stdout.write = capture;
  process.stderr.write = capture;
  try {
    const exit = await main(['node', 'ffmerge', ...args]);
    return { exit, out };
  } finally {
    process.stdout.write = stdout;
    process.stderr.write = stderr;
  }
}

function errorOf(out: string): { code?: string; message?: string } {
  for (const line of out.split('\n')) {
    if (!line.startsWith('{"ok":false')) continue;
    try {
      const e = (JSON.parse(line) as { error: { code: string; message: string } }).error;
      return { code: e.code, message: e.message.slice(0, 300) };
    } catch {
      /* not our line */
    }
  }
  const m = /\[([A-Z_]+)\]\s*$/m.exec(out);
  return m ? { code: m[1]!, message: out.slice(-300) } : { message: out.slice(-300) };
}

async function runCase(base: BaseFiles, root: string, seed: number, index: number): Promise<void> {
  const dir = path.join(root, `case-${index}`);
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(dir, { recursive: true });
  const c = buildCase(base, seed, index, dir);
  const results: CommandResult[] = [];
  const run = async (command: string, args: string[]) => {
    send({ type: 'start', index, command });
    const t0 = performance.now();
    const { exit, out } = await cli(args);
    const r: CommandResult = { command, exit, ms: performance.now() - t0, ...(exit !== 0 ? errorOf(out) : {}) };
    results.push(r);
    return r;
  };
  const inspect = await run('inspect', ['inspect', c.model, '--json']);
  if (inspect.exit === 0) {
    await run('eval', ['eval', c.model, '--data', c.data, '--tokens', '96', '--block-size', '16', '--json']);
    await run('compress', [
      'compress', c.model, '--data', c.data, '--calibration-tokens', '64', '--validation-tokens', '64', '--block-size', '16',
      '--k', '2', '--out', path.join(dir, 'out'), '--json',
    ]);
  }
  fs.rmSync(dir, { recursive: true, force: true });
  send({ type: 'done', index, kind: c.kind, results, maxRssMB: process.resourceUsage().maxRSS / 1024 });
}

async function start(): Promise<void> {
  const root = process.argv[2]!;
  fs.mkdirSync(root, { recursive: true });
  const base = await makeBase(root);
  process.on('message', (m: ToWorker) => {
    if (m.type === 'exit') process.exit(0);
    runCase(base, root, m.seed, m.index).catch((e: unknown) => {
      // the harness's own failure (building a case), not ffmerge's: report loudly and stop
      process.stderr.write(`fuzz worker: ${(e as Error).stack ?? String(e)}\n`);
      process.exit(70);
    });
  });
  send({ type: 'ready' });
}

void start();
