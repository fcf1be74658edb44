import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import type sharpDefault from 'sharp';
import {
  conformImages,
  imagesToTensor,
  loadIdxImages,
  loadImageFolder,
  loadPreprocessor,
  parseIdx,
  classNamesFromConfig,
  preprocessorFromConfig,
  type ImagePreprocessor,
} from '../lib/data/images';
import { loadImageSource } from '../lib/pipeline/tasks/sources';
import { readParallel } from '../lib/data/parallel';
import { describeShared, sharedPath } from './helpers/shared';
import { expectCode, idxBytes } from './helpers/expect-code';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const sharp = ((require('sharp') as { default?: typeof sharpDefault }).default ?? require('sharp')) as typeof sharpDefault;

const grey5: ImagePreprocessor = preprocessorFromConfig(
  { do_resize: false, size: { height: 5, width: 4 }, do_rescale: true, rescale_factor: 1 / 255, do_normalize: true, image_mean: [0.5], image_std: [0.5] },
  { num_channels: 1 },
);

let tmp: string;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ffmerge-images-'));
});
afterAll(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
});

describe('idx files', () => {
  test('raw and gzip idx give the same images and labels', async () => {
    const pixels = Uint8Array.from({ length: 3 * 5 * 4 }, (_, i) => (i * 37) % 256);
    const raw = idxBytes([3, 5, 4], pixels);
    fs.writeFileSync(path.join(tmp, 'img.idx'), raw);
    fs.writeFileSync(path.join(tmp, 'img.idx.gz'), zlib.gzipSync(raw));
    fs.writeFileSync(path.join(tmp, 'lab.idx.gz'), zlib.gzipSync(idxBytes([3], Uint8Array.from([2, 0, 1]))));
    const a = await loadIdxImages(path.join(tmp, 'img.idx'), path.join(tmp, 'lab.idx.gz'));
    const b = await loadIdxImages(path.join(tmp, 'img.idx.gz'));
    expect(a).toMatchObject({ count: 3, height: 5, width: 4, channels: 1 });
    expect(Array.from(a.pixels)).toEqual(Array.from(pixels));
    expect(Array.from(b.pixels)).toEqual(Array.from(pixels));
    expect(Array.from(a.labels!)).toEqual([2, 0, 1]);
  });
  test('bad magic, unsupported type, wrong size and label count are typed errors', async () => {
    await expectCode(() => parseIdx(Uint8Array.from([1, 2, 3, 4, 5])), 'INVALID_DATA');
    const floatIdx = idxBytes([1], Uint8Array.from([0, 0, 0, 0]));
    floatIdx[2] = 0x0d;
    await expectCode(() => parseIdx(floatIdx), 'INVALID_DATA');
    await expectCode(() => parseIdx(idxBytes([2, 3], new Uint8Array(5))), 'INVALID_DATA');
    fs.writeFileSync(path.join(tmp, 'img2.idx'), idxBytes([2, 2, 2], new Uint8Array(8)));
    fs.writeFileSync(path.join(tmp, 'lab3.idx'), idxBytes([3], new Uint8Array(3)));
    await expectCode(loadIdxImages(path.join(tmp, 'img2.idx'), path.join(tmp, 'lab3.idx')), 'INVALID_DATA');
    await expectCode(loadIdxImages(path.join(tmp, 'missing.idx')), 'DATA_NOT_FOUND');
    fs.writeFileSync(path.join(tmp, 'broken.gz'), Buffer.from([0x1f, 0x8b, 1, 2, 3]));
    await expectCode(loadIdxImages(path.join(tmp, 'broken.gz')), 'INVALID_DATA');
  });

  test('an empty image file, a label file that is an image file, and huge sizes are named as such (tester DE)', async () => {
    // 0 images was blamed on "--start 0", an option not given; an image file given as labels was "3044585724772865000
    // bytes of data" (a double's rounding of the true product)
    fs.writeFileSync(path.join(tmp, 'img0.idx'), idxBytes([0, 28, 28], new Uint8Array(0)));
    fs.writeFileSync(path.join(tmp, 'lab0.idx'), idxBytes([0], new Uint8Array(0)));
    await expect(loadIdxImages(path.join(tmp, 'img0.idx'), path.join(tmp, 'lab0.idx'))).rejects.toMatchObject({ code: 'INVALID_DATA', message: expect.stringContaining('img0.idx holds no images') });
    fs.writeFileSync(path.join(tmp, 'img1.idx'), idxBytes([1, 2, 2], new Uint8Array(4)));
    await expect(loadIdxImages(path.join(tmp, 'img1.idx'), path.join(tmp, 'img1.idx'))).rejects.toMatchObject({
      code: 'INVALID_DATA',
      message: expect.stringMatching(/img1\.idx: expected idx labels \[count\], but its header has 3 dimensions \(an image file\?\)$/),
    });
    fs.writeFileSync(path.join(tmp, 'lab1.idx'), idxBytes([1], new Uint8Array(1)));
    await expect(loadIdxImages(path.join(tmp, 'lab1.idx'))).rejects.toMatchObject({ code: 'INVALID_DATA', message: expect.stringContaining('expected idx images [count, height, width(, channels)], but its header has 1 dimension (a label file?)') });
    const huge = idxBytes([1], new Uint8Array(1));
    const header = Buffer.alloc(4 + 12);
    header.set([0, 0, 8, 3]);
    [200, 151126273, 100729862].forEach((d, i) => header.writeUInt32BE(d, 4 + 4 * i));
    expect(() => parseIdx(Buffer.concat([header, huge]))).toThrow(/says 200x151126273x100729862 = 3044585724772865200 bytes of data but the file holds 9$/);
  });

  test('a gzip idx is inflated only as far as its header declares; a .gz that is not gzip is refused (tester CE)', async () => {
    // 2 images of 4×4 declared, 256 MiB of zeros after them: 256 KB on disk. Inflated whole before its size was
    // compared (a 1 MB file took 2 GB of memory); now refused once it passes the 32 bytes declared.
    const bomb = path.join(tmp, 'bomb-idx.gz');
    const z = zlib.createGzip({ level: 9 });
    const parts: Buffer[] = [];
    z.on('data', (c: Buffer) => parts.push(c));
    const ended = new Promise((resolve) => z.on('end', resolve));
    z.write(idxBytes([2, 4, 4], new Uint8Array(32)));
    const zeros = Buffer.alloc(1 << 24);
    for (let i = 0; i < 16; i++) z.write(zeros);
    z.end();
    await ended;
    fs.writeFileSync(bomb, Buffer.concat(parts));
    await expectCode(loadIdxImages(bomb), 'INVALID_DATA', /bomb-idx\.gz inflates to more than the 48 bytes its idx header declares/);
    // a file named .gz that holds plain idx bytes: text loaders refuse that, and so do these
    fs.writeFileSync(path.join(tmp, 'plain-idx.gz'), idxBytes([1, 2, 2], new Uint8Array(4)));
    await expectCode(loadIdxImages(path.join(tmp, 'plain-idx.gz')), 'INVALID_DATA', /is named \.gz but is not gzip-compressed/);
    // an exact gzip idx still loads, and one cut short still says what it declares
    fs.writeFileSync(path.join(tmp, 'exact-idx.gz'), zlib.gzipSync(idxBytes([2, 4, 4], new Uint8Array(32).fill(7))));
    expect((await loadIdxImages(path.join(tmp, 'exact-idx.gz'))).pixels).toEqual(new Uint8Array(32).fill(7));
    fs.writeFileSync(path.join(tmp, 'short-idx.gz'), zlib.gzipSync(idxBytes([2, 4, 4], new Uint8Array(30))));
    await expectCode(loadIdxImages(path.join(tmp, 'short-idx.gz')), 'INVALID_DATA', /says 2x4x4 = 32 bytes of data but the file holds 30/);
  });
});

