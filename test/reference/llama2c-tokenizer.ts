/**
 * llama2.c's SentencePiece-BPE encoder (run.c `encode`), in plain TypeScript: a test oracle for LLaMA-style
 * tokenizer.json files converted from llama2.c vocabularies (e.g. tok512_vocab.json, which lists pieces with
 * "▁" for spaces, their merge scores and the BOS id).
 *
 * Algorithm: a dummy-prefix space, then one token per UTF-8 code point (unknown code points become their
 * bytes as <0xXX> tokens, id = byte + 3), then repeatedly merge the adjacent pair whose concatenation is a
 * piece with the highest score (the first such pair on ties) until no pair merges.
 */
export interface Llama2cVocab {
  tokens: string[];
  scores: number[];
  bos_id: number;
}

export function llama2cEncode(vocab: Llama2cVocab, text: string, bos: boolean): number[] {
  const lookup = new Map<string, number>();
  vocab.tokens.forEach((t, i) => {
    if (!lookup.has(t)) lookup.set(t, i);
  });
  const space = (s: string) => s.replace(/ /g, '\u2581');
  const ids: number[] = [];
  if (bos) ids.push(vocab.bos_id);
  const work: number[] = [];
  if (text.length > 0) {
    const prefix = lookup.get('\u2581');
    if (prefix === undefined) throw new Error('vocabulary has no "▁" piece');
    work.push(prefix);
  }
  for (const cp of text) {
    const id = lookup.get(space(cp));
    if (id !== undefined) {
      work.push(id);
    } else {
      for (const byte of Buffer.from(cp, 'utf8')) work.push(byte + 3);
    }
  }
  for (;;) {
    let best = -1e10;
    let bestId = -1;
    let bestIdx = -1;
    for (let i = 0; i + 1 < work.length; i++) {
      const merged = vocab.tokens[work[i]!]! + vocab.tokens[work[i + 1]!]!;
      const id = lookup.get(merged);
      if (id !== undefined && vocab.scores[id]! > best) {
        best = vocab.scores[id]!;
        bestId = id;
        bestIdx = i;
      }
    }
    if (bestIdx < 0) break;
    work.splice(bestIdx, 2, bestId);
  }
  return ids.concat(work);
}
