import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { FfmergeError } from '../lib/errors';
import { llama2cEncode, Llama2cVocab } from './reference/llama2c-tokenizer';
import { SafetensorsReader } from '../lib/safetensors';
import { loadTokenizer } from '../lib/tokenizer';
import { describeShared, sharedPath } from './helpers/shared';
import { prng } from './helpers/safetensors-bytes';

interface TokenizerCase {
  text: string;
  ids: number[];
}

function reference(model: string): Record<string, unknown> {
  return JSON.parse(fs.readFileSync(sharedPath('fixtures', model, 'reference.json'), 'utf8'));
}

async function readI32(file: string, name: string): Promise<Int32Array> {
  const r = await SafetensorsReader.open(file);
  try {
    const t = await r.readTyped(name);
    if (!(t instanceof Int32Array)) throw new Error(`${name} is not I32`);
    return t;
  } finally {
    await r.close();
  }
}

describeShared('fixtures/gpt2-sotu/tokenizer.json', 'gpt2-sotu tokenizer', () => {
  const dir = sharedPath('fixtures', 'gpt2-sotu');

  test('matches every tokenizer case of reference.json and decodes them back', async () => {
    const tok = await loadTokenizer(dir);
    const cases = reference('gpt2-sotu').tokenizer_cases as TokenizerCase[];
    expect(cases.length).toBeGreaterThan(0);
    for (const c of cases) {
      expect(tok.encode(c.text)).toEqual(c.ids);
      expect(tok.encode(c.text, { addSpecialTokens: false })).toEqual(c.ids); // GPT-2 adds no special tokens
      expect(tok.decode(c.ids)).toBe(c.text); // byte-level BPE is lossless
    }
  });

  test('special token ids and vocabulary', async () => {
    const tok = await loadTokenizer(dir);
    expect(tok.special).toEqual({ bos: 0, eos: 0, unk: 0 });
    expect(tok.padId).toBeUndefined();
    expect(tok.vocabSize).toBe(4096);
    expect(tok.idToToken(0)).toBe('<|endoftext|>');
    expect(tok.tokenToId('<|endoftext|>')).toBe(0);
    expect(tok.decode([0, 40], { skipSpecialTokens: true })).toBe(tok.decode([40]));
  });

  test('decode keeps spaces before punctuation (clean_up_tokenization_spaces off, as transformers)', async () => {
    const tok = await loadTokenizer(dir);
    for (const s of ['Hello world !', 'a , b .', "it ' s"]) expect(tok.decode(tok.encode(s))).toBe(s);
  });

  test('bad ids are typed errors', async () => {
    const tok = await loadTokenizer(dir);
    expect(() => tok.decode([4096])).toThrow(FfmergeError);
    expect(() => tok.decode([-1])).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
    expect(() => tok.decode([1.5])).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
    // no ids are no text, as in Python (tester DR: an untyped Error from the library)
    expect(tok.decode([])).toBe('');
    expect(tok.decode(new Int32Array(0), { skipSpecialTokens: true })).toBe('');
  });
});

