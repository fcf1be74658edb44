/**
 * Corpus BLEU exactly as sacreBLEU 2.x computes it (defaults: 13a tokenizer, max order 4, "exp" smoothing,
 * closest reference length for the brevity penalty, mixed case). Behaviour reproduced from
 * sacrebleu/metrics/bleu.py; the test suite checks sacreBLEU's own published test cases.
 */
import { FfmergeError, showValue } from '../errors';
import { checkOptions, isArrayOf } from '../arguments';
import { addSliced, checkCorpus, checkSentence, ngramCounts, pyRstrip, pySplit } from './text-utils';
import { tokenize13a } from './tokenizer-13a';

export type BleuSmoothing = 'exp' | 'none' | 'floor' | 'add-k';
export type BleuTokenizer = '13a' | 'none';

export interface BleuOptions {
  tokenize?: BleuTokenizer | undefined;
  lowercase?: boolean | undefined;
  smoothMethod?: BleuSmoothing | undefined;
  /** For 'floor' (default 0.1) and 'add-k' (default 1). */
  smoothValue?: number | undefined;
  maxNgramOrder?: number | undefined;
  /** Drop n-gram orders with no hypothesis n-grams (sentence-level BLEU). */
  effectiveOrder?: boolean | undefined;
}

export interface BleuResult {
  /** 0..100 */
  score: number;
  counts: number[];
  totals: number[];
  /** 0..100 per order */
  precisions: number[];
  bp: number;
  sysLen: number;
  refLen: number;
}

const SMOOTH_DEFAULTS: Record<BleuSmoothing, number> = { exp: 0, none: 0, floor: 0.1, 'add-k': 1 };

/** sacreBLEU's my_log: log(0) is a huge negative number instead of -Infinity. */
function safeLog(x: number): number {
  return x === 0 ? -9999999999 : Math.log(x);
}

const BLEU_KEYS: readonly (keyof BleuOptions)[] = ['tokenize', 'lowercase', 'smoothMethod', 'smoothValue', 'maxNgramOrder', 'effectiveOrder'];

/** The options every BLEU call takes, checked: a smoothing or tokenizer name it does not know was read as another. */
function checkBleuOptions(what: string, opts: unknown, keys: readonly string[] = BLEU_KEYS): asserts opts is BleuOptions {
  checkOptions(opts, `${what}: opts`, keys);
  const o = (opts ?? {}) as Record<string, unknown>;
  const bad = (key: string, want: string) => new FfmergeError('INVALID_ARGUMENT', `${what}: ${key} must be ${want} (got ${showValue(o[key])})`);
  const oneOf = (key: string, names: readonly string[]) => {
    if (o[key] !== undefined && !names.includes(o[key] as string)) throw bad(key, names.map((n) => `"${n}"`).join(', '));
  };
  oneOf('smoothMethod', Object.keys(SMOOTH_DEFAULTS));
  oneOf('tokenize', ['13a', 'none']);
  for (const key of ['lowercase', 'effectiveOrder']) if (o[key] !== undefined && typeof o[key] !== 'boolean') throw bad(key, 'true or false');
  if (o.smoothValue !== undefined && !(typeof o.smoothValue === 'number' && Number.isFinite(o.smoothValue) && o.smoothValue >= 0)) throw bad('smoothValue', 'a finite number ≥ 0');
  if (o.maxNgramOrder !== undefined && !(Number.isInteger(o.maxNgramOrder) && (o.maxNgramOrder as number) >= 1)) throw bad('maxNgramOrder', 'an integer ≥ 1');
}

/**
 * BLEU from sufficient statistics (sacreBLEU's BLEU.compute_bleu): per order n, `correct[n-1]` matched n-grams of
 * `total[n-1]` in the hypotheses, one count per order up to maxNgramOrder (default 4).
 */
export function computeBleu(
  correctIn: number[],
  totalIn: number[],
  sysLen: number,
  refLen: number,
  opts: Pick<BleuOptions, 'smoothMethod' | 'smoothValue' | 'effectiveOrder' | 'maxNgramOrder'> = {},
): BleuResult {
  // a public function: wrong arguments are named, not a TypeError from inside
  checkBleuOptions('computeBleu', opts, ['smoothMethod', 'smoothValue', 'effectiveOrder', 'maxNgramOrder']);
  const maxOrder = opts.maxNgramOrder ?? 4;
  const counts = (v: unknown) => isArrayOf<number>(v, (n) => typeof n === 'number' && Number.isFinite(n) && n >= 0) && v.length === maxOrder;
  for (const [name, v] of [['correct', correctIn], ['total', totalIn]] as const) {
    if (!counts(v)) throw new FfmergeError('INVALID_ARGUMENT', `computeBleu: ${name} must be ${maxOrder} counts ≥ 0, one per n-gram order (got ${showValue(v)})`);
  }
  for (const [name, v] of [['sysLen', sysLen], ['refLen', refLen]] as const) {
    if (!(typeof v === 'number' && Number.isFinite(v) && v >= 0)) throw new FfmergeError('INVALID_ARGUMENT', `computeBleu: ${name} must be a length ≥ 0 (got ${showValue(v)})`);
  }
  const method = opts.smoothMethod ?? 'none';
  const smoothValue = opts.smoothValue ?? SMOOTH_DEFAULTS[method];
  const correct = correctIn.slice();
  const total = totalIn.slice();
  const bp = sysLen >= refLen ? 1 : sysLen > 0 ? Math.exp(1 - refLen / sysLen) : 0;
  const precisions = new Array<number>(maxOrder).fill(0);
  const result = (score: number): BleuResult => ({ score, counts: correct, totals: total, precisions, bp, sysLen, refLen });
  if (!correct.some((c) => c !== 0)) return result(0);

  let smoothMteval = 1;
  let effOrder = maxOrder;
  for (let n = 1; n <= maxOrder; n++) {
    if (method === 'add-k' && n > 1) {
      correct[n - 1]! += smoothValue;
      total[n - 1]! += smoothValue;
    }
    const t = total[n - 1]!;
    const c = correct[n - 1]!;
    if (t === 0) break;
    if (opts.effectiveOrder) effOrder = n;
    if (c === 0) {
      if (method === 'exp') {
        smoothMteval *= 2;
        precisions[n - 1] = 100 / (smoothMteval * t);
      } else if (method === 'floor') {
        precisions[n - 1] = (100 * smoothValue) / t;
      }
    } else {
      precisions[n - 1] = (100 * c) / t;
    }
  }
  let logSum = 0;
  for (let i = 0; i < effOrder; i++) logSum += safeLog(precisions[i]!);
  return result(bp * Math.exp(logSum / effOrder));
}

