/**
 * Large models on one machine: peak RSS (from the OS) and time per phase of `compress --k 2` with automatic
 * window search on synthetic LLaMA checkpoints of Llama-2-7B widths (benchmarks/synthetic/llama.ts writes
 * them when absent), 8 layers and 32 layers, so the two peaks show whether memory grows with the model.
 *
 *   node -r ts-node/register/transpile-only benchmarks/large-model.ts [--layers 8,32] [--dir /tmp/ffmerge-synthetic]
 *        [--cal 2048] [--search 1024] [--val 2048] [--k 2] [--window auto]
 *   (--search: the search's tokens, at most --val; default min(1024, --val); refused with a given --window)
 *
 * Each run is a child process (so its peak RSS is its own): it samples VmRSS every 100 ms, reports the
 * highest per phase and VmHWM at the end, compress's own phase timings, and the longest the child's event
 * loop was held (what a server running compress in-process would feel), so far on each timed line and in
 * the end. Results go to stdout and benchmarks/results/large-model.json. FFMERGE_ROOT=<checkout> runs that
 * checkout's compress (before/after). CHILD_NODE_ARGS="--cpu-prof --cpu-prof-dir=DIR" passes node flags to the
 * child (NODE_OPTIONS may not carry --cpu-prof), to see what held the event loop.
 */
import { spawn } from 'node:child_process';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ensureSyntheticLlama } from './synthetic/llama';

const args = process.argv.slice(2);
const flag = (name: string, dflt: string): string => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1]! : dflt;
};

function status(field: 'VmRSS' | 'VmHWM'): number {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(fs.readFileSync('/proc/self/status', 'utf8'));
  return m ? Number(m[1]) * 1024 : NaN;
}

interface RunReport {
  layers: number;
  fileBytes: number;
  peakRss: number;
  rssByPhase: Record<string, number>;
  timings: Record<string, number>;
  windows: string;
  baseValidation: number;
  mergedValidation: number;
  search: number;
  loopMaxMs: number;
}

/** In the child: one compress, reporting RSS per phase. */
async function child(): Promise<void> {
  const root = process.env.FFMERGE_ROOT ?? path.resolve(__dirname, '..');
  const { compress } = (await import(path.join(root, 'lib/pipeline/compress'))) as typeof import('../lib/pipeline/compress');
  const loop = monitorEventLoopDelay({ resolution: 20 });
  loop.enable();
  const loopMax = () => (loop.max / 1e6).toFixed(0);
  const dir = flag('model', '');
  const rssByPhase: Record<string, number> = {};
  let phase = 'load';
  let detail = '';
  const timer = setInterval(() => {
    rssByPhase[phase] = Math.max(rssByPhase[phase] ?? 0, status('VmRSS'));
  }, 100);
  // a line a minute inside long candidates: RSS now, and the longest stall so far
  const heartbeat = setInterval(() => {
    process.stderr.write(`\n[${new Date().toISOString().slice(11, 19)}]   … RSS ${(status('VmRSS') / 2 ** 30).toFixed(2)} GiB, event loop held ≤ ${loopMax()} ms so far`);
  }, 60_000);
  const window = flag('window', 'auto');
  // searchTokens only where candidates are searched (compress refuses it with a given window), at most the
  // validation budget: --search when given, else 1024
  const val = Number(flag('val', '2048'));
  const search = args.includes('--search') ? Number(flag('search', '')) : window === 'auto' ? Math.min(1024, val) : undefined;
  const r = await compress(dir, {
    k: Number(flag('k', '2')),
    window,
    calibration: path.join(dir, 'calib.jsonl'),
    validation: path.join(dir, 'valid.jsonl'),
    calibrationTokens: Number(flag('cal', '2048')),
    validationTokens: val,
    ...(search !== undefined ? { searchTokens: search } : {}),
    onProgress: (p) => {
      rssByPhase[phase] = Math.max(rssByPhase[phase] ?? 0, status('VmRSS'));
      if (p.phase !== phase || (p.detail && p.detail !== detail)) {
        // each phase, and each candidate a phase starts (its detail), on its own timed line
        phase = p.phase;
        detail = p.detail ?? '';
        process.stderr.write(`\n[${new Date().toISOString().slice(11, 19)}] ${phase}${detail ? ` ${detail}` : ''} (event loop held ≤ ${loopMax()} ms so far)`);
      }
    },
  });
  clearInterval(timer);
  clearInterval(heartbeat);
  loop.disable();
  const out = {
    loopMaxMs: loop.max / 1e6,
    peakRss: status('VmHWM'),
    rssByPhase,
    timings: r.timings,
    windows: r.windows.map((w) => w.window).join(','),
    baseValidation: r.base.validation,
    mergedValidation: r.merged.validation,
    search: r.data.search,
  };
  process.stdout.write(`${JSON.stringify(out)}\n`);
}

