/**
 * @jest-environment ./test/helpers/ort-environment.js
 *
 * RoPE scaling (config.json rope_scaling / rope_parameters): Llama 3.1+'s 'llama3' and 'linear'. The frequencies
 * against transformers' rope init transcribed to numpy float32 (scripts/rope-scaling-reference.py prints the
 * values below; the native core's ctest checks the same ones), then scaled checkpoints end to end: the native
 * forward and the trainer's forward against the float64 reference, the ONNX export against the native forward.
 * Before, every rope type but the default was refused (UNSUPPORTED_ARCHITECTURE): every Llama 3.x checkpoint.
 */
import * as path from 'node:path';
import * as ort from 'onnxruntime-node';
import { loadModel } from '../lib/model/load';
import { ropeInvFreq } from '../lib/model/rope';
import { NO_ROPE_SCALING, type RopeScaling } from '../lib/model/spec';
import { referenceForward } from './reference/forward';
import { perplexity } from '../lib/eval/perplexity';
import { finetune } from '../lib/train/finetune';
import { exportOnnx } from '../lib/export/onnx/export';
import { relErr, removeSyntheticDirs, syntheticLlama, tempDir } from './helpers/synthetic-model';
import { runLm } from './helpers/onnx-lm';

afterAll(() => removeSyntheticDirs());

const LLAMA3: RopeScaling = { type: 'llama3', factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositions: 1024 };
const near = (got: number[], want: number[]) => got.forEach((g, i) => expect(Math.abs(g - want[i]!)).toBeLessThanOrEqual(1e-7 * want[i]!));

test('the frequencies are transformers\' (float32, its order of operations)', () => {
  // kept, kept, blended (wavelength 628 between 256 and 1024), divided by the factor
  near(ropeInvFreq(10000, 8, LLAMA3), [1.0, 0.10000000149011612, 0.003086760640144348, 0.0001250000059371814]);
  // Llama 3.2's own settings
  const big = ropeInvFreq(500000, 64, { ...LLAMA3, factor: 32, originalMaxPositions: 8192 });
  near([0, 14, 15, 16, 17, 31].map((i) => big[i]!), [1.0, 0.0032114461064338684, 0.0012905480107292533, 0.000429556705057621, 9.708286233944818e-05, 9.41830720080361e-08]);
  near(ropeInvFreq(10000, 8, { ...NO_ROPE_SCALING, type: 'linear', factor: 4 }), [0.25, 0.02500000037252903, 0.0024999999441206455, 0.0002500000118743628]);
  // to the bit where torch's order of operations matters (number / tensor = reciprocal() * number): one division
  // gave 0.0010307421907782555 and 0.0005796290352009237 here (reviewer AS)
  const order = ropeInvFreq(10000, 64, { ...LLAMA3, factor: 4, originalMaxPositions: 8192 });
  expect([order[22], order[23]]).toEqual([0.0010307423071935773, 0.0005796289187856019]);
});

// hd 8, theta 500: wavelengths 6.3, 29.7, 140.5, 664 against 64 and 256: kept, kept, blended, divided
const scaled = { rope_scaling: { rope_type: 'llama3', factor: 8.0, low_freq_factor: 1.0, high_freq_factor: 4.0, original_max_position_embeddings: 256 } };
const shape = { layers: 2, d: 32, heads: 4, kvHeads: 2, ff: 29, vocab: 41 } as const;
const ids = (n: number, seed: number) => Int32Array.from({ length: n }, (_, i) => (i * 7919 + seed * 104729) % shape.vocab);

