/**
 * @jest-environment ./test/helpers/ort-environment.js
 *
 * ONNX export of small random checkpoints of every decoder family option the fixtures lack (LLaMA biases and
 * untied head, Qwen2 and Mistral sliding windows, head_dim ≠ hidden/heads, GQA), run in onnxruntime-node
 * against ffmerge's forward, with and without the KV cache; and a tied checkpoint's shared FF as one
 * initializer. Needs no ../shared.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as ort from 'onnxruntime-node';
import { onnx } from 'onnx-proto';
import { exportOnnx } from '../lib/export/onnx/export';
import { ffTies, writeCheckpoint } from '../lib/checkpoint/write';
import { loadModel } from '../lib/model/load';
import type { Model } from '../lib/model/model';
import { removeSyntheticDirs, syntheticGpt2, syntheticLlama, tempDir, writeSynthetic, type Synthetic } from './helpers/synthetic-model';
import { runLm, type LmDims } from './helpers/onnx-lm';

afterAll(() => removeSyntheticDirs());

function maxRelDiff(got: ArrayLike<number>, want: ArrayLike<number>): number {
  expect(got.length).toBe(want.length);
  let d = 0;
  let m = 0;
  for (let i = 0; i < want.length; i++) {
    d = Math.max(d, Math.abs(got[i]! - want[i]!));
    m = Math.max(m, Math.abs(want[i]!));
  }
  return d / m;
}

const dims = (m: Model): LmDims => ({ layers: m.spec.layers, kvHeads: m.spec.nKvHeads, headDim: m.spec.headDim, vocab: m.spec.vocab });

function ids(n: number, vocab: number, seed: number): number[] {
  return Array.from({ length: n }, (_, i) => (i * 7 + seed * 13 + ((i * i) % 5)) % vocab);
}

/** Exports `dir`, then checks ORT's logits against ffmerge's on a full pass and token by token on the cache. */
async function checkAgainstForward(dir: string, seq: number): Promise<void> {
  const out = path.join(tempDir('onnx'), 'export');
  await exportOnnx(dir, { out });
  const m = await loadModel(dir);
  const s = await ort.InferenceSession.create(path.join(out, 'onnx', 'model.onnx'));
  try {
    const x = ids(seq, m.spec.vocab, 3);
    const want = (await m.forward({ ids: Int32Array.from(x), batch: 1, seq }, { output: 'logits' })).logits!;
    expect(maxRelDiff((await runLm(s, dims(m), x)).logits, want)).toBeLessThan(1e-4);
    const V = m.spec.vocab;
    let r = await runLm(s, dims(m), x.slice(0, 3));
    for (let t = 3; t < seq; t++) {
      r = await runLm(s, dims(m), [x[t]!], r.cache);
      expect(maxRelDiff(r.logits, want.subarray(t * V, (t + 1) * V))).toBeLessThan(1e-4);
    }
  } finally {
    m.dispose();
    await s.release();
  }
}

