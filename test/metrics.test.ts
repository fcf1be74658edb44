/**
 * BLEU / chrF against sacreBLEU's own published test cases. Every expected number below is copied from
 * github.com/mjpost/sacrebleu: test/test_bleu.py (commit 785d26b, sacreBLEU 2.x) and test/test_chrf.py.
 * The 13a tokenizer cases are worked out by hand from mteval-v13a's rules.
 */
import { computeBleu, corpusBleu, corpusBleuSliced, sentenceBleu } from '../lib/metrics/bleu';
import { corpusChrf, corpusChrfSliced, sentenceChrf } from '../lib/metrics/chrf';
import { tokenize13a } from '../lib/metrics/tokenizer-13a';
import { argmaxRows, top1Accuracy } from '../lib/metrics/accuracy';
import { isFfmergeError } from '../lib/errors';

// test_bleu.py: README example
const refs = [
  ['The dog bit the man.', 'It was not unexpected.', 'The man bit him first.'],
  ['The dog had bit the man.', 'No one was surprised.', 'The man had bitten the dog.'],
];
const hyps = ['The dog bit the man.', "It wasn't surprising.", 'The man had just bitten him.'];

// sacrebleu.raw_corpus_bleu(h, r, v) = corpus_bleu(..., smooth_method='floor', smooth_value=v, tokenize='none',
// use_effective_order=True)
const raw = (h: string[], r: string[][], floor = 0.1) =>
  corpusBleu(h, r, { tokenize: 'none', smoothMethod: 'floor', smoothValue: floor, effectiveOrder: true });

describe('13a tokenizer', () => {
  test.each([
    ['The dog bit the man.', 'The dog bit the man .'],
    // the apostrophe (0x27) is not in 13a's symbol ranges
    ["It wasn't surprising.", "It wasn't surprising ."],
    ['Price: 1,000.50 dollars, 3-4 days.', 'Price : 1,000.50 dollars , 3 - 4 days .'],
    ['a &amp; b &lt;c&gt; &quot;q&quot;', 'a & b < c > " q "'],
    ['  many   spaces\there ', 'many spaces here'],
    ['(hi) [x] {y} $5 50% #tag @me a/b', '( hi ) [ x ] { y } $ 5 50 % # tag @ me a / b'],
    ['Schöne Grüße, Zoë.', 'Schöne Grüße , Zoë .'],
  ])('%j -> %j', (input, expected) => {
    expect(tokenize13a(input)).toBe(expected);
  });
});