describe('scaled checkpoints', () => {
  test('llama3 and linear: the native forward matches the float64 reference, and differs from unscaled RoPE', async () => {
    for (const [config, type] of [[scaled, 'llama3'], [{ rope_scaling: { type: 'linear', factor: 4.0 } }, 'linear']] as const) {
      const s = await syntheticLlama({ ...shape, seed: 51, config });
      const m = await loadModel(s.dir);
      try {
        expect(m.spec.ropeScaling?.type).toBe(type);
        const x = ids(2 * 40, 3);
        const got = (await m.forward({ ids: x, batch: 2, seq: 40 }, { output: 'logits' })).logits!;
        const want = referenceForward(m.spec, s.canonical, x, 2, 40).logits;
        expect(relErr(got, want)).toBeLessThan(1e-5);
        const plain = referenceForward({ ...m.spec, ropeScaling: NO_ROPE_SCALING }, s.canonical, x, 2, 40).logits;
        expect(relErr(plain, want)).toBeGreaterThan(1e-3); // the test would not see a scaling left out otherwise
      } finally {
        m.dispose();
      }
    }
  });

  test("the trainer's forward scales too: its validation loss before training is the model's", async () => {
    const s = await syntheticLlama({ ...shape, seed: 52, config: scaled });
    const m = await loadModel(s.dir);
    try {
      const block = ids(40, 5);
      const r = await finetune(m, { data: ids(400, 6), steps: 1, batch: 2, seq: 40, lr: 1e-4, validation: [block] });
      r.model.dispose();
      expect(Math.abs(r.valBefore - (await perplexity(m, [block])).nll)).toBeLessThan(1e-5);
    } finally {
      m.dispose();
    }
  });

  test('the ONNX export computes the scaled frequencies', async () => {
    const s = await syntheticLlama({ ...shape, seed: 53, config: scaled });
    const out = path.join(tempDir('rope-onnx'), 'export');
    await exportOnnx(s.dir, { out });
    const m = await loadModel(s.dir);
    const sess = await ort.InferenceSession.create(path.join(out, 'onnx', 'model.onnx'));
    try {
      const x = ids(40, 7);
      const want = (await m.forward({ ids: x, batch: 1, seq: 40 }, { output: 'logits' })).logits!;
      const { logits } = await runLm(sess, { layers: shape.layers, kvHeads: shape.kvHeads, headDim: 8, vocab: shape.vocab }, Array.from(x));
      expect(relErr(logits, want)).toBeLessThan(1e-5);
    } finally {
      m.dispose();
      await sess.release();
    }
  });

  test('a scaling ffmerge cannot compute is refused; a bad one is INVALID_CONFIG naming the key', async () => {
    const refused = async (rope_scaling: unknown, code: string, words: string) => {
      const s = await syntheticLlama({ ...shape, seed: 54, config: { rope_scaling } });
      await expect(loadModel(s.dir)).rejects.toMatchObject({ code, message: expect.stringContaining(words) });
    };
    await refused({ rope_type: 'yarn', factor: 4, original_max_position_embeddings: 32 }, 'UNSUPPORTED_ARCHITECTURE', 'rope type "yarn"');
    await refused({ type: 'dynamic', factor: 2 }, 'UNSUPPORTED_ARCHITECTURE', 'rope type "dynamic"');
    await refused({ rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4 }, 'INVALID_CONFIG', 'rope_scaling.original_max_position_embeddings');
    await refused({ rope_type: 'llama3', factor: 8, low_freq_factor: 4, high_freq_factor: 4, original_max_position_embeddings: 64 }, 'INVALID_CONFIG', 'must be larger than low_freq_factor');
    await refused({ rope_type: 'linear', factor: -2 }, 'INVALID_CONFIG', 'rope_scaling.factor');
    await refused('llama3', 'INVALID_CONFIG', 'rope_scaling');
    // the default type, and transformers ≥ 5's rope_parameters holding only the base, are plain RoPE
    const plain = await syntheticLlama({ ...shape, seed: 55, config: { rope_scaling: null, rope_parameters: { rope_type: 'default', rope_theta: 500 } } });
    const m = await loadModel(plain.dir);
    expect(m.spec.ropeScaling).toEqual(NO_ROPE_SCALING);
    m.dispose();
  });

  test('given both, rope_scaling wins over rope_parameters, as in transformers; RoPE over part of a head is refused (tester DK)', async () => {
    // before: rope_parameters won, and a linear x2 config ran unscaled
    const both = await syntheticLlama({ ...shape, seed: 56, config: { rope_theta: 700, rope_parameters: { rope_type: 'default', rope_theta: 500 }, rope_scaling: { rope_type: 'linear', factor: 2 } } });
    const m = await loadModel(both.dir);
    expect(m.spec.ropeScaling).toMatchObject({ type: 'linear', factor: 2 });
    expect(m.spec.ropeTheta).toBe(700); // the winning dict has none: the top-level key, as transformers 5 takes it
    m.dispose();
    // an empty rope_scaling does not win (Python's `rope_scaling or rope_parameters`)
    const empty = await syntheticLlama({ ...shape, seed: 57, config: { rope_scaling: {}, rope_parameters: { rope_type: 'linear', factor: 3, rope_theta: 500 } } });
    const e = await loadModel(empty.dir);
    expect(e.spec.ropeScaling).toMatchObject({ type: 'linear', factor: 3 });
    expect(e.spec.ropeTheta).toBe(500);
    e.dispose();
    for (const config of [{ partial_rotary_factor: 0.5 }, { rope_parameters: { rope_type: 'default', partial_rotary_factor: 0.25 } }]) {
      const s = await syntheticLlama({ ...shape, seed: 58, config });
      await expect(loadModel(s.dir)).rejects.toMatchObject({ code: 'UNSUPPORTED_ARCHITECTURE', message: expect.stringContaining('partial_rotary_factor') });
    }
    // rope_parameters that rope_scaling overrides are not read, their partial factor neither (tester DM)
    const over = await syntheticLlama({ ...shape, seed: 59, config: { rope_scaling: { type: 'linear', factor: 2 }, rope_parameters: { rope_type: 'default', partial_rotary_factor: 0.5 } } });
    (await loadModel(over.dir)).dispose();
  });
});