/**
 * The corpus statistics, one sentence at a time: `add(s)` takes sentence s of the hypotheses and of every
 * reference stream, `result()` is the BLEU of those added. corpusBleu runs it in one go; corpusBleuSliced in
 * slices (addSliced).
 */
function bleuCorpus(what: string, hypotheses: readonly string[], references: readonly (readonly string[])[], opts: BleuOptions) {
  checkCorpus(what, hypotheses, references);
  checkBleuOptions(what, opts);
  const maxOrder = opts.maxNgramOrder ?? 4;
  const prep = (s: string): string[] => {
    const t = opts.lowercase ? s.toLowerCase() : s;
    const r = pyRstrip(t);
    return pySplit(opts.tokenize === 'none' ? r : tokenize13a(r));
  };
  const correct = new Array<number>(maxOrder).fill(0);
  const total = new Array<number>(maxOrder).fill(0);
  let sysLen = 0;
  let refLen = 0;
  const add = (s: number): void => {
    const hyp = prep(hypotheses[s]!);
    // reference n-grams: max count over references; reference length closest to the hypothesis length
    const refMax = Array.from({ length: maxOrder }, () => new Map<string, number>());
    let closestDiff = -1;
    let closestLen = -1;
    for (const stream of references) {
      const ref = prep(stream[s]!);
      const diff = Math.abs(hyp.length - ref.length);
      if (closestDiff === -1 || diff < closestDiff || (diff === closestDiff && ref.length < closestLen)) {
        closestDiff = diff;
        closestLen = ref.length;
      }
      // tokens hold no whitespace, so joining them with ' ' is unambiguous
      ngramCounts(ref, maxOrder, ' ').forEach((counts, o) => {
        const m = refMax[o]!;
        for (const [k, c] of counts) m.set(k, Math.max(m.get(k) ?? 0, c));
      });
    }
    sysLen += hyp.length;
    refLen += closestLen;
    ngramCounts(hyp, maxOrder, ' ').forEach((counts, o) => {
      const m = refMax[o]!;
      for (const [k, c] of counts) {
        total[o]! += c;
        const r = m.get(k);
        if (r !== undefined) correct[o]! += Math.min(c, r);
      }
    });
  };
  const result = (): BleuResult =>
    computeBleu(correct, total, sysLen, refLen, {
      smoothMethod: opts.smoothMethod ?? 'exp',
      smoothValue: opts.smoothValue,
      effectiveOrder: opts.effectiveOrder,
      maxNgramOrder: maxOrder,
    });
  return { add, result };
}

/**
 * Corpus BLEU. `references` is a list of reference streams, each aligned with `hypotheses`
 * (sacrebleu.corpus_bleu(hyps, [refs1, refs2, ...])).
 */
export function corpusBleu(hypotheses: readonly string[], references: readonly (readonly string[])[], opts: BleuOptions = {}): BleuResult {
  const c = bleuCorpus('corpusBleu', hypotheses, references, opts);
  for (let s = 0; s < hypotheses.length; s++) c.add(s);
  return c.result();
}

/** corpusBleu, the same number, computed a few sentences at a time with the event loop free between them. */
export async function corpusBleuSliced(hypotheses: readonly string[], references: readonly (readonly string[])[], opts: BleuOptions = {}, signal?: AbortSignal): Promise<BleuResult> {
  return addSliced(bleuCorpus('corpusBleu', hypotheses, references, opts), hypotheses.length, signal);
}

/** Sentence BLEU as sacrebleu.sentence_bleu (effective order on, exp smoothing). */
export function sentenceBleu(hypothesis: string, references: readonly string[], opts: BleuOptions = {}): BleuResult {
  checkSentence('sentenceBleu', hypothesis, references);
  checkBleuOptions('sentenceBleu', opts);
  // (an explicit undefined is the default too: a spread would let it overwrite true)
  return corpusBleu([hypothesis], references.map((r) => [r]), { ...opts, effectiveOrder: opts.effectiveOrder ?? true });
}
