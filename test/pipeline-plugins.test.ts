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
import { TASKS } from '../lib/pipeline/tasks';
import { readTokenRows } from '../lib/data/token-rows';
import { loadModel } from '../lib/model/load';
import type { Model } from '../lib/model/model';
import { languageModeling } from '../lib/pipeline/tasks/language-modeling';
import { blocksFrom, makeBatches } from '../lib/pipeline/data';
import { nllOf } from '../lib/pipeline/prefix';
import type { Progress } from '../lib/native/job';
import type { CompressOptions } from '../lib/pipeline/options';
import { describeShared, sharedPath } from './helpers/shared';
import { validationText } from './helpers/validation-text';
import { formatReport } from '../lib/cli/report';

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

  it("the option types offer each registry's names, no more and no fewer", () => {
    // MergeMethodName and the others are editor hints (any string type-checks), so only this keeps them true
    const source = fs.readFileSync(path.join(__dirname, '..', 'lib', 'pipeline', 'options.ts'), 'utf8');
    const literals = (type: string) => [...source.match(new RegExp(`export type ${type} = ([^;]*);`))![1]!.matchAll(/'([^']+)'/g)].map((m) => m[1]);
    expect(literals('MergeMethodName')).toEqual(['auto', ...MERGE_METHODS.names()]);
    expect(literals('RecoverMethodName')).toEqual(RECOVER_METHODS.names());
    expect(literals('BaselineName')).toEqual(BASELINES.names());
    expect(literals('TaskName')).toEqual(TASKS.names());
  });

  it("an option of another task, or of another stack layout, is refused before any work", async () => {
    await expect(compress(BUNDLED, { calibration: TEXT, calibrationImages: 10 })).rejects.toMatchObject({ code: 'OPTION_NOT_APPLICABLE', message: expect.stringMatching(/image-classification/) });
    // every task that reads it (tester FK: one named)
    await expect(compress(BUNDLED, { calibration: TEXT, selectBy: 'loss' })).rejects.toMatchObject({ code: 'OPTION_NOT_APPLICABLE', message: expect.stringMatching(/^selectBy applies to image-classification and translation models; /) });
    await expect(compress(BUNDLED, { calibration: TEXT, stacks: 'encoder' })).rejects.toMatchObject({ code: 'OPTION_NOT_APPLICABLE' });
    await expect(compress(BUNDLED, { calibration: TEXT, bogus: 1 } as never)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringMatching(/unknown option "bogus"/) });
    await expect(compress(BUNDLED, { calibration: TEXT, format: 'bogus' as never })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
  });
});

