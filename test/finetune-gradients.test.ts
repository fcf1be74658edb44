/**
 * The native training gradient (native/core/train, through modelLossAndGrad) against central finite
 * differences of the float64 reference loss (test/reference/loss.ts), on a few hundred random parameters of
 * synthetic gpt2 / llama models (biases, untied head, GQA) and of the shared fixtures; plus the tie rule: a
 * tensor shared by several layers gets the sum of the gradients its positions would get untied.
 */
import type { FFWeights } from '../lib/model/ff-weights';
import { loadModel } from '../lib/model/load';
import type { Model } from '../lib/model/model';
import { runNativeJob } from '../lib/native/job';
import { trainAddon, type NativeLossAndGrad } from '../lib/native/train';
import { slotTensors } from '../lib/train/save';
import { referenceLoss, toFloat64 } from './reference/loss';
import { describeShared, sharedPath } from './helpers/shared';
import { removeSyntheticDirs, syntheticGpt2, syntheticLlama } from './helpers/synthetic-model';
import { finiteDifferenceError, rng } from './helpers/grad-check';

/** An FF of its own with the same values: untied. */
const copyOf = (ff: FFWeights): FFWeights => ({
  d: ff.d,
  dFF: ff.dFF,
  wIn: ff.wIn.slice(),
  wOut: ff.wOut.slice(),
  ...(ff.bIn ? { bIn: ff.bIn.slice() } : {}),
  ...(ff.wGate ? { wGate: ff.wGate.slice() } : {}),
  ...(ff.bGate ? { bGate: ff.bGate.slice() } : {}),
  ...(ff.bOut ? { bOut: ff.bOut.slice() } : {}),
});

afterAll(removeSyntheticDirs);

function batchOf(vocab: number, batch: number, seq: number, seed: number) {
  const next = rng(seed);
  const ids = Int32Array.from({ length: batch * seq }, () => Math.floor(next() * vocab));
  const targets = new Int32Array(batch * seq).fill(-1);
  for (let b = 0; b < batch; b++) for (let t = 0; t + 1 < seq; t++) targets[b * seq + t] = ids[b * seq + t + 1]!;
  return { ids, targets, batch, seq };
}

function lossAndGrad(m: Model, b: ReturnType<typeof batchOf>): Promise<NativeLossAndGrad> {
  return runNativeJob('grad', (p) => trainAddon().modelLossAndGrad(m.nativeHandle(), b, p));
}

/**
 * Checks `count` random entries spread over every parameter: returns the relative error
 * ‖g_native − g_fd‖ / ‖g_fd‖ and the loss difference.
 */
async function checkAgainstReference(m: Model, count: number, seed: number, batch = 2, seq = 7) {
  const b = batchOf(m.spec.vocab, batch, seq, seed);
  const g = await lossAndGrad(m, b);
  const t64 = toFloat64(await slotTensors(m));
  // a tied head reads tok_emb in the reference (no lm_head_w slot), as the native model ties it
  if (g.slots.lm_head_w === 'tok_emb') delete t64.lm_head_w;
  const ref = () => referenceLoss(m.spec, t64, b.ids, b.targets, b.batch, b.seq);
  const lossDiff = Math.abs(ref() - g.loss) / Math.abs(ref());
  const gradErr = finiteDifferenceError(ref, t64, g.grads, count, rng(seed + 1));
  return { gradErr, lossDiff, params: Object.keys(g.grads).length };
}

test('slotTensors reports the slots it reads, phase slots, to their count (tester FA: the documented phase was never sent)', async () => {
  const s = await syntheticGpt2({ layers: 3, seed: 17 });
  const m = await loadModel(s.dir);
  try {
    const seen: { phase: string; done: number; total: number }[] = [];
    const slots = await slotTensors(m, { onProgress: (p) => void seen.push(p) });
    expect(seen.length).toBeGreaterThan(0);
    expect(new Set(seen.map((p) => p.phase))).toEqual(new Set(['slots']));
    // every slot counted
    expect(seen.at(-1)).toEqual({ phase: 'slots', done: Object.keys(slots).length, total: Object.keys(slots).length });
  } finally {
    m.dispose();
  }
});

