import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import { countPredictions, cutBlocks, loadSplitBlocks, tokenizeToBlocks } from '../lib/data/blocks';
import { readParallel, readParallelTsv, streamParallel } from '../lib/data/parallel';
import { lineSplitter, newlines, readDocuments, readLines, readText, TEXT_HEAD_BYTES } from '../lib/data/text';
import { loadTokenizer } from '../lib/tokenizer';
import { MAX_TOKENIZER_WORKERS, TOKENIZE_LIMITS, tokenizeFile, tokenizeFileWith, type TokenizeLimits } from '../lib/data/tokenize-file';
import { blocksFrom, fitBlockSize, takeTokens } from '../lib/pipeline/data';
import { isTokenRowFile, readTokenRows } from '../lib/data/token-rows';
import { prng } from './helpers/safetensors-bytes';
import { describeShared, hasShared, sharedPath } from './helpers/shared';
import type { Progress } from '../lib/native/job';

let dir: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ffmerge-data-'));
});
afterAll(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

function write(name: string, content: string, gzip = false): string {
  const f = path.join(dir, name);
  fs.writeFileSync(f, gzip ? zlib.gzipSync(Buffer.from(content, 'utf8')) : content);
  return f;
}

/** Cutting limits small enough that a file of a few kB is tokenized in many pieces. */
function tiny(o: Partial<TokenizeLimits> = {}): TokenizeLimits {
  return { ...TOKENIZE_LIMITS, oneCallChars: 2048, pieceChars: 1024, maxCallChars: 8192, verifyChars: 128, ...o };
}

/** How many ids differ between two id arrays, a difference in length counting each missing id. */
function differing(a: Int32Array, b: Int32Array): number {
  let d = Math.abs(a.length - b.length);
  for (let i = 0; i < Math.min(a.length, b.length); i++) if (a[i] !== b[i]) d++;
  return d;
}

async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

describe('text datasets', () => {
  const content = 'first line\r\nsecond ünïcode 日本\n\nfourth';

  test('plain and gzip text give the same lines and the exact contents', async () => {
    for (const [name, gz] of [['a.txt', false], ['a.txt.gz', true], ['gz-without-suffix.txt', true]] as const) {
      const f = write(name, content, gz);
      expect(await collect(readLines(f))).toEqual(['first line', 'second ünïcode 日本', '', 'fourth']);
      expect(await collect(readDocuments(f))).toEqual(['first line', 'second ünïcode 日本', '', 'fourth']);
      // the whole text has its line ends as Python's text mode reads them (universal newlines)
      expect(await readText(f)).toBe(content.replace('\r\n', '\n'));
    }
  });

  test('whole texts read "\\r\\n" and a lone "\\r" as "\\n", also when a chunk ends between "\\r" and "\\n"', async () => {
    const lf = newlines();
    expect([lf('a\r'), lf('\nb\r'), lf('c\r\r'), lf('\n'), lf('d\r'), lf('', true)].join('')).toBe('a\nb\nc\n\nd\n');
    // 64 KiB stream chunks (plain) and inflated chunks (gzip): a "\r\n" across the first chunk boundary
    const text = `${'word '.repeat(13107)}\r\nsecond\rthird\r\n`;
    expect(Buffer.byteLength(text.slice(0, 65536))).toBe(65536);
    for (const gz of [false, true]) expect(await readText(write(`crlf-${gz}.txt${gz ? '.gz' : ''}`, text, gz))).toBe(text.replace(/\r\n?/g, '\n'));
  });

  test('the line readers end a line at "\\n", "\\r\\n" or a lone "\\r" (Python text mode), across chunk boundaries: text, JSON Lines, token rows, parallel text', async () => {
    // a "\r" as the first chunk's last character (64 KiB stream chunks): it must wait to see whether "\n" follows
    const long = 'word '.repeat(13107);
    expect(Buffer.byteLength(`${long}\r`)).toBe(65536);
    for (const gz of [false, true]) {
      const f = write(`lines-${gz}.txt${gz ? '.gz' : ''}`, `${long}\r\nsecond\rthird\r\rfifth\r`, gz);
      expect(await collect(readLines(f))).toEqual([long, 'second', 'third', '', 'fifth']);
    }
    const lone = write('lone.txt', `${long}\rsecond`);
    expect(await collect(readLines(lone))).toEqual([long, 'second']);
    const docs = write('lone-cr.jsonl', '{"text": "a"}\r{"text": "b"}\r\r{"text": "c"}');
    expect(await collect(readDocuments(docs))).toEqual(['a', 'b', 'c']);
    expect(await readText(docs)).toBe('a\nb\nc');
    const rows = write('lone-cr-ids.jsonl', '{"input_ids": [1, 2]}\r{"input_ids": [3, 4]}\r');
    expect((await readTokenRows(rows)).map((r) => Array.from(r))).toEqual([[1, 2], [3, 4]]);
    const [en, de] = [write('p.en', 'a cat\rthe dog\r'), write('p.de', 'eine Katze\r\nder Hund')];
    expect(await readParallel(en, de)).toEqual([
      { source: 'a cat', target: 'eine Katze' },
      { source: 'the dog', target: 'der Hund' },
    ]);
  });

  test('a padded token-id row keeps the tokens its attention_mask marks 1; a mask with a hole, or of another length, is refused', async () => {
    // a tokenized dataset exported as it is: padded rows, a text column beside the ids
    const rows = write(
      'padded.jsonl',
      [
        '{"text": "ignored", "input_ids": [5, 6, 7, 0, 0], "attention_mask": [1, 1, 1, 0, 0]}',
        '{"input_ids": [0, 0, 8, 9], "attention_mask": [0, 0, 1, 1]}',
        '{"input_ids": [3, 4], "attention_mask": [1, 1]}',
        '{"input_ids": [1, 2]}',
      ].join('\n'),
    );
    // before: the pad ids were scored as tokens ([5, 6, 7, 0, 0], [0, 0, 8, 9])
    expect((await readTokenRows(rows)).map((r) => Array.from(r))).toEqual([[5, 6, 7], [8, 9], [3, 4], [1, 2]]);
    // a pad id outside the vocabulary (Llama 2's added [PAD], or -1) is dropped, not refused; a kept one is refused
    const outside = write('pad-outside.jsonl', '{"input_ids": [5, 6, 32000, -1], "attention_mask": [1, 1, 0, 0]}\n');
    expect((await readTokenRows(outside, { vocab: 32000 })).map((r) => Array.from(r))).toEqual([[5, 6]]);
    await expect(readTokenRows(write('kept-outside.jsonl', '{"input_ids": [5, 32000], "attention_mask": [1, 1]}\n'), { vocab: 32000 })).rejects.toMatchObject({ code: 'INVALID_DATA', message: expect.stringContaining('input_ids[1] = 32000 is not a token id') });
    for (const [row, message] of [
      ['{"input_ids": [1, 2, 3], "attention_mask": [1, 0, 1]}', /line 1: "attention_mask" has a 0 at 1, inside the tokens it marks 1 \(0-2\)/],
      ['{"input_ids": [1, 2, 3], "attention_mask": [1, 1]}', /"attention_mask" must be a list of 0s and 1s as long as "input_ids" \(3\)/],
      ['{"input_ids": [1, 2], "attention_mask": [1, true]}', /"attention_mask"\[1\] = true is not 0 or 1/],
      ['{"input_ids": [1, 2, 3], "attention_mask": [0, 0, 1]}', /at least 2 token ids where "attention_mask" is 1/],
    ] as const) {
      await expect(readTokenRows(write('bad-mask.jsonl', row))).rejects.toMatchObject({ code: 'INVALID_DATA', message: expect.stringMatching(message) });
    }
  });

  test('gzip is inflated in chunks: multi-byte characters split across chunks survive, breaking out early returns the first lines', async () => {
    const rnd = prng(11);
    const lines: string[] = [];
    for (let i = 0; i < 20000; i++) lines.push(`${i} ${'é日🙂abc'.repeat(1 + Math.floor(rnd() * 8))}`);
    const f = write('big.txt.gz', lines.join('\n') + '\n', true);
    expect(await collect(readLines(f))).toEqual(lines);
    const firstThree: string[] = [];
    for await (const l of readLines(f)) {
      firstThree.push(l);
      if (firstThree.length === 3) break;
    }
    expect(firstThree).toEqual(lines.slice(0, 3));
  });

  test('JSON Lines documents (plain and gzip), custom field, blank lines skipped', async () => {
    const jsonl = '{"text": "doc one", "id": 1}\n\n{"text": "doc\\ntwo", "body": "b"}\n';
    for (const [name, gz] of [['d.jsonl', false], ['d.jsonl.gz', true]] as const) {
      const f = write(name, jsonl, gz);
      expect(await collect(readDocuments(f))).toEqual(['doc one', 'doc\ntwo']);
      expect(await readText(f)).toBe('doc one\ndoc\ntwo');
    }
    const f = write('e.jsonl', '{"body": "x"}\n{"body": "y"}');
    expect(await collect(readDocuments(f, { field: 'body' }))).toEqual(['x', 'y']);
    await expect(collect(readDocuments(f))).rejects.toMatchObject({ code: 'INVALID_DATA' });
    await expect(collect(readDocuments(write('bad.jsonl', '{"text": "ok"}\n{oops\n')))).rejects.toMatchObject({
      code: 'INVALID_DATA',
      message: expect.stringContaining('line 2'),
    });
  });

  test('missing files are DATA_NOT_FOUND; corrupt gzip is INVALID_DATA', async () => {
    await expect(readText(path.join(dir, 'nope.txt'))).rejects.toMatchObject({ code: 'DATA_NOT_FOUND' });
    await expect(collect(readLines(path.join(dir, 'nope.txt.gz')))).rejects.toMatchObject({ code: 'DATA_NOT_FOUND' });
    const gz = zlib.gzipSync(Buffer.from('x'.repeat(10000)));
    const f = path.join(dir, 'corrupt.txt.gz');
    fs.writeFileSync(f, gz.subarray(0, gz.length - 20));
    await expect(readText(f)).rejects.toMatchObject({ code: 'INVALID_DATA' });
  });
});

describe('what is not text is INVALID_DATA', () => {
  const bytes = (name: string, b: Buffer): string => {
    const f = path.join(dir, name);
    fs.writeFileSync(f, b);
    return f;
  };
  // thunks, each awaited in turn: a promise made early and rejected before its await would be unhandled
  const readers = (f: string) => [() => collect(readLines(f)), () => readText(f), () => collect(readDocuments(f))];

  test('an empty file, and one of only whitespace and blank lines (plain, gzip, JSON Lines of empty texts)', async () => {
    // Before: read as a dataset of nothing, and scored (a perplexity on 3 tokens, BLEU 0.00 on blank sentences).
    for (const f of [write('empty.txt', ''), write('blank.txt', '\n  \n\t\r\n'), write('blank.txt.gz', '\n\n', true)]) {
      for (const read of readers(f)) await expect(read()).rejects.toMatchObject({ code: 'INVALID_DATA', message: expect.stringContaining('holds no text') });
    }
    const jsonl = write('empty-docs.jsonl', '{"text": ""}\n{"text": " "}\n');
    // its lines are JSON, not blank: the documents are what is empty
    for (const read of [() => readText(jsonl), () => collect(readDocuments(jsonl))]) {
      await expect(read()).rejects.toMatchObject({ code: 'INVALID_DATA', message: expect.stringContaining('holds no text') });
    }
    // one word among blank lines is text
    expect(await collect(readLines(write('one-word.txt', '\n\nword\n')))).toEqual(['', '', 'word']);
  });

  test('binary: a NUL byte or invalid UTF-8 in the first block, also inside a .gz', async () => {
    const rnd = prng(5);
    const random = Buffer.from(Array.from({ length: 5000 }, () => Math.floor(rnd() * 256)));
    for (const f of [
      bytes('random.txt', random),
      bytes('nul.txt', Buffer.from('some text\0more text\n')),
      bytes('latin1.txt', Buffer.from('caf\xe9 cr\xe8me\n', 'latin1')),
      bytes('random-inside.txt.gz', zlib.gzipSync(random)),
    ]) {
      for (const read of readers(f)) await expect(read()).rejects.toMatchObject({ code: 'INVALID_DATA', message: expect.stringContaining('is not text') });
    }
    // UTF-16, with a byte-order mark or without, is named as such (tester EX: "byte 3 is a NUL byte")
    for (const [name, data] of [
      ['u16le-bom.txt', Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from('hello world\n', 'utf16le')])],
      ['u16be-bom.txt', Buffer.concat([Buffer.from([0xfe, 0xff]), Buffer.from('hello world\n', 'utf16le').swap16()])],
      ['u16le.txt', Buffer.from('hello world\n', 'utf16le')],
    ] as const) {
      for (const read of readers(bytes(name, data))) await expect(read()).rejects.toMatchObject({ code: 'INVALID_DATA', message: expect.stringContaining('is not text (it is UTF-16: save it as UTF-8)') });
    }
    // the byte is named (tester DR: "its first 29715 bytes are not valid UTF-8" for a byte at 6)
    const early = bytes('latin1-early.txt', Buffer.concat([Buffer.from('hello \xff\xfe world\n', 'latin1'), Buffer.from('more text\n'.repeat(3000))]));
    for (const read of readers(early)) await expect(read()).rejects.toMatchObject({ code: 'INVALID_DATA', message: expect.stringContaining('(byte 6 is not valid UTF-8') });
    // a character left incomplete is named from its lead byte, not the byte after it (tester DT); in a .gz, in its text
    const lead = Buffer.from('abc \xe2\x28\xa1 and more\n', 'latin1');
    for (const read of readers(bytes('cut-char.txt', lead))) await expect(read()).rejects.toMatchObject({ message: expect.stringContaining('(byte 4 is not valid UTF-8') });
    const cut4 = Buffer.concat([Buffer.from('abc \xf0\x9f\x98 ', 'latin1'), Buffer.from('more\n')]);
    for (const read of readers(bytes('cut-four.txt.gz', zlib.gzipSync(cut4)))) await expect(read()).rejects.toMatchObject({ message: expect.stringContaining('(byte 4 of its inflated text is not valid UTF-8') });
  });

  test('a file cut inside a UTF-8 character at its end is not text (small, exactly one block, larger, gzip); whole characters at the end are', async () => {
    // Before: the cut bytes were decoded as U+FFFD and scored (eval: 366 tokens instead of 363, exit 0)
    const cut = Buffer.from([0xe2, 0x82]); // the first two of "€"'s three bytes
    const words = (n: number) => Buffer.from('word '.repeat(Math.ceil(n / 5)).slice(0, n));
    for (const f of [
      bytes('cut-small.txt', Buffer.concat([Buffer.from('Once upon a time.\n'), cut])),
      bytes('cut-lead.txt', Buffer.from('Once upon a time.\n\xc3', 'latin1')),
      bytes('cut-block.txt', Buffer.concat([words(TEXT_HEAD_BYTES - 2), cut])), // exactly 64 KiB
      bytes('cut-large.txt', Buffer.concat([words(3 * TEXT_HEAD_BYTES), cut])),
      bytes('cut-small.txt.gz', zlib.gzipSync(Buffer.concat([Buffer.from('Once upon a time.\n'), cut]))),
      bytes('stray.txt', Buffer.concat([words(3 * TEXT_HEAD_BYTES), Buffer.from([0x41, 0x82])])),
    ]) {
      for (const read of readers(f)) await expect(read()).rejects.toMatchObject({ code: 'INVALID_DATA', message: expect.stringContaining('ends inside a UTF-8 character') });
    }
    for (const end of ['€', '日本', 'é', '😀']) {
      expect(await readText(bytes('whole.txt', Buffer.concat([words(3 * TEXT_HEAD_BYTES), Buffer.from(end)])))).toMatch(new RegExp(`${end}$`, 'u'));
      expect(await readText(bytes('whole-small.txt', Buffer.from(`a ${end}`)))).toBe(`a ${end}`);
    }
  });

  test('a file named .json is refused, not tokenized as prose; named .jsonl, or with format given, it is read', async () => {
    // Before: eval scored {"input_ids": …} rows in a .json file as text (perplexity 158 on 423 tokens, exit 0)
    const rows = '{"text": "Once upon a time"}\n{"text": "It sat."}\n';
    for (const f of [write('rows.json', rows), write('rows.JSON.gz', rows, true)]) {
      const tokenizer = path.join(__dirname, '..', 'models', 'llama-stories260k');
      for (const read of [() => readText(f), () => collect(readDocuments(f)), () => isTokenRowFile(f), () => tokenizeFile(tokenizer, f)]) {
        await expect(read()).rejects.toMatchObject({ code: 'INVALID_DATA', message: expect.stringContaining('is named .json') });
      }
      expect(await collect(readDocuments(f, { format: 'jsonl' }))).toEqual(['Once upon a time', 'It sat.']);
    }
    expect(await collect(readDocuments(write('rows.jsonl', rows)))).toEqual(['Once upon a time', 'It sat.']);
  });

  test('a row of token ids among rows of text is said to be one (tester DR: "has no string field" alone)', async () => {
    const f = write('mixed.jsonl', '{"text": "Once upon a time"}\n'.repeat(6) + '{"input_ids": [1, 2, 3]}\n');
    const tokenizer = path.join(__dirname, '..', 'models', 'llama-stories260k');
    for (const read of [() => readText(f), () => collect(readDocuments(f)), () => tokenizeFile(tokenizer, f)]) {
      await expect(read()).rejects.toMatchObject({ code: 'INVALID_DATA', message: expect.stringContaining('line 7 has no string field "text", but "input_ids": rows of text and of token ids do not mix') });
    }
  });

  test('JSON Lines rows in a file not named .jsonl are refused where it would be tokenized as prose; with format txt given, or prose that starts with a brace, it is read', async () => {
    // tester DE: token ids in ids.txt were scored as text, braces and all (perplexity 103.6; 3.6 named .jsonl)
    const tokenizer = path.join(__dirname, '..', 'models', 'llama-stories260k');
    const files = [
      write('ids.txt', '\n{"input_ids": [1, 2, 3]}\n{"input_ids": [4, 5]}\n'),
      write('ids', '\uFEFF{"input_ids": [1, 2, 3]}\r\n'),
      write('ids.gz', '{"input_ids": [1, 2, 3]}\n', true),
      write('docs.txt', '{"text": "Once upon a time", "id": 3}\n{"text": "It sat."}\n'),
    ];
    for (const f of files) {
      await expect(tokenizeFile(tokenizer, f)).rejects.toMatchObject({ code: 'INVALID_DATA', message: expect.stringMatching(/holds JSON Lines \(\{"(input_ids|text)": …\} rows\) but is not named \.jsonl/) });
      await expect(blocksFrom(f, { blockSize: 4, what: 'validation', tokenizerDir: tokenizer })).rejects.toMatchObject({ code: 'INVALID_DATA' });
      expect((await tokenizeFile(tokenizer, f, { format: 'txt' })).length).toBeGreaterThan(3);
    }
    // the same with lone "\r" line ends, as every reader reads them, and a one-row file with no line end (tester DG)
    for (const f of [write('ids-cr.txt', '{"input_ids": [1, 2]}\r{"input_ids": [3, 4]}\r'), write('one-row.txt', '{"input_ids": [1, 2, 3]}')]) {
      await expect(tokenizeFile(tokenizer, f)).rejects.toMatchObject({ code: 'INVALID_DATA', message: expect.stringContaining('but is not named .jsonl') });
    }
    // still prose: a brace that is not a JSON row, a JSON row of other fields, an array, and a corpus whose first
    // line only is a row (tester DG: renamed .jsonl as the refusal said, it failed at line 2)
    for (const text of ['{a story in braces}\nOnce upon a time.\n', '{"title": "A story"}\nOnce upon a time.\n', '[1, 2, 3]\nOnce upon a time.\n', '{"text": "a", "label": 1}\nOnce upon a time.\n']) {
      expect((await tokenizeFile(tokenizer, write('prose.txt', text))).length).toBeGreaterThan(3);
    }
    // a tokenizer used on the calling thread (its folder changed since it was loaded) refuses them too
    const dir2 = fs.mkdtempSync(path.join(os.tmpdir(), 'ffmerge-tokdir-rows-'));
    try {
      for (const f of ['tokenizer.json', 'tokenizer_config.json', 'config.json']) fs.copyFileSync(path.join(tokenizer, f), path.join(dir2, f));
      const tok = await loadTokenizer(dir2);
      fs.appendFileSync(path.join(dir2, 'tokenizer_config.json'), ' ');
      await expect(loadSplitBlocks(tok, files[0]!, 4)).rejects.toMatchObject({ code: 'INVALID_DATA', message: expect.stringContaining('but is not named .jsonl') });
      expect((await loadSplitBlocks(tok, write('prose2.txt', 'Once upon a time.\n'), 4)).tokens.length).toBeGreaterThan(3);
    } finally {
      fs.rmSync(dir2, { recursive: true, force: true });
    }
  });

  test('lines are split in linear time: an unfinished line is held as pieces, joined once it ends, whatever the chunking', async () => {
    // tester DE: each 64 KiB chunk re-split the unfinished line whole, so a 40 MB line took 2 minutes to read
    const rnd = prng(11);
    for (let trial = 0; trial < 50; trial++) {
      const text = Array.from({ length: Math.floor(rnd() * 200) }, () => (rnd() < 0.1 ? '\n' : String.fromCharCode(97 + Math.floor(rnd() * 26)))).join('');
      const split = lineSplitter();
      const got: string[] = [];
      for (let i = 0; i < text.length; ) {
        const n = Math.floor(rnd() * 12);
        got.push(...split(text.slice(i, i + n)));
        i += n;
      }
      got.push(...split('', true));
      expect(got).toEqual(text.split('\n'));
    }
    const split = lineSplitter();
    const joins = jest.spyOn(Array.prototype, 'join');
    try {
      for (let i = 0; i < 1000; i++) expect(split('x'.repeat(100))).toEqual([]);
      expect(joins).not.toHaveBeenCalled(); // nothing joined, nor scanned again, until the line ends
      expect(split('y\nz')).toEqual(['x'.repeat(100_000) + 'y']);
      expect(split('', true)).toEqual(['z']);
    } finally {
      joins.mockRestore();
    }
    // the readers: one line of 8 MB (128 chunks) arrives whole, in JSON Lines rows too
    const big = `{"input_ids": [${'7, '.repeat(2_000_000)}7]}`;
    const f = write('one-long-row.jsonl', `${big}\n{"input_ids": [1, 2]}\n`);
    expect(await collect(readLines(f))).toEqual([big, '{"input_ids": [1, 2]}']);
    expect((await readTokenRows(f)).map((r) => r.length)).toEqual([2_000_001, 2]);
  });

  test('a byte-order mark inside a JSON Lines file is named in the error, in every reader (tester DE)', async () => {
    const model = path.join(__dirname, '..', 'models', 'llama-stories260k');
    const docs = write('mid-bom.jsonl', '{"text": "a"}\n\uFEFF{"text": "b"}\n');
    const rows = write('mid-bom-ids.jsonl', '{"input_ids": [1, 2]}\n\uFEFF{"input_ids": [3, 4]}\n');
    const named = { code: 'INVALID_DATA', message: expect.stringContaining('line 2 is not valid JSON (it starts with a byte-order mark (U+FEFF)') };
    await expect(collect(readDocuments(docs))).rejects.toMatchObject(named);
    await expect(tokenizeFile(model, docs)).rejects.toMatchObject(named);
    await expect(readTokenRows(rows)).rejects.toMatchObject(named);
  });

  test('without a vocabulary, a token id must still fit an Int32Array: 2^31 and 2^40 are refused, not stored wrapped', async () => {
    // tester DE: 1099511627776 (2^40) was read as id 0
    for (const id of ['1099511627776', '2147483648']) {
      await expect(readTokenRows(write('wide-id.jsonl', `{"input_ids": [5, ${id}]}\n`))).rejects.toMatchObject({ code: 'INVALID_DATA', message: expect.stringContaining(`input_ids[1] = ${id} is not a token id (0..2147483647)`) });
    }
    expect(Array.from((await readTokenRows(write('max-id.jsonl', '{"input_ids": [5, 2147483647]}\n')))[0]!)).toEqual([5, 2147483647]);
    // nor with a vocabulary larger than that (tester DG: vocab 2^32 stored 3e9 as -1294967296)
    await expect(readTokenRows(write('wide-vocab.jsonl', '{"input_ids": [1, 3000000000]}\n'), { vocab: 2 ** 32 })).rejects.toMatchObject({ code: 'INVALID_DATA', message: expect.stringContaining('input_ids[1] = 3000000000 is not a token id (0..2147483647)') });
  });

  test('a file named .gz that is not gzip (random bytes, or plain text) is refused, not read as text', async () => {
    // Before: 3000 random bytes named bad.txt.gz were tokenized as plain text.
    for (const f of [bytes('bad.txt.gz', Buffer.from('plain words, not compressed\n')), bytes('bad.jsonl.gz', Buffer.from('{"text": "x"}\n'))]) {
      for (const read of readers(f)) await expect(read()).rejects.toMatchObject({ code: 'INVALID_DATA', message: expect.stringContaining('not gzip-compressed') });
    }
  });

  test('still text: a BOM, a character cut by the end of the first block, a stray bad byte after it', async () => {
    expect(await readText(bytes('bom.txt', Buffer.from('\ufeffhello\n')))).toBe('hello\n'); // accepted, and its BOM dropped
    const cut = 'a'.repeat(TEXT_HEAD_BYTES - 1) + '日本\n'; // 日 spans bytes 64K-1 .. 64K+1
    expect(await readText(write('cut.txt', cut))).toBe(cut);
    expect(await readText(write('cut.txt.gz', cut, true))).toBe(cut);
    const late = Buffer.concat([Buffer.from('b'.repeat(TEXT_HEAD_BYTES + 10)), Buffer.from([0xff]), Buffer.from('\n')]);
    expect((await readText(bytes('late.txt', late))).length).toBe(TEXT_HEAD_BYTES + 12);
  });

  test('parallel files with only blank lines are INVALID_DATA, either side', async () => {
    const blank = write('blank.en', '\n\n\n');
    const ok = write('ok.de', 'a\nb\nc\n');
    await expect(readParallel(blank, ok)).rejects.toMatchObject({ code: 'INVALID_DATA', message: expect.stringMatching(/line 1: \S*blank\.en is empty and \S*ok\.de is not/) });
    await expect(readParallel(write('ok.en', 'x\ny\nz\n'), write('blank.de', '\n \n\n'))).rejects.toMatchObject({ code: 'INVALID_DATA', message: expect.stringMatching(/line 1: \S*blank\.de is empty and \S*ok\.en is not/) });
    // blank on both sides: no pairs, and the files hold no text
    await expect(readParallel(blank, write('blank2.de', '\n\n\n'))).rejects.toMatchObject({ code: 'INVALID_DATA', message: expect.stringContaining('holds no text') });
    await expect(readParallelTsv(write('blank.tsv', '\n\n'))).rejects.toMatchObject({ code: 'INVALID_DATA' });
  });

  describe('tokenized in the worker (the bundled llama-stories260k tokenizer)', () => {
    const model = path.join(__dirname, '..', 'models', 'llama-stories260k');

    test('empty, blank, binary and fake .gz files are INVALID_DATA, for tokenizeFile and blocksFrom (eval --data, compress --valid)', async () => {
      const rnd = prng(6);
      const files = [
        write('w-empty.txt', ''),
        write('w-blank.txt', '\n \n'),
        write('w-blank.jsonl', '{"text": ""}\n'),
        bytes('w-bin.txt', Buffer.from(Array.from({ length: 5000 }, () => Math.floor(rnd() * 256)))),
        bytes('w-bad.txt.gz', Buffer.from('not compressed text\n')),
      ];
      for (const f of files) {
        await expect(tokenizeFile(model, f)).rejects.toMatchObject({ code: 'INVALID_DATA' });
        await expect(tokenizeFile(model, f, { maxTokens: 10 })).rejects.toMatchObject({ code: 'INVALID_DATA' });
        await expect(blocksFrom(f, { blockSize: 16, what: 'validation', tokenizerDir: model })).rejects.toMatchObject({ code: 'INVALID_DATA' });
      }
    });

    test("a progress callback's thrown value fails the call as it is, whatever it is (tester DI: a new Error, its code lost)", async () => {
      const cal = path.join(model, 'calibration.txt');
      for (const thrown of [{ code: 'MINE' }, 'a string', 42, new RangeError('r')]) {
        await expect(tokenizeFile(model, cal, { onProgress: () => { throw thrown; } })).rejects.toBe(thrown);
      }
    });

    test('progress counts the bytes tokenized, never backwards, and says when it waits on one call (tester CC)', async () => {
      const cal = path.join(model, 'calibration.txt');
      const size = fs.statSync(cal).size;
      const reports: Progress[] = [];
      await tokenizeFile(model, cal, { onProgress: (p) => reports.push(p) });
      // one call: the bar said nothing while it ran, after a count of the bytes read
      expect(reports.at(-1)).toEqual({ phase: 'tokenize', done: size, total: size });
      expect(reports.slice(0, -1)).toContainEqual({ phase: 'tokenize', done: 0, total: size, detail: expect.stringMatching(/^tokenizing [\d,]+ characters in one call$/) });
      // in pieces (a text of 40 copies, 1 KiB a piece): the count climbs with them, and only forwards
      const big = write('progress.txt', fs.readFileSync(cal, 'utf8').repeat(40));
      const total = fs.statSync(big).size;
      const steps: number[] = [];
      await tokenizeFileWith(model, big, { onProgress: (p) => steps.push(p.done) }, tiny({ oneCallChars: 64 * 1024 }));
      expect(steps.at(-1)).toBe(total);
      expect(steps.every((d, i) => i === 0 || d >= steps[i - 1]!)).toBe(true);
      expect(steps.filter((d) => d > 0 && d < total).length).toBeGreaterThan(3);
      // a token budget that stops reading early ends the count at its total too (tester EA: it ended at 11 %)
      const cut: Progress[] = [];
      await tokenizeFileWith(model, big, { maxTokens: 500, onProgress: (p) => cut.push(p) }, tiny({ oneCallChars: 64 * 1024 }));
      expect(cut.filter((p) => p.done < total).length).toBeGreaterThan(0);
      expect(cut.at(-1)).toEqual({ phase: 'tokenize', done: total, total, detail: 'the token budget is reached' });
    });

    test('a text longer than one call is tokenized in pieces cut at line breaks: the same ids as one call (real text, txt, gz and jsonl)', async () => {
      const cal = path.join(model, 'calibration.txt');
      const text = fs.readFileSync(cal, 'utf8');
      const one = await tokenizeFile(model, cal); // 26 kB: one call, as the fixtures' protocol
      const tok = await loadTokenizer(model);
      expect(Array.from(one)).toEqual(tok.encode(text, { addSpecialTokens: false }));
      // the sentencepiece-style "▁" every call starts with is not added at the cuts (25 of them here)
      expect(differing(await tokenizeFileWith(model, cal, {}, tiny()), one)).toBe(0);
      expect(differing(await tokenizeFileWith(model, write('pieces.txt.gz', text, true), {}, tiny()), one)).toBe(0);
      // CRLF line ends and lines that start or end with spaces (wikitext's " = Title = " lines) cut as cleanly
      const odd = text.split('\n').map((l, i) => (i % 3 === 0 ? ` ${l} ` : i % 3 === 1 ? `${l}\r` : l)).join('\n');
      const oddFile = write('pieces-odd.txt', odd);
      expect(differing(await tokenizeFileWith(model, oddFile, {}, tiny()), await tokenizeFile(model, oddFile))).toBe(0);
      // Windows line ends (and a "\r\n" split by the reader's 64 KiB chunks): the ids of the same text with "\n"
      const crlfText = `${'word '.repeat(13107)}\r\n${text.split('\n').join('\r\n')}`;
      const lfIds = await tokenizeFile(model, write('lf.txt', crlfText.replace(/\r\n/g, '\n')));
      expect(differing(await tokenizeFile(model, write('crlf.txt', crlfText)), lfIds)).toBe(0);
      expect(differing(await tokenizeFileWith(model, write('crlf.txt.gz', text.split('\n').join('\r\n'), true), {}, tiny()), one)).toBe(0);
      // a budget in pieces keeps the one-call ids' exact prefix
      for (const n of [1, 3000, 9000]) expect(differing(await tokenizeFileWith(model, cal, { maxTokens: n }, tiny()), one.subarray(0, n))).toBe(0);
      const docs = text.split('\n').filter((l) => l.trim() !== '');
      const jsonl = write('pieces.jsonl', docs.map((d) => JSON.stringify({ text: d })).join('\n'));
      expect(differing(await tokenizeFileWith(model, jsonl, {}, tiny()), await tokenizeFile(model, jsonl))).toBe(0);
    });

    // The worker opened the file itself and was terminated as soon as it posted its result, or on an abort:
    // its descriptor then stayed open (about one per ten compress jobs in a server; every abort mid-read).
    test('no file descriptor is left open on the data file: after results, errors, and aborts mid-read', async () => {
      const f = write('fd-leak.txt', fs.readFileSync(path.join(model, 'calibration.txt'), 'utf8').repeat(3));
      const openOn = () => fs.readdirSync('/proc/self/fd').filter((d) => {
        try {
          return fs.readlinkSync(`/proc/self/fd/${d}`) === f;
        } catch {
          return false;
        }
      }).length;
      if (!fs.existsSync('/proc/self/fd')) return; // Linux only; what it checks is the same everywhere
      for (let i = 0; i < 12; i++) {
        await tokenizeFileWith(model, f, { maxTokens: 500 }, tiny());
        const ac = new AbortController();
        await expect(tokenizeFileWith(model, f, { signal: ac.signal, onProgress: () => ac.abort() }, tiny())).rejects.toMatchObject({ code: 'ABORTED' });
      }
      // descriptors are closed once each worker has exited, just after the call settles
      for (let t = 0; t < 100 && openOn() > 0; t++) await new Promise((r) => setTimeout(r, 20));
      expect(openOn()).toBe(0);
    });

    test('in pieces, progress keeps coming up to the whole file, and an abort during them rejects ABORTED', async () => {
      const f = write('pieces-progress.txt', fs.readFileSync(path.join(model, 'calibration.txt'), 'utf8').repeat(4));
      const size = fs.statSync(f).size;
      let done = 0;
      let reports = 0;
      await tokenizeFileWith(model, f, { onProgress: (p) => ((done = Math.max(done, p.done)), reports++) }, tiny({ oneCallChars: 1024, pieceChars: 256 }));
      expect(done).toBe(size);
      expect(reports).toBeGreaterThan(0);
      // aborted at its first report, while pieces are still ahead
      const ac = new AbortController();
      const p = tokenizeFileWith(model, f, { signal: ac.signal, onProgress: () => ac.abort() }, tiny({ oneCallChars: 1024, pieceChars: 256 }));
      await expect(p).rejects.toMatchObject({ code: 'ABORTED' });
      expect((await tokenizeFile(model, f, { maxTokens: 8 })).length).toBe(8); // its thread's slot is free
    });

    test('a stretch without a line break longer than one call takes is INVALID_DATA (was OUT_OF_MEMORY, exit 1) with what to do; a budget it covers still reads it', async () => {
      // before: a 100 MB line was read whole (64 M characters, then refused) or ran the thread's heap out
      const line = write('pieces-one-line.txt', 'once upon a time there was a cat '.repeat(1000)); // 33,000 characters, no "\n"
      await expect(tokenizeFileWith(model, line, {}, tiny())).rejects.toMatchObject({ code: 'INVALID_DATA', message: expect.stringMatching(/without a line break.*break the text into lines, or give a token budget/) });
      // a long line after some short ones: the short ones are cut off, the line is still too long
      const late = write('pieces-late-line.txt', 'It sat.\n'.repeat(300) + 'a cat sat '.repeat(2000) + '\nThe end.\n');
      await expect(tokenizeFileWith(model, late, {}, tiny())).rejects.toMatchObject({ code: 'INVALID_DATA' });
      // a line longer than a piece but within maxCallChars is one piece
      const ok = write('pieces-long-ok.txt', 'It sat.\n'.repeat(300) + 'a cat sat '.repeat(500) + '\nThe end.\n');
      expect(differing(await tokenizeFileWith(model, ok, {}, tiny()), await tokenizeFile(model, ok))).toBe(0);
      // at the real limits: a 5 MB line is refused once 4 Mi characters are read, before any is tokenized, and
      // a budget whose prefix is one call reads it
      const big = path.join(dir, 'pieces-5mb-line.txt');
      fs.writeFileSync(big, 'once upon a time there was a cat '.repeat(160_000));
      try {
        await expect(tokenizeFile(model, big)).rejects.toMatchObject({ code: 'INVALID_DATA', message: expect.stringContaining('without a line break') });
        expect((await tokenizeFile(model, big, { maxTokens: 100 })).length).toBe(100);
      } finally {
        fs.rmSync(big);
      }
    });

    test('more ids than maxIds is OUT_OF_MEMORY with what to do; a budget under it reads the file', async () => {
      const f = write('pieces-ids.txt', fs.readFileSync(path.join(model, 'calibration.txt'), 'utf8'));
      await expect(tokenizeFileWith(model, f, {}, tiny({ maxIds: 5000 }))).rejects.toMatchObject({ code: 'OUT_OF_MEMORY', message: expect.stringContaining('give a token budget') });
      expect((await tokenizeFileWith(model, f, { maxTokens: 4000 }, tiny({ maxIds: 5000 }))).length).toBe(4000);
    });

    test('blank text in pieces is INVALID_DATA, as in one call', async () => {
      await expect(tokenizeFileWith(model, write('pieces-blank.txt', ' \n\n  \n'.repeat(2000)), {}, tiny())).rejects.toMatchObject({ code: 'INVALID_DATA', message: expect.stringContaining('holds no text') });
    });

    test('a byte-order mark is dropped, not tokenized: the same ids, documents and lines as without it', async () => {
      const text = 'Once upon a time there was a cat.\nIt sat.\n';
      const jsonl = '{"text": "Once upon a time"}\n{"text": "It sat."}\n';
      const plain = await tokenizeFile(model, write('bom-no.txt', text));
      expect(Array.from(await tokenizeFile(model, write('bom-yes.txt', '\uFEFF' + text)))).toEqual(Array.from(plain));
      const docs = await tokenizeFile(model, write('bom-no.jsonl', jsonl));
      expect(Array.from(await tokenizeFile(model, write('bom-yes.jsonl', '\uFEFF' + jsonl)))).toEqual(Array.from(docs));
      // JSON Lines with lone "\r" line ends: the same documents
      expect(Array.from(await tokenizeFile(model, write('cr-docs.jsonl', jsonl.replace(/\n/g, '\r'))))).toEqual(Array.from(docs));
      const lines: string[] = [];
      for await (const l of readLines(write('bom-lines.txt', '\uFEFF' + text))) lines.push(l);
      expect(lines[0]).toBe('Once upon a time there was a cat.');
      const read: string[] = [];
      for await (const d of readDocuments(write('bom-docs.jsonl', '\uFEFF' + jsonl))) read.push(d);
      expect(read).toEqual(['Once upon a time', 'It sat.']);
      expect(await readText(write('bom-text.txt', '\uFEFF' + text))).toBe(text);
    });

    test('an abort just after the call, while the file is checked, rejects ABORTED (no worker is started for it)', async () => {
      const f = write('w-abort.txt', 'Once upon a time there was a cat.\n'.repeat(20_000));
      const ac = new AbortController();
      const p = tokenizeFile(model, f, { signal: ac.signal });
      ac.abort(); // before: the listener was added after the checks, so this abort was never seen
      await expect(p).rejects.toMatchObject({ code: 'ABORTED' });
      // the slot it did not take is free: a later call runs
      expect((await tokenizeFile(model, f, { maxTokens: 8 })).length).toBe(8);
    });

    test('concurrent calls share at most MAX_TOKENIZER_WORKERS threads; a waiting call can be aborted', async () => {
      const f = write('w-many.txt', 'Once upon a time there was a cat.\n'.repeat(3_000));
      const threads = () => Number(/^Threads:\s+(\d+)/m.exec(fs.readFileSync('/proc/self/status', 'utf8'))?.[1] ?? 0);
      const linux = fs.existsSync('/proc/self/status');
      const before = linux ? threads() : 0;
      let peak = before;
      const sampler = setInterval(() => (peak = Math.max(peak, linux ? threads() : 0)), 2);
      const n = MAX_TOKENIZER_WORKERS + 14;
      const ac = new AbortController();
      const calls = Array.from({ length: n }, (_, i) => tokenizeFile(model, f, i === n - 1 ? { signal: ac.signal } : {}));
      ac.abort(); // the last call is still waiting for a slot
      const results = await Promise.allSettled(calls);
      clearInterval(sampler);
      expect(results[n - 1]).toMatchObject({ status: 'rejected', reason: { code: 'ABORTED' } });
      const lengths = results.slice(0, -1).map((r) => (r.status === 'fulfilled' ? r.value.length : -1));
      expect(new Set(lengths).size).toBe(1);
      expect(lengths[0]).toBeGreaterThan(0);
      // a worker is one thread or two (its own, and libuv's for its file reads); one per call before
      if (linux) expect(peak - before).toBeLessThanOrEqual(2 * MAX_TOKENIZER_WORKERS + 2);
    });

    test('a file shorter than the worker\'s 2-byte sniff gives the tokenizer\'s ids, no NUL padding', async () => {
      // Before: the sniff buffer was fed back whole, so "x" was tokenized as "x\0" (and an empty file as "\0\0").
      const tok = await loadTokenizer(model);
      expect(Array.from(await tokenizeFile(model, write('w-one.txt', 'x')))).toEqual(tok.encode('x', { addSpecialTokens: false }));
    });
  });
});

