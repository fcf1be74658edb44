/**
 * How long single library calls hold the host's event loop at Llama-2-7B width (the stalls a server running
 * compress in-process feels), ours against a peer checkout in the same run:
 *   - Model.withFF: one float32 FF (541 MB) given to two layers, as a scored candidate's view does;
 *   - NativeFF.of: one FF's W_in and gate rows (360 MB) copied into native memory, as refit and select do;
 *   - a layer's FF read by Model.readFFWeights (541 MB, as every merge method reads the window's layers),
 *     dropped, and collected (global.gc(): the child runs with --expose-gc) — what the free costs the loop;
 *   - NativeFF.dispose(): the select pool of a k = 2 window (720 MB) and of a k = 9 window (3.2 GB), with the
 *     host idle and with the host allocating meanwhile (an 8 MB array every 5 ms).
 *   - RidgeAccumulator.addFF of one fit batch (X and Y of 2,048 rows, 67 MB), with `stage`;
 *   - least-squares sums of p = 11,008 (1.3 GB) collected while the host allocates;
 *   - a control: the host's allocation loop alone, for as long as a freeing case watches it.
 * Each case runs 3 times in a child process per checkout (FFMERGE_ROOT), one case after the other, so the two
 * checkouts see the same machine within minutes. The model is the 3-layer synthetic of benchmarks/synthetic/
 * llama.ts (written when absent, 1.6 GB).
 *
 *   node -r ts-node/register/transpile-only benchmarks/host-stalls.ts [--peer /path/to/other/checkout]
 *        [--dir /tmp/ffmerge-synthetic]
 *
 * The peer is optional (a checkout with its addon built); without it only ours is measured.
 */
import { spawnSync } from 'node:child_process';
import * as os from 'node:os';
import * as path from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { ensureSyntheticLlama } from './synthetic/llama';

const args = process.argv.slice(2);
const flag = (name: string, dflt: string): string => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1]! : dflt;
};

interface CaseResult {
  name: string;
  /** Wall time of each call (ms). */
  wall: number[];
  /** The event loop's longest delay over the calls (ms). */
  loopMax: number;
}

