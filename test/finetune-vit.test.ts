/**
 * Fine-tuning a ViT image classifier (native/core/train/image_grad.cc through modelLossAndGrad / finetune):
 * the gradient against central finite differences of the float64 reference loss on a synthetic ViT and on the
 * vit-fmnist fixture, the train forward's loss against the inference forward's cross-entropy, a few steps
 * lowering the loss with a merged window's tie kept, and `ffmerge finetune` on a tied ViT checkpoint keeping
 * the tied format and the file size.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ffReplacements, ffTies, writeCheckpoint } from '../lib/checkpoint/write';
import { loadModel } from '../lib/model/load';
import type { Model } from '../lib/model/model';
import { runNativeJob } from '../lib/native/job';
import { trainAddon, type NativeLossAndGrad } from '../lib/native/train';
import { slotTensors } from '../lib/train/save';
import { referenceImageLoss, toFloat64 } from './reference/loss';
import { SafetensorsReader } from '../lib/safetensors';
import { finetune, type FinetuneProgress } from '../lib/train/finetune';
import { finetuneRecover } from '../lib/pipeline/recover/finetune';
import { compress } from '../lib/pipeline/compress';
import type { MergeContext, MergedWindow } from '../lib/pipeline/plugins';
import { describeShared, sharedPath } from './helpers/shared';
import { removeSyntheticDirs, syntheticVit, tempDir } from './helpers/synthetic-model';
import { finiteDifferenceError, rng } from './helpers/grad-check';

afterAll(removeSyntheticDirs);
jest.setTimeout(180_000);

const BIN = path.resolve(__dirname, '..', 'bin', 'ffmerge.js');

function randomImages(m: Model, n: number, seed: number) {
  const next = rng(seed);
  const px = m.spec.channels * m.spec.imageH * m.spec.imageW;
  return {
    pixels: Float32Array.from({ length: n * px }, () => next() * 2 - 1),
    labels: Int32Array.from({ length: n }, () => Math.floor(next() * m.spec.numLabels)),
  };
}

function lossAndGrad(m: Model, im: { pixels: Float32Array; labels: Int32Array }): Promise<NativeLossAndGrad> {
  return runNativeJob('grad', (p) => trainAddon().modelLossAndGrad(m.nativeHandle(), { ...im, batch: im.labels.length }, p));
}

/** Mean cross-entropy of the inference forward's logits. */
async function forwardCrossEntropy(m: Model, im: { pixels: Float32Array; labels: Int32Array }): Promise<number> {
  const r = await m.forward({ batch: im.labels.length, seq: 1 + (m.spec.imageH / m.spec.patch) * (m.spec.imageW / m.spec.patch), pixels: im.pixels }, { output: 'logits' });
  const K = m.spec.numLabels;
  let sum = 0;
  for (let b = 0; b < im.labels.length; b++) {
    const row = Array.from(r.logits.subarray(b * K, (b + 1) * K));
    const mx = Math.max(...row);
    sum += mx + Math.log(row.reduce((z, v) => z + Math.exp(v - mx), 0)) - row[im.labels[b]!]!;
  }
  return sum / im.labels.length;
}

/** ‖g_native − g_fd‖ / ‖g_fd‖ over `count` random entries spread over every parameter, and the loss difference. */
async function checkAgainstReference(m: Model, im: { pixels: Float32Array; labels: Int32Array }, count: number, seed: number) {
  const g = await lossAndGrad(m, im);
  const t64 = toFloat64(await slotTensors(m));
  const ref = () => referenceImageLoss(m.spec, t64, im.pixels, im.labels);
  const lossDiff = Math.abs(ref() - g.loss) / Math.abs(ref());
  const gradErr = finiteDifferenceError(ref, t64, g.grads, count, rng(seed));
  return { gradErr, lossDiff, names: Object.keys(g.grads), loss: g.loss };
}

