/**
 * Every public function given an argument of the wrong type, or an option out of range, refuses it with an
 * FfmergeError (INVALID_ARGUMENT) whose message names the
 * argument: never a TypeError from Node or from our code, and never a value taken silently (a string prompt
 * read as token 0, maxTokens NaN read as "all", k: null read as the default). Async functions reject; sync
 * functions throw.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as lib from '../lib/index';
import { FfmergeError } from '../lib/errors';
import type { Model } from '../lib/model/model';
import { removeSyntheticDirs, tempDir } from './helpers/synthetic-model';

const MODEL = path.resolve(__dirname, '..', 'models', 'llama-stories260k');
const CAL = path.join(MODEL, 'calibration.txt');
/** The llama fixture's eval rows (the test only reaches the option checks, which come before the file is read). */
const ROWS = path.resolve(__dirname, '..', '..', 'shared', 'data', 'lm', 'stories260k-samples-valid.jsonl');
const COMPRESS = { k: 2, calibration: CAL, calibrationTokens: 2048, validationTokens: 1024, method: 'permute', recover: 'none' };

let m: Model;
let ff: lib.FFWeights; // what ffWeights() returns (the exported name was the native shape, without d and dFF)
let out: string;
beforeAll(async () => {
  m = await lib.loadModel(MODEL);
  ff = m.ffWeights(0);
  out = path.join(tempDir('api-args'), 'out');
});
afterAll(() => {
  m?.dispose();
  removeSyntheticDirs();
});

// `any` on purpose: every call below breaks the declared types, as an untyped caller (plain JS) would
/* eslint-disable @typescript-eslint/no-explicit-any */
const bad = (v: unknown): any => v;

type Case = [label: string, call: () => unknown, mentions: string, code?: 'INVALID_ARGUMENT' | 'OPTION_NOT_APPLICABLE' | 'INVALID_WINDOW' | 'TENSOR_NOT_FOUND' | 'DATA_NOT_FOUND'];

