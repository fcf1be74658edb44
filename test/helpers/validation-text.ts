/**
 * Validation text for tests on the bundled model that is not its calibration file: compress refuses the
 * calibration file, or a byte-identical copy of it, as validation (it would score the text that shaped the
 * merge). This is the calibration text's lines in reverse order: the same kind of text, other bytes, and a
 * file of its own that `ffmerge eval` can read too. Written once per test process, removed when it exits.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

let written: string | undefined;

export function validationText(calibrationFile: string): string {
  if (written) return written;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ffmerge-valid-'));
  const file = path.join(dir, 'valid.txt');
  const lines = fs.readFileSync(calibrationFile, 'utf8').split('\n').filter((l) => l.trim() !== '');
  fs.writeFileSync(file, lines.reverse().join('\n') + '\n');
  process.once('exit', () => fs.rmSync(dir, { recursive: true, force: true }));
  return (written = file);
}