describe('ViT training gradient', () => {
  test('synthetic ViT: loss = float64 reference = inference cross-entropy; gradient vs finite differences', async () => {
    const s = await syntheticVit({ layers: 2, d: 12, heads: 3, ff: 19, image: 8, patch: 4, channels: 2, labels: 5, seed: 3 });
    const m = await loadModel(s.dir);
    try {
      const im = randomImages(m, 3, 4);
      const r = await checkAgainstReference(m, im, 300, 5);
      // every ViT tensor trains: patch embedding, CLS, positions, blocks, final norm, classifier
      for (const n of ['patch_w', 'patch_b', 'cls_token', 'pos_emb', 'classifier_w', 'classifier_b', 'final_norm_w', 'layers.1.qkv_b']) expect(r.names).toContain(n);
      expect(r.lossDiff).toBeLessThan(1e-5);
      expect(r.gradErr).toBeLessThan(1e-4);
      expect(Math.abs(r.loss - (await forwardCrossEntropy(m, im))) / r.loss).toBeLessThan(1e-5);
    } finally {
      m.dispose();
    }
  });

  test('a few steps lower the loss on a fixed set and keep a merged window tied', async () => {
    const s = await syntheticVit({ layers: 4, seed: 6 });
    const base = await loadModel(s.dir);
    const ff = base.ffWeights(1);
    const tied = await base.withFF(new Map([[1, ff], [2, ff]]));
    try {
      const im = randomImages(tied, 8, 7);
      const seen: FinetuneProgress[] = [];
      // batch = the whole set: every step sees the same 8 images (in another order), so the loss is one function
      const r = await finetune(tied, { data: im, validation: im, steps: 6, batch: 8, lr: 2e-3, clip: 0, evalEvery: 3, onProgress: (p) => seen.push(p) });
      for (let i = 1; i < r.log.length; i++) expect(r.log[i]!.loss).toBeLessThan(r.log[i - 1]!.loss);
      expect(r.valAfter).toBeLessThan(r.valBefore);
      expect(r.accuracyBefore).toBeGreaterThanOrEqual(0);
      expect(r.log[2]!.valAccuracy).toBeGreaterThanOrEqual(0);
      expect(r.log[0]!.valLoss).toBeUndefined();
      const last = seen.filter((p) => p.step !== undefined).pop()!;
      expect(last.imagesPerSecond).toBeGreaterThan(0);
      expect(r.model.sharesFF(1, r.model, 2)).toBe(true);
      expect(r.model.sharesFF(0, r.model, 1)).toBe(false);
      expect(r.model.ffWeights(1).wIn).not.toEqual(ff.wIn);
      // the trained model's inference forward gives the loss the trainer reports
      expect(Math.abs((await forwardCrossEntropy(r.model, im)) - r.valAfter)).toBeLessThan(1e-5);
      r.model.dispose();
    } finally {
      tied.dispose();
      base.dispose();
    }
  });

  test('a validation pass counts the images it has scored (tester FA: no count while it ran)', async () => {
    const s = await syntheticVit({ layers: 2, d: 32, heads: 4, ff: 64, seed: 10 });
    const m = await loadModel(s.dir);
    try {
      const seen: FinetuneProgress[] = [];
      // one-image micro-batches, enough that a pass outlasts the 50 ms between two reports
      const r = await finetune(m, { data: randomImages(m, 8, 11), validation: randomImages(m, 8000, 12), steps: 1, batch: 8, micro: 1, onProgress: (p) => seen.push(p) });
      r.model.dispose();
      const details = seen.map((p) => p.detail ?? '').filter((d) => /: \d+\/8000 images$/.test(d));
      expect(details.some((d) => d.startsWith('validation loss before training: '))).toBe(true);
      expect(details.some((d) => d.startsWith('validation loss after step 1: '))).toBe(true);
    } finally {
      m.dispose();
    }
  });

  test('wrong data is a typed error; an AbortSignal stops between steps', async () => {
    const s = await syntheticVit({ seed: 8 });
    const m = await loadModel(s.dir);
    try {
      await expect(finetune(m, { data: new Int32Array(20), steps: 1 })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
      const im = randomImages(m, 4, 9);
      await expect(finetune(m, { data: { pixels: im.pixels.subarray(1), labels: im.labels }, steps: 1 })).rejects.toMatchObject({ code: 'SHAPE_MISMATCH' });
      await expect(finetune(m, { data: { pixels: im.pixels, labels: Int32Array.from([0, 1, 2, 99]) }, steps: 1 })).rejects.toMatchObject({ code: 'INVALID_DATA' });
      // a NaN pixel in clean training data's validation set: before, "the training loss is not finite" (NON_FINITE_ACTIVATIONS)
      const nan = { pixels: im.pixels.map((v, i) => (i === 5 ? NaN : v)), labels: im.labels };
      await expect(finetune(m, { data: im, validation: nan, steps: 1, batch: 4 })).rejects.toMatchObject({ code: 'NON_FINITE_INPUT', message: expect.stringContaining('the validation images hold a non-finite pixel value (NaN in image 0)') });
      await expect(finetune(m, { data: nan, steps: 1, batch: 4 })).rejects.toMatchObject({ code: 'NON_FINITE_INPUT', message: expect.stringContaining('the training images hold') });
      // no validation images where validation was given: refused, as an empty list of blocks is (the result would carry no scores)
      const none = { pixels: new Float32Array(0), labels: new Int32Array(0) };
      await expect(finetune(m, { data: im, validation: none, steps: 1, batch: 4 })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringContaining('validation holds no images') });
      // an update that leaves finite weights no pass survives: diverged, not saved (before: resolved without validation)
      await expect(finetune(m, { data: im, steps: 1, batch: 4, lr: 1e30 })).rejects.toMatchObject({ code: 'NON_FINITE_ACTIVATIONS', message: expect.stringContaining('after step 1 the loss on the last training batch') });
      await expect(finetune(m, { data: im, validation: im, steps: 1, batch: 4, lr: 1e30 })).rejects.toMatchObject({ code: 'NON_FINITE_ACTIVATIONS', message: expect.stringContaining('after step 1 the validation loss') });
      const ac = new AbortController();
      const run = finetune(m, { data: im, steps: 100000, batch: 4, signal: ac.signal, onProgress: (p) => (p.step ?? 0) >= 2 && ac.abort() });
      await expect(run).rejects.toMatchObject({ code: 'ABORTED' });
    } finally {
      m.dispose();
    }
  });
});