describe('every recover method on the bundled llama-stories260k', () => {
  it('reports the validation of the model it writes (finetune rewrites the layers before the window too)', async () => {
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ffmerge-recovers-'));
    try {
      for (const recover of RECOVER_METHODS.names()) {
        const out = path.join(tmp, recover);
        const r = await compress(BUNDLED, { calibration: TEXT, validation: validationText(TEXT), k: 2, window: '1-2', method: 'permute', recover, out });
        // trained: the method's word (RecoverMethod.trains), false where finetune kept the untrained merge
        const trained = r.windows.some((w) => w.trained === true);
        expect({ recover, trained }).toEqual({ recover, trained: r.recover === 'finetune' });
        // each window says so, and config.json's record keeps it for a later merge's card (tester FL)
        const recorded = JSON.parse(fs.readFileSync(path.join(out, 'config.json'), 'utf8')).ffmerge.windows;
        expect(recorded.map((w: { trained?: boolean }) => w.trained === true)).toEqual(r.windows.map(() => trained));
        // the written model scored from its embeddings on the same blocks (compress validates on the first 10240 tokens)
        const m = await loadModel(out);
        try {
          const blocks = await blocksFrom(validationText(TEXT), { blockSize: 256, what: 'validation', tokenizerDir: out, maxTokens: 10240 });
          const { sum, count } = await nllOf(m, makeBatches(blocks, 8).map((b) => ({ ids: b.ids, batch: b.batch, seq: b.seq })));
          expect({ recover, validation: r.merged.validation }).toEqual({ recover, validation: expect.closeTo(Math.exp(sum / count), 9) });
        } finally {
          m.dispose();
        }
      }
    } finally {
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  });
});

describe('what compress tells the task before scoring', () => {
  it('one start per candidate scored, 0 for a recover method that rewrites earlier layers', async () => {
    const seen: number[][] = [];
    const create = languageModeling.create.bind(languageModeling);
    const spy = jest.spyOn(languageModeling, 'create').mockImplementation(async (...a) => {
      const task = await create(...a);
      const prepare = task.prepare.bind(task);
      task.prepare = (starts, opts) => (seen.push([...starts]), prepare(starts, opts));
      return task;
    });
    try {
      // 5 layers: windows of 2 start at 0..3; a large model's search budget counts every one of these
      const base = { calibration: TEXT, validation: validationText(TEXT), calibrationTokens: 1024, validationTokens: 1024, k: 2 } as const;
      await compress(BUNDLED, { ...base, method: 'permute', baselines: ['drop-ff'] });
      await compress(BUNDLED, { ...base, method: 'permute', recover: 'finetune' });
      await compress(BUNDLED, base);
    } finally {
      spy.mockRestore();
    }
    // drop-ff removes one FF sublayer (k − 1) at each of the 5 layers
    expect(seen[0]).toEqual([0, 1, 2, 3, 0, 1, 2, 3, 4]);
    expect(seen[1]).toEqual([0, 0, 0, 0]);
    // the default tries three combinations at each window
    expect(seen[2]).toEqual([0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]);
  });
});

describe('the progress compress reports (tester AZ)', () => {
  jest.setTimeout(300_000);
  it("a phase's count never goes back: baselines report candidates, not their merges' own steps; a lone window's fine-tune reports its steps", async () => {
    const base = { calibration: TEXT, validation: validationText(TEXT), calibrationTokens: 1024, validationTokens: 1024, k: 2 } as const;
    const runs: Progress[][] = [];
    const variants: Partial<CompressOptions>[] = [{ method: 'permute', baselines: ['paper', 'drop-ff'] }, { window: '3-4', recover: 'finetune' }, { window: '1-2', baselines: ['paper', 'drop-ff'] }, { window: '1-2', method: 'permute', recover: 'none', baselines: ['paper'] }, { window: '3-4', method: 'permute', recover: 'finetune' }];
    for (const o of variants) {
      const seen: Progress[] = [];
      await compress(BUNDLED, { ...base, ...o, onProgress: (p) => seen.push(p) });
      runs.push(seen);
      // within each run of one phase, done never decreases
      for (let i = 1; i < seen.length; i++) if (seen[i]!.phase === seen[i - 1]!.phase) expect(seen[i]!.done).toBeGreaterThanOrEqual(seen[i - 1]!.done);
    }
    // before: 'permute' 1/3 … 3/3 inside 'baselines', once per paper candidate; 'load' was silent (tester FC: 25 s
    // with no line for a 1.4 GB model loaded whole)
    expect(new Set(runs[0]!.map((p) => p.phase))).toEqual(new Set(['load', 'tokenize', 'features', 'prefix', 'validate', 'search', 'baselines', 'validate-merged']));
    // before: no report while the recover method trained
    const steps = runs[1]!.filter((p) => p.phase === 'finetune');
    expect(steps.length).toBeGreaterThan(0);
    expect(steps.at(-1)).toMatchObject({ done: steps.at(-1)!.total });
    // a given window's merge is shown while it is built, naming it (tester ET: no line for 87 s of a select merge),
    // once: not again for the baselines' placements, nor where its recover trains and shows its steps (tester EZ)
    const merge = runs[3]!.filter((p) => p.phase === 'merge');
    expect(merge).toEqual([{ phase: 'merge', done: 0, total: 1, detail: expect.stringMatching(/1-2/) }, { phase: 'merge', done: 1, total: 1 }]);
    // (a search of several combinations at a given window scores them: 'search', not 'merge')
    for (const run of runs.slice(0, 3)) expect(run.some((p) => p.phase === 'merge')).toBe(false);
    // a lone window whose recover trains (RecoverMethod.trains, kept by the guard compress wraps it in) shows its
    // steps, no 'merge' line before them
    expect(runs[4]!.some((p) => p.phase === 'merge')).toBe(false);
    expect(runs[4]!.some((p) => p.phase === 'finetune')).toBe(true);
    // each training names its window (tester FF: two given windows showed two alike lines)
    for (const p of runs[4]!.filter((x) => x.phase === 'finetune')) expect(p.detail).toMatch(/^decoder 3-4/);
    // every count ends at its total: a placement built, not scored (the paper's at a given window), is not in it
    // (tester EC: "Scoring baselines 10/11")
    for (const seen of runs) {
      for (const phase of ['search', 'baselines']) {
        const last = seen.filter((p) => p.phase === phase).at(-1);
        if (last) expect(last.done).toBe(last.total);
      }
    }
  });
});

describe('baselines on the bundled llama-stories260k', () => {
  jest.setTimeout(300_000);
  it('drop-ff and drop-layers each search their own placements, independently of --method and --anchor', async () => {
    const common = { k: 2, calibration: TEXT, calibrationTokens: 2048, validationTokens: 1024, baselines: ['drop-ff', 'drop-layers'] };
    const a = await compress(BUNDLED, { ...common, method: 'permute' });
    const b = await compress(BUNDLED, { ...common, method: 'vanilla' });
    const c = await compress(BUNDLED, { ...common, method: 'permute', anchor: 'last' });
    for (const r of [a, b, c]) {
      const ff = r.baselines['drop-ff']!;
      // one FF sublayer removed (k − 1), at each of the 5 layers; the best by validation kept
      expect(ff.candidates.map((c) => c.windows.decoder)).toEqual(['0', '1', '2', '3', '4']);
      expect(ff.validation).toBeCloseTo(Math.min(...ff.candidates.map((c) => c.score)), 8);
      expect(ff.paramsRemoved).toBe(r.params.removed);
      const layers = r.baselines['drop-layers']!;
      expect(layers.validation).toBeCloseTo(Math.min(...layers.candidates.map((c) => c.score)), 8);
      expect(layers.paramsRemoved).toBeGreaterThan(0);
      // each baseline that beats the merge kept on validation is said to in the notes, and only those (tester EC)
      const beating = Object.entries(r.baselines).filter(([, x]) => x.validation < r.merged.validation).map(([n]) => n);
      expect(r.data.notes.filter((n) => / scores better on validation than the merge kept: perplexity /.test(n)).map((n) => n.split(' ')[1])).toEqual(beating);
    }
    // drop-ff beats the paper's merge on the bundled model: the case is met
    expect(a.data.notes).toContainEqual(expect.stringMatching(/^baseline drop-ff \(33,024 params removed\) scores better on validation than the merge kept: perplexity \d/));
    expect(b.baselines['drop-ff']).toEqual(a.baselines['drop-ff']);
    expect(b.baselines['drop-layers']).toEqual(a.baselines['drop-layers']);
    expect(c.baselines['drop-ff']).toEqual(a.baselines['drop-ff']);
    expect(c.baselines['drop-layers']).toEqual(a.baselines['drop-layers']);
  });
});

describe('search tokens on the bundled llama-stories260k', () => {
  jest.setTimeout(300_000);
  const common = { method: 'permute', recover: 'none', k: 2, calibration: TEXT, calibrationTokens: 2048 } as const;

  it('every candidate is scored on the blocks the budget gives (not on whole batches of 8), and the report says how many', async () => {
    // 2048 validation tokens = 8 blocks of 256 = one batch; a search budget of 512 is 2 of those blocks
    const full = await compress(BUNDLED, { ...common, validationTokens: 2048 });
    const search = await compress(BUNDLED, { ...common, validationTokens: 2048, searchTokens: 512 });
    const small = await compress(BUNDLED, { ...common, validationTokens: 512 });
    expect(search.data).toMatchObject({ validation: 2048, search: 512 });
    expect(full.data.search).toBe(2048);
    const scores = (r: typeof full) => r.candidates.map((c) => c.score);
    // the same two blocks as a run validating on 512 tokens, in the same batches: the same scores, bit for bit
    expect(scores(search)).toEqual(scores(small));
    expect(scores(search).every((v, i) => v !== scores(full)[i])).toBe(true);
    // the chosen window is validated on all 2048 tokens (batched [2 blocks, 6 blocks] instead of [8]: the last bits may differ)
    const chosen = full.candidates.find((c) => c.windows.decoder === search.windows[0]!.window)!;
    expect(search.merged.validation).toBeCloseTo(chosen.score, 9);
  });

  describe('a task on its own', () => {
    let model: Model;
    beforeAll(async () => {
      model = await loadModel(BUNDLED);
    });
    afterAll(() => model.dispose());

    it('a budget between blocks takes whole blocks, at least one', async () => {
      for (const [searchTokens, search] of [[600, 512], [100, 256], [5000, 2048]] as const) {
        const task = await languageModeling.create({ model, dir: BUNDLED, options: { calibration: TEXT, calibrationTokens: 1024, validationTokens: 2048, searchTokens } }, {});
        expect(task.data.search).toBe(search);
        await task.dispose?.();
      }
    });

    it("a large model's own search budget is rounded up to whole batches, and the report gives the tokens scored", async () => {
      // The bundled model posing as a large one (layerParams ≥ 1e9 through headDim, which forward does not read).
      const big = Object.create(model, { spec: { value: { ...model.spec, headDim: 1e7 } } }) as Model;
      const options = { calibration: TEXT, calibrationTokens: 1024, validationTokens: 12 * 128, blockSize: 128, batchBlocks: 4 };
      const task = await languageModeling.create({ model: big, dir: BUNDLED, options }, {});
      // 8 starts from layer 0: 8 passes per token, so 4 passes = half of the 12 blocks = 6, rounded up to 2 batches of 4
      await task.prepare([0, 0, 0, 0, 0, 0, 0, 0], {});
      expect(task.data.search).toBe(8 * 128);
      expect(task.data.notes).toContain('search: the first 1,024 validation tokens (a large model: about 4 validation passes in all)');
      // and those 8 blocks are what a candidate is scored on: the base model's perplexity on the first 8, not 6
      const onFirst = async (blocks: number) => {
        const t = await languageModeling.create({ model, dir: BUNDLED, options: { ...options, validationTokens: blocks * 128 } }, {});
        return t.validate(model, 0, {});
      };
      const searched = await task.search(big, 0, {});
      expect(searched).toBeCloseTo(await onFirst(8), 9);
      expect(Math.abs(searched - (await onFirst(6)))).toBeGreaterThan(1e-6);
      await task.dispose?.();
    });
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
      // a text row after token-id rows: before, '"input_ids" must be a list' for a row that has none
      fs.writeFileSync(path.join(tmp, 'mixed.jsonl'), '{"input_ids": [1, 2, 3]}\n{"text": "once upon a time"}\n');
      await expect(readTokenRows(path.join(tmp, 'mixed.jsonl'))).rejects.toMatchObject({ code: 'INVALID_DATA', message: expect.stringMatching(/line 2 has no "input_ids", though the file's first row does/) });
    } finally {
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  });

  it('compress takes them for every split; the base perplexity is eval.json\'s', async () => {
    const eval_ = JSON.parse(fs.readFileSync(sharedPath('fixtures', 'llama-stories260k', 'eval.json'), 'utf8')) as { ppl: { valid: number; test: number } };
    // calibrated on blocks of the bundled calibration text, used as they are, so nothing is cut at a block size
    // (that text was cut from the validation rows: its first 2048 tokens are 8 of them, which the report notes)
    // (copied: the tokenizer's worker hands back arrays of Node's realm, which jest's Int32Array does not own)
    const calibration = (await blocksFrom(TEXT, { blockSize: 256, what: 'calibration', tokenizerDir: BUNDLED, maxTokens: 2048 })).map((b) => Int32Array.from(b));
    const r = await compress(BUNDLED, { method: 'permute', k: 2, window: '0-1', calibration, calibrationTokens: 2048, validation: VALID, validationTokens: 48 * 256, test: TEST });
    expect(r.data).toMatchObject({ unit: 'tokens', calibration: 2048, validation: 48 * 256, test: 48 * 256 });
    expect(r.data.blockSize).toBeUndefined(); // nothing was cut into blocks
    expect(r.data.notes).toContainEqual(expect.stringMatching(/^8 of the 48 validation blocks \(2,048 of 12,288 tokens\) repeat text of the calibration blocks/));
    expect(Math.abs(r.base.validation / eval_.ppl.valid - 1)).toBeLessThan(1e-5);
    expect(Math.abs(r.base.test! / eval_.ppl.test - 1)).toBeLessThan(1e-5);
  });

  it('a blockSize with nothing to cut is refused, not ignored; with text beside the rows it cuts the text only, and the report says so', async () => {
    const common = { method: 'permute', k: 2, window: '0-1', calibrationTokens: 1024, validationTokens: 1024, blockSize: 128 } as const;
    await expect(compress(BUNDLED, { ...common, calibration: VALID })).rejects.toMatchObject({
      code: 'OPTION_NOT_APPLICABLE',
      message: `blockSize (--block-size) cuts text into blocks; calibration file ${VALID} holds token-id rows, each used as it is: give no blockSize`,
    });
    await expect(compress(BUNDLED, { ...common, calibration: VALID, validation: VALID, test: TEST })).rejects.toMatchObject({ code: 'OPTION_NOT_APPLICABLE', message: expect.stringContaining(`test file ${TEST} holds`) });
    // blocks already cut are used as they are too
    const rows = await readTokenRows(VALID, { maxTokens: 2048 });
    await expect(compress(BUNDLED, { ...common, calibration: rows })).rejects.toMatchObject({ code: 'OPTION_NOT_APPLICABLE', message: expect.stringContaining('calibration given as token blocks already cut') });
    // text calibration in blocks of 128, validation rows of 256 as they are
    const model = await loadModel(BUNDLED);
    try {
      // the test rows: the bundled calibration text was cut from the validation rows (refused beside them)
      const task = await languageModeling.create({ model, dir: BUNDLED, options: { calibration: TEXT, validation: TEST, calibrationTokens: 1024, validationTokens: 1024, blockSize: 128 } }, {});
      expect(task.calibration.every((b) => (b.input as { seq: number }).seq === 128)).toBe(true);
      expect(task.data.blockSize).toBe(128);
      expect(task.data.notes).toEqual([`validation: used as it is, not cut into blocks of 128 (file ${TEST} holds token-id rows)`]);
      const val = await languageModeling.create({ model, dir: BUNDLED, options: { calibration: TEST, validation: TEXT, calibrationTokens: 1024, validationTokens: 1024 } }, {});
      expect(val.data.blockSize).toBe(256); // the default, cutting the validation text
      expect(val.data.notes).toEqual([`calibration: used as it is, not cut into blocks of 256 (file ${TEST} holds token-id rows)`]);
      // beside sampled calibration, with no block size given, rows are not said to be "not cut" (tester EC)
      const sampled = await languageModeling.create({ model, dir: BUNDLED, options: { calibration: { sample: {} }, validation: VALID, calibrationTokens: 512, validationTokens: 1024 } }, {});
      expect(sampled.data.notes.filter((n) => n.includes('used as it is'))).toEqual([]);
      // a budget past the data takes all of it, and the notes say so (before: only the count told)
      const all = await languageModeling.create({ model, dir: BUNDLED, options: { calibration: TEXT, validation: TEST, calibrationTokens: 1024, validationTokens: 1e6 } }, {});
      expect(all.data.validation).toBe(48 * 256);
      expect(all.data.notes).toContain('validation: all 12,288 tokens the data holds, fewer than the 1,000,000 its budget asks');
      expect(all.data.notes.join()).not.toMatch(/^calibration: all/);
    } finally {
      model.dispose();
    }
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

  it("recover 'finetune', which trains no translation model, is refused before any work (tester ED: after 40 s of calibration)", async () => {
    const phases: string[] = [];
    await expect(
      compress(sharedPath('fixtures', 'marian-multi30k-en-de'), { parallel: { source: m30k('val.en.gz'), target: m30k('val.de.gz') }, recover: 'finetune', onProgress: (p) => void phases.push(p.phase) }),
    ).rejects.toMatchObject({ code: 'UNSUPPORTED_ARCHITECTURE', message: "recover method 'finetune' recovers language-modeling and image-classification models; marian is compressed as translation" });
    expect(phases).toEqual([]);
  });
});

describe('the phases timed', () => {
  jest.setTimeout(120_000);
  it("name 'prefix' only where states were kept (tester FI: \"prefix 0.00 s\" for candidates all starting at layer 0)", async () => {
    const base = { calibration: TEXT, validation: validationText(TEXT), calibrationTokens: 512, validationTokens: 512, method: 'permute', recover: 'none' } as const;
    expect(Object.keys((await compress(BUNDLED, { ...base, baselines: [], window: '0-1' })).timings)).not.toContain('prefix');
    expect(Object.keys((await compress(BUNDLED, { ...base, baselines: [], window: '2-3' })).timings)).toContain('prefix');
  });
});

describe('a fraction that rounds', () => {
  jest.setTimeout(120_000);
  it('is said in the notes with what it became (tester FD: 0.1 of 5 layers removed 20 %, unsaid); an exact one is not', async () => {
    const base = { calibration: TEXT, validation: validationText(TEXT), calibrationTokens: 512, validationTokens: 512, window: '1-2', method: 'permute', recover: 'none' } as const;
    const rounded = await compress(BUNDLED, { ...base, baselines: [], fraction: 0.1 });
    expect(rounded.data.notes).toContain('fraction 0.1 of 5 layers is 0.5 FF sublayers, rounded to 1 (k = 2): 20% of the FF sublayers go');
    const exact = await compress(BUNDLED, { ...base, baselines: [], fraction: 0.2 });
    expect(exact.data.notes.some((n) => n.startsWith('fraction'))).toBe(false);
  });
});

describe('calibration a run did not read', () => {
  jest.setTimeout(120_000);
  it('is said as not used in the summary and the card (tester FD: "calibration: 2,048 tokens" for a vanilla merge at a given window)', async () => {
    const out = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'ffmerge-calib-unused-')), 'out');
    try {
      const base = { calibration: TEXT, validation: validationText(TEXT), calibrationTokens: 512, validationTokens: 512, window: '1-2', recover: 'none' } as const;
      const vanilla = await compress(BUNDLED, { ...base, method: 'vanilla', baselines: [], out });
      expect(vanilla.data.calibrationFeatures).toEqual({});
      expect(formatReport(vanilla)).toMatch(/data {6}calibration not used, validation 512/);
      expect(fs.readFileSync(path.join(out, 'README.md'), 'utf8')).toContain('- calibration: none used (`vanilla` with recover `none` reads no features); validation: 512 tokens');
      expect(vanilla.data.calibrationRead).toBe(false);
      // sampled calibration such a run would not read is refused before it is made (tester FG: 10,200 tokens
      // sampled, then "not used")
      await expect(compress(BUNDLED, { ...base, calibration: { sample: {} }, validation: TEXT, method: 'vanilla', baselines: [] })).rejects.toMatchObject({ code: 'OPTION_NOT_APPLICABLE', message: expect.stringContaining('is read by no part of this run') });
      // a permute merge reads it, and so does select, which fits on it with no features (tester FF: "not used")
      for (const method of ['permute', 'select'] as const) {
        const r = await compress(BUNDLED, { ...base, method, baselines: [] });
        expect(r.data.calibrationRead).toBe(true);
        expect(formatReport(r)).toMatch(/data {6}calibration 512 tokens, validation 512/);
      }
    } finally {
      fs.rmSync(path.dirname(out), { recursive: true, force: true });
    }
  });
});

describe("seed (tester FB: the CLI could not change any of compress's random draws)", () => {
  jest.setTimeout(120_000);
  it("seeds draw spread's order (1, the default's, gives the default's run), and is refused where nothing is drawn", async () => {
    const base = { calibration: TEXT, calibrationTokens: 1024, validationTokens: 1024, blockSize: 64, window: '1-2', method: 'permute', recover: 'none', draw: 'spread' } as const;
    const plain = await compress(BUNDLED, { ...base, baselines: [] });
    const one = await compress(BUNDLED, { ...base, baselines: [], seed: 1 });
    const seven = await compress(BUNDLED, { ...base, baselines: [], seed: 7 });
    expect(one.merged.validation).toBe(plain.merged.validation);
    expect(seven.merged.validation).not.toBe(plain.merged.validation);
    expect(seven.data.notes.join('\n')).toContain('seeded order, seed 7');
    expect(seven.data.notes).toContain("seed 7 (--seed): draw spread's order");
    // recover finetune draws its batches: the seed is accepted and recorded (tester FF: recorded nowhere)
    const tuned = await compress(BUNDLED, { ...base, draw: 'head', recover: 'finetune', baselines: [], seed: 7 });
    expect(tuned.data.notes).toContain("seed 7 (--seed): finetune's draws");
    await expect(compress(BUNDLED, { ...base, baselines: [], draw: 'head', seed: 7 })).rejects.toMatchObject({ code: 'OPTION_NOT_APPLICABLE', message: expect.stringContaining('this run makes none of them') });
    await expect(compress(BUNDLED, { ...base, baselines: [], seed: -1 })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringContaining('seed must be an integer in [0, 2^32)') });
  });
});
