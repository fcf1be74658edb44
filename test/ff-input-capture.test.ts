/**
 * Model.forward's captureFFInput / captureEncoderFFInput and captureFFOutput / captureEncoderFFOutput: the FF
 * input X and the FF output Y the training-free fits read (lib/pipeline/ff-inputs.ts). X must be exactly what
 * the first FF matrix reads, so X·W_inᵀ + b_in (float64 here) gives the pre-activation the same pass captures,
 * and Y what the FF makes of X (the float64 reference FF, test/reference/ff.ts) — on a pre-norm model with a
 * gated FF (the bundled llama), one with biases (synthetic GPT-2), and a post-norm encoder–decoder (marian
 * fixture, both stacks); feature rows only, in the same order as captureFF.
 */
import * as path from 'node:path';
import type { FeatureBatch } from '../lib/data/feature-batches';
import type { FFWeights } from '../lib/model/ff-weights';
import { loadModel } from '../lib/model/load';
import type { Model, StackName } from '../lib/model/model';
import { modelFF, stackSpecOf } from '../lib/pipeline/align';
import { ffForwardReference, type Activation } from './reference/ff';
import { readParallel } from '../lib/data/parallel';
import { translationBatches } from '../lib/data/feature-batches';
import { loadTokenizer } from '../lib/tokenizer';
import { removeSyntheticDirs, syntheticGpt2 } from './helpers/synthetic-model';
import { describeShared, sharedPath } from './helpers/shared';
import { maxRelErr } from './helpers/compare';

afterAll(() => removeSyntheticDirs());

/** Largest |X·W_inᵀ + b_in − U| relative to max |U|, in float64. */
function preactError(X: Float32Array, U: Float32Array, ff: FFWeights): number {
  const { d, dFF } = ff;
  const n = X.length / d;
  expect(U.length).toBe(n * dFF);
  let worst = 0;
  let scale = 0;
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < dFF; j++) {
      let s = ff.bIn ? ff.bIn[j]! : 0;
      for (let c = 0; c < d; c++) s += X[i * d + c]! * ff.wIn[j * d + c]!;
      const u = U[i * dFF + j]!;
      worst = Math.max(worst, Math.abs(s - u));
      scale = Math.max(scale, Math.abs(u));
    }
  }
  return worst / scale;
}

function ids(n: number, vocab: number, seed: number): Int32Array {
  return Int32Array.from({ length: n }, (_, i) => (i * 7919 + seed * 104729 + ((i * i) % 13)) % vocab);
}

async function expectInputs(model: Model, b: FeatureBatch, stack: StackName, layers: number[], rows: number): Promise<void> {
  const main = stack === model.mainStack;
  const r = await model.forward(b.input, {
    output: 'hidden',
    ...(main
      ? { captureFF: layers, captureFFInput: layers, captureFFOutput: layers }
      : { toLayer: 0, captureEncoderFF: layers, captureEncoderFFInput: layers, captureEncoderFFOutput: layers }),
    ...(b.featureMask ? { featureMask: b.featureMask } : {}),
  });
  const X = main ? r.ffInput! : r.encoderFFInput!;
  const U = main ? r.ff! : r.encoderFF!;
  const Y = main ? r.ffOutput! : r.encoderFFOutput!;
  expect([...X.keys()]).toEqual(layers);
  expect([...Y.keys()]).toEqual(layers);
  for (const l of layers) {
    const ff = await modelFF(model, l, stack);
    expect(X.get(l)!.length).toBe(rows * ff.d);
    expect(preactError(X.get(l)!, U.get(l)!, ff)).toBeLessThan(1e-5);
    const want = ffForwardReference(ff, X.get(l)!, rows, stackSpecOf(model, stack).activation as Activation).out;
    expect(maxRelErr(Y.get(l)!, want)).toBeLessThan(1e-5);
  }
}

describe('captureFFInput and captureFFOutput', () => {
  it('llama (pre-norm, gated, no biases): X·W_inᵀ is the captured pre-activation and FF(X) the captured output, feature rows only', async () => {
    const model = await loadModel(path.resolve(__dirname, '..', 'models', 'llama-stories260k'));
    try {
      const S = 21;
      const mask = new Uint8Array(2 * S).fill(1);
      mask.fill(0, S + 13);
      const featureMask = Uint8Array.from(mask, (v, i) => (i % 3 === 0 ? 0 : v));
      let rows = 0;
      for (const v of featureMask) rows += v;
      const b: FeatureBatch = { input: { ids: ids(2 * S, model.spec.vocab, 3), batch: 2, seq: S, attentionMask: mask }, featureMask, featureRows: rows };
      await expectInputs(model, b, model.mainStack, [3, 0], rows);
    } finally {
      model.dispose();
    }
  });

  it('gpt2 (W_in and b_in), and a layer outside the pass is INVALID_ARGUMENT', async () => {
    const s = await syntheticGpt2({ layers: 3, d: 24, ff: 40, vocab: 50 });
    const model = await loadModel(s.dir);
    try {
      const b: FeatureBatch = { input: { ids: ids(3 * 7, 50, 1), batch: 3, seq: 7 }, featureRows: 21 };
      await expectInputs(model, b, model.mainStack, [1, 2], 21);
      await expect(model.forward(b.input, { output: 'hidden', toLayer: 1, captureFFInput: [2] })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
      await expect(model.forward(b.input, { output: 'hidden', toLayer: 1, captureFFOutput: [2] })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    } finally {
      model.dispose();
    }
  });
});

describeShared('fixtures/marian-multi30k-en-de', 'captureFFInput and captureFFOutput on marian-multi30k-en-de (post-norm, two stacks)', () => {
  jest.setTimeout(120_000);
  it('encoder and decoder FF inputs give their pre-activations and outputs; padding excluded', async () => {
    const dir = sharedPath('fixtures', 'marian-multi30k-en-de');
    const model = await loadModel(dir);
    try {
      const tok = await loadTokenizer(dir);
      const pairs = (await readParallel(sharedPath('data', 'multi30k', 'val.en.gz'), sharedPath('data', 'multi30k', 'val.de.gz'))).slice(0, 6);
      const [b] = translationBatches(pairs, tok, { decoderStartTokenId: 2, padTokenId: 2, batchSize: 6 });
      await expectInputs(model, b!, 'decoder', [0, 2], b!.featureRows);
      await expectInputs(model, b!, 'encoder', [1, 4], b!.encoderFeatureRows!);
      await expect(
        model.forward({ ...b!.input, encoderHidden: new Float32Array(b!.input.batch * b!.input.encoderSeq! * model.encoderSpec!.dModel) }, { output: 'hidden', toLayer: 0, captureEncoderFFInput: [0] }),
      ).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    } finally {
      model.dispose();
    }
  });
});
