/**
 * Translation of a corpus with an encoder–decoder model (Marian) and its corpus BLEU / chrF, the way the
 * fixture's eval.json describes: sources encoded with the model's tokenizer (its post-processor appends
 * </s>), cut to `maxSourceTokens` (default: the model's positions, counted in the result; eval.json's protocol
 * cut at 64, which no Multi30k sentence reaches); decoding per generation_config.json (greedy unless it asks
 * for beams: decodingLabel says which); hypotheses decoded skipping special tokens; sacreBLEU-exact corpus BLEU
 * (13a) against the raw references.
 */
import { FfmergeError, showValue } from '../errors';
import { corpusBleuSliced, type BleuResult } from '../metrics/bleu';
import { METRIC_SLICE_SENTENCES } from '../metrics/text-utils';
import { corpusChrfSliced, type ChrfResult } from '../metrics/chrf';
import { forSlices } from '../merge/slices';
import { checkJobOptions, throwIfAborted, withJobScope, type JobOptions } from '../native/job';
import { checkModel, generateBytes, generationConfigFrom, machineBytes, type GenerationConfig, type Model } from '../model/model';
import { checkTokenizer, textForTokens, type Tokenizer } from '../tokenizer';
import { checkArrayOf } from '../arguments';
import { encodeSentences } from '../data/encode-sentences';

/** The greedy settings of a model folder (also what loadModel gives an encoder–decoder model). */
export { loadGenerationConfig } from '../model/load';

/** What decoding a generation config runs, for labels: "greedy", or "beam search, 4 beams". */
export function decodingLabel(g: GenerationConfig): string {
  const beams = g.numBeams ?? 1;
  return beams > 1 ? `beam search, ${beams} beams` : 'greedy';
}

export interface TranslateOptions extends JobOptions {
  /** Sentences per native job (default 64). Sentences are batched by length; output order is the input order. */
  batchSize?: number | undefined;
  /**
   * Source ids kept per sentence, special tokens included. Default: the encoder's positions (config.json
   * max_position_embeddings), the most it can read. A longer source is cut and its translation says so.
   */
  maxSourceTokens?: number | undefined;
  /**
   * Decoding settings (greedy, or beam search when numBeams > 1). Default: the generation_config.json of the
   * folder the model was loaded from (loadModel reads it), else config.json's ids with transformers' defaults.
   */
  generation?: GenerationConfig | undefined;
}

export interface Translation {
  text: string;
  /** Generated ids after the start token, up to and including eos. */
  ids: number[];
  /** The source was longer than maxSourceTokens and was cut to it. */
  truncated: boolean;
}

