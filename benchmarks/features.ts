/**
 * The calibration pass (lib/pipeline/features.ts) both ways on real models, in one run: every pair streamed
 * natively in one forward pass per batch (what fits the features budget gets) against the layer-major pass
 * (memoryBytes 0: activations copied to JS, kept, staged back), on the same batches and pairs. Both give the
 * same sums bit for bit (test/features-native.test.ts); this is their time. Pairs: every window of k = 4 with
 * its first layer as anchor, as compress collects them; 10,240 calibration tokens of real text.
 *
 *   npx ts-node --transpile-only benchmarks/features.ts [--quick]
 *
 * Needs ../shared (FFMERGE_SHARED): skipped, saying so, without it.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { loadModel } from '../lib/model/load';
import { blocksFrom, makeBatches } from '../lib/pipeline/data';
import { collectStackCorrelations, type CalibrationBatch } from '../lib/pipeline/features';

const QUICK = process.argv.includes('--quick');
const SHARED = path.resolve(process.env.FFMERGE_SHARED ?? path.join(__dirname, '..', '..', 'shared'));
const K = 4;
const REPS = QUICK ? 1 : 3;

const now = () => Number(process.hrtime.bigint()) / 1e9;

async function main(): Promise<void> {
  const rows: string[] = [];
  for (const name of ['gpt2-sotu', 'llama-stories260k']) {
    const dir = path.join(SHARED, 'fixtures', name);
    const text = path.join(SHARED, 'data', 'lm', 'valid.txt');
    if (!fs.existsSync(dir) || !fs.existsSync(text)) {
      console.log(`${name}: skipped, ${dir} or ${text} is absent`);
      continue;
    }
    const model = await loadModel(dir);
    try {
      const blocks = await blocksFrom(text, { blockSize: 256, what: 'calibration', tokenizerDir: dir, maxTokens: QUICK ? 2048 : 10240 });
      const batches: CalibrationBatch[] = makeBatches(blocks, 8).map((b) => ({ input: { ids: b.ids, batch: b.batch, seq: b.seq } }));
      const L = model.spec.layers;
      const pairs: [number, number][] = [];
      for (let a = 0; a + K <= L; a++) for (let l = a + 1; l < a + K; l++) pairs.push([a, l]);
      const wanted = new Map([[model.mainStack, pairs]]);
      const times = { native: Infinity, layerMajor: Infinity };
      // alternated, best of REPS each: the same machine state for both
      for (let r = 0; r < REPS; r++) {
        for (const [way, opts] of [['native', {}], ['layerMajor', { memoryBytes: 0 }]] as const) {
          const t0 = now();
          await collectStackCorrelations(model, batches, wanted, { ...opts, keep: 'permutation' });
          times[way] = Math.min(times[way], now() - t0);
        }
      }
      const tokens = batches.reduce((n, b) => n + b.input.batch * b.input.seq, 0);
      rows.push(`| ${name} | ${L} | ${model.spec.dFF} | ${pairs.length} | ${tokens} | ${times.native.toFixed(2)} | ${times.layerMajor.toFixed(2)} | ${(times.layerMajor / times.native).toFixed(2)} |`);
    } finally {
      model.dispose();
    }
  }
  console.log(`features pass, k = ${K} pairs, best of ${REPS} (seconds; ratio = layer-major / native)`);
  console.log('| model | layers | d_ff | pairs | tokens | native | layer-major | ratio |');
  console.log('|---|---|---|---|---|---|---|---|');
  for (const r of rows) console.log(r);
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
