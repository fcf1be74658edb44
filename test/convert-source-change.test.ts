/**
 * convert reads the source's record, report and tie copies before it writes: a source replaced in that time
 * (another run's `compress --overwrite` to the same folder renames a new output into place) is SOURCE_CHANGED.
 * It used to take the source's stamp only when the write began, and wrote B's weights under A's record (tester S).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { convertCheckpoint } from '../lib/checkpoint/convert';
import { CheckpointReader } from '../lib/checkpoint/ties';
import { compress } from '../lib/pipeline/compress';

const BUNDLED = path.join(__dirname, '..', 'models', 'llama-stories260k');
let tmp: string;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ffmerge-convert-race-'));
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

test.each(['expanded', 'tied'] as const)('a source replaced while convert (to %s) reads it is SOURCE_CHANGED, and nothing is written', async (format) => {
  const base = { calibration: path.join(BUNDLED, 'calibration.txt'), calibrationTokens: 512, validationTokens: 512, blockSize: 128, method: 'permute', recover: 'none' } as const;
  const a = path.join(tmp, `a-${format}`);
  const b = path.join(tmp, `b-${format}`);
  await compress(BUNDLED, { ...base, window: '1-2', out: a });
  await compress(BUNDLED, { ...base, window: '3-4', out: b });
  const source = format === 'tied' ? path.join(tmp, `a-exp-${format}`) : a;
  if (format === 'tied') await convertCheckpoint(a, source, 'expanded');
  const replacement = format === 'tied' ? path.join(tmp, `b-exp-${format}`) : b;
  if (format === 'tied') await convertCheckpoint(b, replacement, 'expanded');
  // the first reader convert closes (after reading the record's windows and copies) swaps the folder, as a rename would
  const close = CheckpointReader.prototype.close;
  let swapped = false;
  const spy = jest.spyOn(CheckpointReader.prototype, 'close').mockImplementation(async function (this: CheckpointReader) {
    await close.call(this);
    if (!swapped) {
      swapped = true;
      fs.renameSync(source, `${source}-old`);
      fs.renameSync(replacement, source);
    }
  });
  const out = path.join(tmp, `out-${format}`);
  try {
    await expect(convertCheckpoint(source, out, format)).rejects.toMatchObject({ code: 'SOURCE_CHANGED' });
  } finally {
    spy.mockRestore();
  }
  expect(swapped).toBe(true);
  expect(fs.existsSync(out)).toBe(false);
});