/** Async functions: the call returns a promise that rejects. */
const asyncCases: Case[] = [
  // paths that are not strings (Node's "path must be string" TypeError before)
  ['compress(5, opts)', () => lib.compress(bad(5), COMPRESS), 'modelDir'],
  ['compress(undefined, opts)', () => lib.compress(bad(undefined), COMPRESS), 'modelDir'],
  ['loadModel()', () => (lib.loadModel as any)(), 'dir'],
  ['inspectModel(5)', () => lib.inspectModel(bad(5)), 'dir'],
  ['inspectModel("")', () => lib.inspectModel(''), 'dir'],
  ['loadTokenizer(5)', () => lib.loadTokenizer(bad(5)), 'modelDir'],
  ['tokenizeFile(5, file)', () => lib.tokenizeFile(bad(5), CAL), 'tokenizerDir'],
  ['tokenizeFile(dir, 5)', () => lib.tokenizeFile(MODEL, bad(5)), 'file'],
  ['checkOnnxExportable(5)', () => lib.checkOnnxExportable(bad(5)), 'modelDir'],
  ['exportOnnx(5, {out})', () => lib.exportOnnx(bad(5), { out }), 'modelDir'],
  ['readTies(5)', () => lib.readTies(bad(5)), 'dir'],
  ['CheckpointReader.open(5)', () => lib.CheckpointReader.open(bad(5)), 'dir'],
  ['SafetensorsReader.open(5)', () => lib.SafetensorsReader.open(bad(5)), 'path'],
  ['writeSafetensors(5, [])', () => lib.writeSafetensors(bad(5), []), 'file'],
  ['writeSafetensors(file, null)', () => lib.writeSafetensors(path.join(out, 'x.safetensors'), bad(null)), 'tensors'],
  ['readText(5)', () => lib.readText(bad(5)), 'file'],
  ['readTokenRows(5)', () => lib.readTokenRows(bad(5)), 'file'],
  // tester DE: a budget of 0 read a row, a NaN vocabulary checked no id, minLength 0 let empty rows through
  ['readTokenRows(f, {maxTokens: 0})', () => lib.readTokenRows(ROWS, { maxTokens: 0 }), 'maxTokens'],
  ['readTokenRows(f, {vocab: NaN})', () => lib.readTokenRows(ROWS, { vocab: NaN }), 'vocab'],
  ['readTokenRows(f, {minLength: 0})', () => lib.readTokenRows(ROWS, { minLength: 0 }), 'minLength'],
  ['readTokenRows(f, {maxLength: 1.5})', () => lib.readTokenRows(ROWS, { maxLength: 1.5 }), 'maxLength'],
  ['readTokenRows(f, {maxToken: 5})', () => lib.readTokenRows(ROWS, bad({ maxToken: 5 })), 'maxToken'],
  ['readParallel(5, 5)', () => lib.readParallel(bad(5), bad(5)), 'sourceFile'],
  ['readParallelTsv(5)', () => lib.readParallelTsv(bad(5)), 'TSV'],
  ['loadIdxImages(5)', () => lib.loadIdxImages(bad(5)), 'imagesFile'],
  ['loadPreprocessor(5)', () => lib.loadPreprocessor(bad(5)), 'dir'],
  ['loadGenerationConfig(5)', () => lib.loadGenerationConfig(bad(5)), 'dir'],
  ['convertCheckpoint(5, out, "tied")', () => lib.convertCheckpoint(bad(5), out, 'tied'), 'dir'],
  ['writeCheckpoint(null)', () => lib.writeCheckpoint(bad(null)), 'options'],
  // models, blocks, tokenizers that are not ones
  ['perplexity(m, "x")', () => lib.perplexity(m, bad('x')), 'blocks'],
  ['perplexity(m, null)', () => lib.perplexity(m, bad(null)), 'blocks'],
  ['perplexity(null, blocks)', () => lib.perplexity(bad(null), [new Int32Array(9)]), 'model'],
  ['perplexity(m, blocks, null)', () => lib.perplexity(m, [new Int32Array(9)], bad(null)), 'options'],
  ['greedy(m, "ab", 3)', () => lib.greedy(m, 'ab' as any, 3), 'prompt'],
  ['greedy(null, [1], 3)', () => lib.greedy(bad(null), [1], 3), 'model'],
  ['saveTrained(null, {source, out})', () => lib.saveTrained(bad(null), { source: MODEL, out }), 'model'],
  ['saveTrained(m, null)', () => lib.saveTrained(m, bad(null)), 'options'],
  ['translate(null, …)', () => lib.translate(bad(null), bad(null), ['a']), 'model'],
  ['evaluateImageClassifier(null, …)', () => lib.evaluateImageClassifier(bad(null), bad(null), bad(null)), 'model'],
  ['loadSplitBlocks(null, file, 64)', () => lib.loadSplitBlocks(bad(null), CAL, 64), 'tokenizer'],
  ['m.withFF(null)', () => m.withFF(bad(null)), 'overrides'],
  ['m.withFF({})', () => m.withFF(bad({})), 'overrides'],
  ['m.withFF([{ layer: 0, ff: {} }])', () => m.withFF([{ layer: 0, ff: bad({}) }]), 'overrides'],
  ['m.withFF(map, null)', () => m.withFF(new Map([[0, ff]]), bad(null)), 'options'],
  ['m.readFFWeights(0, null)', () => m.readFFWeights(0, bad(null)), 'options'],
  ['matmul(a, b) without a shape', () => (lib.matmul as any)(new Float32Array(4), new Float32Array(4)), 'shape'],
  ['matmul([1], [1], shape)', () => lib.matmul(bad([1]), bad([1]), { m: 1, n: 1, k: 1 }), 'a must be a Float32Array'],
  ['matmul(a, b, shape, null)', () => lib.matmul(new Float32Array(2), new Float32Array(2), { m: 2, n: 2, k: 1 }, bad(null)), 'options'],
  ['averageFFAsync("x")', () => lib.averageFFAsync(bad('x')), 'ffs'],
  ['averageFFAsync([ff], null)', () => lib.averageFFAsync([ff], bad(null)), 'options'],
  ['permuteFFAsync(ff, "x")', () => lib.permuteFFAsync(ff, bad('x')), 'permutation'],
  ['finetune(m, { steps: 1 }) without data', () => lib.finetune(m, bad({ steps: 1 })), 'data'],
  ['finetune(m, { data: "x" })', () => lib.finetune(m, bad({ data: 'x', steps: 1 })), 'data'],
  ['finetune(m, null)', () => lib.finetune(m, bad(null)), 'options'],
  ['finetune(null, opts)', () => lib.finetune(bad(null), { data: new Int32Array(64), steps: 1 }), 'model'],
  // options of the wrong type or out of range, taken silently before
  ['tokenizeFile maxTokens "5"', () => lib.tokenizeFile(MODEL, CAL, { maxTokens: bad('5') }), 'maxTokens'],
  ['tokenizeFile maxTokens NaN', () => lib.tokenizeFile(MODEL, CAL, { maxTokens: NaN }), 'maxTokens'],
  ['tokenizeFile format "x"', () => lib.tokenizeFile(MODEL, CAL, { format: bad('x'), maxTokens: 10 }), 'format'],
  ['tokenizeFile options null', () => lib.tokenizeFile(MODEL, CAL, bad(null)), 'options'],
  ['loadModel(dir, "x")', () => lib.loadModel(MODEL, bad('x')), 'options'],
  ['loadModel stream "x"', () => lib.loadModel(MODEL, { stream: bad('x') }), 'stream'],
  ['loadModel mmap "no"', () => lib.loadModel(MODEL, { mmap: bad('no') }), 'mmap'],
  ['loadModel unknown option', () => lib.loadModel(MODEL, bad({ bogus: 1 })), 'bogus'],
  ['finetune trainable 5', () => lib.finetune(m, { data: new Int32Array(4096).fill(5), steps: 1, trainable: bad(5) }), 'trainable'],
  ['finetune schedule "linear"', () => lib.finetune(m, { data: new Int32Array(4096).fill(5), steps: 1, schedule: bad('linear') }), 'schedule'],
  ['finetune batch null', () => lib.finetune(m, { data: new Int32Array(4096).fill(5), steps: 1, batch: bad(null) }), 'batch'],
  // one integer check for every count (its own weaker copy took 2^60 as a step count: tester DY)
  ['finetune steps 2^60', () => lib.finetune(m, { data: new Int32Array(4096).fill(5), steps: 2 ** 60 }), 'finetune: steps must be a positive integer'],
  ['finetune without steps', () => lib.finetune(m, bad({ data: new Int32Array(4096).fill(5) })), 'finetune: steps must be a positive integer (got undefined)'],
  ['finetune seed 1.5', () => lib.finetune(m, { data: new Int32Array(4096).fill(5), steps: 1, seed: 1.5 }), 'finetune: seed must be a non-negative integer'],
  ['finetune unknown option', () => lib.finetune(m, bad({ data: new Int32Array(4096).fill(5), steps: 1, learningRate: 1 })), 'learningRate'],
  ['compress overwrite "yes"', () => lib.compress(MODEL, { ...COMPRESS, out, overwrite: bad('yes') }), 'overwrite'],
  ['compress k null', () => lib.compress(MODEL, { ...COMPRESS, k: bad(null) }), 'k'],
  ['compress k "2"', () => lib.compress(MODEL, { ...COMPRESS, k: bad('2') }), 'k'],
  ['compress calibrationTokens null', () => lib.compress(MODEL, { ...COMPRESS, calibrationTokens: bad(null) }), 'calibrationTokens'],
  ['compress maxShardSize -1', () => lib.compress(MODEL, { ...COMPRESS, maxShardSize: -1 }), 'maxShardSize'],
  ['compress maxShardSize NaN (no out)', () => lib.compress(MODEL, { ...COMPRESS, maxShardSize: NaN }), 'maxShardSize'],
  ['compress options []', () => lib.compress(MODEL, bad([])), 'options'],
  // INVALID_ARGUMENT as every call says it, with the options (tester DI: OPTION_NOT_APPLICABLE, no list)
  ['compress unknown option', () => lib.compress(MODEL, bad({ ...COMPRESS, bogus: 1 })), 'bogus" (the options are k, fraction, window'],
  // an image tester's finds: options no method of the run reads were taken silently (the report said "anchor 1")
  ['compress anchor with select', () => lib.compress(MODEL, { ...COMPRESS, method: 'select', anchor: 'last' }), 'anchor (--anchor) applies where units are aligned', 'OPTION_NOT_APPLICABLE'],
  ['compress selectMemory with permute', () => lib.compress(MODEL, { ...COMPRESS, selectMemory: 2 ** 26 }), 'selectMemory (--select-memory) applies to method select', 'OPTION_NOT_APPLICABLE'],
  // misspelt options, ignored before (a tester's finds: fp32 written for dtyp fp16, batchsize run as 8, …)
  ['exportOnnx dtyp', () => lib.exportOnnx(MODEL, bad({ out, dtyp: 'fp16' })), 'dtyp'],
  ['exportOnnx dtype "bf16"', () => lib.exportOnnx(MODEL, { out, dtype: bad('bf16') }), 'dtype'],
  ['exportOnnx externalData "always"', () => lib.exportOnnx(MODEL, { out, externalData: bad('always') }), 'externalData'],
  ['perplexity batchsize', () => lib.perplexity(m, [new Int32Array(9)], bad({ batchsize: 3 })), 'batchsize'],
  ['greedy eos', () => lib.greedy(m, [1], 2, bad({ eos: 2 })), 'eos'],
  ['greedy eosId "2"', () => lib.greedy(m, [1], 2, { eosId: bad('2') }), 'eosId'],
  ['greedy eosId -1', () => lib.greedy(m, [1], 2, { eosId: -1 }), 'eosId'],
  ['convertCheckpoint overwrit', () => lib.convertCheckpoint(MODEL, out, 'expanded', bad({ overwrit: true })), 'overwrit'],
  ['writeCheckpoint formt', () => lib.writeCheckpoint(bad({ source: MODEL, out, format: 'tied', formt: 'x' })), 'formt'],
  ['saveTrained overwite', () => lib.saveTrained(m, bad({ source: MODEL, out, overwite: true })), 'overwite'],
  // a server tester's finds: extra files were written outside the output, over the weights, or as a TypeError
  ['exportOnnx extraFiles ../x', () => lib.exportOnnx(MODEL, { out, extraFiles: { '../x.txt': 'x' } }), 'not a plain file name'],
  ['exportOnnx extraFiles onnx', () => lib.exportOnnx(MODEL, { out, extraFiles: { onnx: 'x' } }), 'a file the writer makes itself'],
  ['exportOnnx extraFiles 42', () => lib.exportOnnx(MODEL, { out, extraFiles: { 'a.txt': bad(42) } }), 'must be a string'],
  ['writeCheckpoint extraFiles x.safetensors', () => lib.writeCheckpoint({ source: MODEL, out, format: 'tied', extraFiles: { 'x.safetensors': '' } }), 'a file the writer makes itself'],
  ['compress searchTokens past validationTokens', () => lib.compress(MODEL, { ...COMPRESS, validationTokens: 1024, searchTokens: 2048 }), 'searchTokens (--search-tokens) 2048 is more than the validation budget 1024'],
  ['compress searchTokens with a given window', () => lib.compress(MODEL, { ...COMPRESS, window: '0-1', searchTokens: 512 }), 'searchTokens (--search-tokens) applies to a search of candidates', 'OPTION_NOT_APPLICABLE'],
  ['exportOnnx replace of no tensor', () => lib.exportOnnx(MODEL, { out, replace: new Map([['nope', new Float32Array(5)]]) }), 'replace names tensor "nope"', 'TENSOR_NOT_FOUND'],
  ['m.forward fromlayer', () => m.forward({ ids: new Int32Array(4), batch: 1, seq: 4 }, bad({ output: 'nll', fromlayer: 2 })), 'unknown option "fromlayer"'],
  ['m.forward attentionmask', () => m.forward(bad({ ids: new Int32Array(4), batch: 1, seq: 4, attentionmask: new Uint8Array(4) }), { output: 'nll' }), 'input: unknown option "attentionmask"'],
  ['compress of a config.json path', () => lib.compress(path.join(MODEL, 'config.json'), COMPRESS), 'is a file, not a model directory', 'DATA_NOT_FOUND'],
  ['loadModel of a config.json path', () => lib.loadModel(path.join(MODEL, 'config.json')), 'is a file, not a model directory', 'DATA_NOT_FOUND'],
  ['saveTrained info windows', () => lib.saveTrained(m, { source: MODEL, out, info: { windows: [] } }), 'info "windows" is a key of the ffmerge record'],
  ['matmul alfa', () => lib.matmul(new Float32Array(2), new Float32Array(2), { m: 2, n: 2, k: 1 }, bad({ alfa: 2 })), 'alfa'],
  ['m.readFFWeights(0, { stak })', () => m.readFFWeights(0, bad({ stak: 'decoder' })), 'stak'],
  // a fourth tester's finds: holes in a list passed every() and were read as undefined (a raw TypeError);
  // misspelt sampling and window keys, a share of no layer and a fractional shard size were taken silently
  ['compress calibration [, block]', () => lib.compress(MODEL, { ...COMPRESS, calibration: bad([, new Int32Array(256)]) }), 'calibration'],
  ['compress validation [b, , b]', () => lib.compress(MODEL, { ...COMPRESS, validation: bad([new Int32Array(256), , new Int32Array(256)]) }), 'validation'],
  ['compress calibration.sample temp', () => lib.compress(MODEL, { ...COMPRESS, validation: CAL, calibration: bad({ sample: { temp: 0.1 } }) }), 'temp'],
  ['compress calibration seeed', () => lib.compress(MODEL, { ...COMPRESS, validation: CAL, calibration: bad({ sample: {}, seeed: 3 }) }), 'seeed'],
  ['compress window { start, k, foo }', () => lib.compress(MODEL, { ...COMPRESS, window: bad({ start: 0, k: 2, foo: 1 }) }), 'foo', 'INVALID_WINDOW'],
  ['compress fraction 0.01 of 5 layers', () => lib.compress(MODEL, { ...COMPRESS, k: undefined, fraction: 0.01 }), 'fraction'],
  ['compress maxShardSize 1.5', () => lib.compress(MODEL, { ...COMPRESS, maxShardSize: 1.5 }), 'maxShardSize'],
  ['perplexity batchSize Symbol()', () => lib.perplexity(m, [new Int32Array(9)], { batchSize: bad(Symbol('x')) }), 'batchSize'],
  ['greedy maxNew Symbol()', () => lib.greedy(m, [1], bad(Symbol('n'))), 'maxNew'],
  ['evaluateImageClassifier on a language model', () => lib.evaluateImageClassifier(m, bad({}), bad({})), 'not an image classifier'],
];