function runChild(dir: string): Promise<Omit<RunReport, 'layers' | 'fileBytes'>> {
  const pass = ['k', 'window', 'cal', 'val', 'search'].flatMap((k) => (args.includes(`--${k}`) ? [`--${k}`, flag(k, '')] : []));
  return new Promise((resolve, reject) => {
    const c = spawn(process.execPath, [...(process.env.CHILD_NODE_ARGS ?? '').split(' ').filter(Boolean), '-r', 'ts-node/register/transpile-only', __filename, '--child', '--model', dir, ...pass], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    c.stdout.on('data', (b: Buffer) => (out += b.toString()));
    c.on('exit', (code) => {
      if (code !== 0) return reject(new Error(`compress on ${dir} exited with ${code}`));
      resolve(JSON.parse(out.trim().split('\n').pop()!) as Omit<RunReport, 'layers' | 'fileBytes'>);
    });
  });
}

async function main(): Promise<void> {
  if (args.includes('--child')) return child();
  const root = flag('dir', path.join(os.tmpdir(), 'ffmerge-synthetic'));
  const reports: RunReport[] = [];
  for (const layers of flag('layers', '8,32').split(',').map(Number)) {
    const { dir, bytes } = await ensureSyntheticLlama(root, layers);
    console.error(`compress ${dir} (${(bytes / 1e9).toFixed(2)} GB)`);
    const r = await runChild(dir);
    reports.push({ layers, fileBytes: bytes, ...r });
    console.error('');
  }
  const gb = (b: number) => (b / 2 ** 30).toFixed(2);
  console.log(`machine: ${os.cpus().length} × ${os.cpus()[0]?.model}, ${gb(os.totalmem())} GiB`);
  console.log('| layers | file GB | peak RSS GiB | ' + Object.keys(reports[0]?.timings ?? {}).map((p) => `${p} s`).join(' | ') + ' | windows | val base → merged |');
  for (const r of reports) {
    console.log(`| ${r.layers} | ${(r.fileBytes / 1e9).toFixed(2)} | ${gb(r.peakRss)} | ${Object.values(r.timings).map((t) => t.toFixed(1)).join(' | ')} | ${r.windows} | ${r.baseValidation.toFixed(1)} → ${r.mergedValidation.toFixed(1)} |`);
    console.log(`  RSS by phase (GiB): ${Object.entries(r.rssByPhase).map(([p, v]) => `${p} ${gb(v)}`).join(', ')}`);
    console.log(`  longest event-loop stall: ${r.loopMaxMs.toFixed(0)} ms`);
  }
  if (reports.length === 2) console.log(`peak RSS ratio ${reports[1]!.layers}/${reports[0]!.layers} layers: ${(reports[1]!.peakRss / reports[0]!.peakRss).toFixed(2)}`);
  fs.mkdirSync(path.join(__dirname, 'results'), { recursive: true });
  fs.writeFileSync(path.join(__dirname, 'results', 'large-model.json'), JSON.stringify({ date: new Date().toISOString(), args, reports }, null, 2) + '\n');
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
