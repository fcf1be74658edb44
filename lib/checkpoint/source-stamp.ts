/**
 * Whether a model folder still holds the files a job started from. A compress loads the model at the start and
 * reads the source again, by path, when it writes the output (the tensors it did not change, config, tokenizer):
 * a source replaced in between (another job's overwrite of that folder, a download finishing) would give an
 * output whose weights are not the ones its report scored. The stamp changes when any file is replaced or
 * rewritten, and the job refuses to write from a changed source.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { FfmergeError } from '../errors';

/**
 * Each file's name, size, device, inode and modification time (links followed: a Hugging Face cache snapshot
 * is links to blobs). Notes (*.md) and hidden files are left out: editing a card changes no weight.
 */
export function sourceStamp(dir: string): string {
  const parts: string[] = [];
  for (const name of fs.readdirSync(dir).sort()) {
    if (name.startsWith('.') || name.endsWith('.md')) continue;
    const st = fs.statSync(path.join(dir, name), { bigint: true, throwIfNoEntry: false });
    if (st?.isFile()) parts.push(`${name}:${st.size}:${st.dev}:${st.ino}:${st.mtimeNs}`);
  }
  return parts.join('\n');
}

/** SOURCE_CHANGED unless the folder's stamp is still `stamp`. */
export function checkSourceUnchanged(dir: string, stamp: string, what: string): void {
  const now = sourceStamp(dir);
  if (now === stamp) return;
  const was = new Map(stamp.split('\n').map((l) => [l.slice(0, l.indexOf(':')), l]));
  const is = new Map(now.split('\n').map((l) => [l.slice(0, l.indexOf(':')), l]));
  const changed = [...new Set([...was.keys(), ...is.keys()])].filter((n) => n !== '' && was.get(n) !== is.get(n)).sort();
  throw new FfmergeError(
    'SOURCE_CHANGED',
    `the model folder ${dir} changed while ${what} (${changed.join(', ')} replaced, rewritten, added or removed), so nothing was written: run again on the folder as it is now`,
  );
}
