/**
 * Run in a child process by test/addon-teardown.test.ts (a crash or a hang must fail the test, not jest):
 * worker threads that each load the addon (an instance: its own pool and reaper thread), make what frees
 * large native memory off the main thread (model views, a NativeFF, least-squares and correlation sums, job
 * result arrays: ffApply's, an FF read, a forward pass's states), drop some of it by dispose() and the rest
 * to the garbage collector, and then either end on their own or are terminated while a native job runs.
 * Prints one JSON line per worker {worker, how, ok, detail}, then "done"; exit 0 unless something crashed.
 *
 *   node --expose-gc -r ts-node/register/transpile-only test/helpers/teardown-child.ts
 */
import * as path from 'node:path';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';

const MODEL = path.join(__dirname, '..', '..', 'models', 'llama-stories260k');

/** In a worker: the objects that hand memory to the reaper, some disposed, some left to the collector. */
async function work(terminateMidJob: boolean): Promise<void> {
  const { loadModel } = await import('../../lib/model/load');
  const { NativeFF } = await import('../../lib/native/native-ff');
  const { RidgeAccumulator, ffApply } = await import('../../lib/native/ridge');
  const { CorrelationAccumulator } = await import('../../lib/native/correlation');
  const { matmul } = await import('../../lib/native/gemm');
  const model = await loadModel(MODEL);
  const { dModel: d, dFF } = model.spec;
  const ff = model.ffWeights(1);
  const kept = await model.withFF([{ layer: 0, ff }, { layer: 2, ff }]);
  const dropped = await model.withFF([{ layer: 3, ff }]);
  dropped.dispose();
  const native = await NativeFF.of(ff);
  const X = Float32Array.from({ length: 16 * d }, (_, i) => Math.sin(i));
  const H = await ffApply(native, X, 16, 'silu', false); // an external result array, left to the collector
  const ridge = new RidgeAccumulator(dFF, d);
  await ridge.add(H, X, 16);
  const corr = new CorrelationAccumulator([dFF, dFF], [[0, 1]]);
  await corr.add([H, H], 16);
  native.dispose();
  // result arrays of model jobs (an FF read, a forward pass's states), left to the collector and the reaper
  const read = await model.readFFWeights(2);
  const states = await model.forward({ ids: Int32Array.from({ length: 64 }, (_, i) => i % model.spec.vocab), batch: 1, seq: 64 }, { output: 'hidden' });
  void read;
  void states;
  (globalThis as { gc?: () => void }).gc?.();
  const ids = Int32Array.from({ length: 4 * 64 }, (_, i) => (i * 7) % model.spec.vocab);
  if (terminateMidJob) {
    // jobs still running on the pool (and progress still being reported) when the parent terminates this thread
    const long = Int32Array.from({ length: 16 * 256 }, (_, i) => (i * 7) % model.spec.vocab);
    for (let j = 0; j < 3; j++) void kept.forward({ ids: long, batch: 16, seq: 256 }, { output: 'logits', onProgress: () => undefined }).catch(() => undefined);
    const a = Float32Array.from({ length: 600 * 600 }, (_, i) => Math.cos(i));
    void matmul(a, a, { m: 600, n: 600, k: 600 }).catch(() => undefined);
    parentPort!.postMessage('running');
    return;
  }
  await kept.forward({ ids, batch: 4, seq: 64 }, { output: 'logits' });
  parentPort!.postMessage('finished');
}

function runWorker(index: number, how: 'ends' | 'terminated'): Promise<{ worker: number; how: string; ok: boolean; detail: string }> {
  return new Promise((resolve) => {
    const w = new Worker(`require('ts-node/register/transpile-only'); require(${JSON.stringify(__filename)});`, {
      eval: true,
      workerData: { terminateMidJob: how === 'terminated' },
    });
    let detail = '';
    w.on('message', (m: string) => {
      detail = m;
      if (m === 'running') void w.terminate();
    });
    w.on('error', (e) => (detail = `error: ${String(e)}`));
    w.on('exit', (code) => {
      const ok = how === 'terminated' ? detail === 'running' : code === 0 && detail === 'finished';
      resolve({ worker: index, how, ok, detail: `${detail}; exit ${code}` });
    });
  });
}

async function main(): Promise<void> {
  // three instances at once, one of them terminated mid-job; then one more after them (a fresh instance)
  const first = await Promise.all([runWorker(0, 'ends'), runWorker(1, 'terminated'), runWorker(2, 'ends')]);
  const later = await runWorker(3, 'ends');
  for (const r of [...first, later]) console.log(JSON.stringify(r));
  console.log('done');
}

if (isMainThread) {
  void main();
} else {
  work((workerData as { terminateMidJob: boolean }).terminateMidJob).catch((e) => {
    parentPort!.postMessage(`error: ${String(e)}`);
  });
}
