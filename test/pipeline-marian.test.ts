/**
 * compress() on marian-multi30k-en-de (parallel text, greedy BLEU, two stacks).
 *
 * Runtime budget (2 shared cores): calibration = 150–200 val pairs (teacher forcing, ~2.5k features per
 * stack), each candidate translates 20–30 sentences greedily; the whole file stays well under a minute.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { writeCheckpoint, ffReplacements } from '../lib/checkpoint/write';
import { readTies } from '../lib/checkpoint/ties';
import { compress } from '../lib/pipeline/compress';
import { permuteFF } from '../lib/merge/permute';
import { loadModel } from '../lib/model/load';
import { loadTokenizer } from '../lib/tokenizer';
import { readParallel } from '../lib/data/parallel';
import { evaluateTranslation, loadGenerationConfig, translate } from '../lib/eval/translate';
import { referenceBatches, teacherForcedLoss } from '../lib/eval/translation-loss';
import type { StackName } from '../lib/model/model';
import { translation } from '../lib/pipeline/tasks/translation';
import { shuffled } from './helpers/permutation';
import { describeShared, sharedPath } from './helpers/shared';

const FIXTURE = sharedPath('fixtures', 'marian-multi30k-en-de');
const M30K = (f: string) => sharedPath('data', 'multi30k', f);
const VAL = { source: M30K('val.en.gz'), target: M30K('val.de.gz') };
const TEST = { source: M30K('test_2016_flickr.en.gz'), target: M30K('test_2016_flickr.de.gz') };


/** Greedy translations (text) of the first `n` test sentences by the model in `dir`. */
async function translationsOf(dir: string, n = 12): Promise<string[]> {
  const pairs = (await readParallel(TEST.source, TEST.target)).slice(0, n);
  const m = await loadModel(dir);
  try {
    const tok = await loadTokenizer(dir);
    const generation = await loadGenerationConfig(dir, m.config as Record<string, unknown>);
    return (await translate(m, tok, pairs.map((p) => p.source), { generation })).map((t) => t.text);
  } finally {
    m.dispose();
  }
}

