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
  }
});
