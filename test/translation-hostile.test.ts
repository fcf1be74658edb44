/**
 * The translation (Marian) path on data and settings a tester found handled wrongly: a line of half a million
 * characters (the tokenizer library overflowed its stack), beam search labelled "greedy BLEU", sizes larger
 * than the data cut silently, --stacks independent with a given window run as both-same, and the summary's and
 * card's wording (selection metric, unlabelled stacks, "tied checkpoint" for other formats, "1 sources").
 * Small budgets: the machine has 2 shared cores.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { expectCode } from './helpers/expect-code';
import { compress } from '../lib/pipeline/compress';
import { loadModel } from '../lib/model/load';
import { loadTokenizer } from '../lib/tokenizer';
import { readParallel } from '../lib/data/parallel';
import { evaluateTranslation } from '../lib/eval/translate';
import { formatReport } from '../lib/cli/report';
import { modelCard } from '../lib/pipeline/model-card';
import type { CompressResult } from '../lib/pipeline/result';
import { describeShared, sharedPath } from './helpers/shared';

const FIXTURE = sharedPath('fixtures', 'marian-multi30k-en-de');
const M30K = (f: string) => sharedPath('data', 'multi30k', f);
const BIN = path.resolve(__dirname, '..', 'bin', 'ffmerge.js');

/** A compress result on marian as the summary and the card read it (no model run). */
const result = (over: Partial<CompressResult> = {}): CompressResult => ({
  model: '/models/marian-base',
  modelType: 'marian',
  task: 'translation',
  metric: { name: 'bleu', higherIsBetter: true, decoding: 'greedy' } as CompressResult['metric'],
  layers: { encoder: 6, decoder: 6 },
  k: 2,
  method: 'permute',
  anchor: 'first',
  recover: 'none',
  stacks: 'independent',
  windows: [
    { stack: 'encoder', window: '1-2', layers: [1, 2], anchor: 1, method: 'permute', recover: 'none' },
    { stack: 'decoder', window: '3-4', layers: [3, 4], anchor: 3, method: 'permute', recover: 'none' },
  ],
  candidates: [
    { windows: { encoder: '0-1' }, start: 0, score: 30.1 },
    { windows: { encoder: '1-2' }, start: 1, score: 31.2 },
    { windows: { decoder: '0-1' }, start: 0, score: 29.5 },
    { windows: { decoder: '3-4' }, start: 3, score: 30.7 },
  ],
  windowsGiven: false,
  base: { validation: 33.1 },
  merged: { validation: 31.0 },
  baselines: {},
  params: { before: 2_000_000, after: 1_700_000, removed: 300_000, fraction: 0.15 },
  bytes: { before: 8_000_000, after: 6_800_000, removed: 1_200_000, fraction: 0.15 },
  data: { unit: 'sentences', calibration: 100, validation: 20, search: 20, notes: [], calibrationFeatures: { encoder: 1, decoder: 1 } },
  timings: {},
  ...over,
});

describe('summary and card wording', () => {
  test('independent: each candidate of the window table names its stack', () => {
    const text = formatReport(result());
    const table = text.slice(text.indexOf('window search'));
    expect(table).toMatch(/encoder 0-1 +30\.10/);
    expect(table).toMatch(/decoder 3-4 +30\.70 +← chosen/);
    // the merged row names its stacks as the baselines' rows do (tester Z: "3-4, 1-2" with no stack)
    expect(text).toMatch(/merged \(permute\).*encoder \S+ \+ decoder 3-4\n/);
  });

  test('bytes are "in the tied checkpoint" only when a tied one was written', () => {
    expect(formatReport(result({ out: { dir: '/o', format: 'tied', bytes: 1 } }))).toContain('in the tied checkpoint');
    for (const format of ['expanded', 'onnx'] as const) {
      const text = formatReport(result({ out: { dir: '/o', format, bytes: 1 } }));
      expect(text).not.toContain('tied checkpoint');
      expect(text).toContain('(15.0%) in the tied form');
    }
  });

  test('BLEU names its decoding in the summary and the card; a report without one says just BLEU', () => {
    const beams = result({ metric: { name: 'bleu', higherIsBetter: true, decoding: 'beam search, 4 beams' } as CompressResult['metric'] });
    expect(formatReport(beams)).toContain('BLEU (beam search, 4 beams), higher is better:');
    const card = modelCard(beams, 'tied', { dir: '/o', config: { model_type: 'marian' } });
    expect(card).toContain('BLEU (beam search, 4 beams) (higher is better)');
    expect(card).not.toContain('greedy');
    const old = modelCard(result({ metric: { name: 'bleu', higherIsBetter: true } }), 'tied', { dir: '/o', config: { model_type: 'marian' } });
    expect(old).toContain('\nBLEU (higher is better):');
    expect(old).not.toContain('greedy');
  });

  test('a search ranked by validation loss says so in the card', () => {
    const card = modelCard(result({ selection: { name: 'loss', higherIsBetter: false } }), 'tied', { dir: '/o', config: { model_type: 'marian' } });
    expect(card).toMatch(/chosen by: searching 4 candidates \(windows\) on validation loss \(lower is better\); the table below gives BLEU \(greedy\)/);
    expect(card).not.toMatch(/on validation (greedy )?BLEU/);
  });
});

