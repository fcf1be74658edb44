/**
 * Model load against a plain sequential read of the same weight files, with the OS's peak RSS of each.
 *
 *   node -r ts-node/register/transpile-only benchmarks/load.ts <model-dir> [--reps 3]
 *   node -r ts-node/register/transpile-only benchmarks/load.ts <new-dir> --generate 7b-8|small [--layers N]
 *
 * --generate writes a synthetic BF16 LLaMA checkpoint first (benchmarks/synthetic/llama.ts; 7b-8 = Llama-2-7B
 * widths, 8 layers, ~3.4 GB; small = the same layout at hidden 1024, ~0.3 GB at 8 layers). Each measurement runs in a
 * fresh child process, so VmHWM (/proc/self/status) is that step's peak alone; "idle" is the same child
 * loading only the addon (Node's own footprint). The files are read once first, so every step sees a warm
 * page cache (a cold read is the disk's speed, the same for both). Targets (issue 9): load ≤ 2 × the plain
 * read, peak RSS ≤ 1.25 × the weight bytes.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';

function weightFiles(dir: string): string[] {
  const index = path.join(dir, 'model.safetensors.index.json');
  if (fs.existsSync(index)) {
    const wm = (JSON.parse(fs.readFileSync(index, 'utf8')) as { weight_map: Record<string, string> }).weight_map;
    return [...new Set(Object.values(wm))].map((f) => path.join(dir, f));
  }
  return [path.join(dir, 'model.safetensors')];
}

function vmHWM(): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(fs.readFileSync('/proc/self/status', 'utf8'));
  return m ? Number(m[1]) * 1024 : NaN;
}

/** What a child measures: prints one JSON line {seconds, peak}. */
async function child(step: string, dir: string): Promise<void> {
  let seconds = 0;
  if (step === 'read') {
    const buf = Buffer.allocUnsafe(16 << 20);
    const t0 = performance.now();
    for (const f of weightFiles(dir)) {
      const fd = fs.openSync(f, 'r');
      try {
        while (fs.readSync(fd, buf, 0, buf.length, null) > 0);
      } finally {
        fs.closeSync(fd);
      }
    }
    seconds = (performance.now() - t0) / 1000;
  } else if (step === 'read-fresh') {
    // the same bytes into newly allocated memory that is kept (as any loader must): page faults included
    const kept: Buffer[] = [];
    const t0 = performance.now();
    for (const f of weightFiles(dir)) {
      const fd = fs.openSync(f, 'r');
      try {
        for (;;) {
          const buf = Buffer.allocUnsafeSlow(256 << 20);
          const n = fs.readSync(fd, buf, 0, buf.length, null);
          if (n <= 0) break;
          kept.push(buf);
        }
      } finally {
        fs.closeSync(fd);
      }
    }
    seconds = (performance.now() - t0) / 1000;
  } else {
    const { loadModel } = await import('../lib/model/load');
    const { modelAddon } = await import('../lib/native/model');
    modelAddon(); // the addon (and its pool) counted in every step alike
    if (step.startsWith('load')) {
      // load: the defaults (streamed by layer at ≥ 2 GiB, 16-bit matrices mapped); load-resident: every layer
      // in memory, mapped; load-resident-read: every layer read into fresh memory (mmap: false)
      const opts = step === 'load' ? {} : { stream: false, mmap: step !== 'load-resident-read' };
      const t0 = performance.now();
      const m = await loadModel(dir, opts);
      seconds = (performance.now() - t0) / 1000;
      const dt = m.weightDtypes();
      m.dispose();
      process.stdout.write(JSON.stringify({ seconds, peak: vmHWM(), dtypes: dt }) + '\n');
      return;
    }
  }
  process.stdout.write(JSON.stringify({ seconds, peak: vmHWM() }) + '\n');
}