describe('ONNX export of synthetic decoders', () => {
  test('llama: GQA, attention and MLP biases, untied head', async () => {
    const s = await syntheticLlama({ layers: 3, d: 24, heads: 6, kvHeads: 2, ff: 34, vocab: 40, bias: true, tied: false, seed: 5 });
    await checkAgainstForward(s.dir, 12);
  });

  test('qwen2 with sliding windows on the upper layers (sequence longer than the window)', async () => {
    const s = await syntheticLlama({ family: 'qwen2', d: 30, heads: 3, kvHeads: 1, ff: 23, vocab: 37, layers: 3, seed: 32, config: { use_sliding_window: true, sliding_window: 4, max_window_layers: 1 } });
    await checkAgainstForward(s.dir, 11);
  });

  test('qwen3: q and k RMS-normalised per head before RoPE, attention biases', async () => {
    const s = await syntheticLlama({ family: 'qwen3', d: 32, heads: 4, kvHeads: 2, ff: 29, vocab: 41, layers: 2, seed: 65, bias: true });
    await checkAgainstForward(s.dir, 11);
  });

  test('mistral: head_dim ≠ hidden/heads, sliding window on every layer', async () => {
    const s = await syntheticLlama({ family: 'mistral', d: 27, heads: 4, kvHeads: 2, headDim: 6, ff: 29, vocab: 43, layers: 3, seed: 35, config: { sliding_window: 5 } });
    await checkAgainstForward(s.dir, 11);
  });

  test('gpt2 with an untied head (lm_head.weight, a Linear beside Conv1D weights)', async () => {
    const s = await syntheticGpt2({ layers: 2, d: 20, heads: 4, ff: 36, vocab: 50, positions: 16, seed: 14, tied: false });
    await checkAgainstForward(s.dir, 10);
  });

  test('gpt2, batch of two with right padding: real positions equal ffmerge\'s masked forward', async () => {
    const s = await syntheticGpt2({ layers: 2, d: 20, heads: 4, ff: 36, vocab: 50, positions: 16, seed: 9 });
    const out = path.join(tempDir('onnx'), 'export');
    await exportOnnx(s.dir, { out });
    const m = await loadModel(s.dir);
    const sess = await ort.InferenceSession.create(path.join(out, 'onnx', 'model.onnx'));
    const seq = 9;
    const x = [...ids(seq, 50, 1), ...ids(seq, 50, 2)];
    const mask = Array.from({ length: 2 * seq }, (_, i) => (i >= seq && i % seq >= 6 ? 0 : 1));
    const want = (await m.forward({ ids: Int32Array.from(x), batch: 2, seq, attentionMask: Uint8Array.from(mask) }, { output: 'logits' })).logits!;
    const feeds: Record<string, ort.Tensor> = {
      input_ids: new ort.Tensor('int64', BigInt64Array.from(x, BigInt), [2, seq]),
      attention_mask: new ort.Tensor('int64', BigInt64Array.from(mask, BigInt), [2, seq]),
      position_ids: new ort.Tensor('int64', BigInt64Array.from(x.map((_, i) => BigInt(i % seq))), [2, seq]),
    };
    for (let l = 0; l < 2; l++) for (const kv of ['key', 'value']) feeds[`past_key_values.${l}.${kv}`] = new ort.Tensor('float32', new Float32Array(0), [2, 4, 0, 5]);
    const got = (await sess.run(feeds)).logits!.data as Float32Array;
    const real = (a: Float32Array) => a.filter((_, i) => mask[Math.floor(i / 50)] === 1);
    expect(maxRelDiff(real(got), real(want))).toBeLessThan(1e-4);
    m.dispose();
    await sess.release();
  });

  test('a tied checkpoint: each shared FF tensor is one initializer read by every tied layer', async () => {
    const s: Synthetic = await syntheticGpt2({ layers: 4, d: 20, heads: 4, ff: 36, vocab: 50, positions: 16, seed: 4 });
    const tied = path.join(tempDir('tied'), 'ck');
    await writeCheckpoint({ source: s.dir, out: tied, format: 'tied', ties: ffTies(s.config, 'decoder', [1, 2, 3]) });
    await checkAgainstForward(tied, 10);
    const out = path.join(tempDir('onnx'), 'export');
    const r = await exportOnnx(tied, { out });
    // 4 FF tensors × 2 layers served by layer 1's copies
    expect(r.tensorUses - r.weightTensors).toBe(8);
    const g = onnx.ModelProto.decode(fs.readFileSync(path.join(out, 'onnx', 'model.onnx'))).graph!;
    const names = g.initializer!.map((t) => t.name!);
    expect(names.filter((n) => n.includes('.mlp.'))).toHaveLength(2 * 4); // layers 0 and 1, 4 tensors each
    expect(g.node!.filter((n) => n.input!.includes('transformer.h.1.mlp.c_proj.weight'))).toHaveLength(3);
    // the tied head reads the embedding table itself: one [vocab, d] initializer, used by Gather and Gemm
    expect(g.node!.filter((n) => n.input!.includes('transformer.wte.weight')).map((n) => n.opType).sort()).toEqual(['Gather', 'Gemm']);
  });
});

