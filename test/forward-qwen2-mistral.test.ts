/**
 * Qwen2 and Mistral, which are LLaMA-shaped descriptions (lib/model/architectures/qwen2.ts, mistral.ts):
 * random small checkpoints against the float64 reference (q/k/v biases, explicit head_dim, sliding-window
 * attention), and the llama-stories260k weights wrapped in a Qwen2 / Mistral config, which must give
 * llama's logits bit for bit. Also GPT-2 and Marian with tie_word_embeddings false (an lm_head.weight of their own).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { architectureOf } from '../lib/model/architectures';
import { loadModel } from '../lib/model/load';
import type { Model } from '../lib/model/model';
import { referenceForward } from './reference/forward';
import { SafetensorsReader, writeSafetensors, type TensorToWrite } from '../lib/safetensors';
import { describeShared, sharedPath } from './helpers/shared';
import { relErr, removeSyntheticDirs, syntheticGpt2, syntheticLlama, tempDir } from './helpers/synthetic-model';

afterAll(() => removeSyntheticDirs());

function randomIds(n: number, vocab: number, seed: number): Int32Array {
  return Int32Array.from({ length: n }, (_, i) => (i * 7919 + seed * 104729) % vocab);
}

/** Logits of a padded batch of two (second sequence right-padded) from the native model and the reference. */
async function compare(m: Model, canonical: Record<string, Float32Array>, seq: number, seed: number) {
  const ids = randomIds(2 * seq, m.spec.vocab, seed);
  const mask = new Uint8Array(2 * seq).fill(1);
  mask.fill(0, seq + seq - 3);
  const r = await m.forward({ ids, batch: 2, seq, attentionMask: mask }, { output: 'logits' });
  return { got: r.logits, want: referenceForward(m.spec, canonical, ids, 2, seq, mask).logits };
}