describeShared('fixtures/marian-multi30k-en-de', 'translation on hostile data and settings', () => {
  let tmp: string;
  let tsv100: string;
  /** 100 other pairs: a validation or test corpus (the calibration file again would be refused as overlap). */
  let other100: string;
  beforeAll(async () => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ffmerge-mt-hostile-'));
    const pairs = await readParallel(M30K('val.en.gz'), M30K('val.de.gz'));
    tsv100 = path.join(tmp, 'p100.tsv');
    fs.writeFileSync(tsv100, pairs.slice(0, 100).map((p) => `${p.source}\t${p.target}\n`).join(''));
    other100 = path.join(tmp, 'q100.tsv');
    fs.writeFileSync(other100, pairs.slice(100, 200).map((p) => `${p.source}\t${p.target}\n`).join(''));
  });
  afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));
  jest.setTimeout(300_000);

  test('a line of 1.2 million characters is cut to the words its tokens come from: the same ids, reported as cut', async () => {
    const tok = await loadTokenizer(FIXTURE);
    const huge = 'A dog runs. '.repeat(100_000);
    const ids = tok.encode(huge, { maxLength: 128 });
    expect(ids).toHaveLength(128);
    // the cut keeps the first tokens: those of its first 200 words (a text the tokenizer encodes whole)
    const head = huge.split(' ').slice(0, 200).join(' ');
    const full = tok.encode(head);
    expect(full.length).toBeGreaterThan(128);
    expect(ids).toEqual([...full.slice(0, 127), tok.eosId]);
    // a long line the tokenizer can read whole gives the same ids cut or not (words of every length, odd spaces)
    const words = (await readParallel(M30K('val.en.gz'), M30K('val.de.gz'))).slice(0, 40).map((p) => p.source).join('  \u00a0 ');
    const whole = tok.encode(words);
    expect(whole.length).toBeGreaterThan(140);
    for (const max of [8, 64, 128, 139]) expect(tok.encode(words, { maxLength: max })).toEqual([...whole.slice(0, max - 1), tok.eosId]);
    // a short line is untouched
    expect(tok.encode('A dog runs.', { maxLength: 128 })).toEqual(tok.encode('A dog runs.'));

    const m = await loadModel(FIXTURE);
    try {
      const r = await evaluateTranslation(m, tok, [{ source: huge, target: 'Ein Hund rennt.' }, { source: 'A dog runs.', target: 'Ein Hund rennt.' }]);
      expect(r.truncated).toBe(1);
      expect(r.hypotheses[1]!.length).toBeGreaterThan(0);
      // a line with no space to cut at: a typed error naming it, never a stack overflow
      await expect(evaluateTranslation(m, tok, [{ source: 'a dog', target: 'x' }, { source: 'x'.repeat(600_000), target: 'x' }])).rejects.toMatchObject({
        code: 'INVALID_DATA',
        message: expect.stringMatching(/^source sentence 2: a text of 600,000 characters is too long for the tokenizer library/),
      });
      // past the library's reach it is refused before any work (a 5 MB word took 25 s to fail: tester AL)
      await expect(evaluateTranslation(m, tok, [{ source: 'x'.repeat(5_000_000), target: 'x' }])).rejects.toMatchObject({
        code: 'INVALID_DATA',
        message: expect.stringMatching(/^source sentence 1: a text of 5,000,000 characters with too few spaces to cut it at is longer than the 1,000,000 ffmerge encodes for one sentence/),
      });
    } finally {
      m.dispose();
    }
    // compress: the calibration line is cut too; one that cannot be is named by its file line
    const hugeTsv = path.join(tmp, 'huge.tsv');
    fs.writeFileSync(hugeTsv, fs.readFileSync(tsv100, 'utf8') + `${huge}\tEin Hund rennt.\n`);
    const r = await compress(FIXTURE, { parallel: { tsv: hugeTsv }, method: 'permute', window: '3-4', calibrationPairs: 101, validation: { tsv: other100 }, validationSentences: 3 });
    expect(r.data.notes).toContainEqual("calibration pairs: 1 of 101 longer than the model's positions (128 source, 128 target tokens), cut to them");
    const bad = path.join(tmp, 'bad.tsv');
    fs.writeFileSync(bad, fs.readFileSync(tsv100, 'utf8') + `${'x'.repeat(600_000)}\tx\n`);
    await expect(compress(FIXTURE, { parallel: { tsv: bad }, window: '3-4', calibrationPairs: 101, validation: { tsv: other100 } })).rejects.toMatchObject({
      code: 'INVALID_DATA',
      message: expect.stringContaining(`line 101 of ${bad}: a text of 600,000 characters`),
    });
  });

  test('sizes larger than the data are refused, naming the option, its flag and what is there', async () => {
    const refused = async (o: Parameters<typeof compress>[1], code: string, msg: RegExp) =>
      expect(compress(FIXTURE, { parallel: { tsv: tsv100 }, window: '3-4', ...o })).rejects.toMatchObject({ code, message: expect.stringMatching(msg) });
    await refused({ calibrationPairs: 200 }, 'INVALID_ARGUMENT', /^calibrationPairs \(--calibration-size\) 200 is more than the 100 sentence pairs of /);
    await refused({ calibrationPairs: 50, validationSentences: 80 }, 'INVALID_ARGUMENT', /^validationSentences \(--validation-size\) 80 is more than the 50 pairs of .* after the 50 calibration ones/);
    await refused({ calibrationPairs: 20, validation: { tsv: other100 }, validationSentences: 2000 }, 'INVALID_ARGUMENT', /^validationSentences \(--validation-size\) 2000 is more than the 100 validation pairs of /);
    await refused({ calibrationPairs: 20, test: { tsv: other100 }, testSentences: 500 }, 'INVALID_ARGUMENT', /^testSentences \(--test-size\) 500 is more than the 100 test pairs of /);
    // the caller's own size: INVALID_ARGUMENT, as for every task (498c820)
    await refused({ calibrationPairs: 100 }, 'INVALID_ARGUMENT', /the calibration size \(--calibration-size 100\) takes all 100 pairs/);
    // a key of the other form, undefined (a TypeError from Node before) or given (used silently before)
    await refused({ validation: { source: tsv100, target: tsv100, tsv: undefined } as never }, 'INVALID_ARGUMENT', /^validation for a translation model is .* with no other key \(got keys source, target, tsv\)$/);
    await refused({ parallel: { tsv: tsv100, source: other100 } as never }, 'INVALID_ARGUMENT', /^parallel for a translation model is/);
  });

  test('--stacks independent with given windows is refused, not run as both-same', async () => {
    await expect(compress(FIXTURE, { parallel: { tsv: tsv100 }, window: '2-3', stacks: 'independent', calibrationPairs: 20 })).rejects.toMatchObject({
      code: 'OPTION_NOT_APPLICABLE',
      message: expect.stringMatching(/independent searches each stack .*both-same/),
    });
  });

  test('beam search in generation_config.json: compress and eval label the BLEU with it; eval says "1 source … was cut"', () => {
    const dir = path.join(tmp, 'beam');
    fs.mkdirSync(dir);
    for (const f of ['config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json']) fs.copyFileSync(path.join(FIXTURE, f), path.join(dir, f));
    const gen = JSON.parse(fs.readFileSync(path.join(FIXTURE, 'generation_config.json'), 'utf8')) as Record<string, unknown>;
    fs.writeFileSync(path.join(dir, 'generation_config.json'), JSON.stringify({ ...gen, num_beams: 4 }));
    const run = (...args: string[]) => spawnSync(process.execPath, [BIN, ...args], { cwd: tmp, encoding: 'utf8', env: { ...process.env, FFMERGE_FROM_SOURCE: '1' }, timeout: 300_000 });

    const c = run('compress', dir, '--data', tsv100, '--window', '3-4', '--method', 'permute', '--calibration-size', '40', '--validation-size', '4', '--out', 'beam-k2');
    expect(c.status).toBe(0);
    expect(c.stdout).toContain('BLEU (beam search, 4 beams), higher is better:');
    expect(c.stdout).not.toContain('greedy');
    const report = JSON.parse(fs.readFileSync(path.join(tmp, 'beam-k2', 'report.json'), 'utf8')) as CompressResult;
    expect(report.metric).toEqual({ name: 'bleu', higherIsBetter: true, decoding: 'beam search, 4 beams' });
    const card = fs.readFileSync(path.join(tmp, 'beam-k2', 'README.md'), 'utf8');
    expect(card).toContain('BLEU (beam search, 4 beams) (higher is better)');
    expect(card).not.toContain('greedy');

    const long = path.join(tmp, 'long.tsv');
    fs.writeFileSync(long, `${'A dog runs. '.repeat(60).trim()}\tEin Hund rennt.\nA dog runs.\tEin Hund rennt.\n`);
    const e = run('eval', dir, '--data', long);
    expect(e.status).toBe(0);
    expect(e.stdout).toMatch(/^BLEU [\d.]+, chrF [\d.]+ \(beam search, 4 beams, 2 sentences; 1 source longer than the model's 128 positions was cut to them, /);
    const j = run('eval', dir, '--data', long, '--json');
    expect(JSON.parse(j.stdout)).toMatchObject({ ok: true, metric: 'bleu', decoding: 'beam search, 4 beams', truncated: 1 });
  });
});