describe('corpus BLEU (sacreBLEU test_bleu.py)', () => {
  test('default settings: 48.530827', () => {
    expect(Math.abs(corpusBleu(hyps, refs).score - 48.530827)).toBeLessThan(1e-6);
  });
  test('empty hypotheses are kept and score 0', () => {
    expect(corpusBleu(['', '', ''], refs).score).toBe(0);
  });
  test("tokenize 'none': 49.1919566", () => {
    expect(Math.abs(corpusBleu(hyps, refs, { tokenize: 'none' }).score - 49.1919566)).toBeLessThan(1e-6);
  });
  test("smooth_method 'none': 48.530827", () => {
    expect(Math.abs(corpusBleu(hyps, refs, { smoothMethod: 'none' }).score - 48.530827)).toBeLessThan(1e-6);
  });
  test.each([
    [1, '77.65'],
    [2, '60.50'],
    [3, '53.93'],
    [4, '48.53'],
    [5, '46.14'],
    [6, '43.28'],
  ])('max_ngram_order %i -> %s', (order, expected) => {
    expect(corpusBleu(hyps, refs, { maxNgramOrder: order }).score.toFixed(2)).toBe(expected);
  });
  test.each([
    [['this is a test', 'another test'], [['ref1', 'ref2']], 0.0],
    [['this is a test'], [['this is a test']], 1.0],
    [['this is a fest'], [['this is a test']], 0.223606797749979],
  ])('raw_corpus_bleu %j', (h, r, expected) => {
    expect(Math.abs(raw(h, r, 0.01).score / 100 - expected)).toBeLessThan(1e-8);
  });
  test.each([
    [['test'], [['a test']], 0.3678794411714425],
    [['a test'], [['a test']], 1.0],
    [['a little test'], [['a test']], 0.03218297948685433],
  ])('effective order %j', (h, r, expected) => {
    expect(Math.abs(raw(h, r, 0.01).score / 100 - expected)).toBeLessThan(1e-8);
  });
  test('statistics', () => {
    const r = raw(['am I am a character sequence'], [['I am a symbol string sequence a a']], 0.01);
    expect(r.counts).toEqual([4, 2, 1, 0]);
    expect(r.totals).toEqual([6, 5, 4, 3]);
  });
  test('offset', () => {
    const h = ['am I am a character sequence'];
    const r = [['I am a symbol string sequence a a']];
    expect(Math.abs(raw(h, r, 0).score / 100)).toBeLessThan(1e-8);
    expect(Math.abs(raw(h, r).score / 100 - 0.1555722182)).toBeLessThan(1e-8);
  });
  test('scoring from statistics', () => {
    expect(Math.abs(computeBleu([9, 7, 5, 3], [10, 8, 6, 4], 11, 11).score / 100 - 0.8375922397)).toBeLessThan(1e-8);
  });
  test.each([
    [[0, 0, 0, 0], [4, 4, 2, 1], 0, 1, 0.0],
    [[0, 0, 0, 0], [10, 11, 12, 0], 14, 10, 0.0],
    [[0, 0, 0, 0], [0, 0, 0, 0], 0, 0, 0.0],
    [[6, 5, 4, 0], [6, 5, 4, 3], 6, 6, 0.0],
    [[0, 0, 0, 0], [0, 0, 0, 0], 0, 0, 0.1],
    [[0, 0, 0, 0], [0, 0, 0, 0], 1, 5, 0.01],
  ])('degenerate statistics %j %j', (c, t, sys, ref, offset) => {
    expect(computeBleu(c, t, sys, ref, { smoothMethod: 'floor', smoothValue: offset }).score).toBe(0);
  });
  test('exp smoothing halves the missing precisions (mteval NIST rule)', () => {
    // 1-gram 2/2, 2-gram 1/1, 3- and 4-gram 0 matches of 0 → break; hand-computed with smoothing doubling
    const r = computeBleu([3, 1, 0, 0], [3, 2, 1, 1], 3, 3, { smoothMethod: 'exp' });
    const expected = Math.exp((Math.log(100) + Math.log(50) + Math.log(100 / 2) + Math.log(100 / 4)) / 4);
    expect(r.score).toBeCloseTo(expected, 10);
  });
  test('sentence BLEU uses effective order', () => {
    expect(sentenceBleu('a test', ['a test']).score).toBeCloseTo(100, 10);
    // an explicit undefined is the default, not "off" (tester EG: 0 for 13.53)
    expect(sentenceBleu('the cat', ['the cat sat on the mat'], { effectiveOrder: undefined }).score).toBe(sentenceBleu('the cat', ['the cat sat on the mat']).score);
    expect(sentenceBleu('the cat', ['the cat sat on the mat']).score).toBeGreaterThan(0);
  });
  test('misaligned streams are a typed error', () => {
    expect(() => corpusBleu(['a'], [['a', 'b']])).toThrow(expect.objectContaining({ code: 'INVALID_DATA' }));
  });
});

describe('chrF (sacreBLEU test_chrf.py)', () => {
  // corpus_chrf(h, [r], char_order=6, word_order=0, beta=3, eps_smoothing=True)
  test.each([
    [['abcdefg'], ['hijklmnop'], 0.0],
    [['a'], ['b'], 0.0],
    [[''], ['b'], 0.0],
    [[''], ['ref'], 0.0],
    [[''], ['reference'], 0.0],
    [['aa'], ['ab'], 8.3333],
    [['a', 'b'], ['a', 'c'], 8.3333],
    [['a'], ['a'], 16.6667],
    [['a b c'], ['a b c'], 50.0],
    [['a b c'], ['abc'], 50.0],
    [
      [' risk assessment must be made of those who are qualified and expertise in the sector - these are the scientists .'],
      ['risk assessment has to be undertaken by those who are qualified and expert in that area - that is the scientists .'],
      63.36173,
    ],
    [
      [' Die    Beziehung zwischen  Obama und Netanjahu ist nicht gerade  freundlich. '],
      ['Das Verhältnis zwischen Obama und Netanyahu ist nicht gerade freundschaftlich.'],
      64.1302698,
    ],
    [['Niemand hat die Absicht, eine Mauer zu errichten'], ['Niemand hat die Absicht, eine Mauer zu errichten'], 100.0],
  ])('eps smoothing %j', (h, r, expected) => {
    const s = corpusChrf(h, [r], { charOrder: 6, wordOrder: 0, beta: 3, epsSmoothing: true }).score;
    expect(Math.abs(s - expected)).toBeLessThan(1e-4);
  });
  // eps_smoothing=False (the sacreBLEU 2.x default)
  test.each([
    [['a'], ['a'], 100.0],
    [[''], ['reference'], 0.0],
    [['a b c'], ['a b c'], 100.0],
    [['a b c'], ['abc'], 100.0],
    [[''], ['c'], 0.0],
    [['a', 'b'], ['a', 'c'], 50.0],
    [['aa'], ['ab'], 25.0],
  ])('effective order %j', (h, r, expected) => {
    const s = corpusChrf(h, [r], { charOrder: 6, wordOrder: 0, beta: 3 }).score;
    expect(Math.abs(s - expected)).toBeLessThan(1e-4);
  });
  test.each([
    [
      ['Die Beziehung zwischen Obama und Netanjahu ist nicht gerade freundlich.'],
      ['Das Verhältnis zwischen Obama und Netanyahu ist nicht gerade freundschaftlich.'],
      67.3481606,
    ],
    [
      ['risk assessment must be made of those who are qualified and expertise in the sector - these are the scientists .'],
      ['risk assessment has to be undertaken by those who are qualified and expert in that area - that is the scientists .'],
      65.2414427,
    ],
  ])('keep whitespace %j', (h, r, expected) => {
    const s = corpusChrf(h, [r], { charOrder: 6, wordOrder: 0, beta: 3, whitespace: true }).score;
    expect(Math.abs(s - expected)).toBeLessThan(1e-4);
  });
  // sentence_chrf(h, refs, eps_smoothing=True) with the defaults (beta 2)
  test.each([
    [
      'Co nás nejvíc trápí, protože lékaři si vybírají, kdo bude žít a kdo zemře.',
      ['Nejvíce smutní jsme z toho, že musíme rozhodovat o tom, kdo bude žít a kdo zemře.'],
      39.14078509,
    ],
    [
      'Nebo prostě nemají vybavení, které by jim pomohlo, uvedli lékaři.',
      ['A někdy nemáme ani potřebný materiál, abychom jim pomohli, popsali lékaři.'],
      31.22557079,
    ],
    [
      'Lapali po dechu, jejich životy skončily dřív, než skutečně začaly.',
      ['Lapali po dechu a pak jejich život skončil - dřív, než skutečně mohl začít, připomněli.'],
      57.15704367,
    ],
  ])('sentence level %j', (h, r, expected) => {
    expect(Math.abs(sentenceChrf(h, r, { epsSmoothing: true }).score - expected)).toBeLessThan(1e-4);
  });
  test('misaligned streams are a typed error', () => {
    let err: unknown;
    try {
      corpusChrf(['a', 'b'], [['a']]);
    } catch (e) {
      err = e;
    }
    expect(isFfmergeError(err, 'INVALID_DATA')).toBe(true);
  });
});