/** Sync functions: the call throws. */
const syncCases: Case[] = [
  ['averageFF([{}])', () => lib.averageFF([bad({})]), 'FF 0'],
  ['averageFF("x")', () => lib.averageFF(bad('x')), 'ffs'],
  ['permuteFF(null, p)', () => lib.permuteFF(bad(null), [0]), 'ff'],
  ['m.ffWeights("1")', () => m.ffWeights(bad('1')), 'layer must be an integer index (got "1")'],
  ['m.withoutLayers(null)', () => m.withoutLayers(bad(null)), 'drop'],
  ['m.withoutLayers({ decoder: "1" })', () => m.withoutLayers(bad({ decoder: '1' })), 'drop.decoder'],
  ['m.sharesFF(0, null, 0)', () => m.sharesFF(0, bad(null), 0), 'other'],
  ['m.weightDtypes("x")', () => m.weightDtypes(bad('x')), '"x" stack'],
  ['cutBlocks("x", 4)', () => lib.cutBlocks(bad('x'), 4), 'tokens'],
  ['tokenizeToBlocks(null, "x", 4)', () => lib.tokenizeToBlocks(bad(null), 'x', 4), 'tokenizer'],
  ['enumerateWindows("x", 2)', () => lib.enumerateWindows(bad('x'), 2), 'layers'],
  // metrics, config helpers, batches
  ['corpusBleu("x", "y")', () => lib.corpusBleu(bad('x'), bad('y')), 'hypotheses'],
  ['corpusBleu(["a"], ["a"])', () => lib.corpusBleu(['a'], bad(['a'])), 'references'],
  ['sentenceBleu(5, ["a"])', () => lib.sentenceBleu(bad(5), ['a']), 'hypothesis'],
  // tester DI: a TypeError from inside; options with unknown names were read as others
  ['computeBleu(null, …)', () => lib.computeBleu(bad(null), [1, 1, 1, 1], 1, 1), 'correct must be 4 counts'],
  ['computeBleu 3 counts', () => lib.computeBleu([1, 1, 1], [1, 1, 1, 1], 1, 1), 'correct must be 4 counts'],
  ['computeBleu sysLen NaN', () => lib.computeBleu([1, 1, 1, 1], [1, 1, 1, 1], NaN, 1), 'sysLen'],
  ['computeBleu smoothMethod "add_k"', () => lib.computeBleu([1, 1, 1, 1], [1, 1, 1, 1], 1, 1, { smoothMethod: bad('add_k') }), 'smoothMethod must be "exp", "none", "floor", "add-k"'],
  ['corpusBleu tokenize "intl"', () => lib.corpusBleu(['a'], [['a']], { tokenize: bad('intl') }), 'tokenize'],
  ['sentenceBleu lowercse', () => lib.sentenceBleu('a', ['a'], bad({ lowercse: true })), 'unknown option "lowercse"'],
  ['corpusChrf(5, 5)', () => lib.corpusChrf(bad(5), bad(5)), 'hypotheses'],
  ['sentenceChrf("a", "b")', () => lib.sentenceChrf('a', bad('b')), 'references'],
  ['tokenize13a(5)', () => lib.tokenize13a(bad(5)), 'line'],
  ['top1Accuracy(null, 2, [0])', () => lib.top1Accuracy(bad(null), 2, [0]), 'logits'],
  ['top1Accuracy([1, 0], 2, "0")', () => lib.top1Accuracy([1, 0], 2, bad('0')), 'labels'],
  ['argmaxRows(null, 2)', () => lib.argmaxRows(bad(null), 2), 'logits'],
  ['validateSpec(null)', () => lib.validateSpec(bad(null)), 'spec'],
  ['architectureOf(null)', () => lib.architectureOf(bad(null)), 'config'],
  ['ffStacks(null)', () => lib.ffStacks(bad(null)), 'config'],
  ['buildModel(null, null, {})', () => lib.buildModel(bad(null), bad(null), {}), 'spec'],
  ['imageBatches(null, pre, 7)', () => lib.imageBatches(bad(null), bad({}), 7), 'set'],
];

