/**
 * `ffmerge compress` / `ffmerge eval` on the image (vit) and translation (marian) fixtures, as a user runs
 * them (node bin/ffmerge.js, source build pinned). Small budgets: the machine has 2 shared cores.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import type sharpDefault from 'sharp';
import { describeShared, sharedPath } from './helpers/shared';

// as in images.test.ts: sharp's typings are ESM, require() returns the function
const sharp = ((require('sharp') as { default?: typeof sharpDefault }).default ?? require('sharp')) as typeof sharpDefault;

const BIN = path.resolve(__dirname, '..', 'bin', 'ffmerge.js');

function ffmerge(cwd: string, ...args: string[]) {
  const r = spawnSync(process.execPath, [BIN, ...args], { cwd, encoding: 'utf8', env: { ...process.env, FFMERGE_FROM_SOURCE: '1' }, timeout: 300_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

function errorOf(r: { stdout: string }): { code: string; message: string } {
  const j = JSON.parse(r.stdout) as { ok: boolean; error: { code: string; message: string } };
  expect(j.ok).toBe(false);
  return j.error;
}

describe('ffmerge CLI on images and translation', () => {
  let cwd: string;
  beforeEach(() => {
    cwd = fs.mkdtempSync(path.join(os.tmpdir(), 'ffmerge-cli-mod-'));
  });
  afterEach(() => fs.rmSync(cwd, { recursive: true, force: true }));
  jest.setTimeout(300_000);

  describeShared('fixtures/vit-fmnist', 'vit', () => {
    const VIT = sharedPath('fixtures', 'vit-fmnist');
    const fm = (f: string) => sharedPath('data', 'fmnist', f);

    it('compress --images/--labels writes a checkpoint whose eval accuracy equals the reported test accuracy', () => {
      const r = ffmerge(cwd, 'compress', VIT, '--images', fm('train-images-idx3-ubyte.gz'), '--labels', fm('train-labels-idx1-ubyte.gz'), '--window', '9-11', '--method', 'permute', '--calibration-size', '100', '--validation-size', '100', '--test-images', fm('t10k-images-idx3-ubyte.gz'), '--test-labels', fm('t10k-labels-idx1-ubyte.gz'), '--test-size', '300', '--out', 'vit-merged', '--json');
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      const out = JSON.parse(r.stdout);
      expect(out.metric.name).toBe('accuracy');
      expect(out.windows).toEqual([{ stack: 'encoder', window: '9-11', layers: [9, 10, 11], anchor: 9, method: 'permute', recover: 'none' }]);
      const ev = ffmerge(cwd, 'eval', 'vit-merged', '--images', fm('t10k-images-idx3-ubyte.gz'), '--labels', fm('t10k-labels-idx1-ubyte.gz'), '--count', '300', '--json');
      expect(ev.code).toBe(0);
      expect(JSON.parse(ev.stdout).accuracy).toBe(out.merged.test);
    });

    it('an image folder (class sub-folders) works for eval and compress; labels follow the folder names', async () => {
      // 120 t10k images as PNGs in folders 0..9 (sorted folder order = label index, as torchvision's ImageFolder)
      const raw = zlib.gunzipSync(fs.readFileSync(fm('t10k-images-idx3-ubyte.gz'))).subarray(16);
      const labels = zlib.gunzipSync(fs.readFileSync(fm('t10k-labels-idx1-ubyte.gz'))).subarray(8);
      const dir = path.join(cwd, 'imgs');
      for (let i = 0; i < 120; i++) {
        fs.mkdirSync(path.join(dir, String(labels[i])), { recursive: true });
        await sharp(Buffer.from(raw.subarray(i * 784, (i + 1) * 784)), { raw: { width: 28, height: 28, channels: 1 } })
          .toColourspace('b-w')
          .png()
          .toFile(path.join(dir, String(labels[i]), `${String(i).padStart(3, '0')}.png`));
      }
      const folder = ffmerge(cwd, 'eval', VIT, '--data', 'imgs', '--json');
      const idx = ffmerge(cwd, 'eval', VIT, '--images', fm('t10k-images-idx3-ubyte.gz'), '--labels', fm('t10k-labels-idx1-ubyte.gz'), '--count', '120', '--json');
      expect(folder.code).toBe(0);
      expect(JSON.parse(folder.stdout).correct).toBe(JSON.parse(idx.stdout).correct);
      // a count larger than the data was cut to it without a word (a tester's find)
      const over = ffmerge(cwd, 'eval', VIT, '--data', 'imgs', '--count', '121', '--json');
      expect(over.code).toBe(2);
      expect(errorOf(over)).toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringContaining('--count 121 is more than the 120 images') });
      // --start picks a range (a validation split such as 55000–59999): the two halves add up to the whole
      const t10k = ['--images', fm('t10k-images-idx3-ubyte.gz'), '--labels', fm('t10k-labels-idx1-ubyte.gz'), '--json'];
      const halves = [['--count', '60'], ['--start', '60', '--count', '60']].map((a) => JSON.parse(ffmerge(cwd, 'eval', VIT, ...t10k, ...a).stdout));
      expect(halves.map((h) => [h.start, h.images])).toEqual([[0, 60], [60, 60]]);
      expect(halves[0].correct + halves[1].correct).toBe(JSON.parse(idx.stdout).correct);
      expect(errorOf(ffmerge(cwd, 'eval', VIT, '--data', 'imgs', '--start', '120', '--json'))).toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringContaining('--start 120 is past the 120 images') });
      expect(errorOf(ffmerge(cwd, 'eval', VIT, '--data', 'imgs', '--start', '100', '--count', '21', '--json'))).toMatchObject({ message: expect.stringContaining('--count 21 is more than the 20 images of the data from --start 100') });
      const r = ffmerge(cwd, 'compress', VIT, '--data', 'imgs', '--k', '2', '--method', 'permute', '--calibration-size', '60', '--out', 'from-folder', '--json');
      expect(r.code).toBe(0);
      expect(JSON.parse(r.stdout).data).toMatchObject({ calibration: 60, validation: 60, unit: 'images' });
    });

    it('--recover refit and both baselines run and are reported; a language-model flag exits 2 with its code', () => {
      const r = ffmerge(cwd, 'compress', VIT, '--images', fm('train-images-idx3-ubyte.gz'), '--labels', fm('train-labels-idx1-ubyte.gz'), '--window', '9-11', '--recover', 'refit', '--baselines', 'drop-ff,drop-layers', '--calibration-size', '100', '--validation-size', '100', '--out', 'vit-refit', '--json');
      expect(r.code).toBe(0);
      const out = JSON.parse(r.stdout);
      expect(out.recover).toBe('refit');
      expect(Object.keys(out.baselines)).toEqual(['drop-ff', 'drop-layers']);
      expect(out.baselines['drop-ff'].candidates).toHaveLength(11);
      const bad = ffmerge(cwd, 'compress', VIT, '--images', fm('train-images-idx3-ubyte.gz'), '--labels', fm('train-labels-idx1-ubyte.gz'), '--calibration-tokens', '100', '--json');
      expect(bad.code).toBe(2);
      expect(errorOf(bad)).toMatchObject({ code: 'OPTION_NOT_APPLICABLE', message: expect.stringMatching(/--calibration-tokens/) });
    });

    it('--images without --labels, and an idx file given as --data, are typed errors', () => {
      const a = ffmerge(cwd, 'compress', VIT, '--images', fm('train-images-idx3-ubyte.gz'), '--json');
      expect(a.code).not.toBe(0);
      expect(errorOf(a).message).toMatch(/--labels/);
      const b = ffmerge(cwd, 'eval', VIT, '--data', fm('t10k-images-idx3-ubyte.gz'), '--json');
      expect(b.code).not.toBe(0);
      expect(errorOf(b).code).toBe('INVALID_ARGUMENT');
      expect(fs.readdirSync(cwd)).toEqual([]);
    });

    it('validation inside the calibration images of the same file exits 2 (INVALID_ARGUMENT); after them it runs', () => {
      // 200 t10k images as raw idx files
      const im = zlib.gunzipSync(fs.readFileSync(fm('t10k-images-idx3-ubyte.gz')));
      const lb = zlib.gunzipSync(fs.readFileSync(fm('t10k-labels-idx1-ubyte.gz')));
      const imHead = Buffer.from(im.subarray(0, 16));
      imHead.writeUInt32BE(200, 4);
      const lbHead = Buffer.from(lb.subarray(0, 8));
      lbHead.writeUInt32BE(200, 4);
      fs.writeFileSync(path.join(cwd, 'im.idx'), Buffer.concat([imHead, im.subarray(16, 16 + 200 * 784)]));
      fs.writeFileSync(path.join(cwd, 'lb.idx'), Buffer.concat([lbHead, lb.subarray(8, 208)]));
      fs.symlinkSync('im.idx', path.join(cwd, 'im-again.idx'));
      const run = (...extra: string[]) =>
        ffmerge(cwd, 'compress', VIT, '--images', 'im.idx', '--labels', 'lb.idx', '--calibration-size', '64', '--window', '2-3', '--method', 'permute', '--recover', 'none', '--out', 'c', '--json', ...extra);
      // Before: ran, reporting "validation: images 10-199" with images 10-63 also calibration
      const inside = run('--validation-start', '10');
      expect(inside.code).toBe(2);
      expect(errorOf(inside)).toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringMatching(/start it at 64 or later/) });
      // the same file again (by another name) as the validation set starts at 0: inside too
      const again = run('--valid-images', 'im-again.idx', '--valid-labels', 'lb.idx');
      expect(again.code).toBe(2);
      expect(errorOf(again).code).toBe('INVALID_ARGUMENT');
      expect(fs.existsSync(path.join(cwd, 'c'))).toBe(false);
      const after = run('--validation-start', '64', '--validation-size', '40');
      expect(after.code).toBe(0);
      expect(JSON.parse(after.stdout).data).toMatchObject({ calibration: 64, validation: 40 });
    });

    it.each(['zebra', '99'])('an image folder with a class folder %s that is no class of the model exits 3, INVALID_DATA naming it', async (cls) => {
      // Before: its image was scored against label 0 (the folder's sorted position): "0.00% (0/1)", exit 0.
      fs.mkdirSync(path.join(cwd, 'imgs', cls), { recursive: true });
      await sharp(Buffer.alloc(784, 100), { raw: { width: 28, height: 28, channels: 1 } }).toColourspace('b-w').png().toFile(path.join(cwd, 'imgs', cls, 'a.png'));
      const r = ffmerge(cwd, 'eval', VIT, '--data', 'imgs', '--json');
      expect(r.code).toBe(3);
      expect(errorOf(r)).toMatchObject({ code: 'INVALID_DATA', message: expect.stringContaining(`class folder "${cls}"`) });
    });
  });

  describeShared('fixtures/marian-multi30k-en-de', 'marian', () => {
    const MARIAN = sharedPath('fixtures', 'marian-multi30k-en-de');
    const m30k = (f: string) => sharedPath('data', 'multi30k', f);

    it('compress --data pairs.tsv merges both stacks; eval --source/--target gives BLEU on the output', () => {
      // a TSV made from the val files
      const en = zlib.gunzipSync(fs.readFileSync(m30k('val.en.gz'))).toString('utf8').split('\n');
      const de = zlib.gunzipSync(fs.readFileSync(m30k('val.de.gz'))).toString('utf8').split('\n');
      fs.writeFileSync(path.join(cwd, 'pairs.tsv'), en.slice(0, 200).map((s: string, i: number) => `${s}\t${de[i]}`).join('\n') + '\n');
      const r = ffmerge(cwd, 'compress', MARIAN, '--data', 'pairs.tsv', '--window', '4-5', '--method', 'permute', '--calibration-size', '150', '--validation-size', '20', '--out', 'mt', '--json');
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      const out = JSON.parse(r.stdout);
      expect(out.metric.name).toBe('bleu');
      expect(out.windows.map((w: { stack: string }) => w.stack)).toEqual(['encoder', 'decoder']);
      expect(out.data).toMatchObject({ calibration: 150, validation: 20, unit: 'sentences' });
      const ev = ffmerge(cwd, 'eval', 'mt', '--source', m30k('test_2016_flickr.en.gz'), '--target', m30k('test_2016_flickr.de.gz'), '--count', '20', '--json');
      expect(ev.code).toBe(0);
      const e = JSON.parse(ev.stdout);
      expect(e.sentences).toBe(20);
      expect(e.bleu).toBeGreaterThan(10);
      const later = JSON.parse(ffmerge(cwd, 'eval', 'mt', '--source', m30k('test_2016_flickr.en.gz'), '--target', m30k('test_2016_flickr.de.gz'), '--start', '20', '--count', '5', '--json').stdout);
      expect([later.start, later.sentences]).toEqual([20, 5]);
      expect(later.bleu).not.toBe(e.bleu);
    });

    it('--recover refit and both baselines run for both stacks', () => {
      const r = ffmerge(cwd, 'compress', MARIAN, '--source', m30k('val.en.gz'), '--target', m30k('val.de.gz'), '--window', '4-5', '--recover', 'refit', '--baselines', 'drop-ff,drop-layers', '--calibration-size', '100', '--validation-size', '10', '--out', 'mt-refit', '--json');
      expect(r.code).toBe(0);
      const out = JSON.parse(r.stdout);
      expect(out.recover).toBe('refit');
      expect(out.baselines['drop-ff'].windows).toEqual(expect.objectContaining({ encoder: expect.any(String), decoder: expect.any(String) }));
      expect(out.baselines['drop-layers'].paramsRemoved).toBeGreaterThan(0);
    });

    it('the calibration files given again as the validation corpus exit 2 (INVALID_ARGUMENT) before any work', () => {
      // Before: validation read the calibration pairs from the first one, every candidate scored on pairs it was calibrated on
      const r = ffmerge(cwd, 'compress', MARIAN, '--source', m30k('val.en.gz'), '--target', m30k('val.de.gz'), '--valid-source', m30k('val.en.gz'), '--valid-target', m30k('val.de.gz'), '--window', '4-5', '--out', 'mt-same', '--json');
      expect(r.code).toBe(2);
      expect(errorOf(r)).toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringMatching(/overlap the calibration pairs/) });
      expect(fs.existsSync(path.join(cwd, 'mt-same'))).toBe(false);
    });

    it('misaligned --source/--target and a bad --stacks are typed errors', () => {
      const a = ffmerge(cwd, 'eval', MARIAN, '--source', m30k('test_2016_flickr.en.gz'), '--target', m30k('val.de.gz'), '--json');
      expect(a.code).not.toBe(0);
      expect(errorOf(a).code).toBe('INVALID_DATA');
      const b = ffmerge(cwd, 'compress', MARIAN, '--source', m30k('val.en.gz'), '--target', m30k('val.de.gz'), '--stacks', 'all', '--json');
      expect(b.code).not.toBe(0);
      expect(errorOf(b).message).toMatch(/--stacks/);
      expect(fs.readdirSync(cwd)).toEqual([]);
    });
  });
});
