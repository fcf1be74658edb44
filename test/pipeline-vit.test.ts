/**
 * compress() on vit-fmnist (image data, top-1 accuracy).
 *
 * Runtime budget (2 shared cores): calibration 100–200 train images (17 tokens each), validation 200–300
 * images from the Fashion-MNIST validation range (train images 55000..), so one candidate costs a fraction
 * of a second and the whole file stays well under a minute.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { writeCheckpoint, ffReplacements } from '../lib/checkpoint/write';
import { readTies } from '../lib/checkpoint/ties';
import { compress } from '../lib/pipeline/compress';
import { permuteFF } from '../lib/merge/permute';
import { loadModel } from '../lib/model/load';
import { loadIdxImages, loadPreprocessor, conformImages, imagesToTensor } from '../lib/data/images';
import { evaluateImageClassifier } from '../lib/eval/accuracy';
import { FfmergeError } from '../lib/errors';
import { shuffled } from './helpers/permutation';
import { describeShared, sharedPath } from './helpers/shared';

const FIXTURE = sharedPath('fixtures', 'vit-fmnist');
const IMAGES = { images: sharedPath('data', 'fmnist', 'train-images-idx3-ubyte.gz'), labels: sharedPath('data', 'fmnist', 'train-labels-idx1-ubyte.gz') };


describeShared('fixtures/vit-fmnist', 'compress on vit-fmnist', () => {
  let tmp: string;
  beforeAll(() => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ffmerge-vit-'));
  });
  afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));
  jest.setTimeout(300_000);

  /** Logits of the first 64 validation images. */
  async function logitsOf(dir: string): Promise<Float32Array> {
    const pre = await loadPreprocessor(FIXTURE);
    const set = await conformImages(await loadIdxImages(IMAGES.images, IMAGES.labels), pre);
    const m = await loadModel(dir);
    try {
      return (await m.forward({ batch: 64, seq: 17, pixels: imagesToTensor(set, pre, 55000, 64) }, { output: 'logits' })).logits;
    } finally {
      m.dispose();
    }
  }
  const maxDiff = (a: Float32Array, b: Float32Array) => a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i]!)), 0);

  it('a window of permuted copies of one FF is merged losslessly by permute, not by vanilla', async () => {
    const base = await loadModel(FIXTURE);
    const config = base.config as Record<string, unknown>;
    const ff4 = base.ffWeights(4);
    base.dispose();
    const replace = new Map<string, Float32Array>();
    for (const l of [5, 6]) for (const [n, t] of ffReplacements(config, 'encoder', l, permuteFF(ff4, shuffled(256, l)))) replace.set(n, t);
    const copies = path.join(tmp, 'copies');
    await writeCheckpoint({ source: FIXTURE, out: copies, format: 'expanded', replace });

    const common = { images: IMAGES, window: '4-6', calibrationImages: 200, validationImages: 200 } as const;
    const permute = await compress(copies, { ...common, method: 'permute', out: path.join(tmp, 'permute') });
    const vanilla = await compress(copies, { ...common, method: 'vanilla', out: path.join(tmp, 'vanilla') });
    expect(permute.metric).toEqual({ name: 'accuracy', higherIsBetter: true });
    expect(permute.merged.validation).toBe(permute.base.validation);
    const ref = await logitsOf(copies);
    expect(maxDiff(await logitsOf(path.join(tmp, 'permute')), ref)).toBeLessThan(1e-3);
    expect(maxDiff(await logitsOf(path.join(tmp, 'vanilla')), ref)).toBeGreaterThan(0.05);
    // vanilla aligns nothing, so no anchor is recorded (before: anchor 4 and 'first', which nothing had used)
    expect(vanilla.windows).toEqual([{ stack: 'encoder', window: '4-6', layers: [4, 5, 6], method: 'vanilla', recover: 'none' }]);
    expect(vanilla.anchor).toBeUndefined();
    const record = (dir: string) => (JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8')) as { ffmerge: Record<string, unknown> }).ffmerge;
    expect(record(path.join(tmp, 'vanilla'))).not.toHaveProperty('anchor');
    expect(fs.readFileSync(path.join(tmp, 'vanilla', 'README.md'), 'utf8')).not.toMatch(/anchor/);
    expect(permute.windows[0]).toMatchObject({ anchor: 4 });
    expect(record(path.join(tmp, 'permute'))).toMatchObject({ anchor: 'first', windows: [expect.objectContaining({ anchor: 4 })] });
    // the tied output stores the window's FF once: layers 5 and 6 point at layer 4's tensors
    const ties = await readTies(path.join(tmp, 'permute'));
    expect(ties['vit.encoder.layer.6.intermediate.dense.weight']).toBe('vit.encoder.layer.4.intermediate.dense.weight');
  });

  it('k = 3 auto: every start scored, the argmax accuracy chosen; the output reloads with the reported accuracy', async () => {
    const out = path.join(tmp, 'k3');
    const r = await compress(FIXTURE, { images: IMAGES, method: 'permute', k: 3, calibrationImages: 100, validationImages: 300, out });
    expect(r.data).toMatchObject({ calibration: 100, calibrationFeatures: { encoder: 1700 }, validation: 300, unit: 'images' });
    expect(r.candidates.map((c) => c.windows.encoder)).toEqual(['0-2', '1-3', '2-4', '3-5', '4-6', '5-7', '6-8', '7-9', '8-10', '9-11']);
    const best = Math.max(...r.candidates.map((c) => c.score));
    expect(r.merged.validation).toBe(best);
    expect(r.windows[0]!.window).toBe(r.candidates.find((c) => c.score === best)!.windows.encoder);
    expect(r.params.removed).toBe(2 * (256 * 64 + 256 + 64 * 256 + 64));
    // candidates are scored from the cached states entering their start: the same as a full evaluation
    const first = await compress(FIXTURE, { images: IMAGES, method: 'permute', window: '0-2', calibrationImages: 100, validationImages: 300 });
    expect(first.merged.validation).toBe(r.candidates[0]!.score);
    expect(first.merged.validation).toBeLessThan(r.merged.validation);

    const pre = await loadPreprocessor(out);
    const set = await loadIdxImages(IMAGES.images, IMAGES.labels);
    const m = await loadModel(out);
    const again = await evaluateImageClassifier(m, set, pre, { start: 55000, count: 300 });
    m.dispose();
    expect(again.accuracy).toBe(r.merged.validation);
    expect(JSON.parse(fs.readFileSync(path.join(out, 'report.json'), 'utf8')).merged.validation).toBe(r.merged.validation);
  });

  it('selectBy loss: candidates ranked by validation cross-entropy (the lowest chosen), accuracy still reported', async () => {
    const out = path.join(tmp, 'k3-loss');
    const r = await compress(FIXTURE, { images: IMAGES, method: 'permute', k: 3, calibrationImages: 100, validationImages: 300, selectBy: 'loss', out });
    expect(r.selection).toEqual({ name: 'loss', higherIsBetter: false });
    expect(r.metric.name).toBe('accuracy');
    const best = Math.min(...r.candidates.map((c) => c.score));
    const chosen = r.candidates.find((c) => c.score === best)!;
    expect(r.windows[0]!.window).toBe(chosen.windows.encoder);
    // a candidate's score is the loss a full evaluation of its model gives (cached states = a full pass)
    const pre = await loadPreprocessor(out);
    const set = await loadIdxImages(IMAGES.images, IMAGES.labels);
    const m = await loadModel(out);
    const again = await evaluateImageClassifier(m, set, pre, { start: 55000, count: 300 });
    m.dispose();
    expect(again.loss).toBeCloseTo(best, 4);
    expect(again.accuracy).toBe(r.merged.validation);
    await expect(compress(FIXTURE, { images: IMAGES, k: 3, selectBy: 'accuracy' as 'loss' })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
  });

  it('missing or wrong data is a typed error before any work', async () => {
    await expect(compress(FIXTURE, { images: { images: path.join(tmp, 'nope.gz'), labels: IMAGES.labels }, k: 2 })).rejects.toMatchObject({ code: 'DATA_NOT_FOUND' });
    await expect(compress(FIXTURE, { parallel: { tsv: IMAGES.images }, k: 2 })).rejects.toBeInstanceOf(FfmergeError);
    await expect(compress(FIXTURE, { calibration: IMAGES.images, k: 2 })).rejects.toMatchObject({ code: 'OPTION_NOT_APPLICABLE' });
  });
});