describe('idx and image files that are not regular files', () => {
  const unix = fs.existsSync('/dev/null') && process.platform !== 'win32';
  const small = () => {
    const f = path.join(tmp, 'ok-img.idx');
    fs.writeFileSync(f, idxBytes([1, 5, 4], new Uint8Array(20)));
    return f;
  };

  (unix ? test : test.skip)('a device as idx images or labels → INVALID_DATA naming it (before: read whole; /dev/zero never ended)', async () => {
    // /dev/null ends at once, so without the check this fails on the message instead of hanging like /dev/zero
    const e1 = await expectCode(loadIdxImages('/dev/null', small()), 'INVALID_DATA');
    expect(e1.message).toMatch(/\/dev\/null is a device; ffmerge reads only regular files/);
    const e2 = await expectCode(loadIdxImages(small(), '/dev/null'), 'INVALID_DATA');
    expect(e2.message).toMatch(/\/dev\/null is a device/);
    const e3 = await expectCode(loadIdxImages(tmp), 'INVALID_DATA');
    expect(e3.message).toMatch(/is a directory/);
  });

  (unix ? test : test.skip)('a FIFO as idx images → INVALID_DATA at once (before: blocked forever)', async () => {
    const fifo = path.join(tmp, 'images.fifo');
    fs.rmSync(fifo, { force: true });
    execFileSync('mkfifo', [fifo]);
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error('still blocked on the FIFO after 5 s')), 5000);
    });
    try {
      const e = await expectCode(Promise.race([loadIdxImages(fifo), late]), 'INVALID_DATA');
      expect(e.message).toMatch(/is a FIFO/);
    } finally {
      clearTimeout(timer);
      // a reader still blocked in open(2) (the bug) gets a writer and then EOF, so the test process can end
      try {
        fs.closeSync(fs.openSync(fifo, fs.constants.O_WRONLY | fs.constants.O_NONBLOCK));
      } catch {
        // ENXIO: nobody is reading, as it should be
      }
    }
  });

  (unix ? test : test.skip)('an image in a folder that is a device → INVALID_DATA naming it', async () => {
    const dir = path.join(tmp, 'folder-device');
    fs.mkdirSync(path.join(dir, 'cls'), { recursive: true });
    fs.symlinkSync('/dev/null', path.join(dir, 'cls', 'a.png'));
    const e = await expectCode(loadImageFolder(dir, grey5), 'INVALID_DATA');
    expect(e.message).toMatch(/a\.png is a device/);
  });
});

