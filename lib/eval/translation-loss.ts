/**
 * Teacher-forced cross-entropy of reference translations: the decoder reads [start, t0, …, t(n-1)] and each
 * position predicts the next reference token (eos included), padding masked out. A smooth score of a
 * translation model on a validation set, far cheaper than decoding it (no search, one pass per batch).
 */
import type { ForwardInput, Model } from '../model/model';
import type { JobOptions } from '../native/job';
import type { Tokenizer } from '../tokenizer';
import { encodePairs } from '../data/encode-sentences';

export interface ReferenceBatchOptions {
  decoderStartTokenId: number;
  padTokenId: number;
  batchSize?: number | undefined;
  /** Ids kept per source / reference, special tokens included (default: no cut). The decoder reads one more. */
  maxSourceTokens?: number | undefined;
  maxTargetTokens?: number | undefined;
}

/** Forward batches of source → reference pairs for teacher-forced scoring, and how many pairs were cut. */
export function referenceBatches(
  pairs: readonly { source: string; target: string }[],
  tokenizer: Tokenizer,
  o: ReferenceBatchOptions,
): { batches: ForwardInput[]; truncated: number } {
  const size = o.batchSize ?? 32;
  const out: ForwardInput[] = [];
  let truncated = 0;
  for (let i = 0; i < pairs.length; i += size) {
    const p = encodePairs(tokenizer, pairs.slice(i, i + size), o.padTokenId, o.maxSourceTokens, o.maxTargetTokens);
    truncated += p.truncated;
    const B = p.tgt.length;
    const T = 1 + Math.max(1, ...p.tgt.map((t) => t.length));
    const ids = new Int32Array(B * T).fill(o.padTokenId);
    const attentionMask = new Uint8Array(B * T);
    p.tgt.forEach((t, b) => {
      ids[b * T] = o.decoderStartTokenId;
      ids.set(t, b * T + 1);
      attentionMask.fill(1, b * T, b * T + 1 + t.length);
    });
    out.push({ ids, batch: B, seq: T, attentionMask, ...p.encoder });
  }

  return { batches: out, truncated };
}

/** Mean NLL (nats) per reference token over the batches. */
export async function teacherForcedLoss(model: Model, batches: readonly ForwardInput[], opts: JobOptions = {}): Promise<number> {
  let sum = 0;
  let count = 0;
  for (const b of batches) {
    const r = await model.forward(b, { output: 'nll', ...(opts.signal ? { signal: opts.signal } : {}) });
    sum += r.nllSum;
    count += r.nllCount;
  }
  return sum / count;
}
