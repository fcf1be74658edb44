/**
 * Bad checkpoints and bad inputs give typed errors that name the tensor or config field.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { writeCheckpoint } from '../lib/checkpoint/write';
import { fromNativeError } from '../lib/errors';
import { exportOnnx } from '../lib/export/onnx/export';
import { architectureOf, ffStacks } from '../lib/model/architectures';
import { inspectModel } from '../lib/model/inspect';
import { compress } from '../lib/pipeline/compress';
import { buildModel, loadModel } from '../lib/model/load';
import { NO_ROPE_SCALING, type ModelSpec } from '../lib/model/spec';
import { modelAddon } from '../lib/native/model';
import { describeShared, sharedPath } from './helpers/shared';
import { expectCode } from './helpers/expect-code';
import { removeSyntheticDirs, syntheticGpt2, syntheticLlama, syntheticVit, tempDir, writeSynthetic } from './helpers/synthetic-model';
import { preprocessorFromConfig } from '../lib/data/images';

afterAll(() => removeSyntheticDirs());

describe('model loading errors', () => {
  test('a checkpoint missing a tensor names it', async () => {
    const s = await syntheticGpt2();
    await writeSynthetic(s, ['transformer.h.1.mlp.c_fc.bias']);
    await expectCode(loadModel(s.dir), 'TENSOR_NOT_FOUND', 'transformer.h.1.mlp.c_fc.bias');
  });

  test('a tensor of the wrong shape names it and both shapes', async () => {
    const s = await syntheticLlama();
    await writeSynthetic(s, [], { 'model.layers.0.self_attn.k_proj.weight': [24, 12] }); // stored [12, 24]; same element count
    await expectCode(loadModel(s.dir), 'SHAPE_MISMATCH', 'model.layers.0.self_attn.k_proj.weight', '[24, 12]', '[12, 24]');
  });

  test('a GPT-2 Conv1D weight stored in Linear layout is a shape error', async () => {
    const s = await syntheticGpt2({ d: 20, ff: 36 });
    await writeSynthetic(s, [], { 'transformer.h.0.mlp.c_fc.weight': [36, 20] });
    await expectCode(loadModel(s.dir), 'SHAPE_MISMATCH', 'transformer.h.0.mlp.c_fc.weight', 'Conv1D');
  });

  test('a head count that does not divide the width names the field', async () => {
    const s = await syntheticGpt2({ d: 20, heads: 4 });
    s.config.n_head = 3;
    await writeSynthetic(s);
    await expectCode(loadModel(s.dir), 'INVALID_CONFIG', '"n_head"', '"n_embd"');
    const l = await syntheticLlama();
    l.config.num_attention_heads = 5;
    await writeSynthetic(l);
    await expectCode(loadModel(l.dir), 'INVALID_CONFIG', '"num_attention_heads"');
    l.config.num_attention_heads = 4;
    l.config.num_key_value_heads = 3;
    await writeSynthetic(l);
    await expectCode(loadModel(l.dir), 'INVALID_CONFIG', '"num_key_value_heads"');
  });

  test('an odd head width of a rotary model names where it came from (tester EC: "the rotary dimension (3) … headDim")', async () => {
    const l = await syntheticLlama({ d: 12, heads: 4, kvHeads: 2 });
    await expectCode(loadModel(l.dir), 'INVALID_CONFIG', 'the head width "hidden_size" / "num_attention_heads" is 3; rotary position embeddings need an even head width');
    await expectCode(inspectModel(l.dir), 'INVALID_CONFIG', 'need an even head width');
    l.config.head_dim = 5;
    await writeSynthetic(l);
    await expectCode(loadModel(l.dir), 'INVALID_CONFIG', 'the head width "head_dim" is 5');
  });

  test('k larger than a one-layer model says "1 layer" (tester EC: "1 layers")', async () => {
    const s = await syntheticGpt2({ layers: 1 });
    await expectCode(compress(s.dir, { calibration: [new Int32Array(16)], k: 2 }), 'K_TOO_LARGE', "k = 2 is larger than the model's 1 layer");
  });

  test('a missing or non-numeric config field is named', async () => {
    const s = await syntheticGpt2();
    delete s.config.n_layer;
    await writeSynthetic(s);
    await expectCode(loadModel(s.dir), 'INVALID_CONFIG', '"n_layer"');
  });

  test('an unknown model_type lists the supported ones', async () => {
    const s = await syntheticGpt2();
    s.config.model_type = 'mamba';
    await writeSynthetic(s);
    await expectCode(loadModel(s.dir), 'UNSUPPORTED_ARCHITECTURE', 'mamba', 'gpt2', 'llama');
  });

  test.each(['constructor', '__proto__', 'toString', 'hasOwnProperty'])(
    'a model_type named like an Object.prototype property (%s) is unsupported, not a crash',
    async (type) => {
      const s = await syntheticGpt2();
      s.config.model_type = type;
      await writeSynthetic(s);
      await expectCode(loadModel(s.dir), 'UNSUPPORTED_ARCHITECTURE', JSON.stringify(type), 'qwen2', 'mistral');
      await expectCode(() => ffStacks({ model_type: type }), 'UNSUPPORTED_ARCHITECTURE');
      await expectCode(() => architectureOf(JSON.parse(`{"model_type": ${JSON.stringify(type)}}`) as Record<string, unknown>), 'UNSUPPORTED_ARCHITECTURE');
      await expectCode(inspectModel(s.dir), 'UNSUPPORTED_ARCHITECTURE');
    },
  );

  test('qwen2 / mistral config problems name the field', async () => {
    const q = await syntheticLlama({ family: 'qwen2', layers: 2, config: { use_sliding_window: true, sliding_window: 4, layer_types: ['full_attention'] } });
    await expectCode(loadModel(q.dir), 'INVALID_CONFIG', '"layer_types"');
    const m = await syntheticLlama({ family: 'mistral', layers: 2, config: { sliding_window: 0 } });
    await expectCode(loadModel(m.dir), 'INVALID_CONFIG', '"sliding_window"');
  });

  test("config.json's architectures naming another head is refused; a language model's classes are not (tester AV)", () => {
    const base = { model_type: 'qwen3', num_hidden_layers: 2, hidden_size: 32, num_attention_heads: 4, num_key_value_heads: 2, intermediate_size: 40, vocab_size: 50 };
    // before: a sequence classifier was merged by perplexity through its embeddings, and its card said AutoModelForCausalLM
    expect(() => architectureOf({ ...base, architectures: ['Qwen3ForSequenceClassification'] })).toThrow(
      expect.objectContaining({ code: 'UNSUPPORTED_ARCHITECTURE', message: expect.stringContaining('runs qwen3 checkpoints as Qwen3ForCausalLM') }),
    );
    for (const ok of [['Qwen3ForCausalLM'], ['LlamaForCausalLM'], ['Qwen3Model'], [], undefined]) expect(architectureOf({ ...base, architectures: ok }).modelType).toBe('qwen3');
    expect(architectureOf({ model_type: 'gpt2', architectures: ['GPT2LMHeadModel'] }).modelType).toBe('gpt2');
    expect(() => architectureOf({ model_type: 'vit', architectures: ['ViTModel'] })).toThrow(expect.objectContaining({ code: 'UNSUPPORTED_ARCHITECTURE' }));
    expect(architectureOf({ model_type: 'bert', architectures: ['BertForMaskedLM'] }).modelType).toBe('bert'); // the encoder is what runs
  });

  test('a true/false config key given as "true" or 1 is INVALID_CONFIG, not read as false (tester AV)', async () => {
    // transformers reads "true" and 1 as true: the biases or windows were left off without a word
    const bias = await syntheticLlama({ family: 'qwen3', layers: 2, bias: true, config: { attention_bias: 'true' } });
    await expectCode(loadModel(bias.dir), 'INVALID_CONFIG', '"attention_bias"', 'true or false');
    const win = await syntheticLlama({ family: 'qwen2', layers: 2, config: { use_sliding_window: 1, sliding_window: 4 } });
    await expectCode(loadModel(win.dir), 'INVALID_CONFIG', '"use_sliding_window"');
    const mlp = await syntheticLlama({ layers: 2, config: { mlp_bias: 'false' } });
    await expectCode(loadModel(mlp.dir), 'INVALID_CONFIG', '"mlp_bias"');
  });

  test("a layer weight the model_type does not read is refused, naming it and the family that reads it (tester AV)", async () => {
    // Qwen3 weights under model_type llama: q_norm / k_norm were left unread and a wrong perplexity printed
    const s = await syntheticLlama({ family: 'qwen3', layers: 2, bias: false });
    const dir = tempDir('qwen3-as-llama');
    for (const f of fs.readdirSync(s.dir)) fs.copyFileSync(path.join(s.dir, f), path.join(dir, f));
    fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ ...s.config, model_type: 'llama', attention_bias: false }));
    await expectCode(loadModel(dir), 'UNSUPPORTED_ARCHITECTURE', '"model.layers.0.self_attn.q_norm.weight"', 'is model_type "qwen3"?');
    await expectCode(inspectModel(dir), 'UNSUPPORTED_ARCHITECTURE');
  });

  test('every layer is looked at, biases included, and a layer past the config count anywhere (tester DK)', async () => {
    // before: only layer 0's names ending in ".weight" were compared, so these ran silently without the tensor
    const extra = async (name: string, shape: number[]) => {
      const s = await syntheticLlama({ layers: 3, bias: false });
      s.hf.set(name, { shape, data: new Float32Array(shape.reduce((a, b) => a * b, 1)).fill(0.5) });
      await writeSynthetic(s);
      return s.dir;
    };
    const d = (await syntheticLlama({ layers: 3 })).config.hidden_size as number;
    await expectCode(loadModel(await extra('model.layers.2.self_attn.q_proj.lora_A.weight', [4, d])), 'UNSUPPORTED_ARCHITECTURE', '"model.layers.2.self_attn.q_proj.lora_A.weight", a weight llama layers do not have');
    // a Qwen2 checkpoint's q/k/v biases under model_type llama without attention_bias
    await expectCode(loadModel(await extra('model.layers.1.self_attn.q_proj.bias', [d])), 'UNSUPPORTED_ARCHITECTURE', '"model.layers.1.self_attn.q_proj.bias", a bias llama layers do not have');
    // a layer the config does not count, with a gap before it
    await expectCode(inspectModel(await extra('model.layers.7.mlp.up_proj.weight', [4, d])), 'INVALID_CONFIG', 'holds tensors of layer 7', 'config.json says 3 layers (num_hidden_layers)');
    // GPT-2's causal-mask buffers are no weights: still loaded
    const g = await syntheticGpt2({ layers: 2 });
    g.hf.set('transformer.h.1.attn.bias', { shape: [1, 1, 4, 4], data: new Float32Array(16).fill(1) });
    g.hf.set('h.0.attn.masked_bias', { shape: [1], data: new Float32Array([-1e4]) });
    await writeSynthetic(g);
    (await loadModel(g.dir)).dispose();
  });

  test("a ViT's image_size and patch_size as a [height, width] pair of one side are that side; a rectangle is refused (tester DK)", async () => {
    const vit = await syntheticVit();
    const side = vit.config.image_size as number;
    const patch = vit.config.patch_size as number;
    const dir = tempDir('vit-pairs');
    for (const f of fs.readdirSync(vit.dir)) fs.copyFileSync(path.join(vit.dir, f), path.join(dir, f));
    const write = (c: Record<string, unknown>) => fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ ...vit.config, ...c }));
    write({ image_size: [side, side], patch_size: [patch, patch] });
    const m = await loadModel(dir);
    const plain = await loadModel(vit.dir);
    expect(m.spec).toEqual(plain.spec);
    m.dispose();
    plain.dispose();
    expect(preprocessorFromConfig({}, { image_size: [side, side] })).toMatchObject({ height: side, width: side });
    write({ image_size: [side, side / 2] });
    await expectCode(loadModel(dir), 'UNSUPPORTED_ARCHITECTURE', 'image_size [', 'a rectangle');
  });

  test('num_key_value_heads left out says its default came from the config class', () => {
    const c = { model_type: 'qwen3', num_hidden_layers: 2, hidden_size: 32, num_attention_heads: 4, intermediate_size: 40, vocab_size: 50 };
    expect(() => architectureOf(c).stacks[0]!.spec(c)).toThrow(expect.objectContaining({ code: 'INVALID_CONFIG', message: expect.stringContaining("(32, the config class's default: config.json does not give it) must divide") }));
  });

  test('a folder without config.json is DATA_NOT_FOUND naming the file, as inspect says it', async () => {
    const s = await syntheticGpt2();
    fs.rmSync(path.join(s.dir, 'config.json'));
    // (IO_ERROR before, where inspectModel and the CLI said DATA_NOT_FOUND)
    await expectCode(loadModel(s.dir), 'DATA_NOT_FOUND', `${s.dir} is not a model directory (no config.json)`);
  });
});

describe('forward input errors', () => {
  test('a sequence longer than the position table', async () => {
    const s = await syntheticGpt2({ positions: 16 });
    const m = await loadModel(s.dir);
    await expectCode(m.forward({ ids: new Int32Array(17), batch: 1, seq: 17 }, { output: 'logits' }), 'SEQUENCE_TOO_LONG', '17', '16', 'n_positions');
    await expect(m.forward({ ids: new Int32Array(16), batch: 1, seq: 16 }, { output: 'logits' })).resolves.toBeDefined();
    m.dispose();
  });

  test('a sequence longer than the trained context of a rotary model (max_position_embeddings) is refused too', async () => {
    const s = await syntheticLlama(); // max_position_embeddings 64
    const m = await loadModel(s.dir);
    await expectCode(m.forward({ ids: new Int32Array(65), batch: 1, seq: 65 }, { output: 'logits' }), 'SEQUENCE_TOO_LONG', '65', '64', 'max_position_embeddings');
    await expect(m.forward({ ids: new Int32Array(64), batch: 1, seq: 64 }, { output: 'logits' })).resolves.toBeDefined();
    m.dispose();
  });

  test('token ids outside the vocabulary, wrong lengths, bad layer ranges, disposed models', async () => {
    const s = await syntheticGpt2({ vocab: 50 });
    const m = await loadModel(s.dir);
    await expectCode(m.forward({ ids: Int32Array.from([1, 2, 50]), batch: 1, seq: 3 }, { output: 'logits' }), 'INVALID_ARGUMENT', 'token id 50', 'vocabulary');
    await expectCode(m.forward({ ids: new Int32Array(5), batch: 2, seq: 3 }, { output: 'logits' }), 'INVALID_ARGUMENT', 'batch·seq');
    await expectCode(m.forward({ ids: new Int32Array(3), batch: 1, seq: 3 }, { output: 'logits', fromLayer: 1 }), 'INVALID_ARGUMENT', 'hidden');
    await expectCode(m.forward({ ids: new Int32Array(3), batch: 1, seq: 3 }, { output: 'logits', toLayer: 9 }), 'INVALID_ARGUMENT', 'layer range');
    await expectCode(m.forward({ ids: new Int32Array(3), batch: 1, seq: 3 }, { output: 'hidden', toLayer: 1, captureFF: [1] }), 'INVALID_ARGUMENT', 'capture layer 1');
    // option shapes the native side would misread: a string as a layer list, -1 as 4294967295, no options at all
    const one = { ids: new Int32Array(3), batch: 1, seq: 3 };
    await expectCode(m.forward(one, { output: 'hidden', captureFF: '0' } as never), 'INVALID_ARGUMENT', 'captureFF must be true or a list of layer indices');
    await expectCode(m.forward(one, { output: 'hidden', captureFFInput: [-1] }), 'INVALID_ARGUMENT', 'captureFFInput', '[-1]');
    await expectCode(m.forward(one, { output: 'hidden', accumulate: { decoder: 5 } } as never), 'INVALID_ARGUMENT', 'CorrelationAccumulator');
    await expectCode(m.forward(one, null as never), 'INVALID_ARGUMENT', 'options must be an object');
    await expectCode(m.forward(null as never, { output: 'logits' }), 'INVALID_ARGUMENT', 'input must be an object');
    await expectCode(() => m.withFF(new Map([[0, { wIn: new Float32Array(3), wOut: new Float32Array(3) }]])), 'SHAPE_MISMATCH', 'layer 0', 'w_in');
    await expectCode(() => m.ffWeights(2), 'INVALID_ARGUMENT', 'layer 2');
    await expectCode(() => m.ffWeights(0, 'encoder'), 'INVALID_ARGUMENT', 'encoder');
    m.dispose();
    await expectCode(m.forward({ ids: new Int32Array(3), batch: 1, seq: 3 }, { output: 'logits' }), 'INVALID_STATE', 'disposed');
  });
});

describe('model spec checks', () => {
  async function specAndTensors() {
    const s = await syntheticLlama({ seed: 41 });
    const m = await loadModel(s.dir);
    const spec = { ...m.spec } as ModelSpec;
    m.dispose();
    return { spec, tensors: s.canonical };
  }

  test('the native parser rejects a spec missing a field or with an ill-typed one, naming it', async () => {
    const { spec, tensors } = await specAndTensors();
    const native = (sp: unknown) => () => {
      try {
        return modelAddon().modelCreate(sp as ModelSpec, tensors);
      } catch (e) {
        throw fromNativeError(e);
      }
    };
    for (const field of ['ropeDim', 'slidingWindow', 'causal', 'norm', 'numLabels'] as const) {
      const { [field]: _drop, ...rest } = spec;
      await expectCode(native(rest), 'INVALID_ARGUMENT', `"${field}"`, 'missing');
    }
    await expectCode(native({ ...spec, causal: 1 }), 'INVALID_ARGUMENT', '"causal"', 'boolean');
    await expectCode(native({ ...spec, headDim: 2.5 }), 'INVALID_ARGUMENT', '"headDim"');
    await expectCode(native({ ...spec, activation: 'tanh' }), 'INVALID_ARGUMENT', '"activation"', 'silu');
    await expectCode(native({ ...spec, slidingWindow: [1, -1] }), 'INVALID_ARGUMENT', '"slidingWindow"');
    await expectCode(native({ ...spec, slidingWindow: [1] }), 'INVALID_CONFIG', 'sliding_window');
    expect(() => native(spec)()).not.toThrow();
  });

  test('buildModel validates the spec first (INVALID_CONFIG naming the field)', async () => {
    const { spec, tensors } = await specAndTensors();
    const { ropeDim: _r, ...noRope } = spec;
    await expectCode(() => buildModel({}, noRope as ModelSpec, tensors), 'INVALID_CONFIG', '"ropeDim"');
    await expectCode(() => buildModel({}, { ...spec, nKvHeads: 3 }, tensors), 'INVALID_CONFIG', 'nKvHeads');
    await expectCode(() => buildModel({}, { ...spec, dModel: 0 }, tensors), 'INVALID_CONFIG', '"dModel"');
    await expectCode(() => buildModel({}, { ...spec, slidingWindow: [4] }, tensors), 'INVALID_CONFIG', '"slidingWindow"');
    await expectCode(() => buildModel({}, { ...spec, causal: false, slidingWindow: [4, 0] }, tensors), 'INVALID_CONFIG', 'causal');
    await expectCode(() => buildModel({}, { ...spec, ropeScaling: { ...NO_ROPE_SCALING, type: 'llama3', highFreqFactor: 1 } }, tensors), 'INVALID_CONFIG', 'highFreqFactor');
    // ropeScaling came after specs were public: a spec without it is one without scaling (before it was the
    // only field whose absence failed buildModel and the native parser alike: reviewer AS)
    const { ropeScaling: _s, ...unscaled } = spec;
    const a = await buildModel({}, unscaled as ModelSpec, tensors);
    const b = await buildModel({}, spec, tensors);
    try {
      const ids = Int32Array.from({ length: 12 }, (_, i) => i % spec.vocab);
      expect((await a.forward({ ids, batch: 1, seq: 12 }, { output: 'logits' })).logits).toEqual((await b.forward({ ids, batch: 1, seq: 12 }, { output: 'logits' })).logits);
    } finally {
      a.dispose();
      b.dispose();
    }
  });
});

describe('a config that gives fewer layers than the checkpoint holds', () => {
  test('llama: load, inspect, the writer and export all refuse it, naming the first layer past the config', async () => {
    // Before: eval ran a 2-layer model, export dropped layer 2, compress carried its tensors into the output.
    const s = await syntheticLlama({ layers: 3 });
    s.config.num_hidden_layers = 2;
    await writeSynthetic(s);
    const says = ['layer 2', '"model.layers.2.', 'says 2 layers (num_hidden_layers)'];
    await expectCode(loadModel(s.dir), 'INVALID_CONFIG', ...says);
    await expectCode(inspectModel(s.dir), 'INVALID_CONFIG', ...says);
    const out = path.join(tempDir('fewer'), 'out');
    await expectCode(writeCheckpoint({ source: s.dir, out, format: 'expanded' }), 'INVALID_CONFIG', ...says);
    await expectCode(exportOnnx(s.dir, { out }), 'INVALID_CONFIG', ...says);
    expect(fs.existsSync(out)).toBe(false);
  });

  test('the buffers real checkpoints keep beside their weights are not taken for layers', async () => {
    const g = await syntheticGpt2({ layers: 2, positions: 16 });
    for (let l = 0; l < 2; l++) {
      g.hf.set(`transformer.h.${l}.attn.bias`, { shape: [1, 1, 16, 16], data: new Float32Array(256).fill(1) });
      g.hf.set(`transformer.h.${l}.attn.masked_bias`, { shape: [], data: Float32Array.of(-1e4) });
    }
    await writeSynthetic(g);
    (await loadModel(g.dir)).dispose();
    await expect(inspectModel(g.dir)).resolves.toMatchObject({ stacks: [{ layers: 2 }] });
    const l = await syntheticLlama({ layers: 2 });
    for (let i = 0; i < 2; i++) l.hf.set(`model.layers.${i}.self_attn.rotary_emb.inv_freq`, { shape: [3], data: Float32Array.of(1, 0.1, 0.01) });
    await writeSynthetic(l);
    (await loadModel(l.dir)).dispose();
    await expect(inspectModel(l.dir)).resolves.toMatchObject({ stacks: [{ layers: 2 }] });
  });
});

describeShared('fixtures/marian-multi30k-en-de', 'a Marian config that gives a stack fewer layers than the checkpoint holds', () => {
  test.each([
    ['encoder_layers', 'model.encoder.layers.5.'],
    ['decoder_layers', 'model.decoder.layers.5.'],
  ])('%s = 5 (the checkpoint has 6) is INVALID_CONFIG naming that stack', async (key, tensor) => {
    const dir = tempDir('marian');
    for (const f of ['config.json', 'model.safetensors']) fs.copyFileSync(sharedPath('fixtures', 'marian-multi30k-en-de', f), path.join(dir, f));
    const config = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8')) as Record<string, unknown>;
    fs.chmodSync(path.join(dir, 'config.json'), 0o644);
    fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ ...config, [key]: 5 }));
    await expectCode(inspectModel(dir), 'INVALID_CONFIG', 'layer 5', tensor, `says 5 layers (${key})`);
  });
});