function run(step: string, dir: string): { seconds: number; peak: number; dtypes?: Record<string, string> } {
  const r = spawnSync(process.execPath, ['-r', 'ts-node/register/transpile-only', __filename, '--child', step, dir], {
    encoding: 'utf8',
    cwd: path.resolve(__dirname, '..'),
    maxBuffer: 1 << 20,
  });
  if (r.status !== 0) throw new Error(`${step} failed: ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as { seconds: number; peak: number };
}

const median = (v: number[]) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)]!;
const gb = (b: number) => `${(b / 1e9).toFixed(3)} GB`;

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  if (args[0] === '--child') return child(args[1]!, args[2]!);
  const flag = (name: string) => {
    const i = args.indexOf(`--${name}`);
    return i >= 0 ? args[i + 1] : undefined;
  };
  const dir = args.find((a, i) => !a.startsWith('--') && !(i > 0 && args[i - 1]!.startsWith('--')));
  if (!dir) {
    console.error('usage: benchmarks/load.ts <model-dir> [--reps N] [--generate 7b-8|small [--layers N]]');
    process.exit(2);
  }
  const gen = flag('generate');
  if (gen && !fs.existsSync(path.join(dir, 'config.json'))) {
    const { PRESETS, writeSyntheticLlama } = await import('./synthetic/llama');
    const base = gen === 'small' ? { ...PRESETS['7b-8']!, hidden: 1024, intermediate: 2752, heads: 8, kvHeads: 2 } : PRESETS[gen];
    if (!base) throw new Error(`unknown --generate ${gen}`);
    const shape = { ...base, ...(flag('layers') ? { layers: Number(flag('layers')) } : {}) };
    const t0 = performance.now();
    const w = await writeSyntheticLlama(dir, shape, { dtype: 'BF16', tokens: 256 });
    console.log(`generated ${dir}: ${JSON.stringify(shape)}, ${gb(w.bytes)} in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  }
  const files = weightFiles(dir);
  const bytes = files.reduce((n, f) => n + fs.statSync(f).size, 0);
  const reps = Number(flag('reps') ?? 3);
  run('read', dir); // warm the page cache
  const idle = run('idle', dir);
  const reads: { seconds: number; peak: number }[] = [];
  const fresh: { seconds: number; peak: number }[] = [];
  const loads: { seconds: number; peak: number; dtypes?: Record<string, string> }[] = [];
  const resident: { seconds: number; peak: number }[] = [];
  const residentRead: { seconds: number; peak: number }[] = [];
  for (let i = 0; i < reps; i++) {
    reads.push(run('read', dir));
    fresh.push(run('read-fresh', dir));
    loads.push(run('load', dir));
    resident.push(run('load-resident', dir));
    residentRead.push(run('load-resident-read', dir));
  }
  const read = median(reads.map((r) => r.seconds));
  const load = median(loads.map((r) => r.seconds));
  const peak = Math.max(...loads.map((r) => r.peak));
  console.log(`${dir}: ${files.length} file(s), ${gb(bytes)}; resident dtypes ${JSON.stringify(loads[0]!.dtypes)}`);
  console.log(`plain read   ${read.toFixed(2)} s (${(bytes / 1e9 / read).toFixed(2)} GB/s), peak RSS ${gb(reads[0]!.peak)}`);
  const freshRead = median(fresh.map((r) => r.seconds));
  console.log(`read into fresh memory (kept) ${freshRead.toFixed(2)} s, peak RSS ${gb(fresh[0]!.peak)}`);
  console.log(`loadModel    ${load.toFixed(2)} s = ${(load / read).toFixed(2)} × the plain read (target ≤ 2), ${(load / freshRead).toFixed(2)} × the read into fresh memory`);
  for (const [name, rs] of [['resident (stream: false), mapped', resident], ['resident, read (mmap: false)', residentRead]] as const) {
    const t = median(rs.map((r) => r.seconds));
    const p = Math.max(...rs.map((r) => r.peak));
    console.log(`loadModel ${name}: ${t.toFixed(2)} s = ${(t / read).toFixed(2)} × the plain read, peak RSS ${gb(p)} = ${(p / bytes).toFixed(3)} × the file size`);
  }
  console.log(`peak RSS     ${gb(peak)} = ${(peak / bytes).toFixed(3)} × the file size (target ≤ 1.25); Node + addon idle ${gb(idle.peak)}, so the weights add ${((peak - idle.peak) / bytes).toFixed(3)} ×`);
  console.log(JSON.stringify({ bytes, files: files.length, readSeconds: reads.map((r) => r.seconds), freshReadSeconds: fresh.map((r) => r.seconds), loadSeconds: loads.map((r) => r.seconds), loadPeak: loads.map((r) => r.peak), residentSeconds: resident.map((r) => r.seconds), residentPeak: resident.map((r) => r.peak), residentReadSeconds: residentRead.map((r) => r.seconds), residentReadPeak: residentRead.map((r) => r.peak), idlePeak: idle.peak }));
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
