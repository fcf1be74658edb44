/**
 * Image data and preprocessing given hostile or careless input (tester findings): preprocessor_config.json keys
 * left out (transformers' ViTImageProcessor defaults) or of the wrong type, symlinked class folders, labels
 * outside the model's classes, sizes larger than the data, validation images that are training images, progress
 * units, and library arguments of the wrong type. Each is a typed FfmergeError, never a silent change.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Writable } from 'node:stream';
import type sharpDefault from 'sharp';
import { byCodePoint, checkLabels, imagesToTensor, loadIdxImages, loadImageFolder, loadPreprocessor, preprocessorFromConfig, type ImagePreprocessor } from '../lib/data/images';
import { evaluateImageClassifier } from '../lib/eval/accuracy';
import { loadModel } from '../lib/model/load';
import { compress } from '../lib/pipeline/compress';
import { loadImageSource } from '../lib/pipeline/tasks/sources';
import { trainingImages } from '../lib/cli/finetune-images';
import { ProgressBar } from '../lib/cli/progress';
import type { Progress } from '../lib/native/job';
import { describeShared, sharedPath } from './helpers/shared';
import { expectCode, idxBytes } from './helpers/expect-code';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const sharp = ((require('sharp') as { default?: typeof sharpDefault }).default ?? require('sharp')) as typeof sharpDefault;

jest.setTimeout(120_000);

let tmp: string;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ffmerge-images-hostile-'));
});
afterAll(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
});

const vit28 = { image_processor_type: 'ViTImageProcessor', do_resize: false, size: { height: 28, width: 28 }, do_rescale: true, rescale_factor: 1 / 255, do_normalize: true, image_mean: [0.5], image_std: [0.5] };

describe('preprocessor_config.json: left-out keys take ViTImageProcessor defaults', () => {
  const without = (...keys: string[]) => Object.fromEntries(Object.entries(vit28).filter(([k]) => !keys.includes(k)));
  test('no image_mean/image_std: normalised with 0.5 (IMAGENET_STANDARD_MEAN/STD), not skipped', () => {
    const p = preprocessorFromConfig(without('image_mean', 'image_std'), { num_channels: 1 });
    expect(p).toMatchObject({ doNormalize: true, mean: [0.5], std: [0.5] });
    const set = { count: 1, height: 28, width: 28, channels: 1, pixels: new Uint8Array(784).fill(255) };
    expect(imagesToTensor(set, p)[0]).toBeCloseTo(1, 6); // (1 - 0.5) / 0.5, not 1 unnormalised… nor 255
    set.pixels.fill(0);
    expect(imagesToTensor(set, p)[0]).toBeCloseTo(-1, 6);
  });
  test('do_normalize absent is true; image_std alone absent is 0.5 (was 1)', () => {
    expect(preprocessorFromConfig(without('do_normalize', 'image_mean', 'image_std'), { num_channels: 1 })).toMatchObject({ doNormalize: true, mean: [0.5], std: [0.5] });
    expect(preprocessorFromConfig(without('image_std'), { num_channels: 1 }).std).toEqual([0.5]);
    expect(preprocessorFromConfig({ ...without('image_mean', 'image_std'), do_normalize: false }, { num_channels: 1 }).doNormalize).toBe(false);
  });
  test('do_resize, do_rescale, rescale_factor and size default as in ViTImageProcessor', () => {
    expect(preprocessorFromConfig({}, { num_channels: 3 })).toMatchObject({ height: 224, width: 224, doResize: true, doRescale: true, rescaleFactor: 1 / 255, doNormalize: true });
    // without "size" the model's own image_size (as before), never a size the model cannot take
    expect(preprocessorFromConfig({}, { num_channels: 1, image_size: 28 })).toMatchObject({ height: 28, width: 28 });
  });
  test('a processor class whose defaults are unknown must give every key itself', async () => {
    await expectCode(() => preprocessorFromConfig({ ...without('image_mean'), image_processor_type: 'DeiTImageProcessor' }), 'INVALID_CONFIG', /DeiTImageProcessor.*image_mean/);
    expect(preprocessorFromConfig({ ...vit28, image_processor_type: 'DeiTImageProcessor' }, { num_channels: 1 }).mean).toEqual([0.5]);
    expect(preprocessorFromConfig({ ...without('image_mean'), image_processor_type: 'ViTFeatureExtractor' }, { num_channels: 1 }).mean).toEqual([0.5]);
  });
});

describe('preprocessor_config.json: a key of the wrong type is INVALID_CONFIG', () => {
  test.each([
    ['rescale_factor', '0.5', /rescale_factor must be a number \(got "0.5"\)/],
    ['rescale_factor', null, /rescale_factor must be a number/],
    ['do_normalize', 'true', /do_normalize must be true or false/],
    ['do_rescale', 1, /do_rescale must be true or false/],
    ['do_resize', 'true', /do_resize must be true or false/],
    ['do_convert_rgb', 'yes', /do_convert_rgb must be true or false/],
    ['image_mean', '0.5', /image_mean must be a number or a list of numbers/],
    ['image_processor_type', 7, /image_processor_type must be a class name/],
  ])('%s = %j', async (key, value, text) => {
    await expectCode(() => preprocessorFromConfig({ ...vit28, [key]: value }, { num_channels: 1 }), 'INVALID_CONFIG', text);
  });
  test('a size the model cannot take is refused before any image is decoded', async () => {
    // it was refused only after every image had been resized to it (2 GB for six images at 12000²)
    await expectCode(() => preprocessorFromConfig({ ...vit28, do_resize: true, size: 12000 }, { num_channels: 1, image_size: 28 }), 'INVALID_CONFIG', /resizes images to 12000x12000, but config\.json's image_size is 28/);
    await expectCode(() => preprocessorFromConfig({ ...vit28, size: { height: 28, width: 30 } }, { num_channels: 1, image_size: 28 }), 'INVALID_CONFIG', /28x28 images/);
    expect(preprocessorFromConfig(vit28, { num_channels: 1, image_size: 28 })).toMatchObject({ height: 28, width: 28 });
  });
  test('a string size says its type is wrong, not that there is none', async () => {
    const e = await expectCode(() => preprocessorFromConfig({ ...vit28, size: '28' }, { num_channels: 1 }), 'INVALID_CONFIG', /size must be a number of pixels .* \(got "28"\)/);
    expect(e.message).not.toMatch(/has no/);
    await expectCode(() => preprocessorFromConfig({ ...vit28, size: undefined }, { image_size: '28' }), 'INVALID_CONFIG', /config\.json: image_size must be/);
  });
  test('do_convert_rgb null (how transformers saves "not set") is accepted', () => {
    expect(preprocessorFromConfig({ ...vit28, do_convert_rgb: null }, { num_channels: 1 }).convertChannels).toBe(false);
  });
});

describe('library arguments of the wrong type are INVALID_ARGUMENT', () => {
  const pre = preprocessorFromConfig({ ...vit28, size: { height: 4, width: 4 } }, { num_channels: 1 });
  test('preprocessorFromConfig(null) and a non-object config', async () => {
    await expectCode(() => preprocessorFromConfig(null as never), 'INVALID_ARGUMENT', /pre must be the parsed preprocessor_config\.json/);
    await expectCode(() => preprocessorFromConfig([] as never), 'INVALID_ARGUMENT');
    await expectCode(() => preprocessorFromConfig({}, 'x' as never), 'INVALID_ARGUMENT', /modelConfig/);
  });
  test('loadImageFolder: classNames, classCount, pre and unknown options', async () => {
    await expectCode(loadImageFolder(tmp, pre, { classNames: 'abc' as never }), 'INVALID_ARGUMENT', /classNames must be a list of class names/);
    await expectCode(loadImageFolder(tmp, pre, { classNames: [1, 2] as never }), 'INVALID_ARGUMENT', /classNames\[0\]/);
    await expectCode(loadImageFolder(tmp, null as never), 'INVALID_ARGUMENT', /pre must be an ImagePreprocessor/);
    await expectCode(loadImageFolder(tmp, { height: 4 } as never), 'INVALID_ARGUMENT', /pre must be an ImagePreprocessor/);
    for (const classCount of [0, -1, 2.5, '3']) {
      await expectCode(loadImageFolder(tmp, pre, { classCount: classCount as never }), 'INVALID_ARGUMENT', /classCount must be a positive integer/);
    }
    await expectCode(loadImageFolder(tmp, pre, { classNames: ['a', 'b'], classCount: 3 }), 'INVALID_ARGUMENT', /2 names but options\.classCount is 3/);
    await expectCode(loadImageFolder(tmp, pre, { classnames: ['a'] } as never), 'INVALID_ARGUMENT', /unknown option "classnames"/);
  });
  test('loadImageSource: a config whose id2label and num_labels disagree is INVALID_CONFIG, not an argument error', async () => {
    await expectCode(loadImageSource({ folder: tmp }, pre, { id2label: { 0: 'a', 1: 'b' }, num_labels: 3 }), 'INVALID_CONFIG', /id2label names 2 classes but num_labels is 3/);
  });
  test('checkLabels names the label, the image and the class count', async () => {
    const set = { count: 3, height: 1, width: 1, channels: 1, pixels: new Uint8Array(3), labels: Int32Array.from([0, 9, 10]) };
    await expectCode(() => checkLabels(set, 10, 'x.idx'), 'INVALID_DATA', /label 10 \(image 2 of x\.idx\) is outside the model's 10 classes/);
    expect(() => checkLabels(set, 11)).not.toThrow();
  });
});

/** A 4×4 grey PNG whose pixels are all `v`, and the preprocessor that reads it as it is (folders below). */
async function png(file: string, v: number): Promise<void> {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  await sharp(Buffer.alloc(16, v), { raw: { width: 4, height: 4, channels: 1 } }).toColourspace('b-w').png().toFile(file);
}
const pre4: ImagePreprocessor = preprocessorFromConfig({ ...vit28, size: { height: 4, width: 4 } }, { num_channels: 1 });

