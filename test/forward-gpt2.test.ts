/**
 * The native forward pass on gpt2-sotu (learned positions, pre-LayerNorm, fused Conv1D c_attn, gelu_new,
 * tied head) against Hugging Face's logits and every layer's FF pre-activation (fc1_preact).
 */
import { loadModel } from '../lib/model/load';
import type { Model } from '../lib/model/model';
import { SafetensorsReader } from '../lib/safetensors';
import { describeShared, sharedPath } from './helpers/shared';
import { relErr } from './helpers/synthetic-model';

const FIX = 'fixtures/gpt2-sotu';

describeShared(FIX, 'gpt2-sotu forward', () => {
  let model: Model;
  let ref: SafetensorsReader;
  let ids: Int32Array;

  beforeAll(async () => {
    model = await loadModel(sharedPath(FIX));
    ref = await SafetensorsReader.open(sharedPath(FIX, 'reference.safetensors'));
    const raw = await ref.readRaw('input_ids');
    ids = new Int32Array(raw.buffer, raw.byteOffset, raw.byteLength / 4);
  });
  afterAll(async () => {
    model.dispose();
    await ref.close();
  });

  test('spec comes from config.json', () => {
    expect(model.spec).toMatchObject({ family: 'gpt2', layers: 12, dModel: 128, nHeads: 4, nKvHeads: 4, dFF: 512, vocab: 4096, maxPositions: 256, positions: 'learned', activation: 'gelu_new' });
  });

  test('logits and every layer\'s FF pre-activation equal the reference (≤ 1e-4 relative)', async () => {
    const progress: number[] = [];
    const r = await model.forward({ ids, batch: 1, seq: ids.length }, { output: 'logits', captureFF: true, onProgress: (p) => progress.push(p.done / p.total) });
    expect(relErr(r.logits, await ref.readF32('logits'))).toBeLessThan(1e-4);
    const fc1 = await ref.readF32('fc1_preact'); // [12, 48, 512]
    const per = ids.length * model.spec.dFF;
    expect(r.ff!.size).toBe(12);
    for (let l = 0; l < 12; l++) {
      expect(r.ff!.get(l)!.length).toBe(per);
      expect(relErr(r.ff!.get(l)!, fc1.subarray(l * per, (l + 1) * per))).toBeLessThan(1e-4);
    }
    expect(progress.at(-1)).toBe(1);
    // counted in multiply-adds per token: after the 12 layers the LM head (d·vocab, 2.7 layers here) is still to
    // run (before: 12/13 of the count, the head weighed as one layer)
    const { dModel: d, dFF, vocab } = model.spec;
    const layer = d * 4 * d + 2 * d * dFF;
    const total = 12 * layer + d * vocab;
    // (the addon sends the latest count when the event loop reads it: which layers show varies, never their share)
    for (const p of progress.slice(0, -1)) expect((p * total) / layer).toBeCloseTo(Math.round((p * total) / layer), 6);
    expect(Math.max(...progress.slice(0, -1))).toBeLessThanOrEqual((12 * layer) / total + 1e-12);
  });

  test('the feature mask drops positions from the capture, compacted in order', async () => {
    const fm = new Uint8Array(ids.length);
    const keep = [0, 3, 4, 17, 47];
    for (const t of keep) fm[t] = 1;
    const all = await model.forward({ ids, batch: 1, seq: ids.length }, { output: 'hidden', captureFF: [2, 7], toLayer: 8 });
    const some = await model.forward({ ids, batch: 1, seq: ids.length }, { output: 'hidden', captureFF: [2, 7], toLayer: 8, featureMask: fm });
    const F = model.spec.dFF;
    for (const l of [2, 7]) {
      const got = some.ff!.get(l)!;
      expect(got.length).toBe(keep.length * F);
      keep.forEach((t, i) => expect(Array.from(got.subarray(i * F, (i + 1) * F))).toEqual(Array.from(all.ff!.get(l)!.subarray(t * F, (t + 1) * F))));
    }
    expect(all.ff!.has(3)).toBe(false);
  });

  test('concurrent forward jobs on one model give identical results', async () => {
    const runs = await Promise.all([0, 1, 2].map(() => model.forward({ ids, batch: 1, seq: ids.length }, { output: 'nll' })));
    for (const r of runs) expect(Array.from(r.nll)).toEqual(Array.from(runs[0]!.nll));
  });
});
