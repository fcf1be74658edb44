/**
 * The one pipeline's plug-ins on every task: merge methods, recover methods and baselines by name; baselines
 * search their own placements at the merge's size; options of another task are refused with a code; LM data
 * as token-id rows. Small budgets: 2 shared cores.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { compress } from '../lib/pipeline/compress';
import { BASELINES } from '../lib/pipeline/baselines';
import { MERGE_METHODS } from '../lib/pipeline/merge-methods';
import { RECOVER_METHODS } from '../lib/pipeline/recover';
import { readTokenRows } from '../lib/data/token-rows';
import { describeShared, sharedPath } from './helpers/shared';

const BUNDLED = path.resolve(__dirname, '..', 'models', 'llama-stories260k');
const TEXT = path.join(BUNDLED, 'calibration.txt');

describe('registries', () => {
  it('name every method and baseline, and refuse unknown names with the choices', async () => {
    expect(MERGE_METHODS.names()).toEqual(['permute', 'vanilla', 'select']);
    expect(RECOVER_METHODS.names()).toEqual(['none', 'refit', 'refit-seq', 'refit-res', 'finetune']);
    expect(BASELINES.names()).toEqual(['drop-ff', 'drop-layers', 'paper']);
    await expect(compress(BUNDLED, { calibration: TEXT, method: 'magic' })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringMatching(/permute, vanilla/) });
    await expect(compress(BUNDLED, { calibration: TEXT, recover: 'pray' })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(compress(BUNDLED, { calibration: TEXT, baselines: ['drop-everything'] })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(compress(BUNDLED, undefined as never)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
  });

  it("an option of another task, or of another stack layout, is refused before any work", async () => {
    await expect(compress(BUNDLED, { calibration: TEXT, calibrationImages: 10 })).rejects.toMatchObject({ code: 'OPTION_NOT_APPLICABLE', message: expect.stringMatching(/image-classification/) });
    await expect(compress(BUNDLED, { calibration: TEXT, stacks: 'encoder' })).rejects.toMatchObject({ code: 'OPTION_NOT_APPLICABLE' });
    await expect(compress(BUNDLED, { calibration: TEXT, bogus: 1 } as never)).rejects.toMatchObject({ code: 'OPTION_NOT_APPLICABLE', message: expect.stringMatching(/unknown option "bogus"/) });
    await expect(compress(BUNDLED, { calibration: TEXT, format: 'bogus' as never })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
  });
});

describe('baselines on the bundled llama-stories260k', () => {
  jest.setTimeout(300_000);
  it('drop-ff and drop-layers each search their own placements, independently of --method and --anchor', async () => {
    const common = { k: 2, calibration: TEXT, calibrationTokens: 2048, validationTokens: 1024, baselines: ['drop-ff', 'drop-layers'] };
    const a = await compress(BUNDLED, { ...common, method: 'permute' });
    const b = await compress(BUNDLED, { ...common, method: 'vanilla', anchor: 'last' });
    for (const r of [a, b]) {
      const ff = r.baselines['drop-ff']!;
      // one FF sublayer removed (k − 1), at each of the 5 layers; the best by validation kept
      expect(ff.candidates.map((c) => c.windows.decoder)).toEqual(['0', '1', '2', '3', '4']);
      expect(ff.validation).toBeCloseTo(Math.min(...ff.candidates.map((c) => c.score)), 8);
      expect(ff.paramsRemoved).toBe(r.params.removed);
      const layers = r.baselines['drop-layers']!;
      expect(layers.validation).toBeCloseTo(Math.min(...layers.candidates.map((c) => c.score)), 8);
      expect(layers.paramsRemoved).toBeGreaterThan(0);
    }
    expect(b.baselines['drop-ff']).toEqual(a.baselines['drop-ff']);
    expect(b.baselines['drop-layers']).toEqual(a.baselines['drop-layers']);
  });
});

describeShared('data/lm/stories260k-samples-test.jsonl', 'token-id rows ({"input_ids"} JSON Lines)', () => {
  jest.setTimeout(300_000);
  const VALID = sharedPath('data', 'lm', 'stories260k-samples-valid.jsonl');
  const TEST = sharedPath('data', 'lm', 'stories260k-samples-test.jsonl');

  it('are read as they are (one sequence a row), with a token budget and checked ids', async () => {
    const rows = await readTokenRows(TEST);
    expect(rows).toHaveLength(48);
    expect(rows.every((r) => r.length === 256 && r[0] === 1)).toBe(true);
    expect(await readTokenRows(TEST, { maxTokens: 1000 })).toHaveLength(4);
    await expect(readTokenRows(TEST, { vocab: 100 })).rejects.toMatchObject({ code: 'INVALID_DATA' });
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ffmerge-rows-'));
    try {
      fs.writeFileSync(path.join(tmp, 'bad.jsonl'), '{"input_ids": [1, 2, 3]}\n{"input_ids": [1, "x"]}\n');
      await expect(readTokenRows(path.join(tmp, 'bad.jsonl'))).rejects.toMatchObject({ code: 'INVALID_DATA', message: expect.stringMatching(/line 2/) });
    } finally {
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  });

  it('compress takes them for every split; the base perplexity is eval.json\'s', async () => {
    const eval_ = JSON.parse(fs.readFileSync(sharedPath('fixtures', 'llama-stories260k', 'eval.json'), 'utf8')) as { ppl: { valid: number; test: number } };
    const r = await compress(BUNDLED, { method: 'permute', k: 2, window: '0-1', calibration: VALID, calibrationTokens: 2048, validation: VALID, validationTokens: 48 * 256, test: TEST });
    expect(r.data).toMatchObject({ unit: 'tokens', calibration: 2048, validation: 48 * 256, test: 48 * 256 });
    expect(Math.abs(r.base.validation / eval_.ppl.valid - 1)).toBeLessThan(1e-5);
    expect(Math.abs(r.base.test! / eval_.ppl.test - 1)).toBeLessThan(1e-5);
  });
});

describeShared('fixtures/vit-fmnist', 'refit and baselines on vit-fmnist', () => {
  jest.setTimeout(300_000);
  const IMAGES = { images: sharedPath('data', 'fmnist', 'train-images-idx3-ubyte.gz'), labels: sharedPath('data', 'fmnist', 'train-labels-idx1-ubyte.gz') };
  it('run and report for an image classifier', async () => {
    const r = await compress(sharedPath('fixtures', 'vit-fmnist'), { images: IMAGES, k: 3, window: '8-10', recover: 'refit', baselines: ['drop-ff', 'drop-layers'], calibrationImages: 100, validationImages: 200 });
    expect(r.recover).toBe('refit');
    expect(r.baselines['drop-ff']!.candidates).toHaveLength(11); // 2 adjacent FF sublayers of 12
    expect(r.baselines['drop-ff']!.validation).toBe(Math.max(...r.baselines['drop-ff']!.candidates.map((c) => c.score)));
    expect(r.baselines['drop-layers']!.validation).toBe(Math.max(...r.baselines['drop-layers']!.candidates.map((c) => c.score)));
    expect(r.merged.validation).toBeGreaterThan(0.5);
  });
});

describeShared('fixtures/marian-multi30k-en-de', 'refit and baselines on marian, both stacks', () => {
  jest.setTimeout(300_000);
  const m30k = (f: string) => sharedPath('data', 'multi30k', f);
  it('run and report for a translation model', async () => {
    const r = await compress(sharedPath('fixtures', 'marian-multi30k-en-de'), {
      parallel: { source: m30k('val.en.gz'), target: m30k('val.de.gz') },
      window: '4-5',
      recover: 'refit',
      baselines: ['drop-ff', 'drop-layers'],
      calibrationPairs: 100,
      validationSentences: 10,
    });
    expect(r.windows.map((w) => w.stack)).toEqual(['encoder', 'decoder']);
    const ff = r.baselines['drop-ff']!;
    expect(ff.candidates.map((c) => `${c.windows.encoder}/${c.windows.decoder}`)).toEqual(['0/0', '1/1', '2/2', '3/3', '4/4', '5/5']);
    expect(ff.paramsRemoved).toBe(r.params.removed);
    expect(Object.keys(r.baselines['drop-layers']!.windows)).toEqual(['encoder', 'decoder']);
    await expect(compress(sharedPath('fixtures', 'marian-multi30k-en-de'), { parallel: { source: m30k('val.en.gz'), target: m30k('val.de.gz') }, blockSize: 64 })).rejects.toMatchObject({ code: 'OPTION_NOT_APPLICABLE' });
    // a test budget without test data would be ignored: refused before any work, in every task
    await expect(compress(sharedPath('fixtures', 'marian-multi30k-en-de'), { parallel: { source: m30k('val.en.gz'), target: m30k('val.de.gz') }, testSentences: 10 })).rejects.toMatchObject({ code: 'OPTION_NOT_APPLICABLE', message: expect.stringContaining('testSentences') });
    await expect(compress(sharedPath('fixtures', 'vit-fmnist'), { images: { images: sharedPath('data', 'fmnist', 'train-images-idx3-ubyte.gz'), labels: sharedPath('data', 'fmnist', 'train-labels-idx1-ubyte.gz') }, testImages: 10 })).rejects.toMatchObject({ code: 'OPTION_NOT_APPLICABLE', message: expect.stringContaining('testImages') });
  });
});