/** An idx file of unsigned bytes (MNIST layout). */
function idx(dims: number[], data: Uint8Array): Buffer {
  const head = Buffer.alloc(4 + 4 * dims.length);
  head[2] = 0x08;
  head[3] = dims.length;
  dims.forEach((v, i) => head.writeUInt32BE(v, 4 + 4 * i));
  return Buffer.concat([head, Buffer.from(data)]);
}

test('ffmerge finetune on a tied ViT checkpoint keeps the tie, the format and the file size', async () => {
  const s = await syntheticVit({ layers: 4, seed: 11 });
  const base = await loadModel(s.dir);
  const ff = base.ffWeights(1);
  base.dispose();
  const merged = path.join(tempDir('vit-merged'), 'm');
  const replace = new Map([...ffReplacements(s.config, 'encoder', 1, ff), ...ffReplacements(s.config, 'encoder', 2, ff)]);
  const windows = [{ stack: 'encoder', window: '1-2', layers: [1, 2], anchor: 1, method: 'permute', recover: 'none' }]; // as compress records it
  await writeCheckpoint({ source: s.dir, out: merged, format: 'tied', replace, ties: ffTies(s.config, 'encoder', [1, 2]), info: { windows } });
  // 40 labelled 8×8 grey images: 30 train (0-29), 10 validate (--validation-start 30)
  const next = rng(12);
  const n = 40;
  const data = tempDir('vit-data');
  const labels = Uint8Array.from({ length: n }, (_, i) => i % 4);
  const pixels = Uint8Array.from({ length: n * 64 }, (_, i) => Math.min(255, Math.floor(next() * 128) + 32 * labels[Math.floor(i / 64)]!));
  fs.writeFileSync(path.join(data, 'images.idx'), idx([n, 8, 8], pixels));
  fs.writeFileSync(path.join(data, 'labels.idx'), idx([n], labels));
  const out = path.join(tempDir('vit-ft'), 'out');
  const r = spawnSync(
    process.execPath,
    [BIN, 'finetune', merged, '--images', path.join(data, 'images.idx'), '--labels', path.join(data, 'labels.idx'), '--validation-start', '30', '--steps', '5', '--batch', '6', '--lr', '1e-3', '--out', out, '--json'],
    { encoding: 'utf8', env: { ...process.env, FFMERGE_FROM_SOURCE: '1' }, timeout: 120_000 },
  );
  expect(r.stderr).toBe('');
  expect(r.status).toBe(0);
  const res = JSON.parse(r.stdout) as { ok: boolean; images: number; validationImages: number; accuracyBefore: number; accuracyAfter: number; imagesPerSecond: number };
  expect(res).toMatchObject({ ok: true, images: 30, validationImages: 10 });
  expect(res.accuracyAfter).toBeGreaterThanOrEqual(0);
  expect(res.imagesPerSecond).toBeGreaterThan(0);
  expect(fs.statSync(path.join(out, 'model.safetensors')).size).toBe(fs.statSync(path.join(merged, 'model.safetensors')).size);
  expect(fs.existsSync(path.join(out, 'preprocessor_config.json'))).toBe(true);
  const config = JSON.parse(fs.readFileSync(path.join(out, 'config.json'), 'utf8')) as { ffmerge: { ties: Record<string, string>; windows: unknown[]; finetune: { steps: number } } };
  expect(Object.keys(config.ffmerge.ties).length).toBeGreaterThan(0);
  expect(config.ffmerge.windows).toEqual(windows);
  expect(config.ffmerge.finetune.steps).toBe(5);
  // stdout names the data as a path that works where the command ran; the record, which travels, by file name
  expect(res).toMatchObject({ data: path.join(data, 'images.idx') });
  expect(config.ffmerge.finetune).toMatchObject({ data: 'images.idx' });
  // a language-model flag is refused for a ViT (exit 2 with its code), not silently ignored
  const bad = spawnSync(process.execPath, [BIN, 'finetune', merged, '--images', path.join(data, 'images.idx'), '--labels', path.join(data, 'labels.idx'), '--seq', '64', '--out', path.join(tempDir('vit-ft-bad'), 'o')], {
    encoding: 'utf8',
    env: { ...process.env, FFMERGE_FROM_SOURCE: '1' },
    timeout: 60_000,
  });
  expect(bad.status).toBe(2);
  expect(bad.stderr).toMatch(/--seq does not apply to vit models.*\[OPTION_NOT_APPLICABLE\]/);
  // sizes that the images cannot give are refused, not cut (before: 30 trained and 10 validated, exit 0)
  for (const [flags, message] of [
    [['--validation-start', '30', '--train-size', '40'], /--train-size 40 is more than the 30 images before the validation range \(validation starts at image 30/],
    [['--validation-start', '30', '--validation-size', '20'], /--validation-size 20 is more than the 10 images from --validation-start 30/],
  ] as [string[], RegExp][]) {
    const o = path.join(tempDir('vit-ft-size'), 'o');
    const r2 = spawnSync(process.execPath, [BIN, 'finetune', merged, '--images', path.join(data, 'images.idx'), '--labels', path.join(data, 'labels.idx'), ...flags, '--steps', '1', '--out', o], {
      encoding: 'utf8',
      env: { ...process.env, FFMERGE_FROM_SOURCE: '1' },
      timeout: 60_000,
    });
    expect(r2.status).toBe(2);
    expect(r2.stderr).toMatch(message);
    expect(r2.stderr).toMatch(/\[INVALID_ARGUMENT\]/);
    expect(fs.existsSync(o)).toBe(false);
  }
  // a batch larger than the training set is allowed, and said (tester DB: 65,536 drawn from 100 images, 77 s, no word)
  const many = spawnSync(process.execPath, [BIN, 'finetune', merged, '--images', path.join(data, 'images.idx'), '--labels', path.join(data, 'labels.idx'), '--validation-start', '30', '--steps', '1', '--batch', '90', '--out', path.join(tempDir('vit-ft-many'), 'o')], {
    encoding: 'utf8',
    env: { ...process.env, FFMERGE_FROM_SOURCE: '1', FFMERGE_PROGRESS: '0' },
    timeout: 60_000,
  });
  expect(many.status).toBe(0);
  expect(many.stderr).toMatch(/note: --batch 90 is more than the 30 training images, so each step draws every image about 3 times/);
  const before = await loadModel(merged);
  const after = await loadModel(out);
  try {
    expect(after.sharesFF(1, after, 2)).toBe(true);
    expect(after.ffWeights(1).wIn).not.toEqual(before.ffWeights(1).wIn);
    // every kind of ViT tensor was trained and written back in its stored layout
    const slotsBefore = await slotTensors(before);
    const slotsAfter = await slotTensors(after);
    for (const k of ['patch_w', 'cls_token', 'pos_emb', 'classifier_w', 'layers.0.qkv_w', 'final_norm_b']) expect(slotsAfter[k]).not.toEqual(slotsBefore[k]);
  } finally {
    before.dispose();
    after.dispose();
  }
});

test("the 'finetune' recover method trains a ViT's merged FF (tie kept) on the labelled calibration images", async () => {
  const s = await syntheticVit({ layers: 4, seed: 14 });
  const model = await loadModel(s.dir);
  try {
    const im = randomImages(model, 12, 15);
    const calibration = [0, 6].map((i) => ({ input: { batch: 6, seq: 5, pixels: im.pixels.slice(i * 64, (i + 6) * 64) }, featureRows: 30, labels: im.labels.slice(i, i + 6) }));
    const ctx = { model, anchor: 'first', correlations: new Map(), calibration } as unknown as MergeContext;
    const m: MergedWindow = { stack: 'encoder', window: { start: 1, k: 2 }, anchor: 1, merged: model.ffWeights(1), perms: new Map() };
    const r = await finetuneRecover.recover(ctx, m, {});
    expect(r.merged.wIn).not.toEqual(m.merged.wIn);
    expect([...r.adjusted!.keys()].sort()).toEqual([0, 3]);
    // without labels there is nothing to train on
    const unlabelled = { ...ctx, calibration: calibration.map(({ labels: _l, ...b }) => b) } as unknown as MergeContext;
    await expect(finetuneRecover.recover(unlabelled, m, {})).rejects.toMatchObject({ code: 'INVALID_DATA' });
  } finally {
    model.dispose();
  }
});

describeShared('fixtures/vit-fmnist', 'compress --recover finetune on vit-fmnist', () => {
  test('runs on the labelled calibration images and reports the merged model', async () => {
    const fm = (f: string) => sharedPath('data', 'fmnist', f);
    const r = await compress(sharedPath('fixtures', 'vit-fmnist'), { images: { images: fm('train-images-idx3-ubyte.gz'), labels: fm('train-labels-idx1-ubyte.gz') }, k: 3, window: '8-10', recover: 'finetune', calibrationImages: 200, validationImages: 500 });
    expect(r.recover).toBe('finetune');
    expect(r.merged.validation).toBeGreaterThan(0.7);
  }, 300_000);
});

describeShared('fixtures/vit-fmnist', 'vit-fmnist training gradient', () => {
  test('loss equals the inference cross-entropy; 150 random parameters match float64 finite differences', async () => {
    const m = await loadModel(sharedPath('fixtures/vit-fmnist'));
    const ref = await SafetensorsReader.open(sharedPath('fixtures', 'vit-fmnist', 'reference.safetensors'));
    try {
      // two of the reference's real Fashion-MNIST images, labelled with classes that are not all the argmax
      const pixels = (await ref.readF32('pixel_values')).slice(0, 2 * 784);
      const im = { pixels, labels: Int32Array.from([3, 7]) };
      const r = await checkAgainstReference(m, im, 150, 13);
      expect(r.lossDiff).toBeLessThan(1e-5);
      expect(r.gradErr).toBeLessThan(1e-4);
      expect(Math.abs(r.loss - (await forwardCrossEntropy(m, im))) / r.loss).toBeLessThan(1e-5);
    } finally {
      await ref.close();
      m.dispose();
    }
  }, 600_000); // 150 finite differences on the fixture: ~3 min on a busy 2-core machine, past the file default
});