describe('decoding settings: generation_config.json when there is one, config.json only without it', () => {
  test('num_beams left in config.json beside a generation_config.json does not turn on beam search', () => {
    const { generationConfigFrom } = require('../lib/model/model') as typeof import('../lib/model/model');
    const config = { num_beams: 4, max_length: 512, decoder_start_token_id: 2, pad_token_id: 2, eos_token_id: 0 };
    // transformers decodes with generation_config.json alone when it exists (before: beams from config.json)
    const withFile = generationConfigFrom({ decoder_start_token_id: 2, pad_token_id: 2, max_length: 64 }, config);
    expect({ beams: withFile.numBeams, max: withFile.maxLength, eos: withFile.eosTokenId }).toEqual({ beams: 1, max: 64, eos: 0 });
    // without the file, config.json's settings are the model's generation settings
    const withoutFile = generationConfigFrom({}, config);
    expect({ beams: withoutFile.numBeams, max: withoutFile.maxLength }).toEqual({ beams: 4, max: 512 });
  });

  test('a setting the decoder does not apply is refused by name; counts are refused as counts (tester CE)', async () => {
    const { generationConfigFrom } = require('../lib/model/model') as typeof import('../lib/model/model');
    const gen = { decoder_start_token_id: 2, pad_token_id: 2, eos_token_id: 0, max_length: 64 };
    // before: eos [5, 0] decoded as 5 alone (BLEU 30.29 → 16.68), sampling and n-gram bans ignored, exit 0
    // (forced_bos_token_id 0 is a token id, forced as any other: tester CJ)
    for (const [k, v] of [['eos_token_id', [5, 0]], ['forced_eos_token_id', [5, 0]], ['do_sample', true], ['no_repeat_ngram_size', 3], ['repetition_penalty', 1.2], ['min_length', 5], ['num_beam_groups', 2], ['forced_bos_token_id', 7], ['forced_bos_token_id', 0], ['suppress_tokens', [4]]] as const) {
      await expectCode(() => generationConfigFrom({ ...gen, [k]: v }), 'UNSUPPORTED_ARCHITECTURE', `"${k}"`);
    }
    // the values that change nothing pass: an older config.json lists every default
    const defaults = { do_sample: false, no_repeat_ngram_size: 0, repetition_penalty: 1, min_length: 0, num_beam_groups: 1, forced_bos_token_id: null, suppress_tokens: null, eos_token_id: [0, 0] };
    expect(generationConfigFrom({ ...gen, ...defaults }).eosTokenId).toBe(0);
    // a forced eos given as a list of one (transformers takes lists there too), and min_length 1 (an output has the start token)
    expect(generationConfigFrom({ ...gen, forced_eos_token_id: [0], min_length: 1 }).forcedEosTokenId).toBe(0);
    // max_length 0 or 1 was the decoder's "maxLength must be at least 2" (INVALID_ARGUMENT, exit 2); num_beams
    // of -1, 2.5 or "4" was "must be a token id"
    for (const max of [0, 1, 2.5]) await expectCode(() => generationConfigFrom({ ...gen, max_length: max }), 'INVALID_CONFIG', /"max_length" must be a whole number of at least 2/);
    for (const beams of [-1, 0, 2.5, '4']) await expectCode(() => generationConfigFrom({ ...gen, num_beams: beams }), 'INVALID_CONFIG', /"num_beams" must be a whole number of at least 1/);
    // max_new_tokens decides the length, as in transformers (the start token before them)
    expect(generationConfigFrom({ ...gen, max_new_tokens: 30 }).maxLength).toBe(31);
  });

  test('renormalize_logits and early_stopping are read (they were ignored: tester EY), "never" with beams refused', async () => {
    const { generationConfigFrom } = require('../lib/model/model') as typeof import('../lib/model/model');
    const gen = { decoder_start_token_id: 2, pad_token_id: 2, eos_token_id: 0, max_length: 64, num_beams: 4 };
    expect(generationConfigFrom(gen)).not.toHaveProperty('renormalizeLogits');
    expect(generationConfigFrom({ ...gen, renormalize_logits: true, early_stopping: true })).toMatchObject({ renormalizeLogits: true, earlyStopping: true });
    expect(generationConfigFrom({ ...gen, renormalize_logits: false, early_stopping: false })).not.toHaveProperty('earlyStopping');
    await expectCode(() => generationConfigFrom({ ...gen, early_stopping: 'never' }), 'UNSUPPORTED_ARCHITECTURE', '"early_stopping": "never"');
    // greedy decoding never reads it
    expect(generationConfigFrom({ ...gen, num_beams: 1, early_stopping: 'never' }).numBeams).toBe(1);
    for (const [k, v] of [['renormalize_logits', 1], ['early_stopping', 'yes']] as const) {
      await expectCode(() => generationConfigFrom({ ...gen, [k]: v }), 'INVALID_CONFIG', `"${k}" must be true or false`);
    }
  });
});