describe('qwen2 and mistral vs float64 reference on synthetic checkpoints', () => {
  test('qwen2: nonzero q/k/v biases, no o/FF bias, GQA 6/2, odd sizes, untied head', async () => {
    const s = await syntheticLlama({ family: 'qwen2', d: 36, heads: 6, kvHeads: 2, ff: 37, vocab: 41, layers: 3, seed: 31 });
    expect(s.hf.has('model.layers.0.self_attn.q_proj.bias')).toBe(true);
    expect(s.hf.has('model.layers.0.self_attn.o_proj.bias')).toBe(false);
    const m = await loadModel(s.dir);
    expect(m.spec).toMatchObject({ family: 'qwen2', headDim: 6, gatedFF: true, tiedEmbeddings: false, slidingWindow: [0, 0, 0] });
    const { got, want } = await compare(m, s.canonical, 13, 1);
    expect(relErr(got, want)).toBeLessThan(1e-5);
    m.dispose();
  });

  test('qwen2 with use_sliding_window: layers ≥ max_window_layers attend within the window', async () => {
    const config = { use_sliding_window: true, sliding_window: 4, max_window_layers: 1 };
    const s = await syntheticLlama({ family: 'qwen2', d: 30, heads: 3, kvHeads: 1, ff: 23, vocab: 37, layers: 3, seed: 32, config });
    const m = await loadModel(s.dir);
    expect(m.spec.slidingWindow).toEqual([0, 4, 4]);
    const { got, want } = await compare(m, s.canonical, 13, 2);
    expect(relErr(got, want)).toBeLessThan(1e-5);
    // the window changes the result (the test would not see a missing window otherwise)
    const full = referenceForward({ ...m.spec, slidingWindow: [0, 0, 0] }, s.canonical, randomIds(26, 37, 2), 2, 13).logits;
    expect(relErr(full, want)).toBeGreaterThan(1e-3);
    m.dispose();
  });

  test('a drop-layers view keeps each kept layer\'s own window (tester EY: the base\'s list by the new index)', async () => {
    const config = { use_sliding_window: true, sliding_window: 4, max_window_layers: 2 };
    const s = await syntheticLlama({ family: 'qwen2', d: 30, heads: 3, kvHeads: 1, ff: 23, vocab: 37, layers: 4, seed: 35, config });
    const m = await loadModel(s.dir);
    expect(m.spec.slidingWindow).toEqual([0, 0, 4, 4]);
    const view = m.withoutLayers({ decoder: [1] });
    expect(view.spec.slidingWindow).toEqual([0, 4, 4]);
    // the reference on the kept layers, renumbered: what a checkpoint of those three layers computes
    const kept = [0, 2, 3];
    const canonical = Object.fromEntries(
      Object.entries(s.canonical).flatMap(([n, t]) => {
        const l = /^layers\.(\d+)\./.exec(n);
        if (!l) return [[n, t]];
        const at = kept.indexOf(Number(l[1]));
        return at < 0 ? [] : [[n.replace(/^layers\.\d+\./, `layers.${at}.`), t]];
      }),
    );
    const { got, want } = await compare(view, canonical, 13, 3);
    expect(relErr(got, want)).toBeLessThan(1e-5);
    view.dispose();
    m.dispose();
  });

  test('qwen2: sliding_window is ignored without use_sliding_window; layer_types picks the layers', async () => {
    const off = await syntheticLlama({ family: 'qwen2', layers: 2, seed: 33, config: { use_sliding_window: false, sliding_window: 3 } });
    const m0 = await loadModel(off.dir);
    expect(m0.spec.slidingWindow).toEqual([0, 0]);
    m0.dispose();
    const types = { use_sliding_window: true, sliding_window: 3, layer_types: ['sliding_attention', 'full_attention'] };
    const on = await syntheticLlama({ family: 'qwen2', layers: 2, seed: 34, config: types });
    const m1 = await loadModel(on.dir);
    expect(m1.spec.slidingWindow).toEqual([3, 0]);
    const { got, want } = await compare(m1, on.canonical, 11, 3);
    expect(relErr(got, want)).toBeLessThan(1e-5);
    m1.dispose();
  });

  test('mistral: no biases, explicit head_dim ≠ hidden/heads, sliding window on every layer', async () => {
    const s = await syntheticLlama({ family: 'mistral', d: 27, heads: 4, kvHeads: 2, headDim: 6, ff: 29, vocab: 43, layers: 3, seed: 35, config: { sliding_window: 5 } });
    expect([...s.hf.keys()].some((k) => k.endsWith('.bias'))).toBe(false);
    const m = await loadModel(s.dir);
    expect(m.spec).toMatchObject({ family: 'mistral', dModel: 27, headDim: 6, slidingWindow: [5, 5, 5] });
    const { got, want } = await compare(m, s.canonical, 17, 4);
    expect(relErr(got, want)).toBeLessThan(1e-5);
    m.dispose();
  });

  test('mistral: sliding_window null is full attention, absent is transformers\' default 4096', async () => {
    const none = await syntheticLlama({ family: 'mistral', layers: 2, bias: false, seed: 36, config: { sliding_window: null } });
    const m = await loadModel(none.dir);
    expect(m.spec.slidingWindow).toEqual([0, 0]);
    const { got, want } = await compare(m, none.canonical, 9, 5);
    expect(relErr(got, want)).toBeLessThan(1e-5);
    m.dispose();
    const dflt = await syntheticLlama({ family: 'mistral', layers: 2, seed: 37 });
    const m2 = await loadModel(dflt.dir);
    expect(m2.spec.slidingWindow).toEqual([4096, 4096]);
    m2.dispose();
  });

  test("keys a config.json leaves out take that family's transformers default (reviewer AU)", () => {
    const base = { num_hidden_layers: 3, hidden_size: 64, num_attention_heads: 64, intermediate_size: 96, vocab_size: 50, head_dim: 8 };
    const spec = (c: Record<string, unknown>) => architectureOf(c).stacks[0]!.spec(c);
    // num_key_value_heads: Qwen2Config / Qwen3Config 32, MistralConfig 8, LlamaConfig the head count; null is the head count
    expect(spec({ ...base, model_type: 'qwen2' }).nKvHeads).toBe(32);
    expect(spec({ ...base, model_type: 'qwen3' }).nKvHeads).toBe(32);
    expect(spec({ ...base, model_type: 'mistral' }).nKvHeads).toBe(8);
    expect(spec({ ...base, model_type: 'llama' }).nKvHeads).toBe(64);
    expect(spec({ ...base, model_type: 'qwen2', num_key_value_heads: null }).nKvHeads).toBe(64);
    // Qwen's sliding_window: 4096 when left out (before: no window at all), none when null
    const sliding = { ...base, use_sliding_window: true, max_window_layers: 1 };
    expect(spec({ ...sliding, model_type: 'qwen3' }).slidingWindow).toEqual([0, 4096, 4096]);
    expect(spec({ ...sliding, model_type: 'qwen2', sliding_window: null }).slidingWindow).toEqual([0, 0, 0]);
  });
});

const FIX = 'fixtures/llama-stories260k';