/** Translations of `sources`, in order (greedy, or beam search when the generation config asks). */
export async function translate(model: Model, tokenizer: Tokenizer, sources: readonly string[], opts: TranslateOptions = {}): Promise<Translation[]> {
  checkModel(model, 'translate(model, tokenizer, sources): model');
  checkTokenizer(tokenizer, 'translate(model, tokenizer, sources): tokenizer');
  checkArrayOf<string>(sources, 'translate(model, tokenizer, sources): sources', 'strings', (x) => typeof x === 'string');
  checkJobOptions(opts, 'translate(model, tokenizer, sources, options): options', ['batchSize', 'maxSourceTokens', 'generation']);
  const generation = opts.generation ?? model.generation ?? generationConfigFrom({}, model.config as Record<string, unknown>);
  const batchSize = opts.batchSize ?? 64;
  const positions = model.encoderSpec?.maxPositions;
  const maxSource = opts.maxSourceTokens ?? (positions !== undefined && positions > 0 ? positions : undefined);
  if (!Number.isInteger(batchSize) || batchSize <= 0) throw new FfmergeError('INVALID_ARGUMENT', 'batchSize must be a positive integer');
  if (maxSource !== undefined && (!Number.isInteger(maxSource) || maxSource <= 0)) {
    throw new FfmergeError('INVALID_ARGUMENT', `maxSourceTokens must be a positive integer (got ${showValue(maxSource)})`);
  }
  const pad = generation.padTokenId;
  const out = new Array<Translation>(sources.length);
  await withJobScope(opts, async (opts) => {
    // a source is cut to the words its kept ids come from before encoding (the same ids): a line of half a
    // million characters would overflow the tokenizer library; one it still cannot encode is named. A few
    // sentences at a time, the event loop free between them.
    const encoded: number[][] = [];
    const wasCut = new Set<number>();
    await forSlices(sources.length, METRIC_SLICE_SENTENCES, (i0, i1) => {
      const texts = sources.slice(i0, i1).map((s, j) => (maxSource === undefined ? s : textForTokens(tokenizer, s, maxSource, `source sentence ${i0 + j + 1}`)));
      const part = encodeSentences(tokenizer, texts, maxSource);
      encoded.push(...part.ids);
      for (const j of part.cut) wasCut.add(i0 + j);
    }, opts.signal);
    // Similar lengths together: less padding per batch. Results go back to input order.
    const order = encoded.map((_, i) => i).sort((a, b) => encoded[a]!.length - encoded[b]!.length || a - b);
    await model.session(async () => {
      let done = 0;
      for (let b0 = 0; b0 < order.length; ) {
        throwIfAborted(opts.signal);
        // fewer sentences at once where many beams would make a batch's caches large (a quarter of the machine's
        // memory at most; one sentence that alone needs more than half is refused by generate)
        const longest = Math.max(1, encoded[order[Math.min(order.length, b0 + batchSize) - 1]!]!.length);
        const perSentence = generateBytes(model.encoderSpec ?? model.spec, model.spec, 1, longest, Math.min(generation.maxLength, model.spec.maxPositions), generation.numBeams ?? 1);
        const idx = order.slice(b0, b0 + Math.max(1, Math.min(batchSize, Math.floor(machineBytes() / 4 / perSentence))));
        b0 += idx.length;
        const seq = Math.max(1, ...idx.map((i) => encoded[i]!.length));
        const ids = new Int32Array(idx.length * seq).fill(pad);
        const mask = new Uint8Array(idx.length * seq);
        idx.forEach((i, r) => {
          const e = encoded[i]!;
          ids.set(e, r * seq);
          mask.fill(1, r * seq, r * seq + e.length);
        });
        // the decoding steps of a batch as the detail: with many beams one batch can run for minutes
        const report = opts.onProgress;
        const step = report && ((p: { done: number; total: number }) => report({ phase: 'translate', done, total: sources.length, unit: 'sentences', detail: `decoding ${idx.length} sentence${idx.length > 1 ? 's' : ''}, step ${p.done} of at most ${p.total}` }));
        const g = await model.generate({ ids, batch: idx.length, seq, attentionMask: mask }, generation, { signal: opts.signal, onProgress: step });
        idx.forEach((i, r) => {
          const row = Array.from(g.ids.subarray(r * g.length + 1, (r + 1) * g.length));
          const end = generation.eosTokenId === undefined ? -1 : row.indexOf(generation.eosTokenId);
          const gen = end >= 0 ? row.slice(0, end + 1) : row.filter((t) => t !== pad);
          out[i] = { ids: gen, text: tokenizer.decode(gen, { skipSpecialTokens: true }), truncated: wasCut.has(i) };
        });
        done += idx.length;
        opts.onProgress?.({ phase: 'translate', done, total: sources.length, unit: 'sentences' });
      }
    });
  });
  return out;
}

export interface TranslationEval {
  bleu: BleuResult;
  chrf: ChrfResult;
  hypotheses: string[];
  /** Sources cut to maxSourceTokens (default: the encoder's positions) before translation. */
  truncated: number;
}

/** Translates every source and scores the corpus against the references (sacreBLEU defaults). */
export async function evaluateTranslation(
  model: Model,
  tokenizer: Tokenizer,
  pairs: readonly { source: string; target: string }[],
  opts: TranslateOptions = {},
): Promise<TranslationEval> {
  checkModel(model, 'evaluateTranslation(model, tokenizer, pairs): model');
  checkArrayOf(pairs, 'evaluateTranslation(model, tokenizer, pairs): pairs', '{ source, target } strings', (p) => typeof (p as { source?: unknown })?.source === 'string' && typeof (p as { target?: unknown })?.target === 'string');
  if (pairs.length === 0) throw new FfmergeError('INVALID_DATA', 'the parallel corpus is empty');
  const out = await translate(model, tokenizer, pairs.map((p) => p.source), opts);
  const hyps = out.map((t) => t.text);
  const refs = [pairs.map((p) => p.target)];
  // scored a few sentences at a time, as translate encodes them
  const bleu = await corpusBleuSliced(hyps, refs, {}, opts.signal);
  return { bleu, chrf: await corpusChrfSliced(hyps, refs, {}, opts.signal), hypotheses: hyps, truncated: out.filter((t) => t.truncated).length };
}

/**
 * The corpus BLEU of the translations of `pairs` alone (no chrF): what a search ranks candidates by, scored as
 * evaluateTranslation scores it.
 */
export async function translationBleu(model: Model, tokenizer: Tokenizer, pairs: readonly { source: string; target: string }[], opts: TranslateOptions = {}): Promise<number> {
  const out = await translate(model, tokenizer, pairs.map((p) => p.source), opts);
  return (await corpusBleuSliced(out.map((t) => t.text), [pairs.map((p) => p.target)], {}, opts.signal)).score;
}
