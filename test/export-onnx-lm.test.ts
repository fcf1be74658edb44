/**
 * @jest-environment ./test/helpers/ort-environment.js
 *
 * ONNX export of the decoder LM fixtures, original and merged (gpt2-sotu k = 4, llama-stories260k k = 2),
 * run in onnxruntime-node: logits against ffmerge's forward with and without a KV cache, greedy decoding,
 * perplexity against the eval path, file size against the removed parameters, one initializer per shared
 * tensor. Merges use a fixed window and small calibration budgets: what is checked is the export of
 * whatever the merge produced, not the merge's quality.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as ort from 'onnxruntime-node';
import { onnx } from 'onnx-proto';
import { exportOnnx } from '../lib/export/onnx/export';
import { compress } from '../lib/pipeline/compress';
import type { CompressResult } from '../lib/pipeline/result';
import { loadModel } from '../lib/model/load';
import type { Model } from '../lib/model/model';
import { greedy } from '../lib/eval/generate';
import { loadTokenizer } from '../lib/tokenizer';
import { blocksFrom, makeBatches, takeTokens } from '../lib/pipeline/data';
import { nllOf, ppl } from '../lib/pipeline/prefix';
import { isFfmergeError } from '../lib/errors';
import { describeShared, sharedPath } from './helpers/shared';
import { greedyOrt, nllOrt, runLm, type LmDims } from './helpers/onnx-lm';

interface Case {
  fixture: string;
  k: number;
  window: string;
  /** A tensor merged away (tied to the window's first layer) and the one that stores it. */
  tied: string;
  stored: string;
  calibration: string;
  test: string;
  /** Test tokens scored (the whole token-row file for llama; the first blocks of test.txt for gpt2). */
  testTokens: number;
}

const CASES: Case[] = [
  {
    fixture: 'gpt2-sotu',
    k: 4,
    window: '4-7',
    tied: 'transformer.h.6.mlp.c_fc.weight',
    stored: 'transformer.h.4.mlp.c_fc.weight',
    calibration: sharedPath('data', 'lm', 'valid.txt'),
    test: sharedPath('data', 'lm', 'test.txt'),
    testTokens: 8 * 256,
  },
  {
    fixture: 'llama-stories260k',
    k: 2,
    window: '1-2',
    tied: 'model.layers.2.mlp.gate_proj.weight',
    stored: 'model.layers.1.mlp.gate_proj.weight',
    calibration: sharedPath('data', 'lm', 'stories260k-samples-valid.jsonl'),
    test: sharedPath('data', 'lm', 'stories260k-samples-test.jsonl'),
    testTokens: Infinity,
  },
];

function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]!));
  return m;
}
/** max |got − want| / max |want|. */
function maxRelDiff(got: ArrayLike<number>, want: ArrayLike<number>): number {
  expect(got.length).toBe(want.length);
  let d = 0;
  for (let i = 0; i < want.length; i++) d = Math.max(d, Math.abs(got[i]! - want[i]!));
  return d / maxAbs(want);
}

function dims(m: Model): LmDims {
  return { layers: m.spec.layers, kvHeads: m.spec.nKvHeads, headDim: m.spec.headDim, vocab: m.spec.vocab };
}

function fileBytes(dir: string): number {
  const o = path.join(dir, 'onnx');
  return fs.readdirSync(o).reduce((s, f) => s + fs.statSync(path.join(o, f)).size, 0);
}