describeShared('fixtures/marian-multi30k-en-de/tokenizer.json', 'marian-multi30k-en-de tokenizer', () => {
  const dir = sharedPath('fixtures', 'marian-multi30k-en-de');

  test('source encoding appends </s> and matches reference.json', async () => {
    const tok = await loadTokenizer(dir);
    expect(tok.special).toEqual({ eos: 0, unk: 1, pad: 2 });
    const cases = reference('marian-multi30k-en-de').tokenizer_cases as TokenizerCase[];
    expect(cases.length).toBeGreaterThan(0);
    for (const c of cases) {
      expect(tok.encode(c.text)).toEqual(c.ids);
      expect(c.ids[c.ids.length - 1]).toBe(tok.eosId);
      expect(tok.encode(c.text, { addSpecialTokens: false })).toEqual(c.ids.slice(0, -1));
    }
  });

  test('maxLength truncates the text and keeps </s> (eval protocol: sources cut to 64 tokens)', async () => {
    const tok = await loadTokenizer(dir);
    const long = 'A man in a blue shirt is standing on a ladder cleaning windows. '.repeat(8);
    const content = tok.encode(long, { addSpecialTokens: false });
    expect(content.length).toBeGreaterThan(64);
    const cut = tok.encode(long, { maxLength: 64 });
    expect(cut).toEqual([...content.slice(0, 63), 0]);
    expect(tok.encode('A dog.', { maxLength: 64 })).toEqual(tok.encode('A dog.'));
    expect(tok.encode(long, { maxLength: 10, addSpecialTokens: false })).toEqual(content.slice(0, 10));
    expect(tok.encode(long, { maxLength: 1 })).toEqual([0]);
    expect(() => tok.encode(long, { maxLength: 0 })).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
  });

  test('greedy_test_first20 ids decode to their text with special tokens skipped', async () => {
    const tok = await loadTokenizer(dir);
    const cases = reference('marian-multi30k-en-de').greedy_test_first20 as { ids: number[]; text: string }[];
    expect(cases.length).toBe(20);
    for (const c of cases) expect(tok.decode(c.ids, { skipSpecialTokens: true })).toBe(c.text);
  });
});

describeShared('fixtures/llama-stories260k/tokenizer.json', 'llama-stories260k tokenizer', () => {
  const dir = sharedPath('fixtures', 'llama-stories260k');
  const vocab = () => JSON.parse(fs.readFileSync(path.join(dir, 'tok512_vocab.json'), 'utf8')) as Llama2cVocab;

  test('BOS per add_bos_token, special ids from tokenizer_config.json and config.json', async () => {
    const tok = await loadTokenizer(dir);
    // bos/eos/unk from tokenizer_config.json; pad only in config.json (pad_token_id 0).
    expect(tok.special).toEqual({ bos: 1, eos: 2, unk: 0, pad: 0 });
    const ids = tok.encode('Once upon a time');
    expect(ids[0]).toBe(1);
    expect(ids.slice(1)).toEqual(tok.encode('Once upon a time', { addSpecialTokens: false }));
    expect(ids).not.toContain(2); // add_eos_token is false
    expect(tok.encode('Once upon a time', { maxLength: 3 })).toEqual(ids.slice(0, 3));
  });

  test('encodes exactly as llama2.c (tok512 vocabulary, merge scores) on varied text', async () => {
    const tok = await loadTokenizer(dir);
    const v = vocab();
    const greedy = reference('llama-stories260k').greedy_text as string;
    const words = greedy.replace('<s> ', '').replace('<0x0A>', '\n').split(' ');
    const extras = ['  ', '   ', '\n', '\t', 'é', '日本', '🙂', 'Lily', 'don\'t', '42', '!', '\u00a0'];
    const rnd = prng(5);
    const texts = ['', ' ', 'a  b', '  leading and trailing  ', 'Hello\n\nworld', 'naïve café 日本語 🙂'];
    for (let i = 0; i < 200; i++) {
      const n = 1 + Math.floor(rnd() * 12);
      let s = '';
      for (let j = 0; j < n; j++) {
        const pool = rnd() < 0.75 ? words : extras;
        s += pool[Math.floor(rnd() * pool.length)]! + (rnd() < 0.7 ? ' ' : '');
      }
      texts.push(s);
    }
    for (const t of texts) {
      expect([t, tok.encode(t)]).toEqual([t, llama2cEncode(v, t, true)]);
      // Repeated spaces and byte-fallback characters survive the round trip.
      expect(tok.decode(tok.encode(t), { skipSpecialTokens: true })).toBe(t);
    }
  });

  test('greedy_from_bos decodes to greedy_text (which spells the newline byte token as <0x0A>)', async () => {
    const tok = await loadTokenizer(dir);
    const ids = Array.from(await readI32(path.join(dir, 'reference.safetensors'), 'greedy_from_bos'));
    const greedy = reference('llama-stories260k').greedy_text as string;
    expect(ids.map((i) => tok.idToToken(i)).includes('<0x0A>')).toBe(true);
    expect(tok.decode(ids)).toBe(greedy.replace(/<0x0A>/g, '\n'));
    expect(tok.decode(ids, { skipSpecialTokens: true })).toBe(greedy.replace(/<0x0A>/g, '\n').replace(/^<s> /, ''));
  });
});