describe('image folders: a class folder that is a symlink', () => {
  const pre = pre4;
  test('a symlink to a folder is followed: its images count', async () => {
    const root = path.join(tmp, 'symclass');
    await png(path.join(root, 'a', '1.png'), 10);
    await png(path.join(tmp, 'elsewhere-b', '1.png'), 20);
    await png(path.join(tmp, 'elsewhere-b', '2.png'), 30);
    fs.symlinkSync(path.join(tmp, 'elsewhere-b'), path.join(root, 'b'));
    const set = await loadImageFolder(root, pre);
    expect(set.classNames).toEqual(['a', 'b']);
    expect(set.count).toBe(3);
    expect(Array.from(set.labels!)).toEqual([0, 1, 1]);
  });
  test('a symlink loop or a dangling link is refused, not skipped', async () => {
    const loop = path.join(tmp, 'symloop');
    await png(path.join(loop, 'a', '1.png'), 10);
    fs.symlinkSync('c', path.join(loop, 'c'));
    await expectCode(loadImageFolder(loop, pre), 'INVALID_DATA', /"c" is a symbolic link that loops/);
    const dangling = path.join(tmp, 'symdangling');
    await png(path.join(dangling, 'a', '1.png'), 10);
    fs.symlinkSync(path.join(tmp, 'nowhere'), path.join(dangling, 'b'));
    await expectCode(loadImageFolder(dangling, pre), 'DATA_NOT_FOUND', /"b" is a symbolic link that cannot be followed/);
  });
  test('a class folder linked to the image folder (or above it), or one without images, is refused: its class was dropped unsaid', async () => {
    // Before: 18 of 20 images scored, class "b" gone, exit 0
    const self = path.join(tmp, 'symself');
    await png(path.join(self, 'a', '1.png'), 10);
    fs.symlinkSync('..', path.join(self, 'b'));
    await expectCode(loadImageFolder(self, pre), 'INVALID_DATA', /"b" is a link to the image folder or a folder above it/);
    fs.unlinkSync(path.join(self, 'b'));
    fs.symlinkSync(self, path.join(self, 'b'));
    await expectCode(loadImageFolder(self, pre), 'INVALID_DATA', /"b" is a link to the image folder \(it loops\)/);
    const empty = path.join(tmp, 'emptyclass');
    await png(path.join(empty, 'a', '1.png'), 10);
    fs.mkdirSync(path.join(empty, 'b', 'nested'), { recursive: true });
    await expectCode(loadImageFolder(empty, pre), 'INVALID_DATA', /class folder "b" holds no images/);
  });
  test("a class folder's images are read from the folders below it too, in torchvision ImageFolder's order; a link up is a loop", async () => {
    // before: "b" with its images one folder down was refused as holding none (and dropped unsaid before that)
    const nested = path.join(tmp, 'nestedclass');
    await png(path.join(nested, 'a', '1.png'), 10);
    await png(path.join(nested, 'b', 'z.png'), 20);
    await png(path.join(nested, 'b', 'x', '2.png'), 30);
    await png(path.join(nested, 'b', 'x y', '3.png'), 40);
    await png(path.join(nested, 'b', 'x', 'deeper', '1.png'), 50);
    const set = await loadImageFolder(nested, pre);
    expect(Array.from(set.labels!)).toEqual([0, 1, 1, 1, 1]);
    // os.walk's folders sorted by path, as Python sorts them: "b" < "b/x" < "b/x y" < "b/x/deeper" (" " before "/")
    const per = pre.width * pre.height * pre.channels;
    expect(Array.from({ length: 5 }, (_, i) => set.pixels[i * per])).toEqual([10, 20, 30, 40, 50]);
    // a link that points nowhere is passed over unless it is named as an image (os.walk lists it, torchvision's
    // extension filter drops it): before, any such link failed the whole folder (reviewer AS)
    fs.symlinkSync(path.join(tmp, 'nowhere', 'notes.txt'), path.join(nested, 'b', 'notes.txt'));
    expect((await loadImageFolder(nested, pre)).count).toBe(5);
    fs.symlinkSync(path.join(tmp, 'nowhere', '9.png'), path.join(nested, 'b', 'x', '9.png'));
    await expectCode(loadImageFolder(nested, pre), 'DATA_NOT_FOUND', /x\/9\.png is a symbolic link that cannot be followed/);
    fs.unlinkSync(path.join(nested, 'b', 'x', '9.png'));
    fs.symlinkSync('..', path.join(nested, 'b', 'x', 'up'));
    await expectCode(loadImageFolder(nested, pre), 'INVALID_DATA', /x\/up is a link to a folder that holds it \(it loops\)/);
  });
  test('without the optional dependency sharp, an image folder says to install it (tester CG: sharp is optional now)', async () => {
    const dir = path.join(tmp, 'nosharp');
    await png(path.join(dir, 'a', '1.png'), 10);
    let err: unknown;
    await jest.isolateModulesAsync(async () => {
      jest.doMock('sharp', () => {
        throw Object.assign(new Error("Cannot find module 'sharp'"), { code: 'MODULE_NOT_FOUND' });
      });
      const images = await import('../lib/data/images');
      err = await images.loadImageFolder(dir, pre).catch((e: unknown) => e);
    });
    jest.dontMock('sharp');
    expect(err).toMatchObject({ code: 'NATIVE_LOAD_FAILED', message: expect.stringMatching(/optional dependency that is not installed here: npm install sharp/) });
  });

  test('a sub-folder that cannot be listed is DATA_NOT_FOUND naming it, not a class dropped or an untyped error', async () => {
    const locked = path.join(tmp, 'lockedsub');
    await png(path.join(locked, 'a', '1.png'), 10);
    await png(path.join(locked, 'b', '1.png'), 20);
    await png(path.join(locked, 'b', 'inner', '2.png'), 30);
    const inner = path.join(locked, 'b', 'inner');
    // root lists any folder whatever its mode (CI runs as root): there readdir is made to fail as EACCES would
    const asRoot = process.getuid?.() === 0;
    const readdir = fs.promises.readdir;
    const spy = asRoot
      ? jest.spyOn(fs.promises, 'readdir').mockImplementation(((d: fs.PathLike, o?: never) => {
          if (String(d) === inner) return Promise.reject(Object.assign(new Error(`EACCES: permission denied, scandir '${inner}'`), { code: 'EACCES' }));
          return readdir(d, o);
        }) as typeof fs.promises.readdir)
      : undefined;
    if (!asRoot) fs.chmodSync(inner, 0);
    try {
      await expectCode(loadImageFolder(locked, pre), 'DATA_NOT_FOUND', /image folder .*lockedsub: .*b\/inner cannot be read: EACCES/);
    } finally {
      spy?.mockRestore();
      if (!asRoot) fs.chmodSync(inner, 0o755);
    }
  });
});