for (const c of CASES) {
  describeShared(path.join('fixtures', c.fixture), `ONNX export of ${c.fixture}`, () => {
    jest.setTimeout(600_000);
    const FIX = sharedPath('fixtures', c.fixture);
    let tmp: string;
    let base: Model;
    let merged: Model;
    let baseSession: ort.InferenceSession;
    let mergedSession: ort.InferenceSession;
    let result: CompressResult;
    let ids: number[];

    beforeAll(async () => {
      tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ffmerge-onnx-'));
      const common = { k: c.k, window: c.window, calibration: c.calibration, calibrationTokens: 2048, validationTokens: 512 } as const;
      // the same (deterministic) merge twice: a tied checkpoint for ffmerge's forward, and the ONNX export
      result = await compress(FIX, { ...common, out: path.join(tmp, 'tied'), format: 'tied' });
      await compress(FIX, { ...common, out: path.join(tmp, 'merged'), format: 'onnx' });
      await exportOnnx(FIX, { out: path.join(tmp, 'base') });
      base = await loadModel(FIX);
      merged = await loadModel(path.join(tmp, 'tied'));
      baseSession = await ort.InferenceSession.create(path.join(tmp, 'base', 'onnx', 'model.onnx'));
      mergedSession = await ort.InferenceSession.create(path.join(tmp, 'merged', 'onnx', 'model.onnx'));
      const tok = await loadTokenizer(FIX);
      ids = Array.from(tok.encode('Once upon a time the people of the United States of America went to the little park')).slice(0, 24);
      expect(ids.length).toBeGreaterThan(12);
    });
    afterAll(async () => {
      base?.dispose();
      merged?.dispose();
      await baseSession?.release();
      await mergedSession?.release();
      fs.rmSync(tmp, { recursive: true, force: true });
    });

    test('the folder is laid out as Optimum exports are, with Optimum names', () => {
      const dir = path.join(tmp, 'merged');
      for (const f of ['onnx/model.onnx', 'config.json', 'generation_config.json', 'tokenizer.json', 'tokenizer_config.json', 'report.json']) {
        expect(fs.existsSync(path.join(dir, f))).toBe(true);
      }
      expect(mergedSession.inputNames.slice(0, 3)).toEqual(['input_ids', 'attention_mask', 'position_ids']);
      expect(mergedSession.inputNames).toContain(`past_key_values.${base.spec.layers - 1}.value`);
      expect(mergedSession.outputNames[0]).toBe('logits');
      expect(mergedSession.outputNames).toContain(`present.${base.spec.layers - 1}.key`);
      const config = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8'));
      expect(config.model_type).toBe(base.spec.family);
      expect(config.ffmerge.ties[c.tied]).toBe(c.stored);
    });

    test('every tied tensor is one initializer, read by each position of the window', () => {
      const m = onnx.ModelProto.decode(fs.readFileSync(path.join(tmp, 'merged', 'onnx', 'model.onnx')));
      const names = m.graph!.initializer!.map((t) => t.name);
      expect(new Set(names).size).toBe(names.length);
      expect(names).toContain(c.stored);
      expect(names).not.toContain(c.tied);
      const readers = m.graph!.node!.filter((n) => n.input!.includes(c.stored));
      expect(readers).toHaveLength(c.k);
      expect(readers.every((n) => n.opType === 'Gemm')).toBe(true);
      const b = onnx.ModelProto.decode(fs.readFileSync(path.join(tmp, 'base', 'onnx', 'model.onnx')));
      expect(b.graph!.initializer!.map((t) => t.name)).toContain(c.tied);
    });

    test('the merged export is smaller than the original export by the removed parameters (±1%)', () => {
      const saved = fileBytes(path.join(tmp, 'base')) - fileBytes(path.join(tmp, 'merged'));
      const removed = result.params.removed * 4; // float32 weights
      expect(removed).toBeGreaterThan(0);
      expect(Math.abs(saved / removed - 1)).toBeLessThan(0.01);
    });

    test('logits equal ffmerge\'s forward within 1e-4, original and merged, with an empty cache', async () => {
      for (const [m, s] of [[base, baseSession], [merged, mergedSession]] as const) {
        const want = (await m.forward({ ids: Int32Array.from(ids), batch: 1, seq: ids.length }, { output: 'logits' })).logits;
        const got = (await runLm(s, dims(m), ids)).logits;
        expect(maxRelDiff(got, want)).toBeLessThan(1e-4);
      }
      // the merge changed the function: the check above would catch an export of the wrong weights
      const a = (await runLm(baseSession, dims(base), ids)).logits;
      const b = (await runLm(mergedSession, dims(merged), ids)).logits;
      expect(maxRelDiff(a, b)).toBeGreaterThan(1e-3);
    });

    test('with past key values: the prompt, then one token at a time, gives the full pass\'s logits', async () => {
      const d = dims(merged);
      const want = (await merged.forward({ ids: Int32Array.from(ids), batch: 1, seq: ids.length }, { output: 'logits' })).logits;
      const split = ids.length - 5;
      let r = await runLm(mergedSession, d, ids.slice(0, split));
      expect(maxRelDiff(r.logits, want.subarray(0, split * d.vocab))).toBeLessThan(1e-4);
      for (let t = split; t < ids.length; t++) {
        r = await runLm(mergedSession, d, [ids[t]!], r.cache);
        expect(r.cache[0]!.key.dims).toEqual([1, d.kvHeads, t + 1, d.headDim]);
        expect(maxRelDiff(r.logits, want.subarray(t * d.vocab, (t + 1) * d.vocab))).toBeLessThan(1e-4);
      }
    });

    test('greedy decoding on the KV cache picks the same tokens as ffmerge', async () => {
      const prompt = ids.slice(0, 6);
      const want = Array.from(await greedy(merged, prompt, 12));
      expect(await greedyOrt(mergedSession, dims(merged), prompt, 12)).toEqual(want);
    });

    test('perplexity on the test data matches the eval path to 1e-4 relative', async () => {
      const blocks = takeTokens(
        await blocksFrom(c.test, { blockSize: 256, what: 'test', tokenizerDir: FIX, maxTokens: c.testTokens, vocab: merged.spec.vocab }),
        c.testTokens,
      );
      const want = ppl(await nllOf(merged, makeBatches(blocks, 8)));
      let sum = 0;
      let count = 0;
      for (const b of blocks) {
        const r = await nllOrt(mergedSession, dims(merged), Array.from(b));
        sum += r.sum;
        count += r.count;
      }
      expect(Math.abs(Math.exp(sum / count) / want - 1)).toBeLessThan(1e-4);
    });
  });
}

