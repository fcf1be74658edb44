/**
 * Model.dispose() during a job of several native calls (perplexity's batches, greedy's steps, an image
 * evaluation's batches): the job finishes with the result it would have had, the weights are freed after it,
 * and every other call, then or later, is refused. Before, the job's next step failed with "this model was
 * disposed" (a server evicting a cached model failed the requests it was serving). Also: generation and
 * perplexity on a model that is no language model say so, and a generation past the model's positions is
 * refused before any work.
 */
import { loadModel } from '../lib/model/load';
import { perplexity } from '../lib/eval/perplexity';
import { greedy } from '../lib/eval/generate';
import { evaluateImageClassifier } from '../lib/eval/accuracy';
import { loadPreprocessor } from '../lib/data/images';
import { removeSyntheticDirs, syntheticLlama, syntheticVit } from './helpers/synthetic-model';

afterAll(() => removeSyntheticDirs());

const blocks = (n: number, len: number) => Array.from({ length: n }, (_, i) => Int32Array.from({ length: len }, (_, j) => (i * 7 + j * 3) % 40));

test('perplexity: dispose() while it runs lets the job finish with the same result; other calls are refused', async () => {
  const s = await syntheticLlama({ layers: 3, vocab: 40, seed: 3 });
  const want = await (async () => {
    const m = await loadModel(s.dir);
    try {
      return await perplexity(m, blocks(12, 17), { batchSize: 2 });
    } finally {
      m.dispose();
    }
  })();
  const m = await loadModel(s.dir);
  const job = perplexity(m, blocks(12, 17), { batchSize: 2 });
  m.dispose();
  // a call outside the job, made after dispose(), while the job still runs
  const meanwhile = m.readFFWeights(0).then(() => 'ran', (e: { code?: string; message?: string }) => `${e.code}: ${e.message}`);
  const got = await job;
  const refusedMeanwhile = meanwhile;
  expect(got).toEqual(want);
  expect(await refusedMeanwhile).toBe('INVALID_STATE: this model was disposed');
  await expect(perplexity(m, blocks(2, 5))).rejects.toMatchObject({ code: 'INVALID_STATE', message: 'this model was disposed' });
});

test('greedy and image evaluation: dispose() right after the call starts; the output is what it would have been', async () => {
  const s = await syntheticLlama({ layers: 2, vocab: 40, seed: 4 });
  const a = await loadModel(s.dir);
  const want = await greedy(a, [1, 2, 3], 6);
  a.dispose();
  const b = await loadModel(s.dir);
  const p = greedy(b, [1, 2, 3], 6);
  b.dispose();
  expect(await p).toEqual(want);
  await expect(greedy(b, [1], 1)).rejects.toMatchObject({ message: 'this model was disposed' });

  const v = await syntheticVit({ layers: 2, seed: 5, image: 8, patch: 4, channels: 1, labels: 3 });
  const vm = await loadModel(v.dir);
  const count = 10;
  const set = { count, height: 8, width: 8, channels: 1, pixels: Uint8Array.from({ length: count * 64 }, (_, i) => (i * 37) % 256), labels: Int32Array.from({ length: count }, (_, i) => i % 3) };
  const pre = await loadPreprocessor(v.dir);
  const first = await evaluateImageClassifier(vm, set, pre, { batchSize: 3 });
  const q = evaluateImageClassifier(vm, set, pre, { batchSize: 3 });
  vm.dispose();
  expect(await q).toEqual(first);
});

test('withFF: dispose() right after the call starts; the view is made and works, the model is refused after (tester AR)', async () => {
  const s = await syntheticLlama({ layers: 3, vocab: 40, seed: 6 });
  const a = await loadModel(s.dir);
  const want = await perplexity(a, blocks(3, 9));
  const ff = await a.readFFWeights(0);
  // before: rejected with "this model was disposed", though the call had started before the dispose
  const pending = a.withFF(new Map([[1, ff]]));
  a.dispose();
  const view = await pending;
  try {
    expect(await perplexity(view, blocks(3, 9))).not.toEqual(want); // layer 1 now runs layer 0's FF
    await expect(a.withFF(new Map([[1, ff]]))).rejects.toMatchObject({ message: 'this model was disposed' });
  } finally {
    view.dispose();
  }
});

test('generation and perplexity name a model that is no language model; a generation past the positions is refused up front', async () => {
  const v = await syntheticVit({ layers: 2, seed: 6 });
  const vm = await loadModel(v.dir);
  try {
    await expect(greedy(vm, [1, 2], 3)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringMatching(/is an image model; it needs a language model/) });
    await expect(perplexity(vm, blocks(1, 4))).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringMatching(/is an image model/) });
  } finally {
    vm.dispose();
  }
  const s = await syntheticLlama({ layers: 2, vocab: 40, seed: 7 });
  const m = await loadModel(s.dir);
  try {
    const P = m.spec.maxPositions;
    const t0 = Date.now();
    await expect(greedy(m, [1, 2], P + 1)).rejects.toMatchObject({ code: 'SEQUENCE_TOO_LONG', message: expect.stringContaining(`ask for at most ${P - 1} new tokens`) });
    expect(Date.now() - t0).toBeLessThan(1000); // no step was run (a check of work done, not of speed)
  } finally {
    m.dispose();
  }
});
