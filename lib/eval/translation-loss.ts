/**
 * Teacher-forced cross-entropy of reference translations: the decoder reads [start, t0, …, t(n-1)] and each
 * position predicts the next reference token (eos included), padding masked out. A smooth score of a
 * translation model on a validation set, far cheaper than decoding it (no search, one pass per batch).
 */
import type { ForwardInput, Model } from '../model/model';
import type { JobOptions } from '../native/job';
import type { Tokenizer } from '../tokenizer';

export interface ReferenceBatchOptions {
  decoderStartTokenId: number;
  padTokenId: number;
  batchSize?: number;
  maxSourceTokens?: number;
  maxTargetTokens?: number;
}

/** Forward batches of source → reference pairs for teacher-forced scoring. */
export function referenceBatches(pairs: readonly { source: string; target: string }[], tokenizer: Tokenizer, o: ReferenceBatchOptions): ForwardInput[] {
  const size = o.batchSize ?? 32;
  const out: ForwardInput[] = [];
  for (let i = 0; i < pairs.length; i += size) {
    const group = pairs.slice(i, i + size);
    const src = group.map((p) => tokenizer.encode(p.source, { maxLength: o.maxSourceTokens ?? 64 }));
    const tgt = group.map((p) => tokenizer.encode(p.target, { maxLength: o.maxTargetTokens ?? 64 }));
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
  return out;
}

/** Mean NLL (nats) per reference token over the batches. */
export async function teacherForcedLoss(model: Model, batches: readonly ForwardInput[], opts: JobOptions = {}): Promise<number> {
  let sum = 0;
  let count = 0;
  for (const b of batches) {
    const r = await model.forward(b, { output: 'nll', ...(opts.signal ? { signal: opts.signal } : {}) });
    sum += r.nllSum!;
    count += r.nllCount!;
  }
  return sum / count;
}
