/**
 * gpt2-sotu perplexity on lm/valid.txt and lm/test.txt by the fixture's eval.json protocol: tokenize the
 * whole split (tokenizer.json, no special tokens), cut into consecutive 256-token blocks (a last block of
 * ≥ 2 tokens is kept), ppl = exp(mean NLL of tokens 2..n of every block).
 */
import * as fs from 'node:fs';
import { countPredictions, loadSplitBlocks } from '../lib/data/blocks';
import { perplexity } from '../lib/eval/perplexity';
import { loadModel } from '../lib/model/load';
import { loadTokenizer } from '../lib/tokenizer';
import { describeShared, sharedPath } from './helpers/shared';

const FIX = 'fixtures/gpt2-sotu';

describeShared(FIX, 'gpt2-sotu perplexity (eval.json protocol)', () => {
  test.each(['valid', 'test'] as const)('%s split equals eval.json to 0.1%%', async (split) => {
    const evalJson = JSON.parse(fs.readFileSync(sharedPath(FIX, 'eval.json'), 'utf8')) as {
      ppl: Record<string, number>;
      tokens: Record<string, number>;
    };
    const tok = await loadTokenizer(sharedPath(FIX));
    const { tokens, blocks } = await loadSplitBlocks(tok, sharedPath('data', 'lm', `${split}.txt`), 256);
    expect(tokens.length).toBe(evalJson.tokens[split]);
    const model = await loadModel(sharedPath(FIX));
    try {
      const t0 = Date.now();
      let lastProgress = 0;
      const dones: number[] = [];
      const r = await perplexity(model, blocks, { batchSize: 8, onProgress: (p) => ((lastProgress = p.done / p.total), dones.push(p.done)) });
      // whole tokens, forwards only (tester DI: 313.84615384615387/39856)
      expect(dones.filter((d) => !Number.isInteger(d))).toEqual([]);
      expect(dones.every((d, i) => i === 0 || d >= dones[i - 1]!)).toBe(true);
      // eslint-disable-next-line no-console
      console.log(`gpt2-sotu ${split}: ppl ${r.ppl.toFixed(4)} (eval.json ${evalJson.ppl[split]!.toFixed(4)}), ${r.tokens} tokens in ${Date.now() - t0} ms`);
      expect(r.tokens).toBe(countPredictions(blocks));
      expect(Math.abs(r.ppl / evalJson.ppl[split]! - 1)).toBeLessThan(1e-3);
      expect(lastProgress).toBe(1);
    } finally {
      model.dispose();
    }
  }, 600_000);
});
