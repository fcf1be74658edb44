/**
 * Sentences to ids with an optional cut, counting what the cut dropped. A translation model has a fixed
 * number of positions; a sentence longer than that is cut (transformers' truncation=True), and callers say
 * how many were cut rather than change a score silently.
 */
import type { Tokenizer } from '../tokenizer';

/**
 * Each text's ids (special tokens included), at most `maxLength` of them when given, and `cut`: the indices of
 * the sentences that were longer than maxLength and were cut.
 */
export function encodeSentences(tokenizer: Tokenizer, texts: readonly string[], maxLength?: number) {
  const cut: number[] = [];
  const ids = texts.map((t, i) => {
    const full = tokenizer.encode(t);
    if (maxLength === undefined || full.length <= maxLength) return full;
    cut.push(i);
    return tokenizer.encode(t, { maxLength });
  });
  return { ids, cut };
}

/**
 * A group of sentence pairs encoded for an encoder–decoder model: the sources padded with `pad` into the
 * encoder's input, the targets' ids, and how many pairs had a side cut.
 */
export function encodePairs(
  tokenizer: Tokenizer,
  group: readonly { source: string; target: string }[],
  pad: number,
  maxSource: number | undefined,
  maxTarget: number | undefined,
) {
  const { ids: src, cut: srcCut } = encodeSentences(tokenizer, group.map((p) => p.source), maxSource);
  const { ids: tgt, cut: tgtCut } = encodeSentences(tokenizer, group.map((p) => p.target), maxTarget);
  const S = Math.max(1, ...src.map((s) => s.length));
  const encoderIds = new Int32Array(group.length * S).fill(pad);
  const encoderMask = new Uint8Array(group.length * S);
  src.forEach((s, b) => {
    encoderIds.set(s, b * S);
    encoderMask.fill(1, b * S, b * S + s.length);
  });
  return { src, tgt, encoder: { encoderIds, encoderSeq: S, encoderMask }, truncated: new Set([...srcCut, ...tgtCut]).size };
}
