/**
 * chrF / chrF++ exactly as sacreBLEU 2.x computes it (defaults: character order 6, word order 0, beta 2,
 * whitespace removed, no eps smoothing: orders with no n-grams on either side are left out of the averages).
 * Corpus chrF sums per-sentence n-gram statistics and scores the sums; with several references, each sentence
 * uses the reference with the best sentence-level F score. Behaviour reproduced from sacrebleu/metrics/chrf.py.
 */
import { addSliced, checkCorpus, checkSentence, ngramCounts, pySplit } from './text-utils';

export interface ChrfOptions {
  charOrder?: number | undefined;
  /** 2 gives chrF++. */
  wordOrder?: number | undefined;
  beta?: number | undefined;
  lowercase?: boolean | undefined;
  /** Keep whitespace inside character n-grams. */
  whitespace?: boolean | undefined;
  /** chrF++.py/NLTK-style epsilon smoothing instead of the effective-order averaging. */
  epsSmoothing?: boolean | undefined;
}

export interface ChrfResult {
  /** 0..100 */
  score: number;
  /** [hyp, ref, match] per order, characters first then words. */
  statistics: number[];
}

const PUNCTS = new Set('!"#$%&\'()*+,-./:;<=>?@[\\]^_`{|}~');

/** chrF++'s word split: a punctuation mark at the end (else at the start) of a word becomes its own word. */
function wordsWithPunctuationSplit(sent: string): string[] {
  const out: string[] = [];
  for (const w of pySplit(sent)) {
    const cps = Array.from(w); // code points, as Python indexes a string
    if (cps.length === 1) out.push(w);
    else if (PUNCTS.has(cps[cps.length - 1]!)) out.push(cps.slice(0, -1).join(''), cps[cps.length - 1]!);
    else if (PUNCTS.has(cps[0]!)) out.push(cps[0]!, cps.slice(1).join(''));
    else out.push(w);
  }
  return out;
}

function matchStats(hyp: Map<string, number>, ref: Map<string, number>): [number, number, number] {
  let match = 0;
  let hypCount = 0;
  for (const [g, c] of hyp) {
    hypCount += c;
    const r = ref.get(g);
    if (r !== undefined) match += Math.min(c, r);
  }
  let refCount = 0;
  for (const c of ref.values()) refCount += c;
  // sacreBLEU does not count hypothesis n-grams of an order the reference has none of
  return [ref.size > 0 ? hypCount : 0, refCount, match];
}

function fScore(stats: number[], order: number, beta: number, epsSmoothing: boolean): number {
  const eps = 1e-16;
  const factor = beta * beta;
  let score = 0;
  let effective = 0;
  let avgPrec = 0;
  let avgRec = 0;
  for (let i = 0; i < order; i++) {
    const nHyp = stats[3 * i]!;
    const nRef = stats[3 * i + 1]!;
    const nMatch = stats[3 * i + 2]!;
    const prec = nHyp > 0 ? nMatch / nHyp : eps;
    const rec = nRef > 0 ? nMatch / nRef : eps;
    const denom = factor * prec + rec;
    score += denom > 0 ? ((1 + factor) * prec * rec) / denom : eps;
    if (nHyp > 0 && nRef > 0) {
      avgPrec += prec;
      avgRec += rec;
      effective++;
    }
  }
  if (epsSmoothing) return (100 * score) / order;
  if (effective === 0) return 0;
  avgPrec /= effective;
  avgRec /= effective;
  if (avgPrec + avgRec === 0) return 0;
  return (100 * ((1 + factor) * avgPrec * avgRec)) / (factor * avgPrec + avgRec);
}

/** The corpus statistics one sentence at a time (`add(s)`), as for BLEU (bleuCorpus). */
function chrfCorpus(hypotheses: readonly string[], references: readonly (readonly string[])[], opts: ChrfOptions) {
  const charOrder = opts.charOrder ?? 6;
  const wordOrder = opts.wordOrder ?? 0;
  const beta = opts.beta ?? 2;
  const eps = opts.epsSmoothing ?? false;
  const order = charOrder + wordOrder;
  checkCorpus('corpusChrf', hypotheses, references);
  const prep = (s: string) => (opts.lowercase ? s.toLowerCase() : s);
  const ngrams = (s: string) => {
    const grams = ngramCounts(Array.from(opts.whitespace ? s : pySplit(s).join('')), charOrder, '');
    if (wordOrder > 0) grams.push(...ngramCounts(wordsWithPunctuationSplit(s), wordOrder, ' '));
    return grams;
  };
  const totals = new Array<number>(3 * order).fill(0);
  const add = (s: number): void => {
    const hyp = ngrams(prep(hypotheses[s]!));
    let best: number[] = [];
    let bestF = -1;
    for (const stream of references) {
      const ref = ngrams(prep(stream[s]!));
      const stats: number[] = [];
      for (let o = 0; o < order; o++) stats.push(...matchStats(hyp[o]!, ref[o]!));
      const f = fScore(stats, order, beta, eps);
      if (f > bestF) {
        bestF = f;
        best = stats;
      }
    }
    for (let i = 0; i < totals.length; i++) totals[i]! += best[i]!;
  };
  return { add, result: (): ChrfResult => ({ score: fScore(totals, order, beta, eps), statistics: totals }) };
}

/** Corpus chrF. `references` is a list of reference streams aligned with `hypotheses`. */
export function corpusChrf(hypotheses: readonly string[], references: readonly (readonly string[])[], opts: ChrfOptions = {}): ChrfResult {
  const c = chrfCorpus(hypotheses, references, opts);
  for (let s = 0; s < hypotheses.length; s++) c.add(s);
  return c.result();
}

/** corpusChrf, the same number, computed a few sentences at a time with the event loop free between them. */
export async function corpusChrfSliced(hypotheses: readonly string[], references: readonly (readonly string[])[], opts: ChrfOptions = {}, signal?: AbortSignal): Promise<ChrfResult> {
  return addSliced(chrfCorpus(hypotheses, references, opts), hypotheses.length, signal);
}

/** Sentence chrF (sacrebleu.sentence_chrf). */
export function sentenceChrf(hypothesis: string, references: readonly string[], opts: ChrfOptions = {}): ChrfResult {
  checkSentence('sentenceChrf', hypothesis, references);
  return corpusChrf([hypothesis], references.map((r) => [r]), opts);
}