describe('preprocessing', () => {
  test('rescale + normalize into NCHW, against a float64 formula', () => {
    const pre = preprocessorFromConfig(
      { size: { height: 2, width: 3 }, rescale_factor: 1 / 255, image_mean: [0.1, 0.2, 0.3], image_std: [0.5, 0.25, 2] },
      { num_channels: 3 },
    );
    const count = 2;
    const pixels = Uint8Array.from({ length: count * 2 * 3 * 3 }, (_, i) => (i * 53 + 7) % 256);
    const set = { count, height: 2, width: 3, channels: 3, pixels };
    const t = imagesToTensor(set, pre, 1, 1);
    expect(t.length).toBe(3 * 6);
    for (let c = 0; c < 3; c++) {
      for (let p = 0; p < 6; p++) {
        const x = pixels[18 + p * 3 + c]! / 255;
        expect(t[c * 6 + p]).toBeCloseTo((x - pre.mean[c]!) / pre.std[c]!, 5);
      }
    }
  });
  test('config parsing: broadcast mean/std, defaults, bad values', async () => {
    const p = preprocessorFromConfig({ size: 8, image_mean: 0.5, image_std: 0.5 }, { num_channels: 3 });
    // a key left out takes transformers' ViTImageProcessor default (do_resize true)
    expect(p).toMatchObject({ height: 8, width: 8, channels: 3, mean: [0.5, 0.5, 0.5], doResize: true });
    await expectCode(() => preprocessorFromConfig({ size: 8, image_mean: [0.1, 0.2] }, { num_channels: 3 }), 'INVALID_CONFIG');
    await expectCode(() => preprocessorFromConfig({ size: 8, image_std: [0] }, { num_channels: 1 }), 'INVALID_CONFIG');
    // {} is ViTImageProcessor with every default: 224x224, rescale 1/255, normalise with 0.5
    expect(preprocessorFromConfig({})).toMatchObject({ height: 224, width: 224, channels: 3, doRescale: true, doNormalize: true, mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5] });
    await expectCode(() => preprocessorFromConfig({ size: { shortest_edge: 224 } }), 'INVALID_CONFIG');
  });
  test('an idx set of the wrong size without a resize rule is a typed error; with one it is resized', async () => {
    const set = { count: 1, height: 6, width: 6, channels: 1, pixels: new Uint8Array(36).fill(200) };
    await expectCode(conformImages(set, grey5), 'SHAPE_MISMATCH');
    await expectCode(() => imagesToTensor(set, grey5), 'SHAPE_MISMATCH');
    const resized = await conformImages(set, { ...grey5, doResize: true });
    expect(resized).toMatchObject({ height: 5, width: 4, channels: 1 });
    expect(Array.from(resized.pixels).every((v) => v === 200)).toBe(true);
    const rgbPre = { ...grey5, channels: 3, mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5] };
    await expectCode(conformImages({ ...set, height: 5, width: 4, pixels: new Uint8Array(20) }, rgbPre), 'SHAPE_MISMATCH');
  });
});

