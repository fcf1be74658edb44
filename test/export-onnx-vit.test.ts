/**
 * @jest-environment ./test/helpers/ort-environment.js
 *
 * ONNX export of vit-fmnist, original and merged (k = 3, window 4-6, small budgets), in onnxruntime-node:
 * pixel_values → logits against Hugging Face's reference logits and ffmerge's forward, one initializer per
 * shared FF tensor, and the file smaller by the removed parameters.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as ort from 'onnxruntime-node';
import { onnx } from 'onnx-proto';
import { exportOnnx } from '../lib/export/onnx/export';
import { compress } from '../lib/pipeline/compress';
import { loadModel } from '../lib/model/load';
import { SafetensorsReader } from '../lib/safetensors';
import { describeShared, sharedPath } from './helpers/shared';

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

describeShared('fixtures/vit-fmnist', 'ONNX export of vit-fmnist', () => {
  jest.setTimeout(600_000);
  const FIX = sharedPath('fixtures', 'vit-fmnist');
  const IMAGES = { images: sharedPath('data', 'fmnist', 'train-images-idx3-ubyte.gz'), labels: sharedPath('data', 'fmnist', 'train-labels-idx1-ubyte.gz') };
  let tmp: string;
  let pixels: Float32Array;
  let removed: number;

  beforeAll(async () => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ffmerge-onnx-vit-'));
    await exportOnnx(FIX, { out: path.join(tmp, 'base') });
    const common = { method: 'permute', k: 3, window: '4-6', images: IMAGES, calibrationImages: 100, validationImages: 100 } as const;
    removed = (await compress(FIX, { ...common, out: path.join(tmp, 'tied'), format: 'tied' })).params.removed;
    await compress(FIX, { ...common, out: path.join(tmp, 'merged'), format: 'onnx' });
    const ref = await SafetensorsReader.open(path.join(FIX, 'reference.safetensors'));
    pixels = await ref.readF32('pixel_values'); // [4, 1, 28, 28], preprocessed
    await ref.close();
  });
  afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

  async function onnxLogits(dir: string): Promise<Float32Array> {
    const s = await ort.InferenceSession.create(path.join(dir, 'onnx', 'model.onnx'));
    expect(s.inputNames).toEqual(['pixel_values']);
    expect(s.outputNames).toEqual(['logits']);
    const out = await s.run({ pixel_values: new ort.Tensor('float32', pixels, [4, 1, 28, 28]) });
    await s.release();
    expect(out.logits!.dims).toEqual([4, 10]);
    return out.logits!.data as Float32Array;
  }

  async function forwardLogits(dir: string): Promise<Float32Array> {
    const m = await loadModel(dir);
    const r = await m.forward({ batch: 4, seq: 17, pixels }, { output: 'logits' });
    m.dispose();
    return r.logits!;
  }

  test('original: logits equal Hugging Face\'s reference and ffmerge\'s forward within 1e-4', async () => {
    const ref = await SafetensorsReader.open(path.join(FIX, 'reference.safetensors'));
    const hf = await ref.readF32('logits');
    await ref.close();
    const got = await onnxLogits(path.join(tmp, 'base'));
    expect(maxRelDiff(got, hf)).toBeLessThan(1e-4);
    expect(maxRelDiff(got, await forwardLogits(FIX))).toBeLessThan(1e-4);
    // an image classifier generates nothing: no generation_config.json (before: an empty {})
    expect(fs.existsSync(path.join(tmp, 'base', 'generation_config.json'))).toBe(false);
    expect(fs.existsSync(path.join(tmp, 'base', 'preprocessor_config.json'))).toBe(true);
  });

  test('merged: logits equal ffmerge\'s forward of the tied checkpoint; one initializer per shared tensor; file smaller by the removed bytes', async () => {
    const got = await onnxLogits(path.join(tmp, 'merged'));
    expect(maxRelDiff(got, await forwardLogits(path.join(tmp, 'tied')))).toBeLessThan(1e-4);
    expect(maxRelDiff(got, await onnxLogits(path.join(tmp, 'base')))).toBeGreaterThan(1e-4); // the merge changed the model
    const g = onnx.ModelProto.decode(fs.readFileSync(path.join(tmp, 'merged', 'onnx', 'model.onnx'))).graph!;
    const stored = 'vit.encoder.layer.4.intermediate.dense.weight';
    expect(g.initializer!.map((t) => t.name)).not.toContain('vit.encoder.layer.5.intermediate.dense.weight');
    expect(g.node!.filter((n) => n.input!.includes(stored))).toHaveLength(3);
    const bytes = (d: string) => fs.statSync(path.join(tmp, d, 'onnx', 'model.onnx')).size;
    expect(Math.abs((bytes('base') - bytes('merged')) / (4 * removed) - 1)).toBeLessThan(0.01);
  });

  test("transformers.js's image-classification pipeline reads the export: one channel, not converted to RGB (tester DP: refused, image_mean of 1 for 3 channels)", async () => {
    expect(JSON.parse(fs.readFileSync(path.join(tmp, 'base', 'preprocessor_config.json'), 'utf8')).do_convert_rgb).toBe(false);
    // required here, not imported at the top: a large module only this test needs
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const tjs = require('@huggingface/transformers') as typeof import('@huggingface/transformers');
    tjs.env.allowRemoteModels = false;
    tjs.env.localModelPath = tmp;
    const classify = await tjs.pipeline('image-classification', 'base', { dtype: 'fp32' });
    const ref = await SafetensorsReader.open(path.join(FIX, 'reference.safetensors'));
    const hf = await ref.readF32('logits');
    await ref.close();
    const labels = JSON.parse(fs.readFileSync(path.join(FIX, 'config.json'), 'utf8')).id2label as Record<string, string>;
    for (let i = 0; i < 4; i++) {
      // the reference's pixels back to the 8-bit image they were made from ((x / 255 − 0.5) / 0.5)
      const img = Uint8ClampedArray.from(pixels.subarray(i * 784, (i + 1) * 784), (v) => Math.round((v * 0.5 + 0.5) * 255));
      const [top] = (await classify(new tjs.RawImage(img, 28, 28, 1))) as { label: string; score: number }[];
      const row = Array.from(hf.subarray(i * 10, (i + 1) * 10));
      expect(top!.label).toBe(labels[String(row.indexOf(Math.max(...row)))]);
    }
    await classify.dispose();
  });
});