/** In the child: the cases, on FFMERGE_ROOT's library. */
async function child(): Promise<void> {
  const root = process.env.FFMERGE_ROOT ?? path.resolve(__dirname, '..');
  const { loadModel } = (await import(path.join(root, 'lib/model/load'))) as typeof import('../lib/model/load');
  const { NativeFF } = (await import(path.join(root, 'lib/native/native-ff'))) as typeof import('../lib/native/native-ff');
  const { RidgeAccumulator } = (await import(path.join(root, 'lib/native/ridge'))) as typeof import('../lib/native/ridge');
  const out: CaseResult[] = [];
  const timed = async (name: string, run: () => Promise<void> | void): Promise<void> => {
    const wall: number[] = [];
    const h = monitorEventLoopDelay({ resolution: 5 });
    h.enable();
    await new Promise((res) => setTimeout(res, 50));
    for (let r = 0; r < 3; r++) {
      const t0 = performance.now();
      await run();
      wall.push(performance.now() - t0);
      await new Promise((res) => setTimeout(res, 300)); // let what the call left behind (frees, GC) land in the window
    }
    h.disable();
    out.push({ name, wall, loopMax: h.max / 1e6 });
  };

  const model = await loadModel(flag('model', ''));
  const a = model.ffWeights(0);
  const b = model.ffWeights(1);
  const avg = (x: Float32Array, y: Float32Array) => {
    const out = new Float32Array(x.length);
    for (let i = 0; i < x.length; i++) out[i] = (x[i]! + y[i]!) / 2;
    return out;
  };
  const merged = { ...a, wIn: avg(a.wIn, b.wIn), wGate: avg(a.wGate!, b.wGate!), wOut: avg(a.wOut, b.wOut) };
  // the setup's garbage is collected before the first case: its collection is not the case's hold
  const gc = (globalThis as { gc?: () => void }).gc ?? (() => {});
  gc();
  await timed('withFF: one FF (541 MB) on 2 layers', async () => {
    const view = await model.withFF([{ layer: 0, ff: merged }, { layer: 1, ff: merged }]);
    view.dispose();
  });
  await timed("NativeFF.of: one FF's input side (360 MB)", async () => {
    (await NativeFF.of(merged)).dispose();
  });
  await timed('readFFWeights: a layer read, dropped and collected', async () => {
    let ff: unknown = await model.readFFWeights(0);
    await new Promise((res) => setTimeout(res, 50)); // not collected inside the read's own window
    ff = undefined;
    void ff;
    gc();
  });
  model.dispose();

  const d = merged.d;
  // One batch of a fit at 7B width: X and Y of 2,048 rows each (67 MB), through a 64-unit FF (the hold
  // measured is the arrays' copy, not the job). `stage` asks for the sliced copy; a checkout without it copies in the call.
  {
    const rows = 2048;
    const small = { d, dFF: 64, wIn: new Float32Array(64 * d).fill(0.01), wOut: new Float32Array(64 * d) };
    const X = new Float32Array(rows * d).fill(0.5);
    const Y = new Float32Array(rows * d).fill(0.25);
    const acc = new RidgeAccumulator(64, d);
    await timed('RidgeAccumulator.addFF: one batch of 2,048 rows (X and Y 67 MB), stage', async () => {
      await acc.addFF(X, rows, small, 'silu', Y, { stage: true });
    });
  }
  /**
   * A free watched 3 times: prepare() makes what act() lets go of; the event loop is watched from 50 ms
   * before act() until `settle` ms after it, with the host allocating meanwhile (an 8 MB array every 5 ms, as a
   * server's requests do: a large free elsewhere in the process holds every mmap of the host's, core/large_buffer.h)
   * or idle. A fresh histogram per call: one re-enabled after prepare() would count its time as a delay.
   */
  const freeing = async (name: string, allocating: boolean, settle: number, prepare: () => Promise<void>, act: () => void): Promise<void> => {
    const wall: number[] = [];
    let loopMax = 0;
    for (let r = 0; r < 3; r++) {
      await prepare();
      const h = monitorEventLoopDelay({ resolution: 5 });
      h.enable();
      const host = allocating ? setInterval(() => new Float32Array(2 << 20).fill(1), 5) : undefined;
      await new Promise((res) => setTimeout(res, 50));
      const t0 = performance.now();
      act();
      wall.push(performance.now() - t0);
      await new Promise((res) => setTimeout(res, settle));
      clearInterval(host);
      h.disable();
      loopMax = Math.max(loopMax, h.max / 1e6);
    }
    out.push({ name: `${name}${allocating ? ', the host allocating' : ''}`, wall, loopMax });
  };
  // The control: the host's allocation loop alone, for as long as the sums' case below watches it.
  await freeing('control: nothing freed, 650 ms', true, 600, async () => {}, () => {});
  // Least-squares sums of p = 11,008 (G 0.97 GB, C 0.36 GB, every page touched by one row), dropped and
  // collected: the reaper frees them.
  let sums: InstanceType<typeof RidgeAccumulator> | undefined;
  await freeing('RidgeAccumulator of p = 11,008 (1.3 GB) collected', true, 600, async () => {
    sums = new RidgeAccumulator(merged.dFF, d);
    await sums.add(new Float32Array(merged.dFF).fill(1), new Float32Array(d).fill(1), 1);
  }, () => {
    sums = undefined;
    gc();
  });
  for (const [k, units] of [[2, 2 * merged.dFF], [9, 9 * merged.dFF]] as const) {
    const rows = 4096; // the pool is filled a slice at a time, as select fills it a layer at a time
    const part = { d, dFF: rows, wIn: new Float32Array(rows * d).fill(0.5), wGate: new Float32Array(rows * d).fill(0.25), wOut: new Float32Array(0) };
    let pool: InstanceType<typeof NativeFF> | undefined;
    const fill = async () => {
      pool = new NativeFF(units, d, { bIn: false, gate: true, bGate: false });
      for (let o = 0; o + rows <= units; o += rows) await pool.set(o, part);
    };
    for (const allocating of [false, true]) {
      await freeing(`NativeFF.dispose(): a k = ${k} pool (${((units * d * 8) / 1e9).toFixed(1)} GB)`, allocating, 300, fill, () => pool!.dispose());
    }
  }
  process.stdout.write(`${JSON.stringify(out)}\n`);
}

function run(root: string, model: string): CaseResult[] {
  const r = spawnSync(process.execPath, ['--expose-gc', '-r', 'ts-node/register/transpile-only', __filename, '--child', '--model', model], {
    env: { ...process.env, FFMERGE_ROOT: root },
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  if (r.status !== 0) throw new Error(`the child for ${root} exited with ${r.status}`);
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as CaseResult[];
}

async function main(): Promise<void> {
  if (args.includes('--child')) return child();
  const { dir: model } = await ensureSyntheticLlama(flag('dir', path.join(os.tmpdir(), 'ffmerge-synthetic')), 3);
  const ours = run(path.resolve(__dirname, '..'), model);
  const peerRoot = flag('peer', '');
  const peer = peerRoot ? run(path.resolve(peerRoot), model) : undefined;
  if (!peer) console.log('peer: none given (--peer <checkout>), ours only');
  console.log(`machine: ${os.cpus().length} × ${os.cpus()[0]?.model}, ${(os.totalmem() / 2 ** 30).toFixed(2)} GiB`);
  console.log(`| call | ours: event loop max | ours: wall per call | ${peer ? 'peer: event loop max | peer: wall per call |' : ''}`);
  console.log(`|---|---|---|${peer ? '---|---|' : ''}`);
  const ms = (w: number[]) => w.map((x) => x.toFixed(1)).join(' / ') + ' ms';
  for (const [i, c] of ours.entries()) {
    const p = peer?.[i];
    console.log(`| ${c.name} | ${c.loopMax.toFixed(1)} ms | ${ms(c.wall)} |${p ? ` ${p.loopMax.toFixed(1)} ms | ${ms(p.wall)} |` : ''}`);
  }
}

void main();