const BUNDLED = path.join(__dirname, '..', 'models', 'llama-stories260k');

/** Runs `fn` on a temp copy of the bundled model's files but its weights (and `leaveOut`), removed after. */
async function withTokenizerCopy(fn: (dir: string) => Promise<void>, leaveOut: string[] = []): Promise<void> {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'ffmerge-tok-'));
  try {
    for (const f of fs.readdirSync(BUNDLED)) if (f !== 'model.safetensors' && !leaveOut.includes(f)) fs.copyFileSync(path.join(BUNDLED, f), path.join(d, f));
    await fn(d);
  } finally {
    fs.rmSync(d, { recursive: true, force: true });
  }
}

describe('loadTokenizer errors', () => {
  test('a folder without tokenizer.json, or with broken JSON, is INVALID_CONFIG', async () => {
    const d = fs.mkdtempSync(path.join(os.tmpdir(), 'ffmerge-tok-'));
    try {
      await expect(loadTokenizer(d)).rejects.toMatchObject({ code: 'INVALID_CONFIG' });
      fs.writeFileSync(path.join(d, 'tokenizer.json'), '{"model": ');
      await expect(loadTokenizer(d)).rejects.toMatchObject({ code: 'INVALID_CONFIG' });
      // no folder at all, or a file, is DATA_NOT_FOUND as for loadModel (tester AZ: INVALID_CONFIG)
      await expect(loadTokenizer(path.join(d, 'nowhere'))).rejects.toMatchObject({ code: 'DATA_NOT_FOUND', message: expect.stringContaining('nowhere does not exist') });
      await expect(loadTokenizer(path.join(d, 'tokenizer.json'))).rejects.toMatchObject({ code: 'DATA_NOT_FOUND', message: expect.stringContaining('is a file, not a model directory') });
    } finally {
      fs.rmSync(d, { recursive: true, force: true });
    }
  });
});