describeShared('fixtures/gpt2-sotu', 'ONNX export options and failures', () => {
  jest.setTimeout(300_000);
  const FIX = sharedPath('fixtures', 'gpt2-sotu');
  let tmp: string;
  let ids: number[];
  let inline: Float32Array;
  const d: LmDims = { layers: 12, kvHeads: 4, headDim: 32, vocab: 4096 };
  beforeAll(async () => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ffmerge-onnx-opt-'));
    await exportOnnx(FIX, { out: path.join(tmp, 'fp32') });
    ids = [40, 931, 79, 774, 1, 1243, 607, 411, 370, 837, 14];
    const s = await ort.InferenceSession.create(path.join(tmp, 'fp32', 'onnx', 'model.onnx'));
    inline = (await runLm(s, d, ids)).logits;
    await s.release();
  });
  afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

  test('external data: weights in model.onnx_data, same logits', async () => {
    const r = await exportOnnx(FIX, { out: path.join(tmp, 'ext'), externalData: true });
    expect(r.external).toBe(true);
    expect(fs.statSync(path.join(tmp, 'ext', 'onnx', 'model.onnx_data')).size).toBe(r.dataBytes);
    expect(r.onnxBytes).toBeLessThan(100_000);
    const config = JSON.parse(fs.readFileSync(path.join(tmp, 'ext', 'config.json'), 'utf8'));
    expect(config['transformers.js_config'].use_external_data_format).toBe(true);
    const s = await ort.InferenceSession.create(path.join(tmp, 'ext', 'onnx', 'model.onnx'));
    expect(Array.from((await runLm(s, d, ids)).logits)).toEqual(Array.from(inline));
    await s.release();
  });

  test('fp16 weights: half the bytes, logits close to the fp32 export', async () => {
    const r = await exportOnnx(FIX, { out: path.join(tmp, 'fp16'), dtype: 'fp16' });
    const full = fileBytes(path.join(tmp, 'fp32'));
    expect(Math.abs(r.onnxBytes / full - 0.5)).toBeLessThan(0.01);
    const s = await ort.InferenceSession.create(path.join(tmp, 'fp16', 'onnx', 'model.onnx'));
    const got = (await runLm(s, d, ids)).logits;
    await s.release();
    const err = maxRelDiff(got, inline);
    expect(err).toBeGreaterThan(0); // the weights really were rounded
    expect(err).toBeLessThan(5e-3);
  });

  test('an existing non-empty output is refused; aborting leaves nothing behind', async () => {
    await expect(exportOnnx(FIX, { out: path.join(tmp, 'fp32') })).rejects.toMatchObject({ code: 'OUTPUT_EXISTS' });
    const ac = new AbortController();
    const out = path.join(tmp, 'aborted');
    const p = exportOnnx(FIX, { out, signal: ac.signal, onProgress: (q) => q.done === 3 && ac.abort() });
    await expect(p).rejects.toMatchObject({ code: 'ABORTED' });
    expect(fs.readdirSync(tmp).filter((f) => f.includes('aborted'))).toEqual([]);
  });

  test('a model the exporter does not cover fails before writing anything', async () => {
    // a BERT classifier: a family ffmerge merges but the exporter does not write (config.json is all it reads)
    const bert = path.join(tmp, 'bert-src');
    fs.mkdirSync(bert);
    const config = {
      model_type: 'bert', architectures: ['BertForSequenceClassification'], num_hidden_layers: 2, hidden_size: 16, num_attention_heads: 2,
      intermediate_size: 32, vocab_size: 30, max_position_embeddings: 16, type_vocab_size: 2, hidden_act: 'gelu', num_labels: 2,
    };
    fs.writeFileSync(path.join(bert, 'config.json'), JSON.stringify(config));
    const out = path.join(tmp, 'bert');
    const e = await exportOnnx(bert, { out }).catch((x: unknown) => x);
    expect(isFfmergeError(e, 'UNSUPPORTED_ARCHITECTURE')).toBe(true);
    expect(fs.existsSync(out)).toBe(false);
  });
});