describe('image folders (PNG and JPEG made with sharp)', () => {
  const make = async (dir: string, cls: string, name: string, w: number, h: number, ch: 1 | 3, value: number, fmt: 'png' | 'jpeg') => {
    fs.mkdirSync(path.join(dir, cls), { recursive: true });
    let img = sharp(Buffer.alloc(w * h * ch, value), { raw: { width: w, height: h, channels: ch } });
    if (ch === 1) img = img.toColourspace('b-w');
    await (fmt === 'png' ? img.png() : img.jpeg({ quality: 100 })).toFile(path.join(dir, cls, name));
  };

  test('classes from sorted sub-folders; values decoded and normalized', async () => {
    const dir = path.join(tmp, 'folder-ok');
    await make(dir, 'zebra', 'a.png', 4, 5, 1, 255, 'png');
    await make(dir, 'ant', 'b.png', 4, 5, 1, 0, 'png');
    await make(dir, 'ant', 'c.jpg', 4, 5, 1, 128, 'jpeg');
    fs.writeFileSync(path.join(dir, 'ant', 'notes.txt'), 'not an image');
    const set = await loadImageFolder(dir, grey5);
    expect(set.classNames).toEqual(['ant', 'zebra']);
    expect(Array.from(set.labels!)).toEqual([0, 0, 1]);
    const t = imagesToTensor(set, grey5);
    expect(t.length).toBe(3 * 20);
    expect(t[0]).toBeCloseTo(-1, 6); // b.png: 0 → (0 - 0.5)/0.5
    expect(Math.abs(t[20]! - (128 / 255 - 0.5) / 0.5)).toBeLessThan(0.02); // c.jpg (JPEG may round by 1)
    expect(t[40]).toBeCloseTo(1, 6); // zebra/a.png: 255
  });

  test('WebP and TIFF are read; BMP/PPM/PGM, which sharp cannot decode, are refused by name, not passed over (tester EX)', async () => {
    const dir = path.join(tmp, 'folder-formats');
    fs.mkdirSync(path.join(dir, 'ant'), { recursive: true });
    const rgb = sharp(Buffer.alloc(4 * 5 * 3, 128), { raw: { width: 4, height: 5, channels: 3 } });
    await rgb.clone().webp({ lossless: true }).toFile(path.join(dir, 'ant', 'a.webp'));
    await rgb.clone().tiff().toFile(path.join(dir, 'ant', 'b.TIF'));
    const rgbPre = { ...grey5, channels: 3, convertChannels: false, mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5] };
    const set = await loadImageFolder(dir, rgbPre);
    expect(set.count).toBe(2);
    expect(Math.abs(imagesToTensor(set, rgbPre)[0]! - (128 / 255 - 0.5) / 0.5)).toBeLessThan(1e-6);
    fs.writeFileSync(path.join(dir, 'ant', 'c.pgm'), Buffer.concat([Buffer.from('P5\n4 5\n255\n'), Buffer.alloc(20, 1)]));
    await expectCode(loadImageFolder(dir, rgbPre), 'INVALID_DATA', /c\.pgm is a PGM image, which ffmerge cannot decode: convert/);
  });

  test('a class folder named in NFD (as macOS names it) matches the class in NFC (tester EX)', async () => {
    const dir = path.join(tmp, 'folder-nfd');
    await make(dir, 'Café coat'.normalize('NFD'), 'a.png', 4, 5, 1, 10, 'png');
    const set = await loadImageFolder(dir, grey5, { classNames: ['Trouser', 'Café coat'.normalize('NFC')] });
    expect(Array.from(set.labels!)).toEqual([1]);
  });

  test('a cut-off or empty image file → INVALID_DATA naming it (before: a plain Error from sharp, no code, no name)', async () => {
    // PNG cut at 40 bytes: its header and size read (metadata passes), its pixels do not
    for (const [fmt, bytes] of [['png', 40], ['jpeg', -40], ['png', 0]] as const) {
      const dir = path.join(tmp, `folder-cut-${fmt}-${bytes}`);
      await make(dir, 'ant', 'ok.png', 4, 5, 1, 0, 'png');
      // noise, so that the file is long enough to be cut after its header
      fs.mkdirSync(path.join(dir, 'bee'), { recursive: true });
      const noise = sharp(Buffer.from(Array.from({ length: 4 * 5 }, (_, i) => (i * 7919) % 251)), { raw: { width: 4, height: 5, channels: 1 } }).toColourspace('b-w');
      const full = await (fmt === 'png' ? noise.png() : noise.jpeg({ quality: 100 })).toBuffer();
      const bad = path.join(dir, 'bee', `cut.${fmt === 'png' ? 'png' : 'jpg'}`);
      fs.writeFileSync(bad, full.subarray(0, bytes < 0 ? full.length + bytes : bytes));
      const e = await expectCode(loadImageFolder(dir, grey5), 'INVALID_DATA');
      expect(e.message).toContain(`cut.${fmt === 'png' ? 'png' : 'jpg'} is not a readable image`);
    }
  });

  test('images decoded a few at a time land in file order; progress counts them; the first bad file in order is the one named', async () => {
    const dir = path.join(tmp, 'folder-many');
    // 23 images (not a multiple of the 4 in flight), each a distinct grey, over 3 classes
    for (let i = 0; i < 23; i++) await make(dir, `c${i % 3}`, `${String(i).padStart(2, '0')}.png`, 4, 5, 1, 10 * i, 'png');
    const seen: number[] = [];
    const set = await loadImageFolder(dir, grey5, { onProgress: (p) => (expect(p).toMatchObject({ phase: 'images', total: 23 }), seen.push(p.done)) });
    expect(seen).toEqual(Array.from({ length: 24 }, (_, i) => i));
    // the order one-by-one decoding gave: class by class, files sorted within each
    const order = [0, 1, 2].flatMap((c) => Array.from({ length: 23 }, (_, i) => i).filter((i) => i % 3 === c));
    expect(Array.from({ length: 23 }, (_, k) => set.pixels[k * 20])).toEqual(order.map((i) => 10 * i));
    expect(Array.from(set.labels!)).toEqual(order.map((i) => i % 3));
    // two unreadable files: the one first in order is reported, however the decodes finish
    for (const name of ['c1/04.png', 'c2/20.png']) fs.writeFileSync(path.join(dir, name), 'garbage');
    for (let run = 0; run < 3; run++) {
      const e = await expectCode(loadImageFolder(dir, grey5), 'INVALID_DATA');
      expect(e.message).toMatch(/c1[/\\]04\.png is not a readable image/);
    }
  });

  test('loadImageFolder, loadIdxImages and readParallel stop on the signal (ABORTED), also mid-folder', async () => {
    const dir = path.join(tmp, 'folder-abort');
    for (let i = 0; i < 40; i++) await make(dir, 'a', `${i}.png`, 4, 5, 1, i, 'png');
    const aborted = new AbortController();
    aborted.abort();
    await expectCode(loadImageFolder(dir, grey5, { signal: aborted.signal }), 'ABORTED');
    // aborted at the 5th image: it stops there, not after all 40
    const ac = new AbortController();
    let last = 0;
    await expectCode(
      loadImageFolder(dir, grey5, { signal: ac.signal, onProgress: (p) => ((last = p.done), p.done === 5 && ac.abort()) }),
      'ABORTED',
    );
    expect(last).toBeLessThan(5 + 4);
    const img = path.join(tmp, 'abort.idx');
    fs.writeFileSync(img, idxBytes([2, 5, 4], new Uint8Array(40)));
    await expectCode(loadIdxImages(img, undefined, { signal: aborted.signal }), 'ABORTED');
    await expectCode(loadIdxImages(img, undefined, { signal: 'x' } as never), 'INVALID_ARGUMENT');
    const [src, tgt] = [path.join(tmp, 'p.en'), path.join(tmp, 'p.de')];
    fs.writeFileSync(src, 'a\nb\n');
    fs.writeFileSync(tgt, 'x\ny\n');
    expect(await readParallel(src, tgt)).toHaveLength(2);
    await expectCode(readParallel(src, tgt, { signal: aborted.signal }), 'ABORTED');
  });

  test('class order from the model config (id2label) instead of sorted folder names', async () => {
    const dir = path.join(tmp, 'folder-named');
    await make(dir, 'Trouser', 'a.png', 4, 5, 1, 10, 'png');
    await make(dir, 'Bag', 'b.png', 4, 5, 1, 20, 'png');
    const names = classNamesFromConfig({ id2label: { '0': 'T-shirt/top', '1': 'Trouser', '2': 'Bag' } })!;
    expect(names).toEqual(['T-shirt/top', 'Trouser', 'Bag']);
    const set = await loadImageFolder(dir, grey5, { classNames: names });
    // files are listed per sorted folder: Bag first, then Trouser
    expect(Array.from(set.labels!)).toEqual([2, 1]);
    await expectCode(loadImageFolder(dir, grey5, { classNames: ['Trouser'] }), 'INVALID_DATA');
  });

  test('a class name that cannot be a folder name, or is spelled another way, matches case-blind with punctuation alike', async () => {
    const names = ['T-shirt/top', 'Trouser', 'Ankle boot'];
    const dir = path.join(tmp, 'folder-loose');
    await make(dir, 't_shirt_top', 'a.png', 4, 5, 1, 10, 'png');
    await make(dir, 'trouser', 'b.png', 4, 5, 1, 20, 'png');
    await make(dir, 'ankle-boot', 'c.png', 4, 5, 1, 30, 'png');
    const set = await loadImageFolder(dir, grey5, { classNames: names });
    // sorted folders: ankle-boot, t_shirt_top, trouser
    expect(Array.from(set.labels!)).toEqual([2, 0, 1]);
    // an exact name wins over a loose one; a loose form two classes share matches neither
    const amb = path.join(tmp, 'folder-loose-ambiguous');
    await make(amb, 'a_b', 'a.png', 4, 5, 1, 10, 'png');
    const e = await expectCode(loadImageFolder(amb, grey5, { classNames: ['A b', 'a-b'] }), 'INVALID_DATA');
    expect(e.message).toContain('class folder "a_b" names classes 0 and 1 alike ("A b", "a-b")');
    // two classes of one name in id2label: said so, not "none of the model's classes" with it in the list (tester CE)
    const same = path.join(tmp, 'folder-same-name');
    await make(same, 'T-shirt', 'a.png', 4, 5, 1, 10, 'png');
    await expectCode(loadImageFolder(same, grey5, { classNames: ['T-shirt', 'T-shirt'] }), 'INVALID_DATA', /"T-shirt" names classes 0 and 1 alike .*name the folders by class index/);
    expect(Array.from((await loadImageFolder(amb, grey5, { classNames: ['A b', 'a_b'] })).labels!)).toEqual([1]);
    // two folders of one class (before: both taken silently), or a name and its index
    await make(dir, 'Ankle boot', 'd.png', 4, 5, 1, 40, 'png');
    const two = await expectCode(loadImageFolder(dir, grey5, { classNames: names }), 'INVALID_DATA');
    expect(two.message).toMatch(/class folders "Ankle boot" and "ankle-boot" both name class 2/);
    const byIndex = path.join(tmp, 'folder-name-and-index');
    await make(byIndex, 'Trouser', 'a.png', 4, 5, 1, 10, 'png');
    await make(byIndex, '1', 'b.png', 4, 5, 1, 20, 'png');
    await expectCode(loadImageFolder(byIndex, grey5, { classNames: names }), 'INVALID_DATA');
    // punctuation only has no loose form: "--" is not "//"
    const punct = path.join(tmp, 'folder-punct');
    await make(punct, '--', 'a.png', 4, 5, 1, 10, 'png');
    await expectCode(loadImageFolder(punct, grey5, { classNames: ['//', 'x'] }), 'INVALID_DATA');
  });

  test('with the model\'s classes (loadImageSource): a folder is a class name or index, anything else INVALID_DATA', async () => {
    const config = { id2label: { '0': 'T-shirt/top', '1': 'Trouser', '2': 'Bag' } };
    // a lone index folder keeps its index (before: its sorted position, 0)
    const idx = path.join(tmp, 'source-index');
    await make(idx, '2', 'a.png', 4, 5, 1, 10, 'png');
    expect(Array.from((await loadImageSource({ folder: idx }, grey5, config)).labels!)).toEqual([2]);
    // names and indices may be mixed
    await make(idx, 'Trouser', 'b.png', 4, 5, 1, 20, 'png');
    expect(Array.from((await loadImageSource({ folder: idx }, grey5, config)).labels!).sort()).toEqual([1, 2]);
    // no id2label: indices below num_labels
    const noNames = await loadImageSource({ folder: idx }, grey5, { num_labels: 3 }).catch((e: unknown) => e);
    expect(noNames).toMatchObject({ code: 'INVALID_DATA', message: expect.stringContaining('"Trouser"') });
    for (const cls of ['zebra', '3', '99', '02']) {
      const dir = path.join(tmp, `source-${cls}`);
      await make(dir, 'Bag', 'a.png', 4, 5, 1, 10, 'png');
      await make(dir, cls, 'b.png', 4, 5, 1, 10, 'png');
      // before: zebra (and 3, 99, 02) made the names not match, and every folder fell back to its sorted position
      const e = await expectCode(loadImageSource({ folder: dir }, grey5, config), 'INVALID_DATA');
      expect(e.message).toContain(`class folder "${cls}"`);
      expect(e.message).toContain(dir);
    }
  });

  test('wrong size or channels without a rule, empty folder, missing folder are typed errors', async () => {
    const big = path.join(tmp, 'folder-big');
    await make(big, 'x', 'a.png', 8, 8, 1, 10, 'png');
    await expectCode(loadImageFolder(big, grey5), 'SHAPE_MISMATCH');
    const resized = await loadImageFolder(big, { ...grey5, doResize: true });
    expect(resized).toMatchObject({ count: 1, height: 5, width: 4 });
    expect(Array.from(resized.pixels).every((v) => v === 10)).toBe(true);

    const rgb = path.join(tmp, 'folder-rgb');
    await make(rgb, 'x', 'a.png', 4, 5, 3, 90, 'png');
    // the message names the key that converts for this model (tester FA: it named do_convert_rgb for a grey model)
    await expectCode(loadImageFolder(rgb, grey5), 'SHAPE_MISMATCH', /has 3 colour channel\(s\) but the model takes 1.*"do_convert_grayscale": true/);
    // a grey picture saved as WebP is stored as RGB: the message says so
    const webp = path.join(tmp, 'folder-webp-grey');
    fs.mkdirSync(path.join(webp, 'x'), { recursive: true });
    await sharp(Buffer.alloc(20, 90), { raw: { width: 4, height: 5, channels: 1 } }).toColourspace('b-w').webp({ lossless: true }).toFile(path.join(webp, 'x', 'a.webp'));
    await expectCode(loadImageFolder(webp, grey5), 'SHAPE_MISMATCH', /save the pictures as PNG \(WebP stores even a grey picture as RGB\)/);
    const converted = await loadImageFolder(rgb, { ...grey5, convertChannels: true });
    expect(converted.channels).toBe(1);
    expect(Math.abs(converted.pixels[0]! - 90)).toBeLessThanOrEqual(1);

    const empty = path.join(tmp, 'folder-empty');
    fs.mkdirSync(path.join(empty, 'cls'), { recursive: true });
    await expectCode(loadImageFolder(empty, grey5), 'DATA_NOT_FOUND');
    await expectCode(loadImageFolder(path.join(tmp, 'nope'), grey5), 'DATA_NOT_FOUND');

    const bad = path.join(tmp, 'folder-bad');
    fs.mkdirSync(path.join(bad, 'x'), { recursive: true });
    fs.writeFileSync(path.join(bad, 'x', 'a.png'), 'garbage');
    await expectCode(loadImageFolder(bad, grey5), 'INVALID_DATA');
  });
});

