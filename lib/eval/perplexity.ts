/**
 * Perplexity of a causal LM over a list of sequences ("blocks"), streamed a batch at a time: each block is
 * one sequence, every token after its first is scored, and only batch·seq hidden states (never all logits)
 * exist at once. ppl = exp(Σ NLL / tokens scored).
 */
import { FfmergeError } from '../errors';
import { checkBatchSize } from '../data/feature-batches';
import { checkJobOptions, throwIfAborted, withJobScope, type JobOptions } from '../native/job';
import { checkLanguageModel, type Model } from '../model/model';
import { checkArrayOf } from '../arguments';
import { isInt32Array } from '../typed-arrays';

export interface PerplexityOptions extends JobOptions {
  /** Sequences per forward call (default 8). Shorter blocks in a batch are right-padded and masked. */
  batchSize?: number | undefined;
}

export interface PerplexityResult {
  ppl: number;
  /** Mean NLL per scored token, in nats. */
  nll: number;
  /** Tokens scored (Σ (block length − 1)). */
  tokens: number;
}

/**
 * Perplexity of a language model on token blocks: exp of the mean next-token cross-entropy over every block's
 * tokens 2..n (each block scored on its own, no context carried across). Batched natively, off the main thread.
 */
export async function perplexity(model: Model, blocks: Int32Array[], opts: PerplexityOptions = {}): Promise<PerplexityResult> {
  checkLanguageModel(model, 'perplexity(model, blocks): model');
  checkArrayOf<Int32Array>(blocks, 'perplexity(model, blocks): blocks', 'Int32Arrays of token ids', isInt32Array);
  checkJobOptions(opts, 'perplexity(model, blocks, options): options', ['batchSize']);
  const batchSize = opts.batchSize ?? 8;
  checkBatchSize(batchSize);
  const scored = blocks.filter((b) => b.length >= 2);
  const total = scored.reduce((n, b) => n + b.length - 1, 0);
  if (total === 0) throw new FfmergeError('INVALID_DATA', 'perplexity needs at least one block of 2 or more tokens');
  // one job of several forward passes: a dispose() meanwhile lets it finish (Model.session); an async progress
  // callback's rejection fails it (withJobScope)
  const { sum, count } = await withJobScope(opts, (opts) => model.session(async () => {
    let sum = 0;
    let count = 0;
    for (let i = 0; i < scored.length; i += batchSize) {
      throwIfAborted(opts.signal);
      const group = scored.slice(i, i + batchSize);
      const seq = Math.max(...group.map((b) => b.length));
      const ids = new Int32Array(group.length * seq);
      const padded = group.some((b) => b.length !== seq);
      const mask = padded ? new Uint8Array(group.length * seq) : undefined;
      group.forEach((b, r) => {
        ids.set(b, r * seq);
        mask?.fill(1, r * seq, r * seq + b.length);
      });
      const done = count;
      const batchTokens = group.reduce((n, b) => n + b.length - 1, 0);
      const r = await model.forward(
        { ids, batch: group.length, seq, ...(mask ? { attentionMask: mask } : {}) },
        {
          output: 'nll',
          signal: opts.signal,
          // whole tokens, not a share of the batch's
          onProgress: opts.onProgress && ((p) => opts.onProgress!({ phase: 'perplexity', done: done + Math.floor((p.done / p.total) * batchTokens), total })),
        },
      );
      sum += r.nllSum ?? 0;
      count += r.nllCount ?? 0;
      opts.onProgress?.({ phase: 'perplexity', done: count, total });
    }
    return { sum, count };
  }));
  const nll = sum / count;
  return { ppl: Math.exp(nll), nll, tokens: count };
}