describe('blocks', () => {
  test("ids past the model's vocab_size from the folder's own tokenizer are INVALID_CONFIG naming the token (tester AX: INVALID_ARGUMENT blaming \"sequence 0\")", async () => {
    const bundled = path.join(__dirname, '..', 'models', 'llama-stories260k');
    const tok = path.join(dir, 'tok-600');
    fs.mkdirSync(tok, { recursive: true });
    for (const f of ['tokenizer.json', 'tokenizer_config.json']) fs.copyFileSync(path.join(bundled, f), path.join(tok, f));
    const json = JSON.parse(fs.readFileSync(path.join(tok, 'tokenizer.json'), 'utf8'));
    json.model.vocab['▁t'] = 600;
    fs.writeFileSync(path.join(tok, 'tokenizer.json'), JSON.stringify(json));
    const f = write('tok-600.txt', 'a t b t c t d. '.repeat(20));
    const o = { blockSize: 16, what: 'data', tokenizerDir: tok };
    expect((await blocksFrom(f, o)).length).toBeGreaterThan(1); // no vocab given: not checked
    await expect(blocksFrom(f, { ...o, vocab: 512 })).rejects.toMatchObject({
      code: 'INVALID_CONFIG',
      message: expect.stringContaining('tokenizer encodes ' + f + ' to token id 600 ("▁t"), but config.json\'s vocab_size is 512'),
    });
    expect((await blocksFrom(f, { ...o, vocab: 601 })).length).toBeGreaterThan(1);
  });

  /** Plain oracle: slices of blockSize from 0, the last kept when ≥ 2 tokens. */
  function oracle(n: number, size: number): [number, number][] {
    const out: [number, number][] = [];
    let s = 0;
    while (n - s >= size) {
      out.push([s, s + size]);
      s += size;
    }
    if (n - s >= 2) out.push([s, n]);
    return out;
  }

  test('cutBlocks matches the protocol on odd lengths, remainders 0, 1 and 2', () => {
    for (const size of [2, 3, 7, 256]) {
      for (const n of [0, 1, 2, 3, size - 1, size, size + 1, size + 2, 3 * size, 3 * size + 1, 5 * size + 13]) {
        const tokens = Int32Array.from({ length: n }, (_, i) => i);
        const blocks = cutBlocks(tokens, size);
        expect(blocks.map((b) => [b[0], b.length])).toEqual(oracle(n, size).map(([s, e]) => [s, e - s]));
        for (const b of blocks) expect(b.buffer).toBe(tokens.buffer); // views, not copies
      }
    }
    expect(() => cutBlocks(new Int32Array(4), 1)).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
    expect(() => cutBlocks(new Int32Array(4), 2.5)).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
  });
});