describeShared(FIX, 'llama-stories260k weights under qwen2 / mistral configs', () => {
  let ids: Int32Array;
  let llamaLogits: Float32Array;

  async function wrap(config: Record<string, unknown>, extra: TensorToWrite[]): Promise<string> {
    const dir = tempDir(String(config.model_type));
    const base = JSON.parse(fs.readFileSync(sharedPath(FIX, 'config.json'), 'utf8')) as Record<string, unknown>;
    delete base.attention_bias;
    delete base.mlp_bias;
    fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ ...base, ...config }));
    const src = await SafetensorsReader.open(sharedPath(FIX, 'model.safetensors'));
    const tensors: TensorToWrite[] = [...extra];
    for (const name of src.names()) tensors.push({ name, dtype: 'F32', shape: src.info(name).shape, data: await src.readF32(name) });
    await src.close();
    await writeSafetensors(path.join(dir, 'model.safetensors'), tensors);
    return dir;
  }

  async function logitsOf(dir: string): Promise<Float32Array> {
    const m = await loadModel(dir);
    try {
      return (await m.forward({ ids, batch: 1, seq: ids.length }, { output: 'logits' })).logits;
    } finally {
      m.dispose();
    }
  }

  const bitwiseEqual = (a: Float32Array, b: Float32Array) =>
    a.length === b.length && Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));

  beforeAll(async () => {
    const ref = await SafetensorsReader.open(sharedPath(FIX, 'reference.safetensors'));
    const raw = await ref.readRaw('input_ids');
    ids = new Int32Array(raw.buffer, raw.byteOffset, raw.byteLength / 4).slice();
    await ref.close();
    llamaLogits = await logitsOf(sharedPath(FIX));
  });

  test('qwen2 config + zero q/k/v biases gives llama\'s logits exactly (also with a window as long as the input)', async () => {
    const zeros = (name: string, n: number): TensorToWrite => ({ name, dtype: 'F32', shape: [n], data: new Float32Array(n) });
    const biases = Array.from({ length: 5 }, (_, l) => [
      zeros(`model.layers.${l}.self_attn.q_proj.bias`, 64),
      zeros(`model.layers.${l}.self_attn.k_proj.bias`, 32),
      zeros(`model.layers.${l}.self_attn.v_proj.bias`, 32),
    ]).flat();
    const dir = await wrap({ model_type: 'qwen2', architectures: ['Qwen2ForCausalLM'], use_sliding_window: false }, biases);
    expect(bitwiseEqual(await logitsOf(dir), llamaLogits)).toBe(true);
    // a window of exactly seq keys sees everything (i − j ≤ seq − 1 < seq); one less does not
    const cfg = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8')) as Record<string, unknown>;
    fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ ...cfg, use_sliding_window: true, sliding_window: ids.length, max_window_layers: 0 }));
    expect(bitwiseEqual(await logitsOf(dir), llamaLogits)).toBe(true);
    fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ ...cfg, use_sliding_window: true, sliding_window: ids.length - 1, max_window_layers: 0 }));
    expect(bitwiseEqual(await logitsOf(dir), llamaLogits)).toBe(false);
  });

  test('mistral config gives llama\'s logits exactly', async () => {
    const dir = await wrap({ model_type: 'mistral', architectures: ['MistralForCausalLM'], sliding_window: null }, []);
    expect(bitwiseEqual(await logitsOf(dir), llamaLogits)).toBe(true);
  });
});

