/**
 * A validation set that is the calibration or training data again — the same file under another path, a link,
 * or a byte-identical copy — is refused before any work: it would score what shaped the model.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import { sameData } from '../lib/data/same-data';
import { compress } from '../lib/pipeline/compress';
import { runFinetune, type FinetuneCliOptions } from '../lib/cli/finetune';
import { expectCode, idxBytes } from './helpers/expect-code';
import { describeShared, sharedPath } from './helpers/shared';

const MODEL = path.join(__dirname, '..', 'models', 'llama-stories260k');
const TEXT = path.join(MODEL, 'calibration.txt');

let tmp: string;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ffmerge-same-'));
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe('sameData', () => {
  test('one file under any path, a link, a byte-identical copy; not a file of other bytes, nor two empty files', async () => {
    const a = path.join(tmp, 'a.txt');
    fs.writeFileSync(a, 'x'.repeat(3 << 20) + 'end'); // more than one compared chunk
    const copy = path.join(tmp, 'copy.txt');
    fs.copyFileSync(a, copy);
    const link = path.join(tmp, 'link.txt');
    fs.symlinkSync(a, link);
    const other = path.join(tmp, 'other.txt');
    fs.writeFileSync(other, 'x'.repeat(3 << 20) + 'enD'); // same size, last byte differs
    const e1 = path.join(tmp, 'e1.txt');
    const e2 = path.join(tmp, 'e2.txt');
    fs.writeFileSync(e1, '');
    fs.writeFileSync(e2, '');
    expect(await sameData(a, path.join(tmp, '.', 'a.txt'))).toBe('file');
    expect(await sameData(a, link)).toBe('file');
    expect(await sameData(a, copy)).toBe('copy');
    expect(await sameData(a, other)).toBeUndefined();
    expect(await sameData(a, TEXT)).toBeUndefined();
    expect(await sameData(e1, e2)).toBeUndefined();
    expect(await sameData(a, path.join(tmp, 'missing.txt'))).toBeUndefined();
  });

  test('a gzip-compressed copy, either way round or both at other levels; not a prefix, a longer text, nor a corrupt .gz', async () => {
    const a = path.join(tmp, 'z.txt');
    const text = Buffer.from(Array.from({ length: 60000 }, (_, i) => `line ${i}\n`).join('')); // inflates to several chunks
    fs.writeFileSync(a, text);
    const gz = (name: string, bytes: Buffer, level = 6) => {
      const f = path.join(tmp, name);
      fs.writeFileSync(f, zlib.gzipSync(bytes, { level }));
      return f;
    };
    const same = gz('z.txt.gz', text);
    const same9 = gz('z9.gz', text, 9); // a name without .gz says nothing either way: the magic bytes do
    expect(await sameData(a, same)).toBe('gzip');
    expect(await sameData(same, a)).toBe('gzip');
    expect(await sameData(same, same9)).toBe('gzip');
    expect(await sameData(a, gz('prefix.gz', text.subarray(0, text.length - 1)))).toBeUndefined();
    expect(await sameData(a, gz('longer.gz', Buffer.concat([text, Buffer.from('x')])))).toBeUndefined();
    expect(await sameData(a, gz('other.gz', Buffer.from(text).fill(0x61, 5000, 5001)))).toBeUndefined();
    const corrupt = path.join(tmp, 'corrupt.gz');
    fs.writeFileSync(corrupt, fs.readFileSync(same).subarray(0, 200));
    expect(await sameData(a, corrupt)).toBeUndefined();
  });

  test('as text: the same lines with CRLF or CR line ends or a byte-order mark, also gzip-compressed; bytes alone do not (tester EX)', async () => {
    const lines = Array.from({ length: 60000 }, (_, i) => `line ${i} é`); // several chunks: a CRLF split across two
    const file = (name: string, bytes: Buffer, gzip = false) => {
      const f = path.join(tmp, name);
      fs.writeFileSync(f, gzip ? zlib.gzipSync(bytes) : bytes);
      return f;
    };
    const lf = file('t-lf.txt', Buffer.from(lines.join('\n') + '\n'));
    for (const [name, bytes, gzip] of [
      ['t-crlf.txt', Buffer.from(lines.join('\r\n') + '\r\n'), false],
      ['t-cr.txt', Buffer.from(lines.join('\r') + '\r'), false],
      ['t-bom.txt', Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(lines.join('\n') + '\n')]), false],
      ['t-crlf.txt.gz', Buffer.from(lines.join('\r\n') + '\r\n'), true],
    ] as const) {
      const other = file(name, bytes, gzip);
      expect(await sameData(lf, other, { text: true })).toBe('text');
      expect(await sameData(other, lf, { text: true })).toBe('text');
      expect(await sameData(lf, other)).toBeUndefined();
    }
    // one line more, or a line that differs, is other text
    expect(await sameData(lf, file('t-more.txt', Buffer.from(lines.join('\r\n') + '\r\nx\r\n')), { text: true })).toBeUndefined();
    expect(await sameData(lf, file('t-diff.txt', Buffer.from(lines.join('\r\n').replace('line 7 ', 'line 8 ') + '\r\n')), { text: true })).toBeUndefined();
  });

  // Linux: /proc/self/fd names each open file
  (process.platform === 'linux' ? test : test.skip)('closes the files it stops reading early: a gzip or text comparison that differs leaves no descriptor open (tester GC)', async () => {
    const big = Buffer.from(Array.from({ length: 400000 }, (_, i) => `row ${i}\n`).join('')); // several MiB: many chunks
    const a = path.join(tmp, 'fd-a.txt');
    const b = path.join(tmp, 'fd-b.txt.gz');
    const c = path.join(tmp, 'fd-c.txt');
    fs.writeFileSync(a, big);
    fs.writeFileSync(b, zlib.gzipSync(Buffer.from(big).fill(0x41, 10, 11))); // differs in the first chunk
    fs.writeFileSync(c, Buffer.from(big.toString().replace('row 3\n', 'row 3\r\n').replace('row 9', 'row 8'))); // text mode reads it
    const open = () => fs.readdirSync('/proc/self/fd').map((fd) => {
      try {
        return fs.readlinkSync(`/proc/self/fd/${fd}`);
      } catch {
        return '';
      }
    }).filter((f) => f.startsWith(tmp) && path.basename(f).startsWith('fd-'));
    expect(await sameData(a, b)).toBeUndefined();
    expect(await sameData(a, c, { text: true })).toBeUndefined();
    // a stream closes its file after destroy() returns: wait for it, a while
    for (let i = 0; i < 100 && open().length > 0; i++) await new Promise((r) => setTimeout(r, 20));
    // before: the read streams under the gunzip and the text transform stayed open (two per comparison)
    expect(open()).toEqual([]);
  });
});

describe('validation that is the calibration or training text again', () => {
  let copy: string;
  beforeAll(() => {
    copy = path.join(tmp, 'valid-copy.txt');
    fs.copyFileSync(TEXT, copy);
  });

  test('compress (language model) refuses a copy of its calibration file as validation, and the file itself', async () => {
    // Before: calibration and validation both read the file's first blocks, and candidates were scored on them.
    const base = { calibration: TEXT, k: 2, method: 'permute', recover: 'none' } as const;
    await expectCode(compress(MODEL, { ...base, validation: copy }), 'INVALID_ARGUMENT', /the validation file is a byte-identical copy of the calibration file/);
    await expectCode(compress(MODEL, { ...base, validation: TEXT }), 'INVALID_ARGUMENT', /the validation file is the calibration file again/);
    const gz = path.join(tmp, 'valid.txt.gz');
    fs.writeFileSync(gz, zlib.gzipSync(fs.readFileSync(TEXT)));
    await expectCode(compress(MODEL, { ...base, validation: gz }), 'INVALID_ARGUMENT', /the validation file holds the same data as the calibration file \(one of the two gzip-compressed\)/);
    const crlf = path.join(tmp, 'valid-crlf.txt');
    fs.writeFileSync(crlf, fs.readFileSync(TEXT, 'utf8').replace(/\n/g, '\r\n'));
    await expectCode(compress(MODEL, { ...base, validation: crlf }), 'INVALID_ARGUMENT', /the validation file holds the same text as the calibration file \(only its line ends or byte-order mark differ\)/);
  });

  test('finetune (language model) refuses a copy of its training file as --valid', async () => {
    const o: FinetuneCliOptions = { data: TEXT, valid: copy, steps: '1', lr: '1e-4', batch: '1', seq: '32', schedule: 'constant', weightDecay: '0', clip: '1', seed: '1', trainable: 'ff', out: path.join(tmp, 'ft') };
    await expectCode(runFinetune(MODEL, o, new AbortController().signal), 'INVALID_ARGUMENT', /--valid .* is a byte-identical copy of the training \(--data\) file/);
    expect(fs.existsSync(path.join(tmp, 'ft'))).toBe(false);
  });
});

describeShared('fixtures/marian-multi30k-en-de', 'translation: a copy of the calibration corpus as validation', () => {
  test('a calibration size that takes every pair is the caller\'s INVALID_ARGUMENT; a corpus too small for the default is INVALID_DATA', async () => {
    // tester EM: both were INVALID_DATA (exit 3), while ViT's was INVALID_ARGUMENT (exit 2)
    const tsv = path.join(tmp, 'three.tsv');
    fs.writeFileSync(tsv, 'A dog runs.\tEin Hund rennt.\nTwo men talk.\tZwei Männer reden.\nA cat sleeps.\tEine Katze schläft.\n');
    const fixture = sharedPath('fixtures', 'marian-multi30k-en-de');
    await expectCode(compress(fixture, { parallel: { tsv }, calibrationPairs: 3, window: '2-3', method: 'permute', recover: 'none' }), 'INVALID_ARGUMENT', /no validation pairs: the calibration size \(--calibration-size 3\) takes all 3 pairs/);
    await expectCode(compress(fixture, { parallel: { tsv }, window: '2-3', method: 'permute', recover: 'none' }), 'INVALID_DATA', /no validation pairs: the calibration size \(by default 600/);
  });

  test('compress refuses it before loading the model', async () => {
    const tsv = path.join(tmp, 'pairs.tsv');
    fs.writeFileSync(tsv, 'A dog runs.\tEin Hund rennt.\nTwo men talk.\tZwei Männer reden.\n');
    const copy = path.join(tmp, 'pairs-copy.tsv');
    fs.copyFileSync(tsv, copy);
    await expectCode(
      compress(sharedPath('fixtures', 'marian-multi30k-en-de'), { parallel: { tsv }, validation: { tsv: copy }, k: 2 }),
      'INVALID_ARGUMENT',
      /the validation corpus is a byte-identical copy of the calibration file/,
    );
  });
});

describeShared('data/fmnist', 'images: a copy of the training file as validation', () => {
  test('compress and finetune refuse it where validation would start inside the calibration / training images', async () => {
    const { trainingImages } = await import('../lib/cli/finetune-images');
    const images = sharedPath('data', 'fmnist', 't10k-images-idx3-ubyte.gz');
    const labels = sharedPath('data', 'fmnist', 't10k-labels-idx1-ubyte.gz');
    const copy = path.join(tmp, 'images-copy.gz');
    fs.copyFileSync(images, copy);
    await expectCode(
      trainingImages(sharedPath('fixtures', 'vit-fmnist'), { images, labels, validImages: copy, validLabels: labels, trainSize: '100', validationSize: '10' }),
      'INVALID_ARGUMENT',
      /inside the training images 0-99 of the same data \(the validation file is a byte-identical copy of the training file\)/,
    );
    await expectCode(
      compress(sharedPath('fixtures', 'vit-fmnist'), { images: { images, labels }, validation: { images: copy, labels }, calibrationImages: 50, k: 2, method: 'permute', recover: 'none' }),
      'INVALID_ARGUMENT',
      /inside the calibration images 0-49 of the same data \(the validation file is a byte-identical copy/,
    );
    // calibration takes every image: no "start it at 10000" in a file of 10,000 (tester EM)
    const all = compress(sharedPath('fixtures', 'vit-fmnist'), { images: { images, labels }, validation: { images: copy, labels }, calibrationImages: 10000, k: 2, method: 'permute', recover: 'none' });
    await expectCode(all, 'INVALID_ARGUMENT', /inside the calibration images 0-9999 of the same data .*: calibrate on fewer images, or give a separate validation set$/);
    // the caller's calibration size takes every image of the one file: INVALID_ARGUMENT, as in the other tasks (tester EP)
    await expectCode(
      compress(sharedPath('fixtures', 'vit-fmnist'), { images: { images, labels }, calibrationImages: 10000, window: '4-5', method: 'permute', recover: 'none' }),
      'INVALID_ARGUMENT',
      /no validation images: the set has 10000 images and validation starts at 10000, after the 10000 calibration images/,
    );
    // a set smaller than the default calibration size: the default is named, with what to change (tester EX)
    const few = path.join(tmp, 'few-images.idx');
    const fewLabels = path.join(tmp, 'few-labels.idx');
    fs.writeFileSync(few, idxBytes([500, 28, 28], new Uint8Array(500 * 784).map((_, i) => (i * 37) % 256)));
    fs.writeFileSync(fewLabels, idxBytes([500], new Uint8Array(500).map((_, i) => i % 10)));
    await expectCode(
      compress(sharedPath('fixtures', 'vit-fmnist'), { images: { images: few, labels: fewLabels }, window: '4-5', method: 'permute', recover: 'none' }),
      'INVALID_DATA',
      /no validation images: the set has 500 images and validation starts at 500, after the 500 calibration images \(calibrationImages, --calibration-size: by default 600, or all the images there are\): calibrate on fewer, or give a validation set \(validation: --valid <folder>, or --valid-images with --valid-labels\)/,
    );
    // validation from image 0 already: no "start validation earlier" (tester EM)
    await expectCode(
      trainingImages(sharedPath('fixtures', 'vit-fmnist'), { images: copy, labels, validImages: images, validLabels: labels, trainSize: '100', validationSize: '10001' }),
      'INVALID_ARGUMENT',
      /--validation-size 10001 is more than the 10000 validation images from --validation-start 0: ask for at most 10000$/,
    );
  });
});

test('the very token blocks given as calibration and validation are refused too', async () => {
  const blocks = [Int32Array.from({ length: 64 }, (_, i) => 1 + (i % 50))];
  await expectCode(compress(MODEL, { calibration: blocks, validation: blocks, k: 2, method: 'permute', recover: 'none' }), 'INVALID_ARGUMENT', /validation is the very token blocks given as calibration/);
});

describe('test data that the run calibrates or validates on is refused: its number would not be held out', () => {
  test('language model: the calibration file, or a copy of the validation file, as test', async () => {
    const dir = fs.mkdtempSync(path.join(tmp, 'held-'));
    const valid = path.join(dir, 'valid.txt');
    fs.writeFileSync(valid, fs.readFileSync(TEXT, 'utf8').split('\n').reverse().join('\n'));
    const validCopy = path.join(dir, 'valid-copy.txt');
    fs.copyFileSync(valid, validCopy);
    const base = { calibration: TEXT, k: 2, method: 'permute', recover: 'none' } as const;
    // before: accepted, and the "test" number covered the calibration tokens
    await expectCode(compress(MODEL, { ...base, test: TEXT }), 'INVALID_ARGUMENT', /the test file is the calibration file again, so the test number would not be held out/);
    await expectCode(compress(MODEL, { ...base, validation: valid, test: validCopy }), 'INVALID_ARGUMENT', /the test file is a byte-identical copy of the validation file/);
  });
});

describeShared('fixtures/marian-multi30k-en-de', 'translation: the calibration corpus as test', () => {
  test('is refused before loading the model', async () => {
    const tsv = path.join(tmp, 'pairs-test.tsv');
    fs.writeFileSync(tsv, 'A dog runs.\tEin Hund rennt.\nTwo men talk.\tZwei Männer reden.\n');
    await expectCode(compress(sharedPath('fixtures', 'marian-multi30k-en-de'), { parallel: { tsv }, test: { tsv }, k: 2 }), 'INVALID_ARGUMENT', /the test corpus is the calibration file again/);
  });
});

describeShared('data/fmnist', 'images: test images that are calibration images', () => {
  test('are refused', async () => {
    const images = sharedPath('data', 'fmnist', 't10k-images-idx3-ubyte.gz');
    const labels = sharedPath('data', 'fmnist', 't10k-labels-idx1-ubyte.gz');
    await expectCode(
      compress(sharedPath('fixtures', 'vit-fmnist'), { images: { images, labels }, calibrationImages: 50, validationStart: 9000, validationImages: 20, test: { images, labels }, testImages: 100, k: 2, method: 'permute', recover: 'none' }),
      'INVALID_ARGUMENT',
      /the test images 0-99 overlap the calibration images 0-49 of the same file/,
    );
  });
});

describe('the same text as token-id rows (not one file, so only the tokens tell)', () => {
  jest.setTimeout(120_000);
  const rows = async (from: number, to: number) => {
    const { loadTokenizer } = await import('../lib/tokenizer');
    const { tokenizeToBlocks } = await import('../lib/data/blocks');
    const { tokens } = tokenizeToBlocks(await loadTokenizer(MODEL), fs.readFileSync(TEXT, 'utf8'), 128);
    const file = path.join(tmp, `rows-${from}-${to}.jsonl`);
    const lines: string[] = [];
    for (let at = from; at + 128 <= to; at += 128) lines.push(JSON.stringify({ input_ids: Array.from(tokens.subarray(at, at + 128)) }));
    fs.writeFileSync(file, lines.join('\n') + '\n');
    return file;
  };
  const opts = { calibration: TEXT, calibrationTokens: 1024, k: 2, window: '1-2', method: 'permute', recover: 'none' } as const;

  test('as validation or test, calibration text given again as ids is refused; ids of other text run', async () => {
    const again = await rows(0, 1024);
    await expectCode(compress(MODEL, { ...opts, validation: again }), 'INVALID_ARGUMENT', /^8 of the 8 validation blocks \(1,024 of 1,024 tokens\) repeat text of the calibration blocks: the same data given twice \(as text and as token-id rows, or as two copies\), so candidates would be scored on the text that shaped them/);
    const other = await rows(4096, 5120);
    await expectCode(compress(MODEL, { ...opts, validation: other, test: again }), 'INVALID_ARGUMENT', /^8 of the 8 test blocks .* repeat text of the calibration blocks: .*so the test number would not be held out/);
    await expectCode(compress(MODEL, { ...opts, validation: other, test: await rows(4096, 4608) }), 'INVALID_ARGUMENT', /^4 of the 4 test blocks .* repeat text of the validation blocks/);
    const r = await compress(MODEL, { ...opts, validation: other, test: await rows(8192, 9216) });
    expect(r.data.notes.filter((n) => /repeat text/.test(n))).toEqual([]);
  });

  test('validation after the calibration budget of one file is never refused: its repeats are duplicates within the data, noted', async () => {
    const twice = path.join(tmp, 'twice.txt');
    const text = fs.readFileSync(TEXT, 'utf8').slice(0, 3000);
    fs.writeFileSync(twice, text + '\n' + text);
    const r = await compress(MODEL, { ...opts, calibration: twice, calibrationTokens: 1024, validationTokens: 1024 });
    expect(r.data.notes).toEqual(expect.arrayContaining([expect.stringMatching(/^\d+ of the \d+ validation blocks \(.*\) repeat text of the calibration blocks \(most of their 32-token runs\): those blocks score text that shaped the merge; overlapping files, or duplicates within the data\?$/)]));
  });

  test("a template the calibration holds once but every validation row holds is no evidence (tester GB), and the check yields to the event loop", async () => {
    const { loadTokenizer } = await import('../lib/tokenizer');
    const { tokenizeToBlocks } = await import('../lib/data/blocks');
    const { tokens } = tokenizeToBlocks(await loadTokenizer(MODEL), fs.readFileSync(TEXT, 'utf8'), 128);
    const template = Array.from(tokens.subarray(0, 200));
    const row = (from: number) => JSON.stringify({ input_ids: [...template, ...tokens.subarray(from, from + 56)] });
    const cal = path.join(tmp, 'tpl1-cal.jsonl');
    fs.writeFileSync(cal, row(300) + '\n');
    const val = path.join(tmp, 'tpl1-val.jsonl');
    fs.writeFileSync(val, Array.from({ length: 16 }, (_, i) => row(4000 + 56 * i)).join('\n') + '\n');
    const r = await compress(MODEL, { ...opts, calibration: cal, validation: val, calibrationTokens: 256 });
    expect(r.data.notes.filter((n) => /repeat text/.test(n))).toEqual([]);
    // a million tokens are hashed in slices, with the event loop served between them
    const { tokenRuns } = await import('../lib/data/shared-tokens');
    const big = Array.from({ length: 1000 }, (_, i) => Int32Array.from({ length: 1000 }, (_, j) => (i * 7919 + j * 104729) % 50000));
    let ticks = 0;
    const iv = setInterval(() => ticks++, 0);
    try {
      await tokenRuns(big);
    } finally {
      clearInterval(iv);
    }
    expect(ticks).toBeGreaterThan(0);
  });

  test('rows that share only a template or padding are not repeats (reviewer RD: refused as "given twice")', async () => {
    const { loadTokenizer } = await import('../lib/tokenizer');
    const { tokenizeToBlocks } = await import('../lib/data/blocks');
    const { tokens } = tokenizeToBlocks(await loadTokenizer(MODEL), fs.readFileSync(TEXT, 'utf8'), 128);
    const template = Array.from(tokens.subarray(0, 150));
    const write = (name: string, from: number, n: number) => {
      const file = path.join(tmp, name);
      // each row: the same 150-token preamble, its own 50 tokens, then padding with id 2 (most of its runs are shared)
      const lines = Array.from({ length: n }, (_, i) => JSON.stringify({ input_ids: [...template, ...tokens.subarray(from + 50 * i, from + 50 * (i + 1)), ...Array(56).fill(2)] }));
      fs.writeFileSync(file, lines.join('\n') + '\n');
      return file;
    };
    const r = await compress(MODEL, { ...opts, calibration: write('tpl-cal.jsonl', 200, 24), validation: write('tpl-val.jsonl', 5000, 24), calibrationTokens: 6144 });
    expect(r.data.notes.filter((n) => /repeat text/.test(n))).toEqual([]);
  });
});