// A BPE vocabulary given as a list used to load: every token then encoded as id 0 (perplexity 1.8e11, exit 0);
// an unknown model type fell back to a lookup of whole words. Both the loader and the tokenizing worker refuse them.
describe('a tokenizer model the library cannot read as given is INVALID_CONFIG', () => {
  // Also (tester AX) each of these loaded and encoded every piece as <unk>, or failed with the library's internals
  // ("x.split is not a function", "Cannot read properties of null"); the loader and the worker say the same.
  type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
  const withModel = (model: Json) => (j: Json) => ({ ...j, model: { ...j.model, ...model } });
  test.each([
    ['a BPE vocab that is a list', withModel({ type: 'BPE', vocab: [1, 2, 3] }), /a BPE model's vocab must be an object of token → id/],
    ['a Unigram vocab that is an object', withModel({ type: 'Unigram', vocab: { a: 0 } }), /a Unigram model's vocab must be a list of \[piece, score\]/],
    ['an unknown model type', withModel({ type: 'Frobnicate', vocab: { a: 0 } }), /model type "Frobnicate" is not one ffmerge reads \(BPE, WordPiece, Unigram\)/],
    ['a model type __proto__', withModel({ type: '__proto__', vocab: { a: 0 } }), /model type "__proto__" is not one ffmerge reads/],
    ['an empty vocabulary', withModel({ vocab: {} }), /the model's vocabulary is empty, so every piece of text would be one unknown token/],
    ['merges null', withModel({ merges: null }), /a BPE model's merges must be a list \(got null\)/],
    ['a merge that is no pair', (j: Json) => withModel({ merges: [...j.model.merges.slice(0, 3), 'ab', 5] })(j), /merge 3 is "ab", not "a b" \(the form of merge 0\)/],
    // tester DR: a vocabulary cut short under its merges loaded, dropped text and gave a perplexity, exit 0
    ['merges over tokens not in the vocabulary', (j: Json) => withModel({ vocab: Object.fromEntries(Object.entries(j.model.vocab).slice(0, 100)) })(j), /merge 0 \(.*\) (takes|makes) ".*", which is not in the vocabulary/],
    ['added_tokens not a list', (j: Json) => ({ ...j, added_tokens: { a: 1 } }), /added_tokens must be a list \(got \{"a":1\}\)/],
    ['an added token without content', (j: Json) => ({ ...j, added_tokens: [...j.added_tokens, { id: 3 }] }), /added token 3 is \{"id":3\}, not an object with a "content" string/],
    ['no model', (j: Json) => ({ ...j, model: undefined }), /has no "model" object \(got undefined\)/],
    ['a token id that is not an integer, named', (j: Json) => withModel({ vocab: { ...j.model.vocab, '\u2581t': 3.5 } })(j), /token "\u2581t" has id 3\.5, not an integer in 0\.\.3083 for a vocabulary of 515 entries/],
    // tester CE: a space made 10,000 "▁" grew the tokenizer thread past 4 GB on a 20 kB file
    ['a Replace normalizer that grows the text', (j: Json) => ({ ...j, normalizer: { type: 'Sequence', normalizers: [{ type: 'Replace', pattern: { String: ' ' }, content: '\u2581'.repeat(10000) }] } }), /its normalizer \(Replace, Prepend\) would make text up to 10000 times longer/],
    // tester CJ: each within the bound, together 4096-fold; a Prepend of 2,000; a Replace 66 Sequences down
    ['Replaces that grow the text together', (j: Json) => ({ ...j, normalizer: { type: 'Sequence', normalizers: Array.from({ length: 6 }, () => ({ type: 'Replace', pattern: { String: '\u2581' }, content: '\u2581'.repeat(4) })) } }), /up to 4096 times longer/],
    ['a long Prepend', (j: Json) => ({ ...j, normalizer: { type: 'Prepend', prepend: '\u2581'.repeat(2000) } }), /up to 2001 times longer/],
    ['a normalizer nested deep', (j: Json) => ({ ...j, normalizer: Array.from({ length: 66 }).reduce((n: Json) => ({ type: 'Sequence', normalizers: [n] }), { type: 'Replace', pattern: { String: '\u2581' }, content: '\u2581'.repeat(10000) }) }), /nested more than 16 Sequences deep/],
    // tester GD: a 50M-character added token ran the process out of heap (a fatal abort); BPE dropout was ignored;
    // a model type nested 100k deep gave INTERNAL_ERROR (stack overflow showing it)
    ['an added token of 5,000 characters', (j: Json) => ({ ...j, added_tokens: [...j.added_tokens, { id: 600, content: 'x'.repeat(5000), special: false }] }), /a token of 5000 characters \("x+\.\.\.\) is longer than any real token \(at most 4096 are read\)/],
    ['a vocabulary token of 5,000 characters', (j: Json) => withModel({ vocab: { ...j.model.vocab, ['y'.repeat(5000)]: 600 } })(j), /a token of 5000 characters .* is longer than any real token/],
    ['BPE dropout', withModel({ dropout: 0.5 }), /its BPE model has dropout 0\.5, which tokenizes the same text differently each time/],
    ['a Unigram unk_id past its vocabulary', withModel({ type: 'Unigram', vocab: [['<unk>', 0], ['a', -1]], unk_id: 100000, merges: undefined }), /its Unigram model's unk_id 100000 is not an index of its 2-piece vocabulary/],
    // (JSON.stringify cannot write it either: the text is made by hand)
    ['a model type nested too deep to show', (j: Json) => JSON.stringify(withModel({ type: 'DEEP' })(j)).replace('"DEEP"', '['.repeat(100000) + ']'.repeat(100000)), /model type \[…\] \(nested too deep to show\) is not one ffmerge reads/],
  ])('%s', async (_what, mutate, message) => {
    const { tokenizeFile } = await import('../lib/data/tokenize-file');
    await withTokenizerCopy(async (d) => {
      const json = JSON.parse(fs.readFileSync(path.join(d, 'tokenizer.json'), 'utf8'));
      const mutated: unknown = mutate(json);
      fs.writeFileSync(path.join(d, 'tokenizer.json'), typeof mutated === 'string' ? mutated : JSON.stringify(mutated));
      await expect(loadTokenizer(d)).rejects.toMatchObject({ code: 'INVALID_CONFIG', message: expect.stringMatching(message) });
      await expect(tokenizeFile(d, path.join(d, 'calibration.txt'), { maxTokens: 100 })).rejects.toMatchObject({ code: 'INVALID_CONFIG', message: expect.stringMatching(message) });
    });
  });

  test('a text of real length that encodes to under 2 tokens names the tokenizer too (a WordPiece model over a BPE vocabulary)', async () => {
    const { blocksFrom } = await import('../lib/pipeline/data');
    await withTokenizerCopy(async (d) => {
      const json = JSON.parse(fs.readFileSync(path.join(d, 'tokenizer.json'), 'utf8'));
      fs.writeFileSync(path.join(d, 'tokenizer.json'), JSON.stringify({ ...json, model: { ...json.model, type: 'WordPiece' } }));
      const text = path.join(d, 'calibration.txt');
      await expect(blocksFrom(text, { blockSize: 16, what: 'data', tokenizerDir: d })).rejects.toMatchObject({
        code: 'INVALID_DATA',
        message: expect.stringMatching(/holds fewer than 2 tokens: its \d+ bytes encode to 1 token \(id 0\), so check .*'s tokenizer\.json as well/),
      });
    });
  });

  test('a tokenizer.json that is a looping link is said to loop, not to be missing (tester GD)', async () => {
    const { tokenizeFile } = await import('../lib/data/tokenize-file');
    await withTokenizerCopy(async (d) => {
      fs.symlinkSync('tokenizer.json', path.join(d, 'tokenizer.json'));
      await expect(tokenizeFile(d, path.join(d, 'calibration.txt'))).rejects.toMatchObject({ code: 'INVALID_CONFIG', message: expect.stringContaining('tokenizer.json is a symbolic link that loops') });
      fs.unlinkSync(path.join(d, 'tokenizer.json'));
      await expect(tokenizeFile(d, path.join(d, 'calibration.txt'))).rejects.toMatchObject({ code: 'INVALID_CONFIG', message: expect.stringContaining('has no tokenizer.json') });
    }, ['tokenizer.json']);
  });

  test('tokenizer_config.json with a value nested 100k deep is INVALID_CONFIG, not INTERNAL_ERROR (tester GD)', async () => {
    const { tokenizeFile } = await import('../lib/data/tokenize-file');
    await withTokenizerCopy(async (d) => {
      fs.writeFileSync(path.join(d, 'tokenizer_config.json'), `{"deep": ${'['.repeat(100000)}${']'.repeat(100000)}}`);
      await expect(tokenizeFile(d, path.join(d, 'calibration.txt'))).rejects.toMatchObject({ code: 'INVALID_CONFIG', message: expect.stringContaining('nested too deep to read') });
    });
  });

  test('the tokenizing worker refuses a tokenizer.json larger than loadTokenizer reads', async () => {
    const { tokenizeFile } = await import('../lib/data/tokenize-file');
    const { MAX_JSON_FILE_BYTES } = await import('../lib/files');
    await withTokenizerCopy(async (d) => {
      fs.truncateSync(path.join(d, 'tokenizer.json'), MAX_JSON_FILE_BYTES + 1); // sparse: no 100 MB written
      await expect(tokenizeFile(d, path.join(d, 'calibration.txt'))).rejects.toMatchObject({ code: 'INVALID_CONFIG', message: expect.stringContaining('-byte limit') });
    });
  });
});
