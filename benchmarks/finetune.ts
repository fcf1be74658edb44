/**
 * Training throughput of the native fine-tuning (native/core/train) on gpt2-sotu: tokens/s of forward +
 * backward + AdamW at batch × 256 tokens, on random tokens (the data does not change the work).
 *   node -r ts-node/register/transpile-only benchmarks/finetune.ts [steps] [batch]
 * No PyTorch peer runs here: this machine has no `torch` (python3 -c 'import torch' fails).
 */
import { loadModel } from '../lib/model/load';
import { finetune } from '../lib/train/finetune';
import { sharedPath } from '../test/helpers/shared';

async function main(): Promise<void> {
  const steps = Number(process.argv[2] ?? 5);
  const batch = Number(process.argv[3] ?? 32);
  const dir = sharedPath('fixtures', 'gpt2-sotu');
  const m = await loadModel(dir);
  try {
    let s = 1;
    const data = Int32Array.from({ length: 200_000 }, () => ((s = (s * 1103515245 + 12345) >>> 0) >>> 8) % m.spec.vocab);
    const r = await finetune(m, { data, steps, batch, seq: 256, lr: 2e-4, clip: 0 });
    const last = r.log[r.log.length - 1]!;
    process.stdout.write(
      `| gpt2-sotu | ${batch} × 256 | ${steps} | ${(1000 * last.seconds / steps).toFixed(0)} ms/step | ${Math.round(last.tokensPerSecond)} tok/s |\n`,
    );
    r.model.dispose();
  } finally {
    m.dispose();
  }
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
