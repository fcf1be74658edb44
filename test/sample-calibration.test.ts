/**
 * Where a language model's calibration comes from, on the bundled llama-stories260k:
 *  - sampled from the model itself (lib/eval/sample.ts, compress({ calibration: { sample } })): seeded rows, the
 *    model's own next-token distribution, greedy at a temperature near 0, compress calibrating on samples while
 *    validating on text;
 *  - drawn across the whole file (draw: 'spread'): blocks from everywhere in the file in a fixed order, the
 *    test split untouched.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { sampleRows, samplingGroup, type SampleOptions } from '../lib/eval/sample';
import { sampleRowsReference } from './reference/sample';
import { removeSyntheticDirs, syntheticGpt2, syntheticLlama } from './helpers/synthetic-model';
import { greedy } from '../lib/eval/generate';
import { loadModel } from '../lib/model/load';
import type { Model } from '../lib/model/model';
import { compress } from '../lib/pipeline/compress';
import { languageModeling } from '../lib/pipeline/tasks/language-modeling';
import { validationText } from './helpers/validation-text';
import { cutBlocks } from '../lib/data/blocks';
import { tokenizeFile } from '../lib/data/tokenize-file';
import { seededOrder } from '../lib/data/shuffle';
import { main } from '../lib/cli/main';

const BUNDLED = path.join(__dirname, '..', 'models', 'llama-stories260k');
let model: Model;
beforeAll(async () => {
  model = await loadModel(BUNDLED);
});
afterAll(() => model.dispose());

test('rows start with the start token, have the asked length and stay in the vocabulary; the seed fixes them', async () => {
  const a = await sampleRows(model, { rows: 3, length: 12, startToken: 1, seed: 7 });
  const b = await sampleRows(model, { rows: 3, length: 12, startToken: 1, seed: 7 });
  const c = await sampleRows(model, { rows: 3, length: 12, startToken: 1, seed: 8 });
  expect(a.map((r) => r.length)).toEqual([12, 12, 12]);
  for (const r of a) {
    expect(r[0]).toBe(1);
    for (const t of r) expect(t >= 0 && t < model.spec.vocab).toBe(true);
  }
  expect(a.map((r) => Array.from(r))).toEqual(b.map((r) => Array.from(r)));
  expect(a.map((r) => Array.from(r))).not.toEqual(c.map((r) => Array.from(r)));
});

describe('the native sampler (one job on a KV cache) against its oracle (every prefix rerun, test/reference/sample.ts)', () => {
  afterAll(removeSyntheticDirs);
  const same = async (m: Model, o: Omit<SampleOptions, 'startToken'> & { startToken?: number }) => {
    const opts = { startToken: 1, ...o };
    const got = await sampleRows(m, opts);
    const want = await sampleRowsReference(m, opts);
    expect(got.map((r) => Array.from(r))).toEqual(want.map((r) => Array.from(r)));
    return got;
  };
  test('the bundled llama: the same rows for odd sizes, seeds and temperatures', async () => {
    await same(model, { rows: 5, length: 37, seed: 11, temperature: 0.8 });
    await same(model, { rows: 3, length: 12, seed: 7 });
  });
  test('rows in more than one group (a large vocabulary), GQA, biases', async () => {
    const s = await syntheticLlama({ vocab: 40000, d: 8, heads: 2, kvHeads: 1, ff: 12, layers: 2, seed: 5 });
    const m = await loadModel(s.dir);
    try {
      // 40 tokens × 40000 logits: 20 rows a group, so 23 rows are two groups
      expect(samplingGroup(m, { rows: 23, length: 40, startToken: 1 })).toBe(20);
      await same(m, { rows: 23, length: 40, seed: 2, temperature: 1.3 });
    } finally {
      m.dispose();
    }
  });
  test('sliding-window attention (qwen2) and learned positions (gpt2)', async () => {
    for (const s of [
      await syntheticLlama({ family: 'qwen2', layers: 2, seed: 33, config: { use_sliding_window: true, sliding_window: 4, max_window_layers: 1 } }),
      await syntheticGpt2({ positions: 16, seed: 9 }),
    ]) {
      const m = await loadModel(s.dir);
      try {
        await same(m, { rows: 3, length: m.spec.maxPositions === 16 ? 16 : 30, seed: 4 });
      } finally {
        m.dispose();
      }
    }
  });
  test('the signal stops it (ABORTED); progress counts the sampled tokens', async () => {
    const ac = new AbortController();
    const seen: number[] = [];
    await expect(
      sampleRows(model, { rows: 40, length: 256, startToken: 1, signal: ac.signal, onProgress: (p) => (seen.push(p.done), ac.abort()) }),
    ).rejects.toMatchObject({ code: 'ABORTED' });
    expect(seen.length).toBeGreaterThan(0);
    const all: number[] = [];
    await sampleRows(model, { rows: 2, length: 8, startToken: 1, onProgress: (p) => (expect(p).toMatchObject({ phase: 'sample', total: 14 }), all.push(p.done)) });
    expect(all.at(-1)).toBe(14);
  });
});

test('at a temperature near 0 every row is the greedy continuation', async () => {
  const rows = await sampleRows(model, { rows: 2, length: 16, startToken: 1, temperature: 1e-4 });
  const g = await greedy(model, [1], 15);
  for (const r of rows) expect(Array.from(r)).toEqual(Array.from(g));
});

test("the first sampled token follows the model's softmax (600 rows, every frequent token within 4.5 standard errors)", async () => {
  const n = 600;
  const rows = await sampleRows(model, { rows: n, length: 2, startToken: 1, seed: 3 });
  const V = model.spec.vocab;
  const logits = (await model.forward({ ids: Int32Array.from([1]), batch: 1, seq: 1 }, { output: 'logits' })).logits;
  const max = Math.max(...logits);
  const e = Array.from(logits, (v) => Math.exp(v - max));
  const z = e.reduce((s, v) => s + v, 0);
  const counts = new Array<number>(V).fill(0);
  for (const r of rows) counts[r[1]!]!++;
  let checked = 0;
  for (let j = 0; j < V; j++) {
    const p = e[j]! / z;
    if (p < 0.02) continue;
    checked++;
    const se = Math.sqrt((p * (1 - p)) / n);
    expect(Math.abs(counts[j]! / n - p)).toBeLessThan(4.5 * se);
  }
  expect(checked).toBeGreaterThan(0);
});

test('bad sampling options and a model without a start token are refused with INVALID_ARGUMENT', async () => {
  await expect(sampleRows(model, { rows: 1, length: 4, startToken: 1, temperature: 0 })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
  await expect(sampleRows(model, { rows: 1, length: 1, startToken: 1 })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
  await expect(sampleRows(model, { rows: 1, length: 4, startToken: model.spec.vocab })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
  const calibration = { sample: {} };
  // no validation: nothing to choose the window on
  await expect(compress(BUNDLED, { k: 2, calibration })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
  await expect(compress(BUNDLED, { k: 2, calibration: { sample: { temperature: -1 } }, validation: path.join(BUNDLED, 'calibration.txt') })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
  const noBos = fs.mkdtempSync(path.join(os.tmpdir(), 'ffmerge-nobos-'));
  try {
    fs.cpSync(BUNDLED, noBos, { recursive: true });
    const config = JSON.parse(fs.readFileSync(path.join(noBos, 'config.json'), 'utf8')) as Record<string, unknown>;
    delete config.bos_token_id;
    fs.writeFileSync(path.join(noBos, 'config.json'), JSON.stringify(config));
    await expect(compress(noBos, { k: 2, calibration, validation: path.join(BUNDLED, 'calibration.txt') })).rejects.toThrow(/bos_token_id/);
    // one outside the vocabulary is named as config.json's (tester AV: "the start token 151643" named no key)
    fs.writeFileSync(path.join(noBos, 'config.json'), JSON.stringify({ ...config, bos_token_id: 151643 }));
    await expect(compress(noBos, { k: 2, calibration, validation: path.join(BUNDLED, 'calibration.txt') })).rejects.toMatchObject({
      code: 'INVALID_CONFIG',
      message: expect.stringContaining("config.json's bos_token_id 151643, which is not in the model's vocabulary (512 tokens)"),
    });
  } finally {
    fs.rmSync(noBos, { recursive: true, force: true });
  }
});

test('aborting stops the sampling', async () => {
  const ac = new AbortController();
  const p = sampleRows(model, { rows: 4, length: 200, startToken: 1, signal: ac.signal, onProgress: () => ac.abort() });
  await expect(p).rejects.toMatchObject({ code: 'ABORTED' });
});

test('compress calibrates on samples and validates on the text; the report says so', async () => {
  const stages = new Set<string>();
  const r = await compress(BUNDLED, {
    method: 'permute',
    k: 2,
    window: '0-1',
    calibration: { sample: { seed: 5 } },
    calibrationTokens: 1024,
    validation: path.join(BUNDLED, 'calibration.txt'),
    validationTokens: 1024,
    blockSize: 128,
    onProgress: (p) => stages.add(p.phase),
  });
  expect(stages.has('sample')).toBe(true);
  expect(r.data.calibration).toBe(1024);
  expect(r.data.validation).toBe(1024);
  expect(r.data.notes.join('; ')).toMatch(/sampled from the model \(temperature 1, seed 5\)/);
  expect(Number.isFinite(r.merged.validation)).toBe(true);
}, 60_000);

describe("draw: 'spread'", () => {
  const text = path.join(BUNDLED, 'calibration.txt');
  const ids = (blocks: Int32Array[]) => blocks.map((b) => Array.from(b).join(','));
  const calibrationOf = async (draw: 'head' | 'spread', validation?: string) => {
    const options = { calibration: text, ...(validation ? { validation } : {}), test: text, calibrationTokens: 1024, validationTokens: 1024, blockSize: 128, batchBlocks: 1, draw };
    const task = await languageModeling.create({ model, dir: BUNDLED, options }, {});
    try {
      return { blocks: task.calibration.map((b) => (b.input as { ids: Int32Array }).ids), data: task.data };
    } finally {
      await task.dispose?.();
    }
  };

  test('calibration blocks come from across the file in the fixed seeded order; head takes the first; test is read whole', async () => {
    const all = cutBlocks(await tokenizeFile(BUNDLED, text, {}), 128);
    const full = all[all.length - 1]!.length < 128 ? all.slice(0, -1) : all;
    const head = await calibrationOf('head');
    const spread = await calibrationOf('spread');
    expect(ids(head.blocks)).toEqual(ids(all.slice(0, 8)));
    const order = Array.from(seededOrder(full.length, 1));
    expect(ids(spread.blocks)).toEqual(ids(order.slice(0, 8).map((i) => full[i]!)));
    // drawn from the whole file: some block past the head's
    expect(order.slice(0, 8).some((i) => i >= 16)).toBe(true);
    expect(spread.data.test).toBe(all.reduce((n, b) => n + b.length, 0));
    expect(spread.data.notes.join('; ')).toMatch(/drawn across the whole file/);
  });

  test('the notes say what was done, once: validation from the calibration file, or from a file of its own', async () => {
    // validation is the calibration file's next blocks in the drawn order: one note for both, none saying it is
    // "the calibration data after the calibration budget" (that is head's, the file's text after calibration's)
    // (test is the calibration file itself here, create() being called without check(): its repeats are noted apart)
    expect((await calibrationOf('spread')).data.notes.filter((n) => !n.includes('repeat text'))).toEqual([
      'calibration and validation: blocks drawn across the whole file (fixed seeded order)',
      'validation: the blocks after the calibration blocks in that order (disjoint from them)',
    ]);
    expect((await calibrationOf('head')).data.notes.filter((n) => !n.includes('repeat text'))).toEqual(['validation: the calibration data after the calibration budget']);
    // a validation file of its own is drawn on its own: nothing says the two are disjoint
    expect((await calibrationOf('spread', validationText(text))).data.notes.filter((n) => !n.includes('repeat text'))).toEqual([
      'calibration: blocks drawn across the whole file (fixed seeded order)',
      'validation: blocks drawn across the whole file (fixed seeded order)',
    ]);
    expect((await calibrationOf('head', validationText(text))).data.notes.filter((n) => !n.includes('repeat text'))).toEqual([]);
  });

  test('a bad draw is refused: INVALID_ARGUMENT from the library, exit 2 from the CLI', async () => {
    await expect(compress(BUNDLED, { k: 2, calibration: text, draw: 'middle' as 'head' })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    const err = process.stderr.write;
    process.stderr.write = (() => true) as typeof process.stderr.write;
    try {
      expect(await main(['node', 'ffmerge', 'compress', BUNDLED, '--data', text, '--draw', 'middle', '--json'])).toBe(2);
    } finally {
      process.stderr.write = err;
    }
  });
});
