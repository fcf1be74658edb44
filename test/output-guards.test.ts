/**
 * What an output may replace (tester S): `--overwrite` replaces a folder whole, so it refuses a folder that is
 * not a model folder (`--out . --overwrite` in a source tree deleted the tree) and one holding an input of the
 * run (the calibration file inside --out was deleted); a mount point, which no rename can replace, is refused
 * before any work (it failed EBUSY, untyped, after all of it); an OS error while writing is IO_ERROR.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { checkOutputDir } from '../lib/checkpoint/write';
import { compress } from '../lib/pipeline/compress';

const BUNDLED = path.join(__dirname, '..', 'models', 'llama-stories260k');
const TEXT = path.join(BUNDLED, 'calibration.txt');
let tmp: string;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ffmerge-out-guards-'));
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const fast = { calibrationTokens: 512, validationTokens: 512, blockSize: 128, window: '1-2', method: 'permute', recover: 'none', overwrite: true } as const;

test('--overwrite refuses a non-empty folder that is not a model folder, and leaves it as it was', async () => {
  const out = path.join(tmp, 'src-tree');
  fs.mkdirSync(path.join(out, 'sub'), { recursive: true });
  fs.writeFileSync(path.join(out, 'main.c'), 'int main() {}\n');
  await expect(compress(BUNDLED, { ...fast, calibration: TEXT, out })).rejects.toMatchObject({ code: 'OUTPUT_EXISTS', message: expect.stringContaining('is not a model folder (it has no config.json)') });
  expect(fs.readdirSync(out).sort()).toEqual(['main.c', 'sub']);
  // an earlier output (a model folder) is replaced as before
  const model = path.join(tmp, 'model-out');
  await compress(BUNDLED, { ...fast, calibration: TEXT, out: model });
  await compress(BUNDLED, { ...fast, calibration: TEXT, out: model });
  expect(fs.existsSync(path.join(model, 'model.safetensors'))).toBe(true);
});

test('--overwrite refuses an output that holds an input of the run (the data files, not only the model)', async () => {
  const out = path.join(tmp, 'holds-data');
  await compress(BUNDLED, { ...fast, calibration: TEXT, out });
  const calib = path.join(out, 'calib.txt');
  fs.copyFileSync(TEXT, calib);
  await expect(compress(BUNDLED, { ...fast, calibration: calib, out })).rejects.toMatchObject({ code: 'OUTPUT_EXISTS', message: expect.stringContaining(`holds ${calib}, an input of this run`) });
  const test = path.join(out, 'test.txt');
  fs.writeFileSync(test, fs.readFileSync(TEXT, 'utf8').split('\n').reverse().join('\n'));
  await expect(compress(BUNDLED, { ...fast, calibration: TEXT, test, out })).rejects.toMatchObject({ code: 'OUTPUT_EXISTS', message: expect.stringContaining(`holds ${test}`) });
  expect(fs.existsSync(calib)).toBe(true);
  // image and parallel sources name their files inside an object
  expect(() => checkOutputDir(BUNDLED, out, true, [{ images: calib, labels: TEXT }])).toThrow(/an input of this run/);
});

test('a parent that takes no new folders is said so in words, not only as ENOENT (tester ED)', () => {
  if (!fs.existsSync('/proc/self')) return console.warn('skipped: no /proc on this system');
  expect(() => checkOutputDir(BUNDLED, '/proc/x/y', false)).toThrow(expect.objectContaining({ code: 'OUTPUT_NOT_WRITABLE', message: 'cannot write the output /proc/x/y: /proc is not writable (it takes no new folders, ENOENT)' }));
});

test('an output under a link that leads nowhere is OUTPUT_NOT_WRITABLE before any work (tester EG: ENOENT after it)', () => {
  const link = path.join(tmp, 'dangling');
  fs.symlinkSync(path.join(tmp, 'no-such-target'), link);
  expect(() => checkOutputDir(BUNDLED, path.join(link, 'x'), false)).toThrow(expect.objectContaining({ code: 'OUTPUT_NOT_WRITABLE', message: expect.stringContaining(`${link} is a symbolic link that points nowhere`) }));
});

test('an output name whose temp name would be too long is refused before any work (tester EH: ENAMETOOLONG after it)', () => {
  const long = path.join(tmp, 'a'.repeat(250));
  expect(() => checkOutputDir(BUNDLED, long, false)).toThrow(expect.objectContaining({ code: 'OUTPUT_NOT_WRITABLE', message: expect.stringMatching(/is too long: .* give a name of at most 2\d\d bytes$/) }));
  expect(() => checkOutputDir(BUNDLED, path.join(tmp, 'a'.repeat(200)), false)).not.toThrow();
});

test('a mount point as the output is OUTPUT_NOT_WRITABLE before any work', () => {
  const mnt = path.join(tmp, 'mnt');
  fs.mkdirSync(mnt);
  // needs a tmpfs this process may mount (root, as in CI containers); skipped, and said so, where it cannot
  const mounted = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', mnt]).status === 0;
  if (!mounted) {
    console.warn('skipped: cannot mount a tmpfs here (not root, or no mount); the mount-point refusal is untested on this machine');
    return;
  }
  try {
    expect(() => checkOutputDir(BUNDLED, mnt, false)).toThrow(expect.objectContaining({ code: 'OUTPUT_NOT_WRITABLE', message: expect.stringContaining('is a mount point') }));
    expect(() => checkOutputDir(BUNDLED, mnt, true)).toThrow(expect.objectContaining({ code: 'OUTPUT_NOT_WRITABLE' }));
    // a folder inside it is fine
    expect(() => checkOutputDir(BUNDLED, path.join(mnt, 'model'), false)).not.toThrow();
  } finally {
    spawnSync('umount', [mnt]);
  }
});

// An OS error while writing (disk full, file too large, read-only) was an untyped INTERNAL_ERROR (exit 1) in the
// ONNX writer and for side files; it is IO_ERROR (exit 3) naming the output, and nothing is left behind.
test('a file-size limit hit while exporting is IO_ERROR, exit 3, with no output or temp folder left', () => {
  const parent = path.join(tmp, 'efbig');
  const out = path.join(parent, 'o');
  const bin = path.join(__dirname, '..', 'bin', 'ffmerge.js');
  // ulimit -f: 1024-byte blocks; Node ignores SIGXFSZ, so the write fails EFBIG
  const r = spawnSync('bash', ['-c', `ulimit -f 200 && exec "${process.execPath}" "${bin}" export "${BUNDLED}" --out "${out}"`], {
    encoding: 'utf8',
    env: { ...process.env, FFMERGE_FROM_SOURCE: '1' },
    timeout: 120_000,
  });
  expect(r.stderr).toMatch(/cannot write the output .*EFBIG.*\[IO_ERROR\]/);
  expect(r.status).toBe(3);
  expect(fs.existsSync(parent)).toBe(false); // neither the output, its temp folder, nor the parent mkdir -p made
});

// Runs overwriting one output at once race between moving the old output aside and renaming theirs into place
// (tester S: 3 processes × 3,000 moves gave raw ENOENT errors and "pass --overwrite" to runs that had).
test('with overwrite, a rename another run raced is tried again: the last run wins, typed throughout', async () => {
  const { moveIntoPlace, tempName } = await import('../lib/checkpoint/write');
  const target = path.join(tmp, 'raced');
  fs.mkdirSync(target);
  fs.writeFileSync(path.join(target, 'config.json'), '{"old": true}');
  const tmpDir = tempName(target);
  fs.mkdirSync(tmpDir);
  fs.writeFileSync(path.join(tmpDir, 'config.json'), '{"ours": true}');
  // the module object itself (the namespace import above is read-only); write.ts reads through to it
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const fsModule = require('node:fs') as typeof fs;
  const rename = fsModule.renameSync;
  let raced = 0;
  const spy = jest.spyOn(fsModule, 'renameSync').mockImplementation((from, to) => {
    // the first move of the old output aside finds it gone (another run moved it), the first placing of ours
    // finds another run's output there
    if (from === target && raced === 0) {
      raced++;
      const e = Object.assign(new Error(`ENOENT: no such file or directory, rename '${String(from)}'`), { code: 'ENOENT' });
      throw e;
    }
    if (from === tmpDir && raced === 1) {
      raced++;
      const e = Object.assign(new Error(`ENOTEMPTY: directory not empty, rename '${String(from)}'`), { code: 'ENOTEMPTY' });
      throw e;
    }
    return rename(from, to);
  });
  try {
    moveIntoPlace(tmpDir, target, target, true);
  } finally {
    spy.mockRestore();
  }
  expect(raced).toBe(2);
  expect(JSON.parse(fs.readFileSync(path.join(target, 'config.json'), 'utf8'))).toEqual({ ours: true });
  expect(fs.readdirSync(tmp).filter((n) => n.includes('ffmerge-tmp'))).toEqual([]);
});

test('an output path starting with an unexpanded "~" is refused, not made into a folder named "~"', () => {
  for (const out of ['~/model', '~']) {
    expect(() => checkOutputDir(BUNDLED, out, false)).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT', message: expect.stringContaining('starts with "~"') }));
  }
  expect(() => checkOutputDir(BUNDLED, path.join(tmp, '~model'), false)).not.toThrow(); // only a leading ~ alone or ~/
});

test('on a case-insensitive disk, an --out that names the source in other case is the source: refused (tester FE)', () => {
  // Linux disks here are case-sensitive: one is simulated by stat answering "GPT2" with what "gpt2" is, as APFS
  // and NTFS do while realpath keeps the case typed. Before, the path comparison alone passed it, and
  // --overwrite then moved the source model aside and deleted it.
  const dir = path.join(tmp, 'case');
  const src = path.join(dir, 'gpt2');
  fs.mkdirSync(src, { recursive: true });
  fs.writeFileSync(path.join(src, 'config.json'), '{}');
  const data = path.join(src, 'valid.txt');
  fs.writeFileSync(data, 'text');
  // the module object itself (the namespace import's bindings read from it)
  const nodeFs = require('node:fs') as typeof fs;
  const statSync = nodeFs.statSync;
  const folded = (p: fs.PathLike) => (typeof p === 'string' ? p.replace(`${path.sep}GPT2`, `${path.sep}gpt2`) : p);
  const spy = jest.spyOn(nodeFs, 'statSync').mockImplementation(((p: fs.PathLike, o?: fs.StatSyncOptions) => statSync(folded(p), o)) as typeof fs.statSync);
  try {
    expect(() => checkOutputDir(src, path.join(dir, 'GPT2'), true)).toThrow(expect.objectContaining({ code: 'OUTPUT_EXISTS', message: expect.stringContaining('would overwrite the input model') }));
    expect(() => checkOutputDir(src, path.join(dir, 'GPT2', 'sub'), true)).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT', message: expect.stringContaining('is inside the input model folder') }));
    // a data file inside an --out that is another folder in another case
    const other = path.join(tmp, 'case-other');
    fs.mkdirSync(path.join(other, 'gpt2'), { recursive: true });
    fs.writeFileSync(path.join(other, 'gpt2', 'config.json'), '{}');
    const held = path.join(other, 'gpt2', 'calib.txt');
    fs.writeFileSync(held, 'x');
    expect(() => checkOutputDir(src, path.join(other, 'GPT2'), true, [held])).toThrow(expect.objectContaining({ code: 'OUTPUT_EXISTS', message: expect.stringContaining('an input of this run') }));
  } finally {
    spy.mockRestore();
  }
  expect(fs.existsSync(data)).toBe(true);
});
