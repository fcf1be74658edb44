/**
 * Teacher-forced cross-entropy of reference translations: the decoder reads [start, t0, …, t(n-1)] and each
 * position predicts the next reference token (eos included), padding masked out. A smooth score of a
 * translation model on a validation set, far cheaper than decoding it (no search, one pass per batch).
 */
import type { ForwardInput, Model } from '../model/model';
import type { JobOptions } from '../native/job';
import type { Tokenizer } from '../tokenizer';
import { encodeSentences } from '../data/encode-sentences';

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
    const group = pairs.slice(i, i + size);
    const { ids: src, cut: srcCut } = encodeSentences(tokenizer, group.map((p) => p.source), o.maxSourceTokens);
    const { ids: tgt, cut: tgtCut } = encodeSentences(tokenizer, group.map((p) => p.target), o.maxTargetTokens);
    truncated += new Set([...srcCut, ...tgtCut]).size;
    const B = group.length;
    const S = Math.max(1, ...src.map((s) => s.length));
    const T = 1 + Math.max(1, ...tgt.map((t) => t.length));
    const encoderIds = new Int32Array(B * S).fill(o.padTokenId);
    const encoderMask = new Uint8Array(B * S);
    const ids = new Int32Array(B * T).fill(o.padTokenId);
    const attentionMask = new Uint8Array(B * T);
    for (let b = 0; b < B; b++) {
      encoderIds.set(src[b]!, b * S);
      encoderMask.fill(1, b * S, b * S + src[b]!.length);
      ids[b * T] = o.decoderStartTokenId;
      ids.set(tgt[b]!, b * T + 1);
      attentionMask.fill(1, b * T, b * T + 1 + tgt[b]!.length);
    }
    out.push({ ids, batch: B, seq: T, attentionMask, encoderIds, encoderSeq: S, encoderMask });
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