// GPT-2 and Marian read tie_word_embeddings as transformers does (default true): false takes lm_head.weight as
// the head. Both used to tie the head to the embedding whatever the config said.
describe('an untied head where the config unties it', () => {
  test('gpt2 with tie_word_embeddings false: lm_head.weight ([vocab, d], a Linear) against the reference', async () => {
    const s = await syntheticGpt2({ layers: 2, d: 20, heads: 4, ff: 36, vocab: 50, positions: 16, seed: 12, tied: false });
    const m = await loadModel(s.dir);
    expect(m.spec.tiedEmbeddings).toBe(false);
    const { got, want } = await compare(m, s.canonical, 9, 4);
    expect(relErr(got, want)).toBeLessThan(1e-5);
    // the tied model (the same weights, the head from wte) differs: the test would see the head ignored
    const { lm_head_w: _, ...tied } = s.canonical;
    expect(relErr(got, referenceForward({ ...m.spec, tiedEmbeddings: true }, tied, randomIds(18, 50, 4), 2, 9, (() => { const k = new Uint8Array(18).fill(1); k.fill(0, 15); return k; })()).logits)).toBeGreaterThan(0.1);
    m.dispose();
  });

  test('gpt2 without tie_word_embeddings or activation_function takes GPT2Config\'s defaults (tied, gelu_new)', async () => {
    const s = await syntheticGpt2({ layers: 1, seed: 13 });
    const config = JSON.parse(fs.readFileSync(path.join(s.dir, 'config.json'), 'utf8'));
    delete config.tie_word_embeddings;
    delete config.activation_function;
    fs.writeFileSync(path.join(s.dir, 'config.json'), JSON.stringify(config));
    const m = await loadModel(s.dir);
    expect(m.spec).toMatchObject({ tiedEmbeddings: true, activation: 'gelu_new' });
    m.dispose();
  });

  test('activations: gelu_fast and gelu_python are the formulas ffmerge computes; one transformers has and ffmerge lacks is UNSUPPORTED_ARCHITECTURE (tester EY)', async () => {
    const s = await syntheticGpt2({ layers: 1, seed: 14 });
    const file = path.join(s.dir, 'config.json');
    const config = JSON.parse(fs.readFileSync(file, 'utf8'));
    for (const [act, kind] of [['gelu_fast', 'gelu_new'], ['gelu_python', 'gelu']] as const) {
      fs.writeFileSync(file, JSON.stringify({ ...config, activation_function: act }));
      const m = await loadModel(s.dir);
      expect(m.spec.activation).toBe(kind);
      m.dispose();
    }
    fs.writeFileSync(file, JSON.stringify({ ...config, activation_function: 'quick_gelu' }));
    await expect(loadModel(s.dir)).rejects.toMatchObject({ code: 'UNSUPPORTED_ARCHITECTURE', message: expect.stringContaining('"quick_gelu", an activation transformers has') });
    fs.writeFileSync(file, JSON.stringify({ ...config, activation_function: 'gelu_fastest' }));
    await expect(loadModel(s.dir)).rejects.toMatchObject({ code: 'INVALID_CONFIG', message: expect.stringContaining('must be one of') });
  });

  describeShared('fixtures/marian-multi30k-en-de', 'marian', () => {
    test('tie_word_embeddings false: logits − final_logits_bias scale with lm_head.weight = 2 × the shared embedding', async () => {
      const src = sharedPath('fixtures/marian-multi30k-en-de');
      const dir = path.join(tempDir('marian-untied'), 'm');
      fs.mkdirSync(dir);
      const config = JSON.parse(fs.readFileSync(path.join(src, 'config.json'), 'utf8'));
      fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ ...config, tie_word_embeddings: false }));
      const r = await SafetensorsReader.open(path.join(src, 'model.safetensors'));
      const tensors: TensorToWrite[] = [];
      for (const name of r.names()) tensors.push({ name, dtype: 'F32', shape: r.info(name).shape, data: await r.readF32(name) });
      const shared = await r.readF32('model.shared.weight');
      tensors.push({ name: 'lm_head.weight', dtype: 'F32', shape: r.info('model.shared.weight').shape, data: shared.map((v) => 2 * v) });
      const bias = await r.readF32('final_logits_bias');
      await r.close();
      await writeSafetensors(path.join(dir, 'model.safetensors'), tensors);
      const [tied, untied] = [await loadModel(src), await loadModel(dir)];
      expect(untied.spec.tiedEmbeddings).toBe(false);
      const input = { ids: Int32Array.from([2, 10, 20, 30]), batch: 1, seq: 4, encoderIds: Int32Array.from([5, 6, 7, 0]), encoderSeq: 4 };
      const a = (await tied.forward(input, { output: 'logits' })).logits;
      const b = (await untied.forward(input, { output: 'logits' })).logits;
      const V = untied.spec.vocab;
      const want = a.map((v, i) => 2 * (v - bias[i % V]!) + bias[i % V]!);
      expect(relErr(b, want)).toBeLessThan(1e-5);
      tied.dispose();
      untied.dispose();
    });
  });
});

test('saveTrained writes an untied GPT-2 head back as the [vocab, d] Linear it was read from', async () => {
  const { saveTrained } = await import('../lib/train/save');
  const s = await syntheticGpt2({ layers: 2, d: 20, heads: 4, ff: 36, vocab: 50, positions: 16, seed: 15, tied: false });
  const m = await loadModel(s.dir);
  const out = path.join(tempDir('saved'), 'out');
  await saveTrained(m, { source: s.dir, out });
  const r = await SafetensorsReader.open(path.join(out, 'model.safetensors'));
  expect(r.info('lm_head.weight').shape).toEqual([50, 20]);
  expect(relErr(await r.readF32('lm_head.weight'), s.hf.get('lm_head.weight')!.data)).toBe(0);
  await r.close();
  const again = await loadModel(out);
  const input = { ids: randomIds(9, 50, 5), batch: 1, seq: 9 };
  expect(relErr((await again.forward(input, { output: 'logits' })).logits, (await m.forward(input, { output: 'logits' })).logits)).toBe(0);
  m.dispose();
  again.dispose();
});
