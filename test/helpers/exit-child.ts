/**
 * Run in a child process by test/exit-stops-jobs.test.ts: starts long native jobs (a fine-tune of 100,000
 * steps and a forward pass) and calls process.exit(0) once the fine-tune reports progress, either on the main
 * thread or in a worker thread. Prints `exiting <ms since epoch>` just before process.exit; in worker mode the
 * main thread then prints `worker exited after <ms>` when the worker's 'exit' event fires, and "done".
 *
 *   node -r ts-node/register/transpile-only test/helpers/exit-child.ts main|worker
 */
import * as path from 'node:path';
import { Worker, isMainThread, parentPort } from 'node:worker_threads';

const MODEL = path.join(__dirname, '..', '..', 'models', 'llama-stories260k');

/** Starts the jobs and calls process.exit(0) while they run; `say` reports the moment of the call. */
async function startAndExit(say: (line: string) => void): Promise<void> {
  const { loadModel } = await import('../../lib/model/load');
  const { finetune } = await import('../../lib/train/finetune');
  const model = await loadModel(MODEL);
  const data = Int32Array.from({ length: 4096 }, (_, i) => (i * 7) % model.spec.vocab);
  let exiting = false;
  const exitNow = () => {
    if (exiting) return;
    exiting = true;
    // a forward of a few seconds too (its cancellation checks are between layers), started just before the exit
    const ids = Int32Array.from({ length: 32 * 512 }, (_, i) => (i * 3) % model.spec.vocab);
    void model.forward({ ids, batch: 32, seq: 512 }, { output: 'nll' }).catch(() => undefined);
    setTimeout(() => {
      say(`exiting ${Date.now()}`);
      process.exit(0);
    }, 100);
  };
  void finetune(model, { data, steps: 100_000, batch: 8, seq: 64, onProgress: exitNow }).catch(() => undefined);
}

function main(mode: string): void {
  if (mode === 'main') {
    void startAndExit((line) => console.log(line));
    return;
  }
  const w = new Worker(`require('ts-node/register/transpile-only'); require(${JSON.stringify(__filename)});`, { eval: true });
  let exitingAt = 0;
  w.on('message', (m: string) => {
    console.log(m);
    exitingAt = Number(m.split(' ')[1]);
  });
  w.on('error', (e) => console.log(`error: ${String(e)}`));
  w.on('exit', (code) => {
    console.log(`worker exited after ${Date.now() - exitingAt} ms with code ${code}`);
    console.log('done');
  });
}

if (isMainThread) main(process.argv[2] ?? 'main');
else void startAndExit((line) => parentPort!.postMessage(line));