function expectRefusal(err: unknown, mentions: string, code: string): void {
  expect(err).toBeInstanceOf(FfmergeError);
  expect((err as FfmergeError).code).toBe(code);
  expect((err as FfmergeError).message).toContain(mentions);
}

test.each(asyncCases)('%s rejects with a typed error', async (_label, call, mentions, code = 'INVALID_ARGUMENT') => {
  let p: unknown;
  expect(() => (p = call())).not.toThrow(); // async functions reject, never throw
  expect(p).toBeInstanceOf(Promise);
  const err = await (p as Promise<unknown>).then(
    () => undefined,
    (e: unknown) => e,
  );
  expectRefusal(err, mentions, code);
});

test.each(syncCases)('%s throws a typed error', (_label, call, mentions, code = 'INVALID_ARGUMENT') => {
  let err: unknown;
  try {
    call();
  } catch (e) {
    err = e;
  }
  expectRefusal(err, mentions, code);
});

test('valid arguments still work: tokenizeFile with maxTokens Infinity reads everything', async () => {
  const all = await lib.tokenizeFile(MODEL, CAL);
  expect((await lib.tokenizeFile(MODEL, CAL, { maxTokens: Infinity })).length).toBe(all.length);
  expect((await lib.tokenizeFile(MODEL, CAL, { maxTokens: 5, format: 'txt' })).length).toBe(5);
});