describeShared('data/lm/train.txt.gz', 'LM training data (gzip)', () => {
  test('streamed lines of train.txt.gz rebuild the whole inflated text', async () => {
    const f = sharedPath('data', 'lm', 'train.txt.gz');
    const lines = await collect(readLines(f));
    const whole = await readText(f);
    expect(whole.length).toBeGreaterThan(17_000_000);
    expect(lines.join('\n') + (whole.endsWith('\n') ? '\n' : '')).toBe(whole);
  });
});

describeShared('fixtures/gpt2-sotu/eval.json', 'gpt2-sotu evaluation splits', () => {
  const evalJson = () => JSON.parse(fs.readFileSync(sharedPath('fixtures', 'gpt2-sotu', 'eval.json'), 'utf8'));
  const files: Record<string, string> = { valid: 'valid.txt', test: 'test.txt', wikitext2_test: 'wikitext2_test.txt' };

  test.each(Object.keys(files))('%s: token count matches eval.json and blocks follow the protocol', async (split) => {
    const expected: number = evalJson().tokens[split];
    const tok = await loadTokenizer(sharedPath('fixtures', 'gpt2-sotu'));
    const { tokens, blocks } = await loadSplitBlocks(tok, sharedPath('data', 'lm', files[split]!), 256);
    expect(tokens.length).toBe(expected);
    const full = Math.floor(expected / 256);
    const rest = expected % 256;
    expect(blocks.length).toBe(full + (rest >= 2 ? 1 : 0));
    expect(blocks.slice(0, full).every((b) => b.length === 256)).toBe(true);
    expect(countPredictions(blocks)).toBe(full * 255 + (rest >= 2 ? rest - 1 : 0));
    expect(blocks.reduce((s, b) => s + b.length, 0)).toBe(rest >= 2 ? expected : expected - rest);
    // the same count from one encode on the calling thread (a split of 1.3 M characters was refused by a
    // character cap there for a while: reviewer AS)
    expect(tokenizeToBlocks(tok, await readText(sharedPath('data', 'lm', files[split]!)), 256).tokens.length).toBe(expected);
  });
});