describeShared('fixtures/marian-multi30k-en-de', 'compress on marian-multi30k-en-de', () => {
  let tmp: string;
  beforeAll(() => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ffmerge-marian-'));
  });
  afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));
  jest.setTimeout(300_000);

  it('a window of permuted copies in both stacks merges losslessly (translations unchanged); ties name each stack', async () => {
    const base = await loadModel(FIXTURE);
    const config = base.config as Record<string, unknown>;
    const replace = new Map<string, Float32Array>();
    for (const stack of ['encoder', 'decoder'] as StackName[]) {
      const ff1 = base.ffWeights(1, stack);
      for (const [n, t] of ffReplacements(config, stack, 2, permuteFF(ff1, shuffled(512, stack === 'encoder' ? 7 : 11)))) replace.set(n, t);
    }
    base.dispose();
    const copies = path.join(tmp, 'copies');
    await writeCheckpoint({ source: FIXTURE, out: copies, format: 'expanded', replace });

    const out = path.join(tmp, 'copies-merged');
    const r = await compress(copies, { parallel: VAL, method: 'permute', window: '1-2', calibrationPairs: 200, validationSentences: 20, out });
    expect(r.metric).toEqual({ name: 'bleu', higherIsBetter: true, decoding: 'greedy' });
    expect(r.stacks).toBe('both-same');
    expect(r.windows.map((w) => [w.stack, w.window, w.anchor])).toEqual([
      ['encoder', '1-2', 1],
      ['decoder', '1-2', 1],
    ]);
    expect(r.merged.validation).toBeCloseTo(r.base.validation, 10);
    expect(await translationsOf(out)).toEqual(await translationsOf(copies));
    // one stored copy per stack: encoder layer 2 → encoder layer 1, decoder layer 2 → decoder layer 1
    const ties = await readTies(out);
    expect(ties['model.encoder.layers.2.fc1.weight']).toBe('model.encoder.layers.1.fc1.weight');
    expect(ties['model.decoder.layers.2.fc2.bias']).toBe('model.decoder.layers.1.fc2.bias');

    // vanilla averages unaligned units: the copies' function is lost
    const vanilla = await compress(copies, { parallel: VAL, window: '1-2', method: 'vanilla', validationSentences: 20, out: path.join(tmp, 'copies-vanilla') });
    expect(vanilla.merged.validation).not.toBeCloseTo(vanilla.base.validation, 3);
  });

  it('k = 2 auto (same window in both stacks): argmax BLEU chosen; the tied checkpoint reloads, translates, and matches the expanded one', async () => {
    const out = path.join(tmp, 'k2');
    const r = await compress(FIXTURE, { parallel: VAL, method: 'permute', k: 2, calibrationPairs: 150, validationSentences: 30, out });
    expect(r.candidates.map((c) => `${c.windows.encoder}/${c.windows.decoder}`)).toEqual(['0-1/0-1', '1-2/1-2', '2-3/2-3', '3-4/3-4', '4-5/4-5']);
    const best = Math.max(...r.candidates.map((c) => c.score));
    expect(r.merged.validation).toBeCloseTo(best, 10);
    const win = r.candidates.find((c) => c.score === best)!.windows.encoder;
    expect(r.windows.map((w) => w.window)).toEqual([win, win]);
    expect(r.data.calibrationFeatures.encoder).toBeGreaterThan(1000);
    expect(r.data.calibrationFeatures.decoder).toBeGreaterThan(1000);
    expect(r.params.removed).toBe(2 * (512 * 128 + 512 + 128 * 512 + 128));

    // reloads and reproduces the reported validation BLEU (the 30 val pairs after the 150 calibration pairs)
    const m = await loadModel(out);
    const tok = await loadTokenizer(out);
    const generation = await loadGenerationConfig(out, m.config as Record<string, unknown>);
    const val = (await readParallel(VAL.source, VAL.target)).slice(150, 180);
    const again = await evaluateTranslation(m, tok, val, { generation });
    m.dispose();
    expect(again.bleu.score).toBeCloseTo(r.merged.validation, 10);

    const tied = await translationsOf(out, 8);
    expect(tied.every((t) => t.length > 0)).toBe(true);
    const expanded = path.join(tmp, 'k2-expanded');
    await writeCheckpoint({ source: out, out: expanded, format: 'expanded' });
    expect(await translationsOf(expanded, 8)).toEqual(tied);
  });

  it('selectBy loss: candidates ranked by teacher-forced cross-entropy of the references (the lowest chosen), BLEU still reported', async () => {
    const out = path.join(tmp, 'k2-loss');
    const r = await compress(FIXTURE, { parallel: VAL, method: 'permute', k: 2, calibrationPairs: 150, validationSentences: 30, selectBy: 'loss', out });
    expect(r.selection).toEqual({ name: 'loss', higherIsBetter: false });
    const best = Math.min(...r.candidates.map((c) => c.score));
    const win = r.candidates.find((c) => c.score === best)!.windows.encoder;
    expect(r.windows.map((w) => w.window)).toEqual([win, win]);
    // the chosen candidate's score is the loss of the written model on the same 30 pairs, padding masked:
    // scored one pair at a time it is the same
    const m = await loadModel(out);
    const tok = await loadTokenizer(out);
    const generation = await loadGenerationConfig(out, m.config as Record<string, unknown>);
    const val = (await readParallel(VAL.source, VAL.target)).slice(150, 180);
    const o = { decoderStartTokenId: generation.decoderStartTokenId, padTokenId: generation.padTokenId };
    let sum = 0;
    let count = 0;
    for (const p of val) {
      const f = await m.forward(referenceBatches([p], tok, o).batches[0]!, { output: 'nll' });
      sum += f.nllSum;
      count += f.nllCount;
    }
    expect(sum / count).toBeCloseTo(best, 4);
    expect(await teacherForcedLoss(m, referenceBatches(val, tok, { ...o, batchSize: 7 }).batches)).toBeCloseTo(best, 4);
    const again = await evaluateTranslation(m, tok, val, { generation });
    m.dispose();
    expect(again.bleu.score).toBeCloseTo(r.merged.validation, 10);
  });

  it('pairs longer than the model\'s positions are cut to them, and the task\'s notes count them per split', async () => {
    const long = 'A man in a blue shirt is standing on a ladder cleaning windows. '.repeat(20).trim();
    const pairs = (await readParallel(VAL.source, VAL.target)).slice(0, 8);
    const tsv = path.join(tmp, 'long.tsv');
    const rows = [...pairs.slice(0, 3), { source: long, target: 'x' }, ...pairs.slice(3), { source: long, target: long }, { source: 'a dog.', target: long }];
    fs.writeFileSync(tsv, rows.map((p) => `${p.source}\t${p.target}\n`).join(''));
    const model = await loadModel(FIXTURE);
    try {
      const task = await translation.create({ model, dir: FIXTURE, options: { parallel: { tsv }, calibrationPairs: 5 } }, {});
      expect(task.calibration.map((b) => b.input.encoderSeq)).toEqual([128]);
      expect(task.data.notes).toEqual([
        'validation: 6 of 6 pairs after the calibration ones',
        "calibration pairs: 1 of 5 longer than the model's positions (128 source, 128 target tokens), cut to them",
        "validation pairs: 1 of 6 longer than the model's positions (128 source, 128 target tokens), cut to them",
      ]);
      // ranked by loss, the references are cut too (the last pair's target): 2 of 6
      const byLoss = await translation.create({ model, dir: FIXTURE, options: { parallel: { tsv }, calibrationPairs: 5, selectBy: 'loss' } }, {});
      expect(byLoss.data.notes[2]).toMatch(/^validation pairs: 2 of 6 /);
      // a test split cut by its size says it is the first of more (tester CH: "test: 200 sentences" alone)
      const withTest = await translation.create({ model, dir: FIXTURE, options: { parallel: { tsv }, calibrationPairs: 5, test: { tsv }, testSentences: 4 } }, {});
      expect(withTest.data.notes).toContain('test: the first 4 of 11 test pairs');
    } finally {
      model.dispose();
    }
  });

  it('independent: each stack searched with the other unmerged, the two best combined', async () => {
    const r = await compress(FIXTURE, { parallel: VAL, method: 'permute', k: 3, stacks: 'independent', calibrationPairs: 150, validationSentences: 20 });
    for (const stack of ['encoder', 'decoder'] as StackName[]) {
      const mine = r.candidates.filter((c) => Object.keys(c.windows).join() === stack);
      expect(mine).toHaveLength(4);
      const best = mine.reduce((a, b) => (b.score > a.score ? b : a));
      expect(r.windows.find((w) => w.stack === stack)!.window).toBe(best.windows[stack]);
    }
  });

  it('refit-res on the post-norm stacks runs refit-seq and records refit-seq (a tester saw refit-res recorded)', async () => {
    const asked = await compress(FIXTURE, { parallel: VAL, method: 'permute', recover: 'refit-res', window: '3-4', calibrationPairs: 100, validationSentences: 10 });
    const seq = await compress(FIXTURE, { parallel: VAL, method: 'permute', recover: 'refit-seq', window: '3-4', calibrationPairs: 100, validationSentences: 10 });
    expect(asked.recover).toBe('refit-seq');
    expect(asked.windows.map((w) => w.recover)).toEqual(['refit-seq', 'refit-seq']);
    expect(asked.merged.validation).toBe(seq.merged.validation);
  });

  it('encoder only; misaligned or missing data is a typed error', async () => {
    const r = await compress(FIXTURE, { parallel: VAL, method: 'permute', window: '3-4', stacks: 'encoder', calibrationPairs: 100, validationSentences: 10 });
    expect(r.windows.map((w) => w.stack)).toEqual(['encoder']);
    expect(r.params.removed).toBe(512 * 128 + 512 + 128 * 512 + 128);
    await expect(compress(FIXTURE, { parallel: { source: TEST.source, target: VAL.target }, k: 2 })).rejects.toMatchObject({ code: 'INVALID_DATA' });
    await expect(compress(FIXTURE, { parallel: { tsv: path.join(tmp, 'none.tsv') }, k: 2 })).rejects.toMatchObject({ code: 'DATA_NOT_FOUND' });
    await expect(compress(FIXTURE, { parallel: VAL, method: 'permute', k: 2, stacks: 'both' as never })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
  });
});