describeShared('fixtures/vit-fmnist', 'Fashion-MNIST with the vit-fmnist preprocessor', () => {
  test('t10k: 10000 28x28 images, labels 0..9, tensor values in [-1, 1]', async () => {
    const pre = await loadPreprocessor(sharedPath('fixtures', 'vit-fmnist'));
    expect(pre).toMatchObject({ height: 28, width: 28, channels: 1, doResize: false, mean: [0.5], std: [0.5] });
    const set = await loadIdxImages(sharedPath('data', 'fmnist', 't10k-images-idx3-ubyte.gz'), sharedPath('data', 'fmnist', 't10k-labels-idx1-ubyte.gz'));
    expect(set).toMatchObject({ count: 10000, height: 28, width: 28, channels: 1 });
    const counts = new Array<number>(10).fill(0);
    for (const l of set.labels!) counts[l] = counts[l]! + 1;
    expect(counts).toEqual(new Array<number>(10).fill(1000));
    const t = imagesToTensor(await conformImages(set, pre), pre, 0, 2);
    expect(t.length).toBe(2 * 784);
    expect(Math.min(...t)).toBeGreaterThanOrEqual(-1);
    expect(Math.max(...t)).toBeLessThanOrEqual(1);
  });

  test('an abort during the read and inflate rejects then, not after the whole file (tester ET: 1.1 s)', async () => {
    const [images, labels] = [sharedPath('data', 'fmnist', 'train-images-idx3-ubyte.gz'), sharedPath('data', 'fmnist', 'train-labels-idx1-ubyte.gz')];
    const t0 = performance.now();
    await loadIdxImages(images, labels);
    const whole = performance.now() - t0;
    const ac = new AbortController();
    const t1 = performance.now();
    const call = loadIdxImages(images, labels, { signal: ac.signal });
    setTimeout(() => ac.abort(), 1);
    await expectCode(call, 'ABORTED');
    // not a speed bound: before, the rejection waited for the whole read (as long as the load itself)
    expect(performance.now() - t1).toBeLessThan(whole / 2);
  });
});
