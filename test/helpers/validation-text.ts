/**
 * Validation text for tests on the bundled model that is not its calibration file: compress refuses the
 * calibration file, or a byte-identical copy of it, as validation (it would score the text that shaped the
 * merge). This is the calibration text's lines in reverse order: the same kind of text, other bytes, and a
 * file of its own that `ffmerge eval` can read too. One file per calibration text, named by its hash, made
 * once (temp file + rename, so test processes running at once never see half of it) and reused by every run
 * after: a folder per process, removed at 'exit', stayed behind whenever jest ended a worker without it.
 */
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

export function validationText(calibrationFile: string): string {
  const text = fs.readFileSync(calibrationFile, 'utf8');
  const hash = crypto.createHash('sha256').update(text).digest('hex').slice(0, 16);
  const file = path.join(os.tmpdir(), `ffmerge-test-valid-${hash}.txt`);
  if (fs.existsSync(file)) return file;
  const lines = text.split('\n').filter((l) => l.trim() !== '');
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, lines.reverse().join('\n') + '\n');
  fs.renameSync(tmp, file);
  return file;
}