describe('native training gradient vs float64 finite differences', () => {
  test('synthetic gpt2 (layernorm, learned positions, gelu_new, biases, tied head)', async () => {
    const s = await syntheticGpt2({ layers: 3, d: 12, heads: 3, ff: 19, vocab: 23, positions: 16, seed: 3 });
    const m = await loadModel(s.dir);
    try {
      const r = await checkAgainstReference(m, 300, 5);
      expect(r.lossDiff).toBeLessThan(1e-5);
      expect(r.gradErr).toBeLessThan(1e-4);
    } finally {
      m.dispose();
    }
  });

  test('synthetic llama (rmsnorm, rotary, GQA, SwiGLU, biases, untied head)', async () => {
    const s = await syntheticLlama({ layers: 2, d: 16, heads: 4, kvHeads: 2, ff: 21, vocab: 19, seed: 4 });
    const m = await loadModel(s.dir);
    try {
      const r = await checkAgainstReference(m, 300, 6);
      expect(r.lossDiff).toBeLessThan(1e-5);
      expect(r.gradErr).toBeLessThan(1e-4);
    } finally {
      m.dispose();
    }
  });

  test('a tied FF gets the sum of its positions’ gradients', async () => {
    const s = await syntheticGpt2({ layers: 4, d: 12, heads: 3, ff: 19, vocab: 23, positions: 16, seed: 8 });
    const base = await loadModel(s.dir);
    const ff = base.ffWeights(1);
    const tied = await base.withFF(new Map([[1, ff], [2, ff], [3, ff]]));
    const untied = await base.withFF(new Map([[1, ff], [2, copyOf(ff)], [3, copyOf(ff)]]));
    try {
      const b = batchOf(23, 3, 9, 9);
      const gt = await lossAndGrad(tied, b);
      const gu = await lossAndGrad(untied, b);
      expect(gt.loss).toBeCloseTo(gu.loss, 6);
      for (const key of ['w_in', 'b_in', 'w_out', 'b_out']) {
        // every position's slot names the one parameter
        for (const l of [2, 3]) expect(gt.slots[`layers.${l}.ff.${key}`]).toBe(`layers.1.ff.${key}`);
        const sum = gt.grads[`layers.1.ff.${key}`]!;
        const parts = [1, 2, 3].map((l) => gu.grads[`layers.${l}.ff.${key}`]!);
        let err = 0;
        let mag = 0;
        for (let i = 0; i < sum.length; i++) {
          err = Math.max(err, Math.abs(sum[i]! - (parts[0]![i]! + parts[1]![i]! + parts[2]![i]!)));
          mag = Math.max(mag, Math.abs(sum[i]!));
        }
        expect(mag).toBeGreaterThan(0);
        expect(err).toBeLessThan(1e-5 * mag);
      }
      expect(gt.slots.lm_head_w).toBe('tok_emb'); // the gpt2 head is tok_emb
    } finally {
      tied.dispose();
      untied.dispose();
      base.dispose();
    }
  });
});

describeShared('fixtures/gpt2-sotu', 'gpt2-sotu training gradient', () => {
  test('loss and 300 random parameters match float64 finite differences (issue 10: a few hundred, relative error ≤ 1e-4)', async () => {
    const m = await loadModel(sharedPath('fixtures/gpt2-sotu'));
    try {
      const r = await checkAgainstReference(m, 300, 11, 1, 8);
      expect(r.lossDiff).toBeLessThan(1e-5);
      expect(r.gradErr).toBeLessThan(1e-4);
    } finally {
      m.dispose();
    }
  }, 300_000);
});

describeShared('fixtures/llama-stories260k', 'llama-stories260k training gradient', () => {
  test('loss and 300 random parameters match float64 finite differences', async () => {
    const m = await loadModel(sharedPath('fixtures/llama-stories260k'));
    try {
      const r = await checkAgainstReference(m, 300, 12, 2, 9);
      expect(r.lossDiff).toBeLessThan(1e-5);
      expect(r.gradErr).toBeLessThan(1e-4);
    } finally {
      m.dispose();
    }
  }, 300_000);
});
