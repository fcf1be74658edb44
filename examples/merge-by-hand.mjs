// The method step by step with the building blocks, from an ES module: FF activations streamed natively into
// correlation statistics, the alignment (exact assignment), the average, and the merged model scored by
// perplexity, all without writing a file. Run: node examples/merge-by-hand.mjs
import path from 'node:path';
import { createRequire } from 'node:module';
import {
  CorrelationAccumulator, averageFF, loadModel, loadSplitBlocks, loadTokenizer, permuteFF, permutationFromCorrelation, perplexity,
} from 'ffmerge';

const require = createRequire(import.meta.url);
const dir = path.join(path.dirname(require.resolve('ffmerge/package.json')), 'models', 'llama-stories260k');
const signal = AbortSignal.timeout(120_000); // any AbortSignal stops every long step below

const model = await loadModel(dir, { signal });
const { blocks } = await loadSplitBlocks(await loadTokenizer(dir), path.join(dir, 'calibration.txt'), 256);
const calibration = blocks.slice(0, 24);
const validation = blocks.slice(24, 40);

// 1. Correlation of layer 3's FF units with layer 4's, streamed from the forward pass (no copy to JS).
const { dFF, layers } = model.spec;
const acc = new CorrelationAccumulator(Array(layers).fill(dFF), [[3, 4]]);
for (let i = 0; i < calibration.length; i += 8) {
  const batch = calibration.slice(i, i + 8);
  const ids = new Int32Array(batch.length * 256);
  batch.forEach((b, j) => ids.set(b, j * 256));
  await model.forward({ ids, batch: batch.length, seq: 256 }, { output: 'hidden', toLayer: 5, accumulate: { decoder: acc }, signal });
}
const corr = await acc.finalize(0, { signal }); // dFF × dFF Pearson correlations

// 2. Align layer 4 to layer 3 (maximum total correlation), 3. average, 4. share the result in both layers.
const perm = await permutationFromCorrelation(corr, dFF, { signal });
const merged = averageFF([model.ffWeights(3), permuteFF(model.ffWeights(4), perm)]);
const view = await model.withFF([{ layer: 3, ff: merged }, { layer: 4, ff: merged }], { signal }); // one object = one tied copy

const base = await perplexity(model, validation, { signal });
const after = await perplexity(view, validation, { signal });
console.log(`layers 3-4 merged: perplexity ${base.ppl.toFixed(3)} -> ${after.ppl.toFixed(3)}`);
view.dispose();
model.dispose();
