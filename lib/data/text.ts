/**
 * Reading text datasets: plain text (one document per line, or the whole file) and JSON Lines (one document
 * per line in a string field, `text` by default), each optionally gzip-compressed. Compression is recognised
 * by its magic bytes, not the file name. Line and document readers stream: a .gz file is inflated
 * chunk by chunk, never held whole in memory.
 */
import { openRegularFile } from '../files';
import * as fs from 'node:fs';
import { pipeline } from 'node:stream';
import * as zlib from 'node:zlib';
import { FfmergeError } from '../errors';

export interface TextSourceOptions {
  /** JSON Lines field holding the document text. Default "text". */
  field?: string;
  /** Force the format instead of guessing it from the name (.jsonl / .jsonl.gz → jsonl, otherwise txt). */
  format?: 'txt' | 'jsonl';
}

function notFound(file: string, e: unknown): FfmergeError {
  return new FfmergeError('DATA_NOT_FOUND', `data file ${file} cannot be read: ${(e as Error).message}`, { cause: e });
}

async function isGzip(file: string): Promise<boolean> {
  let fh: fs.promises.FileHandle;
  try {
    // a regular file only: a FIFO (or /dev/zero) would block or never end, a directory fails late (lib/files.ts)
    fh = await openRegularFile(file, 'INVALID_DATA');
  } catch (e) {
    if (e instanceof FfmergeError) throw e;
    throw notFound(file, e);
  }
  try {
    const head = Buffer.alloc(2);
    const { bytesRead } = await fh.read(head, 0, 2, 0);
    return bytesRead === 2 && head[0] === 0x1f && head[1] === 0x8b;
  } finally {
    await fh.close();
  }
}

/** A UTF-8 text stream of the file's contents, inflated when gzip-compressed. */
async function openText(file: string): Promise<NodeJS.ReadableStream & AsyncIterable<string>> {
  const gz = await isGzip(file);
  const raw = fs.createReadStream(file);
  const out = gz ? pipeline(raw, zlib.createGunzip(), () => {}) : raw;
  out.setEncoding('utf8');
  return out as NodeJS.ReadableStream & AsyncIterable<string>;
}

function formatOf(file: string, opts: TextSourceOptions): 'txt' | 'jsonl' {
  return opts.format ?? (/\.jsonl(\.gz)?$/i.test(file) ? 'jsonl' : 'txt');
}

function wrapStreamError(file: string, e: unknown): FfmergeError {
  if (e instanceof FfmergeError) return e;
  const code = (e as NodeJS.ErrnoException).code;
  if (code === 'ENOENT' || code === 'EACCES' || code === 'EISDIR') return notFound(file, e);
  return new FfmergeError('INVALID_DATA', `${file} could not be read as text: ${(e as Error).message}`, { cause: e });
}

/** Streams the lines of a text file (.txt or .gz), without their line terminators ("\n" or "\r\n"). */
export async function* readLines(file: string): AsyncGenerator<string> {
  const stream = await openText(file);
  let rest = '';
  try {
    for await (const chunk of stream) {
      const parts = (rest + chunk).split('\n');
      rest = parts.pop()!;
      for (const p of parts) yield p.endsWith('\r') ? p.slice(0, -1) : p;
    }
  } catch (e) {
    throw wrapStreamError(file, e);
  } finally {
    (stream as unknown as { destroy?: () => void }).destroy?.();
  }
  if (rest !== '') yield rest.endsWith('\r') ? rest.slice(0, -1) : rest;
}

/**
 * Streams the documents of a dataset: each line of a text file, or the `field` string of each line of a
 * JSON Lines file (blank lines skipped). A line that is not JSON, or lacks the field, is INVALID_DATA.
 */
export async function* readDocuments(file: string, opts: TextSourceOptions = {}): AsyncGenerator<string> {
  if (formatOf(file, opts) === 'txt') {
    yield* readLines(file);
    return;
  }
  const field = opts.field ?? 'text';
  let lineNo = 0;
  for await (const line of readLines(file)) {
    lineNo++;
    if (line.trim() === '') continue;
    let obj: unknown;
    try {
      obj = JSON.parse(line);
    } catch (e) {
      throw new FfmergeError('INVALID_DATA', `${file} line ${lineNo} is not valid JSON (${(e as Error).message})`);
    }
    const v = typeof obj === 'object' && obj !== null ? (obj as Record<string, unknown>)[field] : undefined;
    if (typeof v !== 'string') {
      throw new FfmergeError('INVALID_DATA', `${file} line ${lineNo} has no string field "${field}"`);
    }
    yield v;
  }
}

/**
 * The whole dataset as one string: a text file's exact contents (inflated if gzip), or a JSON Lines file's
 * documents joined with "\n".
 */
export async function readText(file: string, opts: TextSourceOptions = {}): Promise<string> {
  if (formatOf(file, opts) === 'jsonl') {
    const docs: string[] = [];
    for await (const d of readDocuments(file, opts)) docs.push(d);
    return docs.join('\n');
  }
  const stream = await openText(file);
  const parts: string[] = [];
  try {
    for await (const chunk of stream) parts.push(chunk);
  } catch (e) {
    throw wrapStreamError(file, e);
  }
  return parts.join('');
}