describe('a corpus is read to its end but only the pairs used are kept', () => {
  test('keep: the first pairs and the count of all; a fault past them is still found (tester EX: 1.1 GB for 600 pairs)', async () => {
    const { loadParallelSource } = require('../lib/pipeline/tasks/sources') as typeof import('../lib/pipeline/tasks/sources');
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ffmerge-keep-'));
    try {
      const tsv = path.join(dir, 'pairs.tsv');
      fs.writeFileSync(tsv, Array.from({ length: 5000 }, (_, i) => `source ${i}\ttarget ${i}`).join('\n') + '\n');
      const r = await loadParallelSource({ tsv }, { keep: 10 });
      expect({ kept: r.pairs.length, total: r.total, last: r.pairs[9] }).toEqual({ kept: 10, total: 5000, last: { source: 'source 9', target: 'target 9' } });
      expect((await loadParallelSource({ tsv })).pairs).toHaveLength(5000);
      // skip: the pairs before it counted, not kept (eval --start; tester FA)
      const late = await loadParallelSource({ tsv }, { skip: 4990, keep: 3 });
      expect({ kept: late.pairs.map((p) => p.source), total: late.total }).toEqual({ kept: ['source 4990', 'source 4991', 'source 4992'], total: 5000 });
      fs.appendFileSync(tsv, 'one column only\n');
      await expectCode(() => loadParallelSource({ tsv }, { keep: 10 }), 'INVALID_DATA', 'line 5001 has 1 tab-separated column');
      const [source, target] = [path.join(dir, 's.txt'), path.join(dir, 't.txt')];
      fs.writeFileSync(source, 'a\nb\nc\n');
      fs.writeFileSync(target, 'x\ny\n');
      await expectCode(() => loadParallelSource({ source, target }, { keep: 1 }), 'INVALID_DATA', 'not aligned');
      const ac = new AbortController();
      ac.abort();
      await expectCode(() => loadParallelSource({ tsv }, { keep: 10, signal: ac.signal }), 'ABORTED');
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('a TSV with a header row', () => {
  test('is refused naming the line, not translated as a pair (tester EX); a short first pair is not a header', async () => {
    const { readParallelTsv } = require('../lib/data/parallel') as typeof import('../lib/data/parallel');
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ffmerge-header-'));
    try {
      for (const head of ['en\tde', 'source\ttarget', 'src\ttgt', 'EN\tde_DE']) {
        const f = path.join(dir, 'h.tsv');
        fs.writeFileSync(f, `${head}\nA dog runs.\tEin Hund rennt.\n`);
        await expectCode(() => readParallelTsv(f), 'INVALID_DATA', 'is a header row, not a sentence pair');
      }
      const f = path.join(dir, 'short.tsv');
      fs.writeFileSync(f, 'Yes\tJa\nNo\tNein\n');
      expect(await readParallelTsv(f)).toEqual([{ source: 'Yes', target: 'Ja' }, { source: 'No', target: 'Nein' }]);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