describe("image names in Python's order (by code point)", () => {
  const pre = pre4;
  test('a name above U+FFFF sorts after U+E000–U+FFFF, as sorted() puts it, in class and image order', async () => {
    // before: UTF-16 order put "a😀" (0xD83D…) before "a\uE000", so the classes' label indices differed from torchvision's
    const dir = path.join(tmp, 'codepoints');
    await png(path.join(dir, 'a\u{1F600}', '1.png'), 10);
    await png(path.join(dir, 'a\uE000', '\u{1F600}.png'), 20);
    await png(path.join(dir, 'a\uE000', '\uFFFD.png'), 30);
    const set = await loadImageFolder(dir, pre);
    expect(set.classNames).toEqual(['a\uE000', 'a\u{1F600}']);
    const per = pre.width * pre.height * pre.channels;
    expect(Array.from({ length: 3 }, (_, i) => set.pixels[i * per])).toEqual([30, 20, 10]);
  });
  test('byCodePoint matches comparing code point lists, on random strings of mixed planes', () => {
    const pick = [0x41, 0x7a, 0xe000, 0xfffd, 0xffff, 0x10000, 0x1f600, 0x10ffff];
    let seed = 7;
    const rand = (n: number) => ((seed = (seed * 1103515245 + 12345) % 2 ** 31), seed % n);
    const word = () => String.fromCodePoint(...Array.from({ length: rand(4) }, () => pick[rand(pick.length)]!));
    const reference = (a: string, b: string) => {
      const x = Array.from(a, (c) => c.codePointAt(0)!);
      const y = Array.from(b, (c) => c.codePointAt(0)!);
      for (let i = 0; i < Math.min(x.length, y.length); i++) if (x[i] !== y[i]) return x[i]! - y[i]!;
      return x.length - y.length;
    };
    for (let t = 0; t < 2000; t++) {
      const a = word();
      const b = word();
      expect([a, b, Math.sign(byCodePoint(a, b))]).toEqual([a, b, Math.sign(reference(a, b))]);
    }
  });
});