describe('top-1 accuracy', () => {
  test('argmax per row, first index on ties', () => {
    expect(Array.from(argmaxRows([0, 2, 1, 5, 5, 1, -1, -3, -2], 3))).toEqual([1, 0, 0]);
  });
  test('counts matches', () => {
    const r = top1Accuracy([0, 1, 1, 0, 0.2, 0.1], 2, [1, 1, 0]);
    expect(r).toEqual({ correct: 2, total: 3, accuracy: 2 / 3 });
  });
  test('shape errors are typed', () => {
    expect(() => argmaxRows([1, 2, 3], 2)).toThrow(expect.objectContaining({ code: 'SHAPE_MISMATCH' }));
    expect(() => top1Accuracy([1, 2], 2, [0, 1])).toThrow(expect.objectContaining({ code: 'SHAPE_MISMATCH' }));
  });
});

describe('corpus metrics in slices (the event loop free between them)', () => {
  test('give the very numbers of the one-go functions, yield between slices, and stop on the signal (tester EX)', async () => {
    let seed = 7;
    const rnd = () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648);
    const words = ['ein', 'Hund', 'rennt', 'über', 'die', 'Wiese', '.', 'Mann', ',', 'sitzt', 'auf', 'einer', 'Bank', '!'];
    const sentence = () => Array.from({ length: 1 + Math.floor(rnd() * 15) }, () => words[Math.floor(rnd() * words.length)]).join(' ');
    const hyps = Array.from({ length: 300 }, sentence);
    const refs = [Array.from({ length: 300 }, sentence), Array.from({ length: 300 }, sentence)];
    let ticks = 0;
    const timer = setInterval(() => ticks++, 0);
    try {
      expect(await corpusBleuSliced(hyps, refs)).toEqual(corpusBleu(hyps, refs));
      expect(await corpusChrfSliced(hyps, refs, { wordOrder: 2 })).toEqual(corpusChrf(hyps, refs, { wordOrder: 2 }));
    } finally {
      clearInterval(timer);
    }
    expect(ticks).toBeGreaterThan(0); // timers ran while they scored: no one stretch held the thread
    const ac = new AbortController();
    ac.abort();
    await expect(corpusBleuSliced(hyps, refs, {}, ac.signal)).rejects.toMatchObject({ code: 'ABORTED' });
    // the same argument checks as the one-go functions
    const short = [refs[0]!.slice(1)];
    const code = (() => {
      try {
        corpusBleu(hyps, short);
      } catch (e) {
        return (e as { code?: string }).code;
      }
    })();
    expect(code).toBe('INVALID_DATA');
    await expect(corpusBleuSliced(hyps, short)).rejects.toMatchObject({ code });
  });
});