describe('the file is written a piece at a time', () => {
  test('writes that take less than asked (as the OS may) still give the same files, inline and external (tester CJ)', async () => {
    const s: Synthetic = await syntheticLlama({ layers: 2, d: 64, heads: 4, kvHeads: 2, ff: 96, vocab: 300, seed: 9 });
    const whole = path.join(tempDir('onnx-whole'), 'export');
    await exportOnnx(s.dir, { out: whole, externalData: true });
    // every write of the ONNX files takes at most 1,000 bytes: the external data's used to be one unchecked write
    const fh = await fs.promises.open(path.join(whole, 'config.json'), 'r');
    const proto = Object.getPrototypeOf(fh) as { write: (...a: unknown[]) => Promise<{ bytesWritten: number }> };
    await fh.close();
    const write = proto.write;
    const spy = jest.spyOn(proto, 'write').mockImplementation(function (this: unknown, ...a: unknown[]) {
      if (ArrayBuffer.isView(a[0]) && typeof a[2] === 'number') a[2] = Math.min(a[2], 1000);
      return write.apply(this, a);
    });
    const capped = path.join(tempDir('onnx-capped'), 'export');
    try {
      await exportOnnx(s.dir, { out: capped, externalData: true });
      await exportOnnx(s.dir, { out: `${capped}-inline` });
    } finally {
      spy.mockRestore();
    }
    for (const f of ['model.onnx', 'model.onnx_data']) expect(fs.readFileSync(path.join(capped, 'onnx', f)).equals(fs.readFileSync(path.join(whole, 'onnx', f)))).toBe(true);
    const inline = path.join(tempDir('onnx-inline'), 'export');
    await exportOnnx(s.dir, { out: inline });
    expect(fs.readFileSync(path.join(`${capped}-inline`, 'onnx', 'model.onnx')).equals(fs.readFileSync(path.join(inline, 'onnx', 'model.onnx')))).toBe(true);
    await (await ort.InferenceSession.create(path.join(capped, 'onnx', 'model.onnx'))).release();
  });
});

describe('weights an exported model cannot hold', () => {
  const DOWN0 = 'model.layers.0.mlp.down_proj.weight';
  /** A synthetic llama whose layer-0 down_proj has `v` at element 5. */
  async function withValue(v: number): Promise<string> {
    const s = await syntheticLlama({ layers: 2, seed: 21 });
    s.hf.get(DOWN0)!.data[5] = v;
    await writeSynthetic(s);
    return s.dir;
  }

  test.each([NaN, Infinity, -Infinity])('a weight of %d: NON_FINITE_INPUT naming the tensor, nothing written', async (v) => {
    // Before: exported with exit 0, a model whose every output is NaN.
    const dir = await withValue(v);
    for (const dtype of ['fp32', 'fp16'] as const) {
      const out = path.join(tempDir('onnx'), 'export');
      await expect(exportOnnx(dir, { out, dtype })).rejects.toMatchObject({ code: 'NON_FINITE_INPUT', message: expect.stringContaining(`"${DOWN0}" (element 5 of`) });
      expect(fs.existsSync(out)).toBe(false);
      expect(fs.readdirSync(path.dirname(out))).toEqual([]);
    }
  });

  test('fp16: a finite weight past fp16 range is refused (it would be stored as Infinity); fp32 takes it', async () => {
    // Before: 1e6 was written as 0x7C00 (+Inf) with exit 0.
    for (const v of [1e6, 65520, -65520]) {
      const dir = await withValue(v);
      const out = path.join(tempDir('onnx'), 'export');
      await expect(exportOnnx(dir, { out, dtype: 'fp16' })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringContaining(`"${DOWN0}"`) });
      expect(fs.existsSync(out)).toBe(false);
      await expect(exportOnnx(dir, { out, dtype: 'fp32' })).resolves.toMatchObject({ dtype: 'fp32' });
    }
    // 65519 rounds to fp16's largest value, 65504: representable, so exported
    const out = path.join(tempDir('onnx'), 'export');
    await expect(exportOnnx(await withValue(65519), { out, dtype: 'fp16' })).resolves.toMatchObject({ dtype: 'fp16' });
  });
});
