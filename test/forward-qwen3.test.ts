/**
 * Qwen3 (lib/model/architectures/qwen3.ts): the LLaMA block with an RMSNorm over each head of q and of k
 * before the rotary positions. Synthetic checkpoints against the float64 reference (which normalises each head
 * as transformers' Qwen3Attention does), the trainer's gradient against finite differences of the reference
 * loss, and fine-tuned norm weights written back (the ONNX export: export-onnx-synthetic.test.ts).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { architectureOf } from '../lib/model/architectures';
import { loadModel } from '../lib/model/load';
import { validateSpec } from '../lib/model/validate-spec';
import { runNativeJob } from '../lib/native/job';
import { trainAddon } from '../lib/native/train';
import { slotTensors } from '../lib/train/save';
import { referenceForward } from './reference/forward';
import { referenceLoss, toFloat64 } from './reference/loss';
import { perplexity } from '../lib/eval/perplexity';
import { finetune } from '../lib/train/finetune';
import { saveTrained } from '../lib/train/save';
import { SafetensorsReader } from '../lib/safetensors';
import { relErr, removeSyntheticDirs, syntheticLlama, tempDir } from './helpers/synthetic-model';
import { finiteDifferenceError, rng } from './helpers/grad-check';

afterAll(() => removeSyntheticDirs());

const ids = (n: number, vocab: number, seed: number) => Int32Array.from({ length: n }, (_, i) => (i * 7919 + seed * 104729) % vocab);

describe('qwen3 vs the float64 reference', () => {
  test('q/k norms, GQA 6/2, odd sizes, padded batch: native logits match; leaving the norm out does not', async () => {
    const s = await syntheticLlama({ family: 'qwen3', d: 36, heads: 6, kvHeads: 2, ff: 37, vocab: 41, layers: 3, seed: 61, bias: false });
    expect(s.hf.has('model.layers.2.self_attn.k_norm.weight')).toBe(true);
    expect(s.hf.has('model.layers.0.self_attn.q_proj.bias')).toBe(false);
    const m = await loadModel(s.dir);
    try {
      expect(m.spec).toMatchObject({ family: 'qwen3', headDim: 6, qkNorm: true, slidingWindow: [0, 0, 0] });
      const seq = 13;
      const x = ids(2 * seq, 41, 1);
      const mask = new Uint8Array(2 * seq).fill(1).fill(0, 2 * seq - 3);
      const got = (await m.forward({ ids: x, batch: 2, seq, attentionMask: mask }, { output: 'logits' })).logits;
      const want = referenceForward(m.spec, s.canonical, x, 2, seq, mask).logits;
      expect(relErr(got, want)).toBeLessThan(1e-5);
      expect(relErr(got, referenceForward({ ...m.spec, qkNorm: false }, s.canonical, x, 2, seq, mask).logits)).toBeGreaterThan(1e-2);
      // streamed by layer (large checkpoints): each layer's norm weights are read with it
      const streamed = await loadModel(s.dir, { stream: true });
      try {
        const again = (await streamed.forward({ ids: x, batch: 2, seq, attentionMask: mask }, { output: 'logits' })).logits;
        expect(Buffer.from(again.buffer).equals(Buffer.from(got.buffer))).toBe(true);
      } finally {
        streamed.dispose();
      }
    } finally {
      m.dispose();
    }
  });

  test('attention_bias puts biases on q/k/v and o; sliding windows follow Qwen2\'s rule', async () => {
    const config = { use_sliding_window: true, sliding_window: 4, max_window_layers: 1 };
    const s = await syntheticLlama({ family: 'qwen3', d: 30, heads: 3, kvHeads: 1, headDim: 8, ff: 23, vocab: 37, layers: 3, seed: 62, bias: true, config });
    expect(s.hf.has('model.layers.0.self_attn.o_proj.bias')).toBe(true);
    const m = await loadModel(s.dir);
    try {
      expect(m.spec).toMatchObject({ headDim: 8, slidingWindow: [0, 4, 4] });
      const x = ids(2 * 11, 37, 2);
      const got = (await m.forward({ ids: x, batch: 2, seq: 11 }, { output: 'logits' })).logits;
      expect(relErr(got, referenceForward(m.spec, s.canonical, x, 2, 11).logits)).toBeLessThan(1e-5);
    } finally {
      m.dispose();
    }
  });

  test("head_dim defaults to Qwen3Config's 128, not hidden_size / heads; a missing norm weight is named", async () => {
    const config = { model_type: 'qwen3', num_hidden_layers: 2, hidden_size: 64, num_attention_heads: 4, num_key_value_heads: 2, intermediate_size: 96, vocab_size: 50 };
    const spec = architectureOf(config).stacks[0]!.spec(config);
    expect(spec).toMatchObject({ headDim: 128, qkNorm: true, maxPositions: 32768, normEps: 1e-6, tiedEmbeddings: false });
    expect(() => validateSpec({ ...spec, norm: 'layernorm' })).toThrow(expect.objectContaining({ code: 'INVALID_CONFIG', message: expect.stringContaining('qkNorm') }));
    const s = await syntheticLlama({ family: 'qwen3', layers: 2, seed: 63 });
    // head_dim left out: 128, which the q_proj rows then disagree with; the message says where its size comes from
    const { head_dim: _hd, ...noHeadDim } = s.config;
    fs.writeFileSync(path.join(s.dir, 'config.json'), JSON.stringify(noHeadDim));
    await expect(loadModel(s.dir)).rejects.toMatchObject({ code: 'SHAPE_MISMATCH', message: expect.stringContaining('[512, 24] (512 = 4 heads × head_dim 128)') });
    s.hf.delete('model.layers.1.self_attn.k_norm.weight');
    const { writeSynthetic } = await import('./helpers/synthetic-model');
    await writeSynthetic(s);
    await expect(loadModel(s.dir)).rejects.toMatchObject({ code: 'TENSOR_NOT_FOUND', message: expect.stringContaining('model.layers.1.self_attn.k_norm.weight') });
  });
});

test("the trainer's gradient, q/k norm weights included, against finite differences of the reference loss", async () => {
  const s = await syntheticLlama({ family: 'qwen3', layers: 2, d: 16, heads: 4, kvHeads: 2, ff: 21, vocab: 19, seed: 64, bias: true });
  const m = await loadModel(s.dir);
  try {
    const next = rng(7);
    const batch = 2;
    const seq = 7;
    const x = Int32Array.from({ length: batch * seq }, () => Math.floor(next() * 19));
    const targets = new Int32Array(batch * seq).fill(-1);
    for (let b = 0; b < batch; b++) for (let t = 0; t + 1 < seq; t++) targets[b * seq + t] = x[b * seq + t + 1]!;
    const g = await runNativeJob('grad', (p) => trainAddon().modelLossAndGrad(m.nativeHandle(), { ids: x, targets, batch, seq }, p));
    expect(Object.keys(g.grads)).toEqual(expect.arrayContaining(['layers.0.q_norm_w', 'layers.1.k_norm_w']));
    const t64 = toFloat64(await slotTensors(m));
    const ref = () => referenceLoss(m.spec, t64, x, targets, batch, seq);
    expect(Math.abs(ref() - g.loss) / ref()).toBeLessThan(1e-5);
    expect(finiteDifferenceError(ref, t64, g.grads, 300, rng(8))).toBeLessThan(1e-3);
    // the norm weights alone, every entry: their gradient is where a missing backward would show
    const norms = Object.fromEntries(Object.entries(g.grads).filter(([n]) => n.includes('_norm_w') && n.startsWith('layers.')));
    expect(Object.keys(norms)).toHaveLength(4);
    expect(finiteDifferenceError(ref, t64, norms, 64, rng(9))).toBeLessThan(1e-3);
  } finally {
    m.dispose();
  }
});

test('fine-tuning trains the q/k norm weights and writes them back under their checkpoint names', async () => {
  const s = await syntheticLlama({ family: 'qwen3', layers: 2, d: 24, heads: 4, kvHeads: 2, ff: 30, vocab: 40, seed: 67, bias: false });
  const m = await loadModel(s.dir);
  const block = ids(32, 40, 9);
  const r = await finetune(m, { data: ids(640, 40, 10), steps: 4, batch: 2, seq: 32, lr: 1e-2, validation: [block] });
  const out = path.join(tempDir('qwen3-ft'), 'out');
  try {
    expect(Math.abs(r.valBefore - (await perplexity(m, [block])).nll)).toBeLessThan(1e-5);
    await saveTrained(r.model, { source: s.dir, out });
  } finally {
    r.model.dispose();
    m.dispose();
  }
  const saved = await loadModel(out);
  const reader = await SafetensorsReader.open(path.join(out, 'model.safetensors'));
  try {
    // the written model is the trained one: its loss on the validation block is the trainer's last one
    expect(Math.abs(r.valAfter - (await perplexity(saved, [block])).nll)).toBeLessThan(1e-4);
    const before = s.hf.get('model.layers.1.self_attn.q_norm.weight')!.data;
    expect(relErr(await reader.readF32('model.layers.1.self_attn.q_norm.weight'), before)).toBeGreaterThan(1e-4);
  } finally {
    saved.dispose();
    await reader.close();
  }
});
