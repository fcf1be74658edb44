/**
 * The acceptance runs on the four real fixtures: compress's default (method auto: every DEFAULT_COMBOS
 * combination at every window) next to the baselines at the same size (the paper's plain merge among them),
 * each searched on the same validation data, and every model's test metric. Windows, methods and placements
 * are chosen on validation only, never on test.
 *
 *   node -r ts-node/register/transpile-only benchmarks/fixtures.ts [gpt2 llama vit marian] [--method m] [--recover r]
 *     [--sample-calibration [tokens]] [--draw head|spread] [--select-by accuracy|loss]
 *
 * --select-by loss (vit): candidates ranked by validation cross-entropy instead of accuracy.
 * --draw spread (language models): calibration and validation blocks drawn across the whole file.
 * --sample-calibration (language models): calibrate on `tokens` (default 40960) tokens sampled from the model
 * itself (seed --seed, default 1), and validate on the fixture's calibration file instead.
 *
 * Without --method/--recover it runs compress's default (auto); `--method permute --recover none` is the paper's merge.
 *
 * Needs ../shared (FFMERGE_SHARED overrides); a fixture whose files are missing is skipped, saying so.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { compress, type CompressOptions } from '../lib/pipeline/compress';
import type { CompressResult } from '../lib/pipeline/result';

const SHARED = path.resolve(process.env.FFMERGE_SHARED ?? path.join(__dirname, '..', '..', 'shared'));
const S = (...p: string[]) => path.join(SHARED, ...p);

const RUNS: Record<string, { dir: string; options: CompressOptions }> = {
  gpt2: { dir: S('fixtures', 'gpt2-sotu'), options: { k: 4, calibration: S('data', 'lm', 'valid.txt'), test: S('data', 'lm', 'test.txt') } },
  llama: {
    dir: S('fixtures', 'llama-stories260k'),
    options: { k: 2, calibration: S('data', 'lm', 'stories260k-samples-valid.jsonl'), test: S('data', 'lm', 'stories260k-samples-test.jsonl') },
  },
  vit: {
    dir: S('fixtures', 'vit-fmnist'),
    options: {
      k: 4,
      images: { images: S('data', 'fmnist', 'train-images-idx3-ubyte.gz'), labels: S('data', 'fmnist', 'train-labels-idx1-ubyte.gz') },
      test: { images: S('data', 'fmnist', 't10k-images-idx3-ubyte.gz'), labels: S('data', 'fmnist', 't10k-labels-idx1-ubyte.gz') },
    },
  },
  marian: {
    dir: S('fixtures', 'marian-multi30k-en-de'),
    options: {
      k: 2,
      parallel: { source: S('data', 'multi30k', 'train.en.gz'), target: S('data', 'multi30k', 'train.de.gz') },
      validation: { source: S('data', 'multi30k', 'val.en.gz'), target: S('data', 'multi30k', 'val.de.gz') },
      test: { source: S('data', 'multi30k', 'test_2016_flickr.en.gz'), target: S('data', 'multi30k', 'test_2016_flickr.de.gz') },
    },
  },
};

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : undefined;
}

function row(name: string, m: { validation: number; test?: number }, where: string, params: number, metric: CompressResult['metric']): string {
  const f = (v: number | undefined) => (v === undefined ? '-' : metric.name === 'accuracy' ? v.toFixed(4) : metric.name === 'bleu' ? v.toFixed(2) : v.toFixed(3));
  return `| ${name} | ${where} | ${params.toLocaleString('en-US')} | ${f(m.validation)} | ${f(m.test)} |`;
}

async function main(): Promise<void> {
  // flags that take a value; --sample-calibration takes one only when it is a number (else it is a fixture name)
  const flags = new Set(['--method', '--recover', '--seed', '--draw', '--select-by']);
  const names = process.argv
    .slice(2)
    .filter((a, i, all) => !a.startsWith('--') && !flags.has(all[i - 1] ?? '') && !(all[i - 1] === '--sample-calibration' && /^\d+$/.test(a)));
  for (const name of names.length ? names : Object.keys(RUNS)) {
    const run = RUNS[name];
    if (!run) throw new Error(`unknown fixture ${name}; choose from ${Object.keys(RUNS).join(', ')}`);
    if (!fs.existsSync(run.dir)) {
      console.log(`\n## ${name}: skipped, ${run.dir} not found (needs ../shared)`);
      continue;
    }
    const t0 = performance.now();
    // no --method/--recover: compress's default, every DEFAULT_COMBOS combination at every window
    const method = arg('method');
    const recover = arg('recover');
    const sampled = process.argv.includes('--sample-calibration') && 'calibration' in run.options;
    const sampling: CompressOptions = sampled
      ? {
          calibration: { sample: { seed: Number(arg('seed') ?? 1) } },
          validation: run.options.calibration as string,
          calibrationTokens: Number(/^\d+$/.test(arg('sample-calibration') ?? '') ? arg('sample-calibration') : 40960),
        }
      : {};
    const draw = arg('draw') as CompressOptions['draw'];
    if (draw && 'calibration' in run.options) sampling.draw = draw;
    const selectBy = arg('select-by') as CompressOptions['selectBy'];
    if (selectBy && !('calibration' in run.options)) sampling.selectBy = selectBy;
    const r = await compress(run.dir, { ...run.options, ...sampling, ...(method ? { method } : {}), ...(recover ? { recover } : {}), baselines: ['drop-ff', 'drop-layers', 'paper'] });
    const s = (performance.now() - t0) / 1000;
    const windows = (w: Partial<Record<string, string>>) => Object.entries(w).map(([st, x]) => `${st} ${x}`).join(', ');
    console.log(`\n## ${name}: ${r.modelType}, k = ${r.k}, ${r.metric.name} (${r.metric.higherIsBetter ? 'higher' : 'lower'} is better), ${s.toFixed(0)} s`);
    console.log(`data: calibration ${r.data.calibration}, validation ${r.data.validation} (search ${r.data.search}), test ${r.data.test ?? '-'} ${r.data.unit}; ${r.data.notes.join('; ')}`);
    console.log('\n| model | layers | params removed | validation | test |\n|---|---|---|---|---|');
    console.log(row('base', r.base, '', 0, r.metric));
    console.log(row(`merge (${r.method}, recover ${r.recover})`, r.merged, r.windows.map((w) => `${w.stack} ${w.window}`).join(', '), r.params.removed, r.metric));
    for (const [b, v] of Object.entries(r.baselines)) console.log(row(b, v, windows(v.windows), v.paramsRemoved, r.metric));
    console.log(`\nmerge candidates (validation): ${r.candidates.map((c) => `${windows(c.windows)}${c.method ? ` ${c.method}` : ''} ${c.score.toFixed(4)}`).join(' | ')}`);
    for (const [b, v] of Object.entries(r.baselines)) console.log(`${b} candidates (validation): ${v.candidates.map((c) => `${windows(c.windows)} ${c.score.toFixed(4)}`).join(' | ')}`);
  }
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
