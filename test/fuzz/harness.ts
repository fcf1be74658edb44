/**
 * Process-level fuzzing of whole checkpoint folders through the CLI (`npm run fuzz`):
 *
 *   npm run fuzz -- [--seed 1] [--cases 20000] [--seconds 3600] [--workers 2] [--json]
 *
 * Forks worker processes (worker.ts) that build mutated copies of a tiny valid model folder (mutate.ts) and run
 * `inspect`, `eval` and a tiny `compress` on each, and counts what must never happen:
 *  - crashes: a worker dying (signal, V8 abort, out-of-memory);
 *  - hangs: a command silent for more than 10 s (the worker is killed and replaced);
 *  - uncoded errors: exit code 1 / INTERNAL_ERROR, or any exit code other than 0, 2, 3, 4;
 *  - peak RSS of a worker at or over 1 GB.
 * Seeded: the same seed and case index always build the same folder, so a failure prints what to rerun.
 * Exit code 0 when none of these happened.
 */
import { fork, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { CommandResult, FromWorker, ToWorker } from './worker';

export interface FuzzOptions {
  seed: number;
  cases: number;
  /** Stop starting new cases after this many seconds. */
  seconds: number;
  workers: number;
  /** Per-command limit before it counts as a hang. */
  hangMs?: number;
  /** Cases per worker before it is replaced (keeps one worker's heap history short). */
  recycleAfter?: number;
}

export interface FuzzFailure {
  index: number;
  kind?: string;
  what: 'crash' | 'hang' | 'uncoded' | 'memory';
  detail: string;
}

export interface FuzzSummary {
  seed: number;
  cases: number;
  seconds: number;
  commands: number;
  /** Exit code → count, over every command run. */
  exits: Record<string, number>;
  /** Error code → count. */
  codes: Record<string, number>;
  /** Mutation kind → cases. */
  kinds: Record<string, number>;
  /** Cases whose checkpoint inspected, was evaluated and compressed successfully. */
  compressedOk: number;
  crashes: number;
  hangs: number;
  uncoded: number;
  peakRssMB: number;
  failures: FuzzFailure[];
}

const ALLOWED_EXITS = new Set([0, 2, 3, 4]);
const MEMORY_LIMIT_MB = 1024;

export async function runFuzz(o: FuzzOptions): Promise<FuzzSummary> {
  const hangMs = o.hangMs ?? 10_000;
  const recycleAfter = o.recycleAfter ?? 400;
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'ffmerge-fuzz-'));
  const s: FuzzSummary = {
    seed: o.seed, cases: 0, seconds: 0, commands: 0, exits: {}, codes: {}, kinds: {}, compressedOk: 0,
    crashes: 0, hangs: 0, uncoded: 0, peakRssMB: 0, failures: [],
  };
  const t0 = Date.now();
  let next = 0;
  const fail = (f: FuzzFailure) => {
    if (s.failures.length < 50) s.failures.push(f);
  };

  const runWorker = (slot: number) =>
    new Promise<void>((resolve) => {
      const spawnOne = () => {
        const dir = path.join(root, `w${slot}`);
        const child: ChildProcess = fork(path.join(__dirname, 'worker.ts'), [dir], {
          execArgv: ['-r', 'ts-node/register/transpile-only'],
          stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
          cwd: path.join(__dirname, '..', '..'),
        });
        let stderr = '';
        child.stderr!.on('data', (b: Buffer) => {
          stderr = (stderr + b.toString()).slice(-2000);
        });
        let current: number | undefined;
        let currentCommand = '';
        let timer: NodeJS.Timeout | undefined;
        let done = 0;
        let killedForHang = false;
        let finished = false;
        const arm = () => {
          clearTimeout(timer);
          timer = setTimeout(() => {
            s.hangs++;
            fail({ index: current ?? -1, what: 'hang', detail: `${currentCommand} gave no answer within ${hangMs} ms` });
            killedForHang = true;
            child.kill('SIGKILL');
          }, hangMs);
        };
        const feed = () => {
          if (next >= o.cases || Date.now() - t0 > o.seconds * 1000) {
            finished = true;
            child.send({ type: 'exit' } satisfies ToWorker);
            return;
          }
          if (done >= recycleAfter) {
            child.send({ type: 'exit' } satisfies ToWorker);
            return;
          }
          current = next++;
          currentCommand = 'build';
          arm();
          child.send({ type: 'case', seed: o.seed, index: current } satisfies ToWorker);
        };
        child.on('message', (m: FromWorker) => {
          if (m.type === 'ready') feed();
          else if (m.type === 'start') {
            currentCommand = m.command;
            arm();
          } else if (m.type === 'done') {
            clearTimeout(timer);
            done++;
            s.cases++;
            s.kinds[m.kind] = (s.kinds[m.kind] ?? 0) + 1;
            s.peakRssMB = Math.max(s.peakRssMB, m.maxRssMB);
            if (m.maxRssMB >= MEMORY_LIMIT_MB) fail({ index: m.index, kind: m.kind, what: 'memory', detail: `peak RSS ${m.maxRssMB.toFixed(0)} MB` });
            record(m.index, m.kind, m.results);
            current = undefined;
            feed();
          }
        });
        child.on('exit', (code, signal) => {
          clearTimeout(timer);
          if (current !== undefined && !killedForHang) {
            s.crashes++;
            fail({ index: current, what: 'crash', detail: `worker died in ${currentCommand} (exit ${code}, signal ${signal}): ${stderr.slice(-600)}` });
            current = undefined;
          }
          if (finished || next >= o.cases || Date.now() - t0 > o.seconds * 1000) resolve();
          else spawnOne();
        });
      };
      spawnOne();
    });

  const record = (index: number, kind: string, results: CommandResult[]) => {
    for (const r of results) {
      s.commands++;
      s.exits[r.exit] = (s.exits[r.exit] ?? 0) + 1;
      if (r.code) s.codes[r.code] = (s.codes[r.code] ?? 0) + 1;
      if (!ALLOWED_EXITS.has(r.exit) || r.code === 'INTERNAL_ERROR') {
        s.uncoded++;
        fail({ index, kind, what: 'uncoded', detail: `${r.command} exit ${r.exit} ${r.code ?? ''}: ${r.message ?? ''}` });
      }
    }
    if (results.length === 3 && results.every((r) => r.exit === 0)) s.compressedOk++;
  };

  try {
    await Promise.all(Array.from({ length: o.workers }, (_, i) => runWorker(i)));
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
  s.seconds = (Date.now() - t0) / 1000;
  return s;
}

