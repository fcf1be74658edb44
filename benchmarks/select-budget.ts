/**
 * What select's memory budget costs in quality: gpt2-sotu, k = 4, window 2-5, select + refit, calibration and
 * validation drawn across valid.txt (--draw spread), with the pool of 4 × 512 units whole and cut by the
 * prescreen to 1,024 (2 × d_ff) and 640 units (1.25 × d_ff, the floor). No fixture reaches the default budget
 * (128 MiB ≈ 4,095 units); GPT-2-small with k = 4 (12,288 units) is cut to 4,095 = 1.33 × d_ff, between the
 * two cut rows here. The window is given, so nothing is chosen on test; test is reported beside validation.
 *
 *   node -r ts-node/register/transpile-only benchmarks/select-budget.ts
 *
 * Needs ../shared (FFMERGE_SHARED overrides); skipped, saying so, without it.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { compress } from '../lib/pipeline/compress';

const SHARED = path.resolve(process.env.FFMERGE_SHARED ?? path.join(__dirname, '..', '..', 'shared'));
const S = (...p: string[]) => path.join(SHARED, ...p);

async function main(): Promise<void> {
  if (!fs.existsSync(S('fixtures', 'gpt2-sotu'))) {
    console.log(`skipped: ${S('fixtures', 'gpt2-sotu')} is absent`);
    return;
  }
  const units = (u: number) => (u + 1) ** 2 * 8; // the budget whose cap is u units
  for (const [name, selectMemory] of [['whole pool, 2,048 units', undefined], ['cut to 1,024 units', units(1024)], ['cut to 640 units (the floor)', 1]] as const) {
    const t0 = Date.now();
    const r = await compress(S('fixtures', 'gpt2-sotu'), {
      k: 4,
      window: '2-5',
      method: 'select',
      recover: 'refit',
      draw: 'spread',
      calibration: S('data', 'lm', 'valid.txt'),
      test: S('data', 'lm', 'test.txt'),
      ...(selectMemory !== undefined ? { selectMemory } : {}),
    });
    console.log(`| ${name} | ${r.merged.validation.toFixed(3)} | ${r.merged.test!.toFixed(3)} | ${((Date.now() - t0) / 1000).toFixed(0)} s |`);
  }
}
main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
