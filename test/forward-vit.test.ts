/**
 * ViT forward against the fixture's Hugging Face reference (logits + every FF pre-activation), and test
 * accuracy on Fashion-MNIST against eval.json.
 */
import * as fs from 'node:fs';
import { loadModel } from '../lib/model/load';
import type { Model } from '../lib/model/model';
import { SafetensorsReader } from '../lib/safetensors';
import { conformImages, imagesToTensor, loadIdxImages, loadPreprocessor } from '../lib/data/images';
import { evaluateImageClassifier } from '../lib/eval/accuracy';
import { imageBatches } from '../lib/data/feature-batches';
import { isFfmergeError } from '../lib/errors';
import { describeShared, sharedPath } from './helpers/shared';
import { maxRelErr } from './helpers/compare';


describeShared('fixtures/vit-fmnist', 'ViT (vit-fmnist) forward', () => {
  const dir = sharedPath('fixtures', 'vit-fmnist');
  let model: Model;
  beforeAll(async () => {
    model = await loadModel(dir);
  });
  afterAll(() => model?.dispose());

  test('spec from config.json', () => {
    expect(model.spec).toMatchObject({ family: 'vit', layers: 12, dModel: 64, input: 'patches', patch: 7, channels: 1, numLabels: 10, maxPositions: 17 });
    expect(model.stacks()).toEqual(['encoder']);
  });

  test('logits and all 12 FF pre-activations equal reference.safetensors (≤ 1e-4 relative)', async () => {
    const ref = await SafetensorsReader.open(sharedPath('fixtures', 'vit-fmnist', 'reference.safetensors'));
    const pixels = await ref.readF32('pixel_values');
    const r = await model.forward({ batch: 4, seq: 17, pixels }, { output: 'logits', captureFF: true });
    expect(maxRelErr(r.logits, await ref.readF32('logits'))).toBeLessThan(1e-4);
    const pre = await ref.readF32('fc1_preact'); // [12, 4, 17, 256]: every patch and CLS is a feature
    await ref.close();
    const per = 4 * 17 * 256;
    for (let l = 0; l < 12; l++) {
      expect(maxRelErr(r.ff!.get(l)!, pre.subarray(l * per, (l + 1) * per))).toBeLessThan(1e-4);
    }
  });

  test('image feature batches: every patch and CLS of every image is a feature row', async () => {
    const pre = await loadPreprocessor(dir);
    const images = await loadIdxImages(sharedPath('data', 'fmnist', 'train-images-idx3-ubyte.gz'));
    const batches = imageBatches(images, pre, 7, { start: 0, count: 70, batchSize: 32 });
    expect(batches.map((b) => b.input.batch)).toEqual([32, 32, 6]);
    let rows = 0;
    for (const b of batches) {
      const r = await model.forward(b.input, { output: 'hidden', captureFF: [0, 11] });
      expect(r.ff!.get(11)!.length).toBe(b.featureRows * 256);
      rows += b.featureRows;
    }
    expect(rows).toBe(70 * 17);
  });

  test('wrong pixel count is a typed error', async () => {
    let err: unknown;
    try {
      await model.forward({ batch: 2, seq: 17, pixels: new Float32Array(784) }, { output: 'logits' });
    } catch (e) {
      err = e;
    }
    expect(isFfmergeError(err, 'SHAPE_MISMATCH')).toBe(true);
  });

  test('Fashion-MNIST test accuracy matches eval.json (8415 / 10000, ±2 images)', async () => {
    const evalJson = JSON.parse(fs.readFileSync(sharedPath('fixtures', 'vit-fmnist', 'eval.json'), 'utf8')) as { accuracy: { test: number } };
    const pre = await loadPreprocessor(dir);
    const images = await loadIdxImages(sharedPath('data', 'fmnist', 't10k-images-idx3-ubyte.gz'), sharedPath('data', 'fmnist', 't10k-labels-idx1-ubyte.gz'));
    const seen: number[] = [];
    const r = await evaluateImageClassifier(model, images, pre, { batchSize: 500, onProgress: (p) => seen.push(p.done) });
    expect(r.total).toBe(10000);
    expect(Math.abs(r.correct - Math.round(evalJson.accuracy.test * 10000))).toBeLessThanOrEqual(2);
    expect(seen[seen.length - 1]).toBe(10000);
  });

  test('the reported loss is the mean cross-entropy of the true labels (float64 reference from the logits)', async () => {
    const pre = await loadPreprocessor(dir);
    const images = await loadIdxImages(sharedPath('data', 'fmnist', 't10k-images-idx3-ubyte.gz'), sharedPath('data', 'fmnist', 't10k-labels-idx1-ubyte.gz'));
    const n = 37;
    const r = await evaluateImageClassifier(model, images, pre, { count: n, batchSize: 16 });
    const pixels = imagesToTensor(await conformImages(images, pre), pre, 0, n);
    const logits = (await model.forward({ batch: n, seq: 17, pixels }, { output: 'logits' })).logits;
    let sum = 0;
    for (let i = 0; i < n; i++) {
      const row = Array.from(logits.subarray(i * 10, (i + 1) * 10));
      const max = Math.max(...row);
      sum += Math.log(row.reduce((z, v) => z + Math.exp(v - max), 0)) + max - row[images.labels![i]!]!;
    }
    expect(r.loss).toBeCloseTo(sum / n, 5);
  });

  test('labels outside the classifier\'s classes are a typed error', async () => {
    const pre = await loadPreprocessor(dir);
    const set = { count: 2, height: 28, width: 28, channels: 1, pixels: new Uint8Array(2 * 784), labels: Int32Array.from([3, 12]) };
    let err: unknown;
    try {
      await evaluateImageClassifier(model, set, pre);
    } catch (e) {
      err = e;
    }
    expect(isFfmergeError(err, 'INVALID_DATA')).toBe(true);
    // no images at all (an idx pair of 0): the data's fault, not an argument's (before: INVALID_ARGUMENT, exit 2)
    const empty = { count: 0, height: 28, width: 28, channels: 1, pixels: new Uint8Array(0), labels: new Int32Array(0) };
    await expect(evaluateImageClassifier(model, empty, pre)).rejects.toMatchObject({ code: 'INVALID_DATA' });
  });

  test('an aborted evaluation stops with ABORTED', async () => {
    const pre = await loadPreprocessor(dir);
    const images = await loadIdxImages(sharedPath('data', 'fmnist', 't10k-images-idx3-ubyte.gz'), sharedPath('data', 'fmnist', 't10k-labels-idx1-ubyte.gz'));
    const ac = new AbortController();
    let err: unknown;
    try {
      await evaluateImageClassifier(model, images, pre, { batchSize: 100, signal: ac.signal, onProgress: () => ac.abort() });
    } catch (e) {
      err = e;
    }
    expect(isFfmergeError(err, 'ABORTED')).toBe(true);
  });
});