export function fuzzOk(s: FuzzSummary): boolean {
  return s.crashes === 0 && s.hangs === 0 && s.uncoded === 0 && s.peakRssMB < MEMORY_LIMIT_MB;
}

if (require.main === module) {
  const arg = (name: string, dflt: number) => {
    const i = process.argv.indexOf(`--${name}`);
    return i > 0 ? Number(process.argv[i + 1]) : dflt;
  };
  const opts: FuzzOptions = {
    seed: arg('seed', 1),
    cases: arg('cases', 20_000),
    seconds: arg('seconds', 3600),
    workers: arg('workers', Math.max(1, Math.min(4, os.cpus().length))),
  };
  void runFuzz(opts).then((s) => {
    if (process.argv.includes('--json')) process.stdout.write(JSON.stringify(s, null, 1) + '\n');
    else {
      process.stdout.write(
        `fuzz seed ${s.seed}: ${s.cases} cases, ${s.commands} commands in ${s.seconds.toFixed(0)} s; ` +
          `${s.compressedOk} compressed fine; crashes ${s.crashes}, hangs ${s.hangs}, uncoded ${s.uncoded}, peak RSS ${s.peakRssMB.toFixed(0)} MB\n` +
          `exit codes ${JSON.stringify(s.exits)}\nerror codes ${JSON.stringify(s.codes)}\n`,
      );
      for (const f of s.failures) process.stdout.write(`  case ${f.index} (${f.kind ?? '?'}): ${f.what}: ${f.detail}\n`);
    }
    process.exitCode = fuzzOk(s) ? 0 : 1;
  });
}