test('a typed array in an argument is shown by kind and length, not written out', async () => {
  expect(() => lib.averageFF([bad({ d: 'x', wIn: new Float32Array(1 << 20) })])).toThrow(/Float32Array\(1048576\)/);
  // a Buffer too (loadIdxImages' pixels), and a long list: JSON's toJSON wrote the Buffer out as a list of numbers
  // before the message was cut to 60 characters, seconds of blocked event loop for an image set (tester AR)
  const { showValue } = await import('../lib/errors');
  expect(showValue({ pixels: Buffer.alloc(5000) })).toBe('{"pixels":"Buffer(5000)"}');
  expect(showValue(Buffer.alloc(3))).toBe('"Buffer(3)"');
  expect(showValue({ ids: Array.from({ length: 100000 }, (_, i) => i) })).toBe('{"ids":"Array(100000)"}');
  expect(showValue([1, 2, 3])).toBe('[1,2,3]');
  await expect(lib.finetune(m, bad({ data: { pixels: Buffer.alloc(1 << 20), labels: 7 }, steps: 1 }))).rejects.toMatchObject({ message: expect.stringContaining('Buffer(1048576)') });
});

test('the sliced merge helpers and greedy report the progress they accept (an onProgress was taken and never called)', async () => {
  const seen: Record<string, lib.Progress[]> = { permute: [], average: [], generate: [] };
  const note = (p: lib.Progress) => seen[p.phase]!.push(p);
  const perm = Array.from({ length: ff.dFF }, (_, i) => ff.dFF - 1 - i);
  const p = await lib.permuteFFAsync(ff, perm, { onProgress: note });
  expect(p.wIn).toEqual(lib.permuteFF(ff, perm).wIn);
  const a = await lib.averageFFAsync([ff, p], { onProgress: note });
  expect(a.wOut).toEqual(lib.averageFF([ff, p]).wOut);
  await lib.greedy(m, [1, 2], 3, { onProgress: note });
  const last = (ps: lib.Progress[]) => ps[ps.length - 1]!;
  // llama: wIn, wOut and the gate are permuted; two FFs added, then the mean; three new tokens
  expect(seen.permute!.map((x) => x.done)).toEqual([1, 2, 3]);
  expect(last(seen.permute!)).toMatchObject({ done: 3, total: 3 });
  expect(seen.average!.map((x) => x.done)).toEqual([1, 2, 3]);
  expect(last(seen.average!).total).toBe(3);
  expect(seen.generate!.map((x) => [x.done, x.total])).toEqual([[1, 3], [2, 3], [3, 3]]);
});

describe('a model path that cannot be reached', () => {
  // Node's own ELOOP / ENOTDIR messages came out as INTERNAL_ERROR from the CLI, IO_ERROR from inspect (tester ED)
  let loop: string;
  beforeAll(() => {
    loop = path.join(tempDir('api-loop'), 'loop');
    fs.symlinkSync(loop, loop);
  });
  const underFile = path.join(MODEL, 'config.json') + path.sep;

  it.each([
    ['loadModel', (p: string) => lib.loadModel(p)],
    ['inspectModel', (p: string) => lib.inspectModel(p)],
    ['loadTokenizer', (p: string) => lib.loadTokenizer(p)],
    ['compress', (p: string) => lib.compress(p, COMPRESS)],
  ])('%s: a looping link or a file in the path is DATA_NOT_FOUND, saying which', async (_, call) => {
    await expect(call(loop)).rejects.toMatchObject({ code: 'DATA_NOT_FOUND', message: expect.stringContaining('is a symbolic link that loops') });
    await expect(call(underFile)).rejects.toMatchObject({ code: 'DATA_NOT_FOUND', message: expect.stringMatching(/part of its path is a file|is a file, not a model directory/) });
  });
});