describe('progress units', () => {
  function capture(): { stream: NodeJS.WriteStream; text: () => string } {
    let out = '';
    const w = new Writable({
      write(chunk: Buffer, _enc, cb) {
        out += chunk.toString();
        cb();
      },
    });
    return { stream: Object.assign(w, { isTTY: true, columns: 200 }) as unknown as NodeJS.WriteStream, text: () => out };
  }
  test('a phase reporting its unit shows it; one that does not keeps the phase unit', () => {
    const a = capture();
    const bar = new ProgressBar(true, a.stream);
    const images: Progress & { unit: string } = { phase: 'test', done: 400, total: 400, unit: 'images' };
    bar.update(images);
    bar.update({ phase: 'evaluate', done: 3, total: 3 });
    // an ONNX save counts tensors, a safetensors one bytes (before: "0.0 kB" for 44 tensors)
    bar.update({ phase: 'save', done: 44, total: 44, unit: 'tensors' } as Progress);
    bar.update({ phase: 'tokenize', done: 2900, total: 2900 });
    bar.done();
    expect(a.text()).toMatch(/Saving the weights\s+44 tensors/);
    expect(a.text()).toMatch(/Reading data\s+2\.9 kB/);
    expect(a.text()).toMatch(/Test set\s+400 images/);
    expect(a.text()).not.toMatch(/400 batches/);
    expect(a.text()).toMatch(/Evaluating\s+3 batches/);
  });
});