describeShared('fixtures/gpt2-sotu', 'tokenizing files in a worker, read only as far as a token budget needs', () => {
  const model = sharedPath('fixtures', 'gpt2-sotu');
  const same = (a: Int32Array, b: Int32Array) => a.length === b.length && a.every((v, i) => v === b[i]);

  test('the whole file gives the one-call ids of eval.json, and a budget gives their exact prefix (txt and jsonl)', async () => {
    const tok = await loadTokenizer(model);
    const text = await readText(sharedPath('data', 'lm', 'valid.txt'));
    const whole = Int32Array.from(tok.encode(text, { addSpecialTokens: false }));
    expect(same(await tokenizeFile(model, sharedPath('data', 'lm', 'valid.txt')), whole)).toBe(true);
    for (const n of [1, 1000, 20480]) {
      expect(same(await tokenizeFile(model, sharedPath('data', 'lm', 'valid.txt'), { maxTokens: n }), whole.subarray(0, n))).toBe(true);
    }
    const lines = text.split('\n').slice(0, 400);
    const jsonl = write('docs.jsonl', lines.map((l) => JSON.stringify({ text: l })).join('\n'));
    const docIds = Int32Array.from(tok.encode(await readText(jsonl), { addSpecialTokens: false })); // documents joined with "\n"
    expect(same(await tokenizeFile(model, jsonl), docIds)).toBe(true);
    expect(same(await tokenizeFile(model, jsonl, { maxTokens: 500 }), docIds.subarray(0, 500))).toBe(true);
    // loadSplitBlocks: a loaded tokenizer works in the worker (before: on the calling thread, with no signal),
    // any other Tokenizer object on the calling thread; the same ids either way
    const seen: number[] = [];
    const viaWorker = await loadSplitBlocks(tok, sharedPath('data', 'lm', 'valid.txt'), 256, { onProgress: (p) => seen.push(p.done) });
    expect(same(viaWorker.tokens, whole)).toBe(true);
    expect(seen.length).toBeGreaterThan(0);
    const plain: typeof tok = { ...tok, encode: (t, o) => tok.encode(t, o), decode: (ids, o) => tok.decode(ids, o) } as typeof tok;
    const once: number[] = [];
    expect(same((await loadSplitBlocks(plain, jsonl, 256, { onProgress: (p) => once.push(p.done) })).tokens, docIds)).toBe(true);
    expect(once).toEqual([fs.statSync(jsonl).size]); // before: an onProgress taken and never called (reviewer AS)
    for (const t of [tok, plain]) {
      await expect(loadSplitBlocks(t, sharedPath('data', 'lm', 'valid.txt'), 256, { signal: AbortSignal.abort() })).rejects.toMatchObject({ code: 'ABORTED' });
      await expect(loadSplitBlocks(t, sharedPath('data', 'lm', 'valid.txt'), 1)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    }
    const ac = new AbortController();
    const run = loadSplitBlocks(tok, sharedPath('data', 'lm', 'valid.txt'), 256, { signal: ac.signal });
    ac.abort();
    await expect(run).rejects.toMatchObject({ code: 'ABORTED' });
  });

  test("a tokenizer whose folder changed since it was loaded tokenizes as loaded (on the calling thread), not as the folder now says", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ffmerge-tokdir-'));
    try {
      for (const f of ['tokenizer.json', 'tokenizer_config.json', 'config.json']) fs.copyFileSync(path.join(model, f), path.join(dir, f));
      const tok = await loadTokenizer(dir);
      const file = write('changed-tokenizer.txt', 'The President of the United States spoke to the Congress.\n'.repeat(50));
      const want = Int32Array.from(tok.encode(await readText(file), { addSpecialTokens: false }));
      expect(same((await loadSplitBlocks(tok, file, 64)).tokens, want)).toBe(true);
      // another model's tokenizer put in its place: the worker would load it and give its ids (before: it did)
      fs.copyFileSync(sharedPath('fixtures', 'llama-stories260k', 'tokenizer.json'), path.join(dir, 'tokenizer.json'));
      expect(same(await tokenizeFile(dir, file), want)).toBe(false);
      expect(same((await loadSplitBlocks(tok, file, 64)).tokens, want)).toBe(true);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('blocksFrom with a budget keeps exactly the whole-file blocks takeTokens keeps, even for a budget off the block size', async () => {
    const tok = await loadTokenizer(model);
    const f = sharedPath('data', 'lm', 'valid.txt');
    const { blocks: all } = await loadSplitBlocks(tok, f, 256);
    for (const budget of [1000, 2048]) {
      const got = takeTokens(await blocksFrom(f, { blockSize: 256, what: 'data', tokenizerDir: model, maxTokens: budget }), budget);
      const want = takeTokens(all, budget);
      expect(got.map((b) => b.length)).toEqual(want.map((b) => b.length));
      expect(got.every((b, i) => same(b, want[i]!))).toBe(true);
    }
  });

  test('a 100 MB single-line file with a 1,024-token budget is read only a little way', async () => {
    const big = path.join(dir, 'one-line.txt');
    const fd = fs.openSync(big, 'w');
    const mb = Buffer.from('lorem ipsum dolor sit amet '.repeat(40_000).slice(0, 1 << 20));
    for (let i = 0; i < 100; i++) fs.writeSync(fd, mb);
    fs.closeSync(fd);
    let read = 0;
    let last: Progress | undefined;
    const ids = await tokenizeFile(model, big, {
      maxTokens: 1024,
      // the bytes read, from the reports before the last (which ends the count at its total: the budget is reached)
      onProgress: (p) => void ((last = p), p.detail === undefined && (read = Math.max(read, p.done))),
    });
    fs.rmSync(big);
    expect(ids.length).toBe(1024);
    expect(read).toBeGreaterThan(0);
    expect(read).toBeLessThan(2 << 20);
    expect(last).toEqual({ phase: 'tokenize', done: 100 << 20, total: 100 << 20, detail: 'the token budget is reached' });
  });

  (fs.existsSync('/dev/zero') ? test : test.skip)('/dev/zero is refused at once (inputs are regular files); an AbortSignal ends a read with no budget', async () => {
    await expect(tokenizeFile(model, '/dev/zero', { maxTokens: 1024 })).rejects.toMatchObject({ code: 'INVALID_DATA', message: expect.stringMatching(/a device/) });
    const big = path.join(dir, 'long.txt');
    const fd = fs.openSync(big, 'w');
    // in lines, so that it is tokenized (in pieces) rather than refused as one line too long
    const mb = Buffer.from('lorem ipsum dolor sit amet\n'.repeat(40_000).slice(0, 1 << 20));
    for (let i = 0; i < 64; i++) fs.writeSync(fd, mb);
    fs.closeSync(fd);
    const ac = new AbortController();
    const t = setTimeout(() => ac.abort(), 300);
    await expect(tokenizeFile(model, big, { signal: ac.signal })).rejects.toMatchObject({ code: 'ABORTED' });
    clearTimeout(t);
    fs.rmSync(big);
  });

  test('errors keep their codes: a missing file, bad JSON Lines, a folder without tokenizer.json', async () => {
    await expect(tokenizeFile(model, path.join(dir, 'nope.txt'))).rejects.toMatchObject({ code: 'DATA_NOT_FOUND' });
    await expect(tokenizeFile(model, write('bad.jsonl', '{"text": "a"}\nnot json\n'))).rejects.toMatchObject({ code: 'INVALID_DATA' });
    await expect(tokenizeFile(model, write('nofield.jsonl', '{"txt": "a"}\n'))).rejects.toMatchObject({ code: 'INVALID_DATA' });
    await expect(tokenizeFile(dir, write('a.txt', 'hello'))).rejects.toMatchObject({ code: 'INVALID_CONFIG' });
  });
});

describeShared('data/lm/wikitext2_test.txt', 'real text in pieces against one call, both LM tokenizers', () => {
  const cases: [string, string][] = [
    ['gpt2-sotu (byte-level BPE)', sharedPath('fixtures', 'gpt2-sotu')],
    ['llama-stories260k (sentencepiece BPE, a "▁" prepended to every call)', path.join(__dirname, '..', 'models', 'llama-stories260k')],
  ];
  test.each(cases)('%s: 256 Ki characters of lm/test.txt and wikitext-2 cut every 4 Ki characters give the one-call ids', async (_name, model) => {
    // State of the Union lines of 30k characters, Moby-Dick, Shakespeare, wikitext's " = Title = " lines; the
    // one-call ids of llama-stories260k take ~5 s
    const lm = fs.readFileSync(sharedPath('data', 'lm', 'test.txt'), 'utf8');
    const wiki = fs.readFileSync(sharedPath('data', 'lm', 'wikitext2_test.txt'), 'utf8');
    const f = write('pieces-test.txt', lm.slice(0, 1 << 16) + lm.slice(-(1 << 17)) + wiki.slice(0, 1 << 16));
    const one = await tokenizeFile(model, f);
    const pieces = await tokenizeFileWith(model, f, {}, { ...TOKENIZE_LIMITS, oneCallChars: 1 << 12, pieceChars: 1 << 12 });
    expect(one.length).toBeGreaterThan(50_000);
    expect(differing(pieces, one)).toBe(0);
  });
});

describeShared('data/multi30k/test_2016_flickr.en.gz', 'Multi30k parallel data', () => {
  const m = (f: string) => sharedPath('data', 'multi30k', f);

  test('test_2016_flickr and val pairs align; the first source is Marian reference sentence 0', async () => {
    const test = await readParallel(m('test_2016_flickr.en.gz'), m('test_2016_flickr.de.gz'));
    expect(test.length).toBe(1000);
    const val = await readParallel(m('val.en.gz'), m('val.de.gz'));
    expect(val.length).toBe(1014);
    expect(test.every((p) => p.source.length > 0 && p.target.length > 0)).toBe(true);
    if (hasShared('fixtures', 'marian-multi30k-en-de', 'reference.json')) {
      const ref = JSON.parse(fs.readFileSync(sharedPath('fixtures', 'marian-multi30k-en-de', 'reference.json'), 'utf8'));
      const srcs = (ref.greedy_test_first20 as { src: string }[]).map((c) => c.src);
      expect(test.slice(0, 20).map((p) => p.source)).toEqual(srcs);
    }
  });

  test('a shorter target file is INVALID_DATA', async () => {
    const de = (await collect(readLines(m('val.de.gz')))).slice(0, 1000).join('\n') + '\n';
    const short = write('val-short.de', de);
    await expect(readParallel(m('val.en.gz'), short)).rejects.toMatchObject({ code: 'INVALID_DATA', message: expect.stringContaining('1000 lines') });
  });
});

test('a block size is 2 to the model\'s positions, given or by default; a model of one position takes none', () => {
  expect(fitBlockSize(undefined, 256, 1024, '--seq')).toBe(256);
  expect(fitBlockSize(undefined, 256, 64, '--seq')).toBe(64);
  expect(() => fitBlockSize(1, 256, 64, '--seq')).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT', message: expect.stringContaining('--seq 1 is too short') }));
  // before: the default became 1 where --seq 1 was refused
  expect(() => fitBlockSize(undefined, 256, 1, '--seq')).toThrow(expect.objectContaining({ code: 'INVALID_CONFIG', message: 'the model takes 1 position, and a block (--seq) needs at least 2 tokens (one predicts the next)' }));
});

describe('parallel text', () => {
  test('two files (plain or gzip) or one TSV', async () => {
    const en = write('p.en', 'a cat\nthe dog\n');
    const de = write('p.de.gz', 'eine Katze\r\nder Hund\r\n', true);
    const want = [
      { source: 'a cat', target: 'eine Katze' },
      { source: 'the dog', target: 'der Hund' },
    ];
    expect(await readParallel(en, de)).toEqual(want);
    expect(await collect(streamParallel(en, de))).toEqual(want);
    expect(await readParallelTsv(write('p.tsv', 'a cat\teine Katze\nthe dog\tder Hund\n'))).toEqual(want);
    expect(await readParallelTsv(write('p.tsv.gz', 'a cat\teine Katze\nthe dog\tder Hund', true))).toEqual(want);
  });

  test('blank lines that end one file where the other has ended are no pairs; a line of text past the other\'s end is (tester DE)', async () => {
    const want = [{ source: 'a cat', target: 'eine Katze' }];
    expect(await readParallel(write('t.en', 'a cat\n\n\n'), write('t.de', 'eine Katze'))).toEqual(want);
    expect(await readParallel(write('t2.en', 'a cat\n'), write('t2.de', 'eine Katze\n \r\n\n'))).toEqual(want);
    await expect(readParallel(write('t3.en', 'a cat\n\nthe dog\n'), write('t3.de', 'eine Katze\n'))).rejects.toMatchObject({ code: 'INVALID_DATA', message: expect.stringContaining('are not aligned') });
  });

  test('the same file as source and target is refused, under any of its names (tester DE: BLEU 0.55, exit 0)', async () => {
    const f = write('same.en', 'a cat\n');
    const link = path.join(dir, 'same-link.de');
    fs.symlinkSync(f, link);
    for (const t of [f, link, path.join(dir, '.', 'same.en')]) {
      await expect(readParallel(f, t)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringContaining('the source and target files are one file') });
    }
  });

  test('mismatched line counts and bad TSV rows are INVALID_DATA; missing files DATA_NOT_FOUND', async () => {
    const en = write('q.en', 'a\nb\nc\n');
    const de = write('q.de', 'x\ny\n');
    await expect(readParallel(en, de)).rejects.toMatchObject({ code: 'INVALID_DATA' });
    await expect(readParallel(de, en)).rejects.toMatchObject({ code: 'INVALID_DATA' });
    await expect(readParallelTsv(write('q.tsv', 'a\tx\nb x\n'))).rejects.toMatchObject({ code: 'INVALID_DATA', message: expect.stringContaining('line 2 has 1 tab-separated column;') });
    // blank lines are no pairs, as in the text readers (a trailing one was "line 2 has 1 tab-separated columns")
    expect(await readParallelTsv(write('blanks.tsv', '\na dog\tein Hund\n  \n\n'))).toEqual([{ source: 'a dog', target: 'ein Hund' }]);
    await expect(readParallelTsv(write('blank-then-bad.tsv', 'a\tx\n\nb x\n'))).rejects.toMatchObject({ message: expect.stringContaining('line 3') });
    await expect(readParallelTsv(write('r.tsv', 'a\tx\ty\n'))).rejects.toMatchObject({ code: 'INVALID_DATA' });
    // one side empty: before, the empty source was translated and the empty reference scored (tester AL)
    await expect(readParallelTsv(write('empty-src.tsv', 'a\tx\n\ty\n'))).rejects.toMatchObject({ code: 'INVALID_DATA', message: expect.stringContaining('line 2: the source is empty and the target is not') });
    await expect(readParallelTsv(write('empty-tgt.tsv', 'a \t \n'))).rejects.toMatchObject({ code: 'INVALID_DATA', message: expect.stringContaining('line 1: the target is empty and the source is not') });
    await expect(readParallel(write('e.en', 'a\n\nc\n'), write('e.de', 'x\ny\nz\n'))).rejects.toMatchObject({ code: 'INVALID_DATA', message: expect.stringMatching(/line 2: \S*e\.en is empty and \S*e\.de is not/) });
    // a line blank in both files is no pair, as a blank TSV line is none
    expect(await readParallel(write('b.en', 'a\n\nc\n'), write('b.de', 'x\n \nz\n'))).toEqual([{ source: 'a', target: 'x' }, { source: 'c', target: 'z' }]);
    await expect(readParallel(en, path.join(dir, 'missing.de'))).rejects.toMatchObject({ code: 'DATA_NOT_FOUND' });
    await expect(readParallelTsv(path.join(dir, 'missing.tsv'))).rejects.toMatchObject({ code: 'DATA_NOT_FOUND' });
    // a link that loops, or points nowhere, is named as one (it read "does not exist", and the name was there)
    const [l1, l2, nowhere] = ['loop1.txt', 'loop2.txt', 'nowhere.txt'].map((n) => path.join(dir, n));
    fs.symlinkSync(l2!, l1!);
    fs.symlinkSync(l1!, l2!);
    fs.symlinkSync(path.join(dir, 'absent.txt'), nowhere!);
    const tokenizerDir = path.join(__dirname, '..', 'models', 'llama-stories260k');
    await expect(blocksFrom(l1!, { blockSize: 16, what: 'data', tokenizerDir })).rejects.toMatchObject({ code: 'DATA_NOT_FOUND', message: expect.stringContaining('is a symbolic link that loops') });
    await expect(blocksFrom(nowhere!, { blockSize: 16, what: 'data', tokenizerDir })).rejects.toMatchObject({ code: 'DATA_NOT_FOUND', message: expect.stringContaining('points nowhere') });
    await expect(blocksFrom(path.join(dir, 'absent.txt'), { blockSize: 16, what: 'data', tokenizerDir })).rejects.toMatchObject({ message: expect.stringContaining('does not exist') });
  });
});
