/**
 * A model folder laid out as the Hugging Face cache keeps it (`snapshots/<rev>/` holding only symbolic links into
 * `blobs/`): every output carries its tokenizer and side files. They used to be left out silently (only regular
 * files were copied), so the output loaded but `eval` on it failed for want of tokenizer.json.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { compress } from '../lib/pipeline/compress';
import { convertCheckpoint } from '../lib/checkpoint/convert';
import { exportOnnx } from '../lib/export/onnx/export';

const BUNDLED = path.join(__dirname, '..', 'models', 'llama-stories260k');

let tmp: string;
let snapshot: string;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ffmerge-hfcache-'));
  const blobs = path.join(tmp, 'models--x--llama', 'blobs');
  snapshot = path.join(tmp, 'models--x--llama', 'snapshots', 'abc123');
  fs.mkdirSync(blobs, { recursive: true });
  fs.mkdirSync(snapshot, { recursive: true });
  for (const name of fs.readdirSync(BUNDLED)) {
    if (name === 'calibration.txt') continue;
    const blob = path.join(blobs, `sha-${name}`);
    fs.copyFileSync(path.join(BUNDLED, name), blob);
    fs.symlinkSync(path.relative(snapshot, blob), path.join(snapshot, name));
  }
  // links that are not files to copy: a dangling one and one to a folder
  fs.symlinkSync('../../blobs/missing', path.join(snapshot, 'dangling.json'));
  fs.symlinkSync('../../blobs', path.join(snapshot, 'folder'));
  // a link out of the repo (tester GD: NOTICE -> /etc/passwd was copied into every output)
  fs.writeFileSync(path.join(tmp, 'host-secret.txt'), 'not the model\'s');
  fs.symlinkSync(path.join(tmp, 'host-secret.txt'), path.join(snapshot, 'NOTICE'));
  fs.symlinkSync('../../../host-secret.txt', path.join(snapshot, 'LICENSE.txt'));
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

test('compress, convert and export of a snapshot of links write its tokenizer and side files', async () => {
  const sideFiles = fs.readdirSync(BUNDLED).filter((n) => !n.endsWith('.safetensors') && n !== 'calibration.txt' && n !== 'config.json' && n !== 'README.md');
  expect(sideFiles).toContain('tokenizer.json');
  const out = path.join(tmp, 'out');
  const data = path.join(BUNDLED, 'calibration.txt');
  await compress(snapshot, { calibration: data, calibrationTokens: 512, validationTokens: 512, blockSize: 128, window: '1-2', method: 'permute', recover: 'none', out });
  const expanded = path.join(tmp, 'expanded');
  await convertCheckpoint(out, expanded, 'expanded');
  const onnx = path.join(tmp, 'onnx');
  await exportOnnx(snapshot, { out: onnx });
  for (const dir of [out, expanded, onnx]) {
    for (const name of sideFiles) {
      expect([dir, name, fs.lstatSync(path.join(dir, name)).isFile()]).toEqual([dir, name, true]); // a copy, not a link
      expect(fs.readFileSync(path.join(dir, name))).toEqual(fs.readFileSync(path.join(BUNDLED, name)));
    }
    expect(fs.existsSync(path.join(dir, 'dangling.json'))).toBe(false);
    expect(fs.existsSync(path.join(dir, 'folder'))).toBe(false);
    expect([dir, fs.existsSync(path.join(dir, 'NOTICE')), fs.existsSync(path.join(dir, 'LICENSE.txt'))]).toEqual([dir, false, false]);
  }
});

test('a plain model folder: a link to a file inside it is copied, one out of it is not', async () => {
  const dir = path.join(tmp, 'plain');
  fs.cpSync(BUNDLED, dir, { recursive: true });
  fs.mkdirSync(path.join(dir, 'docs'));
  fs.writeFileSync(path.join(dir, 'docs', 'notes.md'), 'inside');
  fs.symlinkSync('docs/notes.md', path.join(dir, 'NOTES.md'));
  fs.symlinkSync(path.join(tmp, 'host-secret.txt'), path.join(dir, 'NOTICE'));
  const out = path.join(tmp, 'plain-onnx');
  await exportOnnx(dir, { out });
  expect(fs.readFileSync(path.join(out, 'NOTES.md'), 'utf8')).toBe('inside');
  expect(fs.existsSync(path.join(out, 'NOTICE'))).toBe(false);
});
