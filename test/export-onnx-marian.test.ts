/**
 * @jest-environment ./test/helpers/ort-environment.js
 *
 * ONNX export of marian-multi30k-en-de (encoder_model.onnx + decoder_model_merged.onnx, Optimum's names),
 * original and merged (k = 2 in both stacks, through compress), run in onnxruntime-node: logits against
 * ffmerge's forward on the fixture's padded reference batch, with and without past key values; greedy
 * translations against ffmerge's; file sizes against the removed parameters; one initializer per shared
 * tensor; and transformers.js loading the folder from local files for translation. The merge uses a fixed
 * window and small budgets: what is checked is the export of whatever the merge produced.
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
import { SafetensorsReader } from '../lib/safetensors';
import { loadTokenizer, type Tokenizer } from '../lib/tokenizer';
import { loadGenerationConfig, translate } from '../lib/eval/translate';
import { describeShared, sharedPath } from './helpers/shared';
import { maxRelErr } from './helpers/compare';
import { greedyTranslateOrt, runDecoder, runEncoder, type Seq2SeqDims, type Seq2SeqSessions } from './helpers/onnx-seq2seq';

const FIX = sharedPath('fixtures', 'marian-multi30k-en-de');
const M30K = (f: string) => sharedPath('data', 'multi30k', f);
const ENC = 'onnx/encoder_model.onnx';
const DEC = 'onnx/decoder_model_merged.onnx';

function fileBytes(dir: string): number {
  const o = path.join(dir, 'onnx');
  return fs.readdirSync(o).reduce((s, f) => s + fs.statSync(path.join(o, f)).size, 0);
}

async function sessions(dir: string): Promise<Seq2SeqSessions> {
  return {
    encoder: await ort.InferenceSession.create(path.join(dir, ENC)),
    decoder: await ort.InferenceSession.create(path.join(dir, DEC)),
  };
}

describeShared('fixtures/marian-multi30k-en-de', 'ONNX export of marian-multi30k-en-de', () => {
  jest.setTimeout(600_000);
  let tmp: string;
  let base: Model;
  let merged: Model;
  let baseS: Seq2SeqSessions;
  let mergedS: Seq2SeqSessions;
  let result: CompressResult;
  let tokenizer: Tokenizer;
  let d: Seq2SeqDims;
  /** The fixture's padded reference batch: source ids/mask [2, 22] and teacher-forced decoder ids [2, 22]. */
  const ref = { B: 2, T: 22, src: new Int32Array(0), mask: new Uint8Array(0), dec: new Int32Array(0) };

  beforeAll(async () => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ffmerge-onnx-marian-'));
    const common = {
      method: 'permute',
      k: 2,
      window: '1-2',
      parallel: { source: M30K('val.en.gz'), target: M30K('val.de.gz') },
      calibrationPairs: 150,
      validationSentences: 20,
    } as const;
    // the same (deterministic) merge twice: a tied checkpoint for ffmerge's forward, and the ONNX export
    result = await compress(FIX, { ...common, out: path.join(tmp, 'tied'), format: 'tied' });
    await compress(FIX, { ...common, out: path.join(tmp, 'merged'), format: 'onnx' });
    await exportOnnx(FIX, { out: path.join(tmp, 'base') });
    base = await loadModel(FIX);
    merged = await loadModel(path.join(tmp, 'tied'));
    baseS = await sessions(path.join(tmp, 'base'));
    mergedS = await sessions(path.join(tmp, 'merged'));
    tokenizer = await loadTokenizer(FIX);
    d = { layers: base.spec.layers, heads: base.spec.nHeads, headDim: base.spec.headDim, vocab: base.spec.vocab };

    const r = await SafetensorsReader.open(path.join(FIX, 'reference.safetensors'));
    ref.src = Int32Array.from(await r.readF32('input_ids'));
    ref.mask = Uint8Array.from(await r.readF32('attention_mask'));
    const labels = Int32Array.from(await r.readF32('labels'));
    await r.close();
    // decoder input = labels shifted right after decoder_start (2); -100 (ignored label) becomes pad (2)
    ref.dec = new Int32Array(ref.B * ref.T);
    for (let b = 0; b < ref.B; b++) {
      ref.dec[b * ref.T] = 2;
      for (let t = 0; t + 1 < ref.T; t++) {
        const v = labels[b * ref.T + t]!;
        ref.dec[b * ref.T + t + 1] = v === -100 ? 2 : v;
      }
    }
  });
  afterAll(async () => {
    base?.dispose();
    merged?.dispose();
    for (const s of [baseS, mergedS]) {
      await s?.encoder.release();
      await s?.decoder.release();
    }
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  const ffmergeLogits = async (m: Model) =>
    (await m.forward({ ids: ref.dec, batch: ref.B, seq: ref.T, encoderIds: ref.src, encoderSeq: ref.T, encoderMask: ref.mask }, { output: 'logits' })).logits;

  test('the folder is laid out as Optimum exports seq2seq models, with Optimum names', () => {
    const dir = path.join(tmp, 'merged');
    for (const f of [ENC, DEC, 'config.json', 'generation_config.json', 'tokenizer.json', 'tokenizer_config.json', 'report.json']) {
      expect(fs.existsSync(path.join(dir, f))).toBe(true);
    }
    expect(fs.readdirSync(path.join(dir, 'onnx')).sort()).toEqual(['decoder_model_merged.onnx', 'encoder_model.onnx']);
    expect(mergedS.encoder.inputNames).toEqual(['input_ids', 'attention_mask']);
    expect(mergedS.encoder.outputNames).toEqual(['last_hidden_state']);
    const L = d.layers - 1;
    expect(mergedS.decoder.inputNames.slice(0, 3)).toEqual(['encoder_attention_mask', 'input_ids', 'encoder_hidden_states']);
    for (const n of [`past_key_values.${L}.decoder.key`, `past_key_values.${L}.encoder.value`, 'use_cache_branch']) expect(mergedS.decoder.inputNames).toContain(n);
    expect(mergedS.decoder.outputNames[0]).toBe('logits');
    for (const n of [`present.${L}.decoder.value`, `present.${L}.encoder.key`]) expect(mergedS.decoder.outputNames).toContain(n);
    const config = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8'));
    expect(config.model_type).toBe('marian');
    expect(config.ffmerge.ties['model.encoder.layers.2.fc1.weight']).toBe('model.encoder.layers.1.fc1.weight');
    expect(config.ffmerge.ties['model.decoder.layers.2.fc2.weight']).toBe('model.decoder.layers.1.fc2.weight');
    expect(fs.readFileSync(path.join(dir, 'generation_config.json'), 'utf8')).toBe(fs.readFileSync(path.join(FIX, 'generation_config.json'), 'utf8'));
  });

  test('every tied tensor is one initializer of its file, read by each position of the window', () => {
    for (const [file, stack] of [[ENC, 'encoder'], [DEC, 'decoder']] as const) {
      const m = onnx.ModelProto.decode(fs.readFileSync(path.join(tmp, 'merged', file)));
      const names = m.graph!.initializer!.map((t) => t.name);
      expect(new Set(names).size).toBe(names.length);
      for (const part of ['fc1.weight', 'fc1.bias', 'fc2.weight', 'fc2.bias']) {
        const stored = `model.${stack}.layers.1.${part}`;
        expect(names).toContain(stored);
        expect(names).not.toContain(`model.${stack}.layers.2.${part}`);
        const readers = m.graph!.node!.filter((n) => n.input!.includes(stored));
        expect(readers).toHaveLength(2);
        expect(readers.every((n) => n.opType === 'Gemm')).toBe(true);
      }
      // the tied embedding: one table read by the embedding Gather (and, in the decoder, the LM head)
      expect(m.graph!.node!.filter((n) => n.input!.includes('model.shared.weight'))).toHaveLength(stack === 'decoder' ? 2 : 1);
      const b = onnx.ModelProto.decode(fs.readFileSync(path.join(tmp, 'base', file)));
      expect(b.graph!.initializer!.map((t) => t.name)).toContain(`model.${stack}.layers.2.fc1.weight`);
    }
  });

  test('the merged export is smaller than the original export by the removed parameters (±1%)', () => {
    expect(result.windows.map((w) => w.stack).sort()).toEqual(['decoder', 'encoder']);
    const saved = fileBytes(path.join(tmp, 'base')) - fileBytes(path.join(tmp, 'merged'));
    const removed = result.params.removed * 4; // float32 weights
    expect(removed).toBeGreaterThan(0);
    expect(Math.abs(saved / removed - 1)).toBeLessThan(0.01);
  });

  test("logits equal ffmerge's forward within 1e-4 on the padded reference batch, original and merged", async () => {
    for (const [m, s] of [[base, baseS], [merged, mergedS]] as const) {
      const want = await ffmergeLogits(m);
      const states = await runEncoder(s, ref.src, ref.mask, ref.B);
      const got = (await runDecoder(s, d, { states, mask: ref.mask }, ref.dec, ref.B)).logits;
      expect(maxRelErr(got, want)).toBeLessThan(1e-4);
    }
    // the merge changed the function: the check above would catch an export of the wrong weights
    expect(maxRelErr(await ffmergeLogits(merged), await ffmergeLogits(base))).toBeGreaterThan(1e-3);
  });

  test("with past key values: a prefix, then one token at a time, gives the full pass's logits", async () => {
    for (const [m, s] of [[base, baseS], [merged, mergedS]] as const) {
      const { B, T } = ref;
      const V = d.vocab;
      const want = await ffmergeLogits(m);
      const states = await runEncoder(s, ref.src, ref.mask, B);
      const enc = { states, mask: ref.mask };
      const cols = (t0: number, t1: number, a: ArrayLike<number>, width: number) => {
        const out: number[] = [];
        for (let b = 0; b < B; b++) for (let t = t0; t < t1; t++) for (let j = 0; j < width; j++) out.push(a[(b * T + t) * width + j]!);
        return out;
      };
      const split = T - 6;
      let r = await runDecoder(s, d, enc, cols(0, split, ref.dec, 1), B);
      expect(maxRelErr(r.logits, Float32Array.from(cols(0, split, want, V)))).toBeLessThan(1e-4);
      // the cross-attention keys/values of the first step are reused as they are on the cache branch
      const crossKey = r.cache['past_key_values.0.encoder.key']!;
      expect(crossKey.dims).toEqual([B, d.heads, T, d.headDim]);
      for (let t = split; t < T; t++) {
        r = await runDecoder(s, d, enc, cols(t, t + 1, ref.dec, 1), B, r.cache);
        expect(r.cache['past_key_values.0.encoder.key']!.data).toEqual(crossKey.data);
        expect(r.cache['past_key_values.0.decoder.key']!.dims).toEqual([B, d.heads, t + 1, d.headDim]);
        expect(maxRelErr(r.logits, Float32Array.from(cols(t, t + 1, want, V)))).toBeLessThan(1e-4);
      }
    }
  });

  test('the cache branch reads the cached cross-attention keys/values, not encoder_hidden_states', async () => {
    const states = await runEncoder(baseS, ref.src, ref.mask, ref.B);
    const first = await runDecoder(baseS, d, { states, mask: ref.mask }, ref.dec.filter((_, i) => i % ref.T < 3), ref.B);
    const next = ref.dec.filter((_, i) => i % ref.T === 3);
    const want = (await runDecoder(baseS, d, { states, mask: ref.mask }, next, ref.B, first.cache)).logits;
    const zeros = new ort.Tensor('float32', new Float32Array(states.data.length), states.dims);
    const got = (await runDecoder(baseS, d, { states: zeros, mask: ref.mask }, next, ref.B, first.cache)).logits;
    expect(Array.from(got)).toEqual(Array.from(want));
  });

  test('fp16 weights: the export loads and its logits stay close to fp32', async () => {
    const out = path.join(tmp, 'fp16');
    const seen: [string, number, number][] = [];
    const r = await exportOnnx(path.join(tmp, 'tied'), { out, dtype: 'fp16', onProgress: (p) => seen.push([p.phase, p.done, p.total]) });
    // one count over both files' weights, never going back
    expect(seen.every(([phase, done, total], i) => phase === 'onnx' && total === r.weightTensors && done === i + 1)).toBe(true);
    expect(seen.length).toBe(r.weightTensors);
    expect(Math.abs(r.weightBytes / fileBytes(path.join(tmp, 'merged')) - 0.5)).toBeLessThan(0.01);
    const s = await sessions(out);
    const states = await runEncoder(s, ref.src, ref.mask, ref.B);
    const got = (await runDecoder(s, d, { states, mask: ref.mask }, ref.dec, ref.B)).logits;
    await s.encoder.release();
    await s.decoder.release();
    const err = maxRelErr(got, await ffmergeLogits(merged));
    expect(err).toBeGreaterThan(0);
    expect(err).toBeLessThan(5e-3);
  });

  test("greedy translation with the exported graphs picks ffmerge's tokens, original and merged", async () => {
    const cases = (JSON.parse(fs.readFileSync(path.join(FIX, 'reference.json'), 'utf8')) as { greedy_test_first20: { src: string; ids: number[] }[] })
      .greedy_test_first20.slice(0, 4);
    const gen = await loadGenerationConfig(FIX);
    const opts = {
      decoderStartTokenId: gen.decoderStartTokenId,
      eosTokenId: gen.eosTokenId!,
      maxLength: gen.maxLength,
      banned: (gen.badWordsIds ?? []).filter((w) => w.length === 1).map((w) => w[0]!),
      ...(gen.forcedEosTokenId !== undefined ? { forcedEosTokenId: gen.forcedEosTokenId } : {}),
    };
    for (const [m, s] of [[base, baseS], [merged, mergedS]] as const) {
      const want = await translate(m, tokenizer, cases.map((c) => c.src), { generation: gen });
      for (let i = 0; i < cases.length; i++) {
        const got = await greedyTranslateOrt(s, d, Array.from(tokenizer.encode(cases[i]!.src, { maxLength: 64 })), opts);
        expect(got).toEqual(want[i]!.ids);
      }
    }
    // and the original's are the fixture's Hugging Face reference
    const got0 = await greedyTranslateOrt(baseS, d, Array.from(tokenizer.encode(cases[0]!.src, { maxLength: 64 })), opts);
    expect([gen.decoderStartTokenId, ...got0]).toEqual(cases[0]!.ids.slice(0, got0.length + 1));
  });

  test("transformers.js loads the merged folder from local files; its greedy translation is ffmerge's", async () => {
    // required here, not imported at the top: it is a large module only this test needs
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const tjs = require('@huggingface/transformers') as typeof import('@huggingface/transformers');
    tjs.env.allowRemoteModels = false;
    tjs.env.localModelPath = tmp;
    const sources = (JSON.parse(fs.readFileSync(path.join(FIX, 'reference.json'), 'utf8')) as { greedy_test_first20: { src: string }[] }).greedy_test_first20
      .slice(4, 7)
      .map((c) => c.src);
    const want = await translate(merged, tokenizer, sources, { generation: await loadGenerationConfig(path.join(tmp, 'merged')) });

    const tjsTok = await tjs.AutoTokenizer.from_pretrained('merged');
    const model = await tjs.AutoModelForSeq2SeqLM.from_pretrained('merged', { dtype: 'fp32', device: 'cpu' });
    for (let i = 0; i < sources.length; i++) {
      const enc = tjsTok(sources[i]!) as { input_ids: import('@huggingface/transformers').Tensor };
      expect(Array.from(enc.input_ids.data as BigInt64Array, Number)).toEqual(Array.from(tokenizer.encode(sources[i]!, { maxLength: 64 })));
      const out = (await model.generate({ ...enc, do_sample: false })) as import('@huggingface/transformers').Tensor;
      expect(Array.from(out.data as BigInt64Array, Number)).toEqual([2, ...want[i]!.ids]);
    }
    await model.dispose();

    for (const task of ['translation', 'text2text-generation'] as const) {
      const p = await tjs.pipeline(task, 'merged', { dtype: 'fp32', device: 'cpu' });
      const out = (await p(sources[0]!)) as Record<string, string>[];
      expect(out[0]![task === 'translation' ? 'translation_text' : 'generated_text']).toBe(want[0]!.text);
      await p.dispose();
    }
  });
});

// tester GD: max_position_embeddings 1e6 built a 512M-value table on the main thread (32 s, 2.7 GB), then failed
// untyped (INTERNAL_ERROR); 1e9 failed at once, untyped too. eval and compress read positions as they go.
describeShared('fixtures/marian-multi30k-en-de', 'ONNX export of a Marian config with a huge position table', () => {
  test('is INVALID_CONFIG before the table is built, nothing written', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ffmerge-onnx-maxpos-'));
    try {
      const model = path.join(dir, 'model');
      fs.cpSync(FIX, model, { recursive: true, filter: (f) => !/reference\.|eval\.json/.test(path.basename(f)) });
      const config = JSON.parse(fs.readFileSync(path.join(model, 'config.json'), 'utf8'));
      fs.writeFileSync(path.join(model, 'config.json'), JSON.stringify({ ...config, max_position_embeddings: 1_000_000 }));
      await expect(exportOnnx(model, { out: path.join(dir, 'out') })).rejects.toMatchObject({ code: 'INVALID_CONFIG', message: expect.stringContaining('max_position_embeddings 1000000') });
      expect(fs.readdirSync(dir)).toEqual(['model']);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
