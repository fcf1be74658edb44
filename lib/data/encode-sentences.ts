/**
 * Sentences to ids with an optional cut, counting what the cut dropped. A translation model has a fixed
 * number of positions; a sentence longer than that is cut (transformers' truncation=True), and callers say
 * how many were cut rather than change a score silently.
 */
import type { Tokenizer } from '../tokenizer';

export interface EncodedSentences {
  ids: number[][];
  /** Indices of the sentences that were longer than maxLength and were cut. */
  cut: number[];
}

/** Each text's ids (special tokens included), at most `maxLength` of them when given. */
export function encodeSentences(tokenizer: Tokenizer, texts: readonly string[], maxLength?: number): EncodedSentences {
  const cut: number[] = [];
  const ids = texts.map((t, i) => {
    const full = tokenizer.encode(t);
    if (maxLength === undefined || full.length <= maxLength) return full;
    cut.push(i);
    return tokenizer.encode(t, { maxLength });
  });
  return { ids, cut };
}
