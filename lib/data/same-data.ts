/**
 * Whether two data paths hold the same data: the same file (another path, a hard or symbolic link) or a
 * byte-identical copy. A validation set that is the calibration or training data again scores what shaped
 * the model, and a copy under another name (valid.txt copied from train.txt, or train.txt.gz inflated) is the
 * commonest way to give one.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { pipeline, Transform, type Readable } from 'node:stream';
import * as zlib from 'node:zlib';

/**
 * How two paths hold the same data, for a message: 'file' (one file), 'copy' (equal bytes), 'gzip' (equal
 * bytes once the gzip-compressed one, or both, are inflated: train.txt beside train.txt.gz), or none.
 */
export type SameData = 'file' | 'copy' | 'gzip' | 'text' | undefined;

/** Bytes compared per read: reads are async, so a large file never holds the event loop. */
const CHUNK = 1 << 20;

/**
 * `text`: the files are read as text, so two that differ only in line ends (CRLF, CR, LF) or a UTF-8
 * byte-order mark are the same data too ('text'): the readers give them the same lines.
 */
export async function sameData(a: string, b: string, opts: { text?: boolean } = {}): Promise<SameData> {
  let sa: fs.Stats;
  let sb: fs.Stats;
  try {
    [sa, sb] = await Promise.all([fs.promises.stat(a), fs.promises.stat(b)]);
  } catch {
    // a missing file is reported by whoever reads it
    return path.resolve(a) === path.resolve(b) ? 'file' : undefined;
  }
  if (sa.dev === sb.dev && sa.ino === sb.ino) return 'file';
  if (!sa.isFile() || !sb.isFile() || sa.size === 0 || sb.size === 0) return undefined;
  if (sa.size === sb.size && (await equalStreams(open(a, false), open(b, false)))) return 'copy';
  const [ga, gb] = await Promise.all([isGzip(a), isGzip(b)]);
  if ((ga || gb) && (await equalStreams(open(a, ga), open(b, gb)))) return 'gzip';
  if (opts.text && (await equalStreams(asText(open(a, ga)), asText(open(b, gb))))) return 'text';
  return undefined;
}

const LF = Buffer.from([0x0a]);

/** The stream as the text readers see it: a leading UTF-8 byte-order mark dropped, CRLF and CR read as LF. */
function asText(raw: Readable): Readable {
  let first = true;
  let pendingCR = false; // a chunk that ended in CR: its LF, if any, starts the next chunk
  const out = new Transform({
    transform(chunk: Buffer, _enc, done) {
      let bytes = chunk;
      if (first && bytes.length > 0) {
        first = false;
        if (bytes.length >= 3 && bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf) bytes = bytes.subarray(3);
      }
      if (pendingCR && bytes[0] === 0x0a) bytes = bytes.subarray(1); // the LF of a CRLF split across chunks: already written
      pendingCR = false;
      if (!bytes.includes(0x0d)) return done(null, bytes); // LF text: as it is
      // each CR becomes LF, and the LF after it (this chunk's, or the next one's first byte) is dropped
      const parts: Buffer[] = [];
      let from = 0;
      for (let cr = bytes.indexOf(0x0d); cr >= 0; cr = bytes.indexOf(0x0d, from)) {
        parts.push(bytes.subarray(from, cr), LF);
        from = cr + 1;
        if (from === bytes.length) pendingCR = true;
        else if (bytes[from] === 0x0a) from++;
      }
      parts.push(bytes.subarray(from));
      done(null, Buffer.concat(parts));
    },
  });
  return piped(raw, out);
}

/** gzip by its magic bytes, as the readers tell it (text.ts): a name says nothing. */
async function isGzip(file: string): Promise<boolean> {
  let fh: fs.promises.FileHandle | undefined;
  try {
    fh = await fs.promises.open(file, 'r');
    const head = Buffer.alloc(2);
    const { bytesRead } = await fh.read(head, 0, 2, 0);
    return bytesRead === 2 && head[0] === 0x1f && head[1] === 0x8b;
  } catch {
    return false;
  } finally {
    await fh?.close();
  }
}

function open(file: string, gzip: boolean): Readable {
  const raw = fs.createReadStream(file, { highWaterMark: CHUNK });
  if (!gzip) return raw;
  return piped(raw, zlib.createGunzip());
}

/**
 * `from` piped into `to`, as one stream: a read error ends `to` with it, and destroying `to` (a comparison
 * that stops at the first difference) closes `from` too. `from.pipe(to)` left the file open there: a
 * descriptor lost per check, until a server running many jobs ran out of them (tester GC).
 */
function piped(from: Readable, to: Transform): Readable {
  // the callback's error is the stream's own, which the reader of `to` sees
  return pipeline(from, to, () => {});
}

/**
 * Whether two streams give the same bytes; stops at the first difference, so a file that is not the same
 * data costs about one chunk. A stream that cannot be read (a corrupt .gz) is not the same data: whoever reads
 * that file reports it.
 */
async function equalStreams(a: Readable, b: Readable): Promise<boolean> {
  const ia = a[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  const ib = b[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  // the unread rest of each stream's last chunk; undefined once the stream has ended
  let ba: Buffer | undefined = Buffer.alloc(0);
  let bb: Buffer | undefined = Buffer.alloc(0);
  const refill = async (it: AsyncIterator<Buffer>, buf: Buffer | undefined) => {
    if (buf === undefined || buf.length > 0) return buf;
    const r = await it.next();
    return r.done ? undefined : r.value;
  };
  try {
    for (;;) {
      [ba, bb] = await Promise.all([refill(ia, ba), refill(ib, bb)]);
      if (ba === undefined || bb === undefined) return ba === bb; // equal only if both ended together
      const n = Math.min(ba.length, bb.length);
      if (ba.compare(bb, 0, n, 0, n) !== 0) return false;
      ba = ba.subarray(n);
      bb = bb.subarray(n);
    }
  } catch {
    return false;
  } finally {
    a.destroy();
    b.destroy();
  }
}

/** "a byte-identical copy", "a gzip-compressed copy": how one file holds another's data (not 'file'). */
export function copyWords(how: 'copy' | 'gzip' | 'text'): string {
  return how === 'copy' ? 'a byte-identical copy' : how === 'gzip' ? 'a copy (one of the two gzip-compressed)' : 'a copy (its line ends or byte-order mark aside)';
}

/** "is the calibration file again" or "is a byte-identical copy of the calibration file" (what: 'calibration'). */
export function sameDataPhrase(how: 'file' | 'copy' | 'gzip' | 'text', what: string): string {
  if (how === 'file') return `is the ${what} file again`;
  if (how === 'text') return `holds the same text as the ${what} file (only its line ends or byte-order mark differ)`;
  return how === 'copy' ? `is a byte-identical copy of the ${what} file` : `holds the same data as the ${what} file (one of the two gzip-compressed)`;
}
