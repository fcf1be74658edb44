/**
 * Encoder families without a shared fixture: random BERT (with and without classifier / "bert." prefix) and
 * random multi-channel ViT checkpoints in Hugging Face layout, run by the native engine and compared with the
 * float64 reference in test/reference/encoder.ts (which is itself checked against the vit-fmnist fixture).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { loadModel } from '../lib/model/load';
import { SafetensorsReader, writeSafetensors, type TensorToWrite } from '../lib/safetensors';
import { bertForwardReference, vitForwardReference } from './reference/encoder';
import { isFfmergeError } from '../lib/errors';
import { describeShared, sharedPath } from './helpers/shared';
import { maxRelErr } from './helpers/compare';

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32 - 0.5;
  };
}


async function writeCheckpoint(dir: string, config: Record<string, unknown>, shapes: Record<string, number[]>, seed: number) {
  const r = rng(seed);
  const tensors = new Map<string, Float32Array>();
  const list: TensorToWrite[] = [];
  for (const [name, shape] of Object.entries(shapes)) {
    const n = shape.reduce((a, b) => a * b, 1);
    const isNormW = /LayerNorm\.weight|layernorm.*\.weight/.test(name);
    const data = Float32Array.from({ length: n }, () => (isNormW ? 1 + 0.2 * r() : 0.6 * r()));
    tensors.set(name, data);
    list.push({ name, dtype: 'F32', shape, data });
  }
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(config));
  await writeSafetensors(path.join(dir, 'model.safetensors'), list);
  return tensors;
}

function bertShapes(c: { d: number; layers: number; dff: number; vocab: number; maxPos: number; types: number; labels?: number }, prefix: string) {
  const s: Record<string, number[]> = {
    [`${prefix}embeddings.word_embeddings.weight`]: [c.vocab, c.d],
    [`${prefix}embeddings.position_embeddings.weight`]: [c.maxPos, c.d],
    [`${prefix}embeddings.token_type_embeddings.weight`]: [c.types, c.d],
    [`${prefix}embeddings.LayerNorm.weight`]: [c.d],
    [`${prefix}embeddings.LayerNorm.bias`]: [c.d],
  };
  for (let l = 0; l < c.layers; l++) {
    const p = `${prefix}encoder.layer.${l}`;
    for (const m of ['query', 'key', 'value']) {
      s[`${p}.attention.self.${m}.weight`] = [c.d, c.d];
      s[`${p}.attention.self.${m}.bias`] = [c.d];
    }
    s[`${p}.attention.output.dense.weight`] = [c.d, c.d];
    s[`${p}.attention.output.dense.bias`] = [c.d];
    s[`${p}.attention.output.LayerNorm.weight`] = [c.d];
    s[`${p}.attention.output.LayerNorm.bias`] = [c.d];
    s[`${p}.intermediate.dense.weight`] = [c.dff, c.d];
    s[`${p}.intermediate.dense.bias`] = [c.dff];
    s[`${p}.output.dense.weight`] = [c.d, c.dff];
    s[`${p}.output.dense.bias`] = [c.d];
    s[`${p}.output.LayerNorm.weight`] = [c.d];
    s[`${p}.output.LayerNorm.bias`] = [c.d];
  }
  if (c.labels) {
    s[`${prefix}pooler.dense.weight`] = [c.d, c.d];
    s[`${prefix}pooler.dense.bias`] = [c.d];
    s['classifier.weight'] = [c.labels, c.d];
    s['classifier.bias'] = [c.labels];
  }
  return s;
}

let tmp: string;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ffmerge-enc-'));
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe('BERT', () => {
  const dims = { d: 24, layers: 3, dff: 37, vocab: 53, maxPos: 16, types: 2, heads: 3 };
  const config = (arch: string, labels?: number) => ({
    model_type: 'bert',
    architectures: [arch],
    hidden_size: dims.d,
    num_hidden_layers: dims.layers,
    num_attention_heads: dims.heads,
    intermediate_size: dims.dff,
    vocab_size: dims.vocab,
    max_position_embeddings: dims.maxPos,
    type_vocab_size: dims.types,
    hidden_act: 'gelu',
    layer_norm_eps: 1e-12,
    ...(labels ? { id2label: Object.fromEntries(Array.from({ length: labels }, (_, i) => [String(i), `c${i}`])) } : {}),
  });
  // two sequences of 11 positions; the second has 4 padding positions at the end
  const batch = 2;
  const seq = 11;
  const ids = Int32Array.from({ length: batch * seq }, (_, i) => (i * 17 + 3) % dims.vocab);
  const mask = Uint8Array.from({ length: batch * seq }, (_, i) => (i >= seq && i % seq >= 7 ? 0 : 1));
  const types = Int32Array.from({ length: batch * seq }, (_, i) => (i % seq >= 5 ? 1 : 0));

  test('BertForSequenceClassification: logits, hidden states and features equal the float64 reference', async () => {
    const dir = path.join(tmp, 'bert-cls');
    const tensors = await writeCheckpoint(dir, config('BertForSequenceClassification', 3), bertShapes({ ...dims, labels: 3 }, 'bert.'), 7);
    const model = await loadModel(dir);
    try {
      expect(model.spec).toMatchObject({ family: 'bert', head: 'classifier', numLabels: 3, normPlacement: 'post', typeVocab: 2 });
      expect(model.stacks()).toEqual(['encoder']);
      const want = bertForwardReference(config('BertForSequenceClassification', 3), tensors, { ids, batch, seq, attentionMask: mask, tokenTypeIds: types });
      const r = await model.forward({ ids, batch, seq, attentionMask: mask, tokenTypeIds: types }, { output: 'logits', captureFF: true });
      expect(maxRelErr(r.logits!, want.logits!)).toBeLessThan(1e-4);
      for (let l = 0; l < dims.layers; l++) {
        // features: only the non-padding positions, in (batch, position) order
        const rows: number[] = [];
        mask.forEach((m, i) => m && rows.push(i));
        const expected = new Float64Array(rows.length * dims.dff);
        rows.forEach((row, j) => expected.set(want.ff[l]!.subarray(row * dims.dff, (row + 1) * dims.dff), j * dims.dff));
        expect(maxRelErr(r.ff!.get(l)!, expected)).toBeLessThan(1e-4);
      }
      const h = await model.forward({ ids, batch, seq, attentionMask: mask, tokenTypeIds: types }, { output: 'hidden' });
      // padded positions' states are never used; compare the real ones
      const got: number[] = [];
      const exp: number[] = [];
      mask.forEach((m, i) => {
        if (!m) return;
        for (let k = 0; k < dims.d; k++) {
          got.push(h.hidden![i * dims.d + k]!);
          exp.push(want.hidden[i * dims.d + k]!);
        }
      });
      expect(maxRelErr(got, exp)).toBeLessThan(1e-4);
    } finally {
      model.dispose();
    }
  });

  test('BertModel without the "bert." prefix: hidden states; no head means no logits (typed error)', async () => {
    const dir = path.join(tmp, 'bert-plain');
    const tensors = await writeCheckpoint(dir, config('BertModel'), bertShapes(dims, ''), 11);
    const prefixed = new Map([...tensors].map(([k, v]) => [`bert.${k}`, v]));
    const model = await loadModel(dir);
    try {
      expect(model.spec.head).toBe('none');
      const want = bertForwardReference(config('BertModel'), prefixed, { ids, batch, seq });
      const h = await model.forward({ ids, batch, seq }, { output: 'hidden' });
      expect(maxRelErr(h.hidden!, want.hidden)).toBeLessThan(1e-4);
      let err: unknown;
      try {
        await model.forward({ ids, batch, seq }, { output: 'logits' });
      } catch (e) {
        err = e;
      }
      expect(isFfmergeError(err, 'INVALID_ARGUMENT')).toBe(true);
      let err2: unknown;
      try {
        await model.forward({ ids, batch, seq, tokenTypeIds: new Int32Array(batch * seq).fill(5) }, { output: 'hidden' });
      } catch (e) {
        err2 = e;
      }
      expect(isFfmergeError(err2, 'INVALID_ARGUMENT')).toBe(true);
    } finally {
      model.dispose();
    }
  });
});

describe('ViT, random weights, 3 channels, odd sizes', () => {
  test('logits and features equal the float64 reference', async () => {
    const c = { d: 18, layers: 2, heads: 3, dff: 29, size: 15, patch: 5, C: 3, labels: 7 };
    const P = (c.size / c.patch) ** 2;
    const config = {
      model_type: 'vit',
      hidden_size: c.d,
      num_hidden_layers: c.layers,
      num_attention_heads: c.heads,
      intermediate_size: c.dff,
      image_size: c.size,
      patch_size: c.patch,
      num_channels: c.C,
      hidden_act: 'gelu',
      layer_norm_eps: 1e-12,
      qkv_bias: true,
      id2label: Object.fromEntries(Array.from({ length: c.labels }, (_, i) => [String(i), `c${i}`])),
    };
    const shapes: Record<string, number[]> = {
      'vit.embeddings.cls_token': [1, 1, c.d],
      'vit.embeddings.position_embeddings': [1, 1 + P, c.d],
      'vit.embeddings.patch_embeddings.projection.weight': [c.d, c.C, c.patch, c.patch],
      'vit.embeddings.patch_embeddings.projection.bias': [c.d],
      'vit.layernorm.weight': [c.d],
      'vit.layernorm.bias': [c.d],
      'classifier.weight': [c.labels, c.d],
      'classifier.bias': [c.labels],
    };
    for (let l = 0; l < c.layers; l++) {
      const p = `vit.encoder.layer.${l}`;
      for (const m of ['query', 'key', 'value']) {
        shapes[`${p}.attention.attention.${m}.weight`] = [c.d, c.d];
        shapes[`${p}.attention.attention.${m}.bias`] = [c.d];
      }
      Object.assign(shapes, {
        [`${p}.attention.output.dense.weight`]: [c.d, c.d],
        [`${p}.attention.output.dense.bias`]: [c.d],
        [`${p}.layernorm_before.weight`]: [c.d],
        [`${p}.layernorm_before.bias`]: [c.d],
        [`${p}.layernorm_after.weight`]: [c.d],
        [`${p}.layernorm_after.bias`]: [c.d],
        [`${p}.intermediate.dense.weight`]: [c.dff, c.d],
        [`${p}.intermediate.dense.bias`]: [c.dff],
        [`${p}.output.dense.weight`]: [c.d, c.dff],
        [`${p}.output.dense.bias`]: [c.d],
      });
    }
    const dir = path.join(tmp, 'vit-rand');
    const tensors = await writeCheckpoint(dir, config, shapes, 5);
    const model = await loadModel(dir);
    try {
      const batch = 3;
      const r = rng(99);
      const pixels = Float32Array.from({ length: batch * c.C * c.size * c.size }, () => 2 * r());
      const want = vitForwardReference(config, tensors, pixels, batch);
      const got = await model.forward({ batch, seq: 1 + P, pixels }, { output: 'logits', captureFF: true });
      expect(maxRelErr(got.logits!, want.logits!)).toBeLessThan(1e-4);
      for (let l = 0; l < c.layers; l++) expect(maxRelErr(got.ff!.get(l)!, want.ff[l]!)).toBeLessThan(1e-4);
    } finally {
      model.dispose();
    }
  });
});

describeShared('fixtures/vit-fmnist', 'float64 ViT reference vs the fixture', () => {
  test('reference logits equal reference.safetensors (so it is a valid oracle)', async () => {
    const dir = sharedPath('fixtures', 'vit-fmnist');
    const config = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8')) as Record<string, unknown>;
    const reader = await SafetensorsReader.open(dir);
    const tensors = new Map<string, Float32Array>();
    for (const n of reader.names()) tensors.set(n, await reader.readF32(n));
    await reader.close();
    const ref = await SafetensorsReader.open(path.join(dir, 'reference.safetensors'));
    const pixels = await ref.readF32('pixel_values');
    const refLogits = await ref.readF32('logits');
    await ref.close();
    const want = vitForwardReference(config, tensors, pixels.subarray(0, 2 * 784), 2);
    expect(maxRelErr(want.logits!, refLogits.subarray(0, 20))).toBeLessThan(1e-5);
  });
});
