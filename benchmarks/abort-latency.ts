/**
 * How soon an abort lands inside one layer. One Llama-2-7B-width layer over a batch of 2,048 tokens takes
 * seconds on a few cores, and the forward pass checks its AbortSignal between layers; inside a layer its matrix
 * products poll the job's cancel flag between cache blocks (CancelScope, native/core/job.h). Each run times a
 * whole one-layer pass, then the same pass aborted a quarter of the way in, and reports the time from abort()
 * to the rejection as a fraction of the whole pass (both from the same run).
 *
 *   node -r ts-node/register/transpile-only benchmarks/abort-latency.ts [--dir /tmp/ffmerge-synthetic] [--tokens 2048] [--runs 3]
 *
 * The synthetic checkpoint (random BF16 weights, 1 layer at 7B width, ~1 GB) is written under --dir once.
 */
import { performance } from 'node:perf_hooks';
import { loadModel } from '../lib/model/load';
import { ensureSyntheticLlama } from './synthetic/llama';

const args = process.argv.slice(2);
const flag = (name: string, dflt: string): string => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1]! : dflt;
};

async function main(): Promise<void> {
  const { dir } = await ensureSyntheticLlama(flag('dir', '/tmp/ffmerge-synthetic'), 1);
  const tokens = Number(flag('tokens', '2048'));
  const runs = Number(flag('runs', '3'));
  const model = await loadModel(dir);
  try {
    const seq = 256;
    const batch = Math.max(1, Math.round(tokens / seq));
    const ids = Int32Array.from({ length: batch * seq }, (_, i) => (i * 7919) % model.spec.vocab);
    const pass = (signal?: AbortSignal) => model.forward({ ids, batch, seq }, { output: 'hidden', fromLayer: 0, toLayer: 1, ...(signal ? { signal } : {}) });
    await pass(); // warm: the streamed layer read once, the pool started
    console.log(`one ${model.spec.dModel}×${model.spec.dFF} layer, ${batch * seq} tokens, ${runs} runs`);
    console.log('run  whole pass  abort → rejected  fraction of the pass');
    for (let r = 0; r < runs; r++) {
      const t0 = performance.now();
      await pass();
      const whole = performance.now() - t0;
      const ac = new AbortController();
      let aborted = 0;
      setTimeout(() => {
        aborted = performance.now();
        ac.abort();
      }, whole / 4);
      const code = await pass(ac.signal).then(
        () => 'finished',
        (e: { code?: string }) => e.code ?? 'error',
      );
      const latency = performance.now() - aborted;
      console.log(`${r + 1}    ${(whole / 1000).toFixed(2)} s      ${latency.toFixed(0)} ms (${code})      ${(latency / whole).toFixed(3)}`);
    }
  } finally {
    model.dispose();
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
