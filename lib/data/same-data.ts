/**
 * Whether two data paths hold the same data: the same file (another path, a hard or symbolic link) or a
 * byte-identical copy. A validation set that is the calibration or training data again scores what shaped
 * the model, and a copy under another name (valid.txt copied from train.txt) is the commonest way to give one.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

/** How two paths hold the same data, for a message: 'file' (one file), 'copy' (equal bytes), or none. */
export type SameData = 'file' | 'copy' | undefined;

/** Bytes compared per read: reads are async, so a large file never holds the event loop. */
const CHUNK = 1 << 20;

export async function sameData(a: string, b: string): Promise<SameData> {
  let sa: fs.Stats;
  let sb: fs.Stats;
  try {
    [sa, sb] = await Promise.all([fs.promises.stat(a), fs.promises.stat(b)]);
  } catch {
    // a missing file is reported by whoever reads it
    return path.resolve(a) === path.resolve(b) ? 'file' : undefined;
  }
  if (sa.dev === sb.dev && sa.ino === sb.ino) return 'file';
  if (!sa.isFile() || !sb.isFile() || sa.size !== sb.size || sa.size === 0) return undefined;
  return (await equalBytes(a, b, sa.size)) ? 'copy' : undefined;
}

async function equalBytes(a: string, b: string, size: number): Promise<boolean> {
  const opened = await Promise.allSettled([fs.promises.open(a, 'r'), fs.promises.open(b, 'r')]);
  if (opened[0].status === 'rejected' || opened[1].status === 'rejected') {
    // one opened, the other not: the open one is closed, and files that cannot both be read are not the same data
    await Promise.all(opened.map((o) => (o.status === 'fulfilled' ? o.value.close() : undefined)));
    return false;
  }
  const [fa, fb] = [opened[0].value, opened[1].value];
  try {
    const ba = Buffer.allocUnsafe(Math.min(CHUNK, size));
    const bb = Buffer.allocUnsafe(ba.length);
    for (let at = 0; at < size; at += ba.length) {
      const n = Math.min(ba.length, size - at);
      const [ra, rb] = await Promise.all([fa.read(ba, 0, n, at), fb.read(bb, 0, n, at)]);
      // a file that changed size while read is not the same data
      if (ra.bytesRead !== n || rb.bytesRead !== n) return false;
      if (ba.compare(bb, 0, n, 0, n) !== 0) return false;
    }
    return true;
  } finally {
    await Promise.all([fa.close(), fb.close()]);
  }
}

/** "is the calibration file again" or "is a byte-identical copy of the calibration file" (what: 'calibration'). */
export function sameDataPhrase(how: 'file' | 'copy', what: string): string {
  return how === 'file' ? `is the ${what} file again` : `is a byte-identical copy of the ${what} file`;
}