describeShared('fixtures/vit-fmnist', 'on vit-fmnist: labels, sizes, validation overlap', () => {
  const FIXTURE = sharedPath('fixtures', 'vit-fmnist');
  let img: string;
  let lab: string;
  let badLab: string;
  beforeAll(async () => {
    const t10k = await loadIdxImages(sharedPath('data', 'fmnist', 't10k-images-idx3-ubyte.gz'), sharedPath('data', 'fmnist', 't10k-labels-idx1-ubyte.gz'));
    img = path.join(tmp, 'img200.idx');
    lab = path.join(tmp, 'lab200.idx');
    badLab = path.join(tmp, 'labbad200.idx');
    fs.writeFileSync(img, idxBytes([200, 28, 28], t10k.pixels.subarray(0, 200 * 784)));
    const labels = Uint8Array.from(t10k.labels!.subarray(0, 200));
    fs.writeFileSync(lab, idxBytes([200], labels));
    labels[150] = 10;
    fs.writeFileSync(badLab, idxBytes([200], labels));
  });
  const common = { method: 'permute' as const, k: 2, recover: 'none' as string };

  test('an empty test set is refused by name before any model work (before: after calibration, naming no file)', async () => {
    const none = path.join(tmp, 'img0.idx');
    const noneLab = path.join(tmp, 'lab0.idx');
    fs.writeFileSync(none, idxBytes([0, 28, 28], new Uint8Array(0)));
    fs.writeFileSync(noneLab, idxBytes([0], new Uint8Array(0)));
    const phases = new Set<string>();
    await expectCode(
      compress(FIXTURE, { ...common, images: { images: img, labels: lab }, calibrationImages: 100, test: { images: none, labels: noneLab }, onProgress: (p) => void phases.add(p.phase) }),
      'INVALID_DATA',
      /img0\.idx holds no images \(its idx header says 0\)/, // the file itself says so as it is read (tester DE)
    );
    expect(phases.has('features')).toBe(false);
  });

  test("the test phase's count is over every model tested, and its unit says so (tester Z: '10000 images' for a 2,000-image test)", async () => {
    const imgs = fs.readFileSync(img).subarray(16);
    const labs = fs.readFileSync(lab).subarray(8);
    const tImg = path.join(tmp, 'test30.idx');
    const tLab = path.join(tmp, 'test30-labels.idx');
    fs.writeFileSync(tImg, idxBytes([30, 28, 28], imgs.subarray(170 * 784)));
    fs.writeFileSync(tLab, idxBytes([30], labs.subarray(170)));
    let last: { done: number; total: number; unit?: string; detail?: string } | undefined;
    await compress(FIXTURE, {
      ...common, window: '10-11', images: { images: img, labels: lab }, calibrationImages: 100, validationImages: 50, test: { images: tImg, labels: tLab },
      onProgress: (p) => { if (p.phase === 'test') last = p as typeof last; },
    });
    // and its detail names the model the count is in (tester EL: "38% of batch 2", of which model?)
    expect(last).toEqual(expect.objectContaining({ done: 60, total: 60, unit: 'images (2 models × 30)', detail: expect.stringMatching(/^merged model/) }));
  });

  test('the base model\'s validation reports its images as it goes (tester DU: silent, from the cached states)', async () => {
    const seen: { done: number; total: number; unit?: string }[] = [];
    await compress(FIXTURE, {
      ...common, window: '10-11', images: { images: img, labels: lab }, calibrationImages: 100, validationImages: 50,
      onProgress: (p) => { if (p.phase === 'validate') seen.push(p as (typeof seen)[number]); },
    });
    expect(seen[0]).toEqual(expect.objectContaining({ done: 0, total: 50, unit: 'images' }));
    expect(seen.at(-1)).toEqual(expect.objectContaining({ done: 50, total: 50, unit: 'images' }));
  });

  test('compress refuses labels outside the classes in validation and test data, before any model work', async () => {
    await expectCode(compress(FIXTURE, { ...common, images: { images: img, labels: badLab }, calibrationImages: 100 }), 'INVALID_DATA', /label 10 \(image 150 of .*labbad200\.idx\) is outside the model's 10 classes/);
    await expectCode(compress(FIXTURE, { ...common, images: { images: img, labels: badLab }, calibrationImages: 100, selectBy: 'loss' }), 'INVALID_DATA', /outside the model's 10 classes/);
    await expectCode(compress(FIXTURE, { ...common, images: { images: img, labels: lab }, calibrationImages: 100, test: { images: img, labels: badLab } }), 'INVALID_DATA', /outside the model's 10 classes/);
    // recover 'finetune' trains on the calibration labels: a bad one there is refused though validation is clean
    const early = Uint8Array.from(fs.readFileSync(lab).subarray(8));
    early[3] = 10;
    const earlyLab = path.join(tmp, 'labbad-early.idx');
    fs.writeFileSync(earlyLab, idxBytes([200], early));
    const copy = path.join(tmp, 'img200-copy2.idx');
    fs.copyFileSync(img, copy);
    await expectCode(
      compress(FIXTURE, { ...common, recover: 'finetune', images: { images: img, labels: earlyLab }, calibrationImages: 100, validation: { images: copy, labels: lab } }),
      'INVALID_DATA',
      /label 10 \(image 3 of the calibration images of .*labbad-early\.idx\)/,
    );
  });
  test('evaluateImageClassifier refuses non-integer labels and reports progress in images', async () => {
    const model = await loadModel(FIXTURE);
    try {
      const pre = await loadPreprocessor(FIXTURE);
      const set = await loadIdxImages(img, lab);
      const half = { ...set, labels: new Float32Array(200).fill(0.5) as unknown as Int32Array };
      await expectCode(evaluateImageClassifier(model, half, pre), 'INVALID_ARGUMENT', /labels must hold class indices .*label 0 is 0\.5/);
      const seen: Progress[] = [];
      await evaluateImageClassifier(model, set, pre, { count: 20, batchSize: 10, onProgress: (p) => seen.push(p) });
      expect(seen.at(-1)).toMatchObject({ phase: 'evaluate', done: 20, total: 20, unit: 'images' });
    } finally {
      model.dispose();
    }
  });
  test('a source with a key of another form, even undefined, or an unknown key, is refused before any work', async () => {
    // before: { images, labels, folder: undefined } was a TypeError from Node; { images, labels, folder } used the folder
    for (const images of [{ images: img, labels: lab, folder: undefined }, { images: img, labels: lab, folder: tmp }, { images: img, labels: lab, foo: 1 }]) {
      await expectCode(compress(FIXTURE, { ...common, images: images as never }), 'INVALID_ARGUMENT', /^images for an image classifier is \{ images, labels \} \(idx files\) or \{ folder \}, with no other key \(got keys images, labels, (folder|foo)\)$/);
    }
  });
  test('compress refuses explicit sizes larger than the data, naming the flag and what is there', async () => {
    const images = { images: img, labels: lab };
    await expectCode(compress(FIXTURE, { ...common, images, calibrationImages: 5000 }), 'INVALID_ARGUMENT', /--calibration-size\) 5000 is more than the 200 images/);
    await expectCode(compress(FIXTURE, { ...common, images, calibrationImages: 100, test: images, testImages: 9999 }), 'INVALID_ARGUMENT', /--test-size\) 9999 is more than the 200 test images/);
    const copy = path.join(tmp, 'img200-copy.idx');
    fs.copyFileSync(img, copy);
    const valid = { images: copy, labels: lab };
    await expectCode(compress(FIXTURE, { ...common, images, calibrationImages: 100, validation: valid, validationStart: 198, validationImages: 5 }), 'INVALID_ARGUMENT', /--validation-size\) 5 is more than the 2 validation images from image 198/);
    await expectCode(compress(FIXTURE, { ...common, images, calibrationImages: 100, validation: valid, validationStart: 200 }), 'INVALID_ARGUMENT', /--validation-start\) 200 is past the last of the 200 validation images/);
  });
  test('finetune refuses a validation set that is its training file (through a symlink too) or folder', async () => {
    const link = path.join(tmp, 'img200-link.idx');
    if (!fs.existsSync(link)) fs.symlinkSync(img, link);
    for (const validImages of [img, link]) {
      await expectCode(
        trainingImages(FIXTURE, { images: img, labels: lab, validImages, validLabels: lab, validationStart: '10', validationSize: '5' }),
        'INVALID_ARGUMENT',
        // not "start validation after them (--validation-start 200)": all 200 train, so none would be left (tester AY)
        /validation would start at image 10, inside the training images 0-199 of the same file: train on the images before it \(--train-size 10\), leave out/,
      );
    }
    // following that advice anyway trained with no validation, exit 0: refused
    await expectCode(
      trainingImages(FIXTURE, { images: img, labels: lab, validImages: img, validLabels: lab, validationStart: '200' }),
      'INVALID_ARGUMENT',
      /--validation-start 200 leaves no validation images \(the validation set holds 200\): start validation earlier/,
    );
    // training only on the images before validation is no overlap
    const ok = await trainingImages(FIXTURE, { images: img, labels: lab, validImages: img, validLabels: lab, validationStart: '150', trainSize: '150' });
    expect(ok.train.labels.length).toBe(150);
    expect(ok.validation!.labels.length).toBe(50);

    const folder = path.join(tmp, 'folder20');
    const set = await loadIdxImages(img, lab);
    for (let i = 0; i < 20; i++) {
      const file = path.join(folder, String(set.labels![i]), `${i}.png`);
      fs.mkdirSync(path.dirname(file), { recursive: true });
      await sharp(Buffer.from(set.pixels.subarray(i * 784, (i + 1) * 784)), { raw: { width: 28, height: 28, channels: 1 } }).toColourspace('b-w').png().toFile(file);
    }
    await expectCode(trainingImages(FIXTURE, { data: folder, valid: folder }), 'INVALID_ARGUMENT', /inside the training images 0-19 of the same folder/);
  });
});
