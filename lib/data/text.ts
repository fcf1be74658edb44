/**
 * Reading text datasets: plain text (one document per line, or the whole file) and JSON Lines (one document
 * per line in a string field, `text` by default), each optionally gzip-compressed. Compression is recognised
 * by its magic bytes, not the file name (but a file named .gz must be gzip). Line and document readers
 * stream: a .gz file is inflated chunk by chunk, never held whole in memory.
 *
 * What is not text is refused (INVALID_DATA) rather than tokenized into a meaningless score: a file whose
 * first block is binary (checkTextFile), and a file with no text at all (empty, or only blank lines).
 */
import { openRegularFile } from '../files';
import * as fs from 'node:fs';
import { pipeline } from 'node:stream';
import * as zlib from 'node:zlib';
import { FfmergeError } from '../errors';
import { checkOptions, checkPath, isObject } from '../arguments';

export interface TextSourceOptions {
  /** JSON Lines field holding the document text. Default "text". */
  field?: string | undefined;
  /** Force the format instead of guessing it from the name (.jsonl / .jsonl.gz → jsonl, otherwise txt). */
  format?: 'txt' | 'jsonl' | undefined;
}

function notFound(file: string, e: unknown): FfmergeError {
  return new FfmergeError('DATA_NOT_FOUND', `data file ${file} cannot be read: ${(e as Error).message}`, { cause: e });
}

/** Bytes at the start of a text file (after inflating a .gz) that checkTextFile inspects. */
export const TEXT_HEAD_BYTES = 64 * 1024;

/**
 * Up to `n` inflated bytes of gzip data (`whole`: it inflates to fewer). Streamed and stopped early, so a small
 * file that inflates to gigabytes costs only the head. A corrupt stream rejects with zlib's error.
 */
export async function inflatedHead(raw: NodeJS.ReadableStream & { destroy(): void }, n: number): Promise<{ head: Buffer; whole: boolean }> {
  const gunzip = zlib.createGunzip();
  pipeline(raw, gunzip, () => {}); // errors surface on gunzip; an early stop below is not one
  const parts: Buffer[] = [];
  let got = 0;
  try {
    for await (const chunk of gunzip as AsyncIterable<Buffer>) {
      parts.push(chunk);
      if ((got += chunk.length) >= n) break;
    }
  } finally {
    gunzip.destroy();
    raw.destroy();
  }
  return { head: Buffer.concat(parts).subarray(0, n), whole: got < n };
}

/**
 * Whether text ends inside a character: its last lead byte is followed by fewer (or more) continuation bytes
 * (10xxxxxx) than it announces. The stream decoder would turn those bytes into U+FFFD and they would be
 * tokenized and scored; a file's end, unlike the end of the 64 KiB head, cannot cut a character in two.
 */
function endsInsideCharacter(tail: Buffer): boolean {
  let i = tail.length - 1;
  let cont = 0;
  while (i >= 0 && (tail[i]! & 0xc0) === 0x80 && cont < 4) {
    i--;
    cont++;
  }
  if (i < 0) return cont > 0;
  const b = tail[i]!;
  const need = b < 0x80 ? 0 : b >= 0xc0 && b < 0xe0 ? 1 : b >= 0xe0 && b < 0xf0 ? 2 : b >= 0xf0 && b < 0xf8 ? 3 : -1;
  return cont !== need;
}

/**
 * Why a file's first block is not UTF-8 text, or undefined when it may be. The rule (cheap: one pass over
 * 64 KiB, whatever the file's size): a NUL byte, which text never holds and nearly every binary format does
 * (also UTF-16 text, which ffmerge does not read), or bytes that are not valid UTF-8. A multi-byte character
 * cut by the end of the block is not an error (stream mode). Later blocks are not checked: the decoder
 * replaces a stray invalid byte deep in a large corpus instead of refusing the corpus for it.
 */
function binaryReason(head: Buffer): string | undefined {
  // UTF-16 (Windows PowerShell 5's `>` writes it, with a byte-order mark): said as such, not as a NUL byte;
  // without a mark, a NUL at every other byte of its first characters
  const bom16 = head.length >= 2 && ((head[0] === 0xff && head[1] === 0xfe) || (head[0] === 0xfe && head[1] === 0xff));
  const pairs = Math.min(16, head.length >> 1);
  const nulEvery = (at: 0 | 1) => pairs >= 2 && Array.from({ length: pairs }, (_, i) => head[2 * i + at] === 0).every(Boolean);
  if (bom16 || nulEvery(0) || nulEvery(1)) return 'it is UTF-16: save it as UTF-8';
  const nul = head.indexOf(0);
  if (nul >= 0) return `byte ${nul} is a NUL byte`;
  // whether the first n bytes decode: as a prefix of more (`stream`: a character cut at n is fine), or whole
  const decodes = (n: number, stream = true) => {
    try {
      new TextDecoder('utf-8', { fatal: true }).decode(head.subarray(0, n), { stream });
      return true;
    } catch {
      return false;
    }
  };
  if (decodes(head.length)) return undefined;
  // where: the shortest prefix that fails ends where decoding failed. A character left incomplete fails only at
  // the byte after it: it is named from its lead byte.
  let [lo, hi] = [0, head.length];
  while (hi - lo > 1) {
    const mid = (lo + hi) >>> 1;
    if (decodes(mid)) lo = mid;
    else hi = mid;
  }
  let at = hi - 1;
  if (!decodes(at, false)) {
    at--;
    while (at > 0 && (head[at]! & 0xc0) === 0x80) at--; // back over continuation bytes to the lead byte
  }
  return `byte ${at} is not valid UTF-8; save the file as UTF-8`;
}

/** The kind of JSON Lines row a line is ("input_ids" or "text"), or undefined when it is not such a row. */
function rowKind(line: string): 'input_ids' | 'text' | undefined {
  if (!line.trimStart().startsWith('{')) return undefined;
  let row: unknown;
  try {
    row = JSON.parse(line);
  } catch {
    return undefined; // prose that starts with a brace
  }
  if (!isObject(row)) return undefined;
  if (Object.hasOwn(row, 'input_ids')) return 'input_ids';
  return typeof row.text === 'string' ? 'text' : undefined;
}

/**
 * The kind of JSON Lines rows a file's head holds, when its first non-blank lines (up to five, line ends as
 * `newlines()` reads them) all are rows of {"input_ids"} or {"text"}; undefined when any is not (prose, or a row
 * longer than the head). Checked where a file is about to be tokenized as plain text because of its name, so
 * that token ids in ids.txt are not scored as prose. Several lines, not one: a corpus whose first line only is
 * JSON is prose.
 */
function jsonLinesRows(head: Buffer, whole: boolean): 'input_ids' | 'text' | undefined {
  const lines = dropBom(head.toString('utf8')).replace(/\r\n?/g, '\n').split('\n');
  if (!whole) lines.pop(); // cut by the head's end
  let kind: 'input_ids' | 'text' | undefined;
  let seen = 0;
  for (const line of lines) {
    if (line.trim() === '') continue;
    const k = rowKind(line);
    if (k === undefined) return undefined;
    kind ??= k;
    if (++seen === 5) break;
  }
  return kind;
}

/**
 * Checks that `file` can be a text dataset before it is read, and says whether it is gzip: it must be a
 * regular file (a FIFO or /dev/zero would block or never end; lib/files.ts), a file named .gz must start with
 * the gzip magic bytes 1f 8b, and the first
 * TEXT_HEAD_BYTES of its (inflated) contents must not be binary (binaryReason). With `prose` (the file is read as
 * plain text because of its name), its first lines must not all be JSON Lines rows of {"input_ids"} or {"text"}.
 * Missing or unreadable: DATA_NOT_FOUND; anything else: INVALID_DATA.
 */
export async function checkTextFile(file: string, { prose = false }: { prose?: boolean } = {}): Promise<{ gzip: boolean }> {
  const fh = await openDataFile(file);
  try {
    const first = Buffer.alloc(TEXT_HEAD_BYTES);
    const { bytesRead } = await fh.read(first, 0, TEXT_HEAD_BYTES, 0);
    const gzip = bytesRead >= 2 && first[0] === 0x1f && first[1] === 0x8b;
    if (!gzip && /\.gz$/i.test(file)) {
      throw new FfmergeError('INVALID_DATA', `${file} is named .gz but is not gzip-compressed (it does not start with the gzip bytes 1f 8b)`);
    }
    const inflated = gzip
      ? await inflatedHead(fh.createReadStream({ start: 0, autoClose: false, highWaterMark: 1 << 14 }), TEXT_HEAD_BYTES).catch((e: unknown) => {
          throw new FfmergeError('INVALID_DATA', `${file} is gzip-compressed but does not decompress: ${(e as Error).message}`, { cause: e });
        })
      : undefined;
    const head = inflated ? inflated.head : first.subarray(0, bytesRead);
    // the text's last bytes: the head's when it holds the whole text, else (plain files only) read from the end
    const size = gzip ? 0 : (await fh.stat()).size;
    const whole = inflated ? inflated.whole : size <= bytesRead;
    let tail: Buffer | undefined = whole ? head.subarray(-4) : undefined;
    if (!whole && !gzip) {
      tail = Buffer.alloc(4);
      await fh.read(tail, 0, 4, size - 4);
    }
    // a byte's place in a .gz is in its inflated text: said so, where it is not the file's own offset
    const why = binaryReason(head)?.replace(/^byte (\d+)/, gzip ? 'byte $1 of its inflated text' : 'byte $1') ?? (tail && endsInsideCharacter(tail) ? 'it ends inside a UTF-8 character: the file was cut short, or is not UTF-8' : undefined);
    if (why !== undefined) {
      throw new FfmergeError('INVALID_DATA', `${file} is not text (${why}); ffmerge reads UTF-8 text, optionally gzip-compressed`);
    }
    const row = prose ? jsonLinesRows(head, whole) : undefined;
    if (row !== undefined) {
      throw new FfmergeError(
        'INVALID_DATA',
        `${file} holds JSON Lines ({"${row}": …} rows) but is not named .jsonl, so it would be read as plain text, braces and all: rename it .jsonl (or .jsonl.gz when gzip-compressed); JSON meant to be read as text goes in a .jsonl of {"text": …} rows`,
      );
    }
    return { gzip };
  } finally {
    await fh.close();
  }
}

/** A data file as a regular file (opened without blocking on a FIFO); missing or unreadable: DATA_NOT_FOUND. */
export async function openDataFile(file: string): Promise<fs.promises.FileHandle> {
  try {
    return await openRegularFile(file, 'INVALID_DATA');
  } catch (e) {
    if (e instanceof FfmergeError) throw e;
    throw notFound(file, e);
  }
}

/** The error for a file that holds no text, only whitespace: it would be scored on a handful of tokens. */
function noTextError(file: string): FfmergeError {
  return new FfmergeError('INVALID_DATA', `${file} holds no text (it is empty or has only blank lines)`);
}

/**
 * A JSON Lines row that does not parse. A byte-order mark inside the file (files joined with `cat`) is named:
 * JSON.parse's "Unexpected token" quotes the invisible character.
 */
export function badJsonLine(file: string, lineNo: number, line: string, e: unknown): FfmergeError {
  const why = line.charCodeAt(0) === 0xfeff ? 'it starts with a byte-order mark (U+FEFF), as where files were joined with cat: remove it' : (e as Error).message;
  return new FfmergeError('INVALID_DATA', `${file} line ${lineNo} is not valid JSON (${why})`);
}

/**
 * A JSON Lines row's document, its `field` string, or what is wrong with the row, to be said after
 * "<file> line <n> " (a byte-order mark named as badJsonLine names it). Self-contained: tokenize-file.ts's worker
 * is handed this function's source text.
 */
export function jsonLineDocument(line: string, field: string): string | { problem: string } {
  let row: unknown;
  try {
    row = JSON.parse(line);
  } catch (e) {
    const why = line.charCodeAt(0) === 0xfeff ? 'it starts with a byte-order mark (U+FEFF), as where files were joined with cat: remove it' : (e as Error).message;
    return { problem: `is not valid JSON (${why})` };
  }
  const obj = typeof row === 'object' && row !== null ? (row as Record<string, unknown>) : undefined;
  const v = obj?.[field];
  if (typeof v === 'string') return v;
  // a row of token ids among rows of text: said as such, as token-rows.ts says the other way round
  const ids = obj && Object.hasOwn(obj, 'input_ids') ? ', but "input_ids": rows of text and of token ids do not mix' : '';
  return { problem: `has no string field "${field}"${ids}` };
}

/** A leading byte-order mark is not text: it would be tokenized, and break the first line's JSON. */
const dropBom = (s: string): string => (s.charCodeAt(0) === 0xfeff ? s.slice(1) : s);

/**
 * Line ends as Python's text mode reads them (universal newlines): "\r\n" and a lone "\r" become "\n", so a
 * file saved with Windows line ends tokenizes as the same text saved with "\n" (readLines below splits lines
 * by it). Fed chunk by chunk: a chunk's last "\r" waits for the next, which may start with its "\n".
 * (tokenize-file.ts's worker is handed this function's source text.)
 */
export function newlines(): (chunk: string, last?: boolean) => string {
  let cr = false;
  return (chunk, last = false) => {
    let s = cr ? `\r${chunk}` : chunk;
    cr = !last && s.endsWith('\r');
    if (cr) s = s.slice(0, -1);
    return s.replace(/\r\n?/g, '\n');
  };
}

/**
 * Complete lines from chunks of text: each call returns the lines its chunk ends, the unfinished one held until
 * a later chunk ends it (or `last`, when the unfinished one is returned too, "" included). Only the new chunk is
 * searched for "\n" and an unfinished line's pieces are joined once (joining on every chunk is quadratic in a
 * long line). (tokenize-file.ts's worker is handed this one too.)
 */
export function lineSplitter(): (chunk: string, last?: boolean) => string[] {
  let held: string[] = [];
  return (chunk, last = false) => {
    const at = chunk.indexOf('\n');
    if (at < 0 && !last) {
      if (chunk) held.push(chunk);
      return [];
    }
    const lines = (held.join('') + chunk).split('\n');
    held = [];
    if (!last) held.push(lines.pop()!);
    return lines;
  };
}

/**
 * A data file's format: the one given, else by name: .jsonl (.jsonl.gz) is JSON Lines, and any other name plain
 * text, except .json: JSON named so would be tokenized as prose, braces and all, and scored without a word.
 */
export function formatOf(file: string, opts: TextSourceOptions): 'txt' | 'jsonl' {
  if (opts.format) return opts.format;
  if (/\.json(\.gz)?$/i.test(file)) {
    throw new FfmergeError('INVALID_DATA', `${file} is named .json: ffmerge reads plain text, or JSON Lines (one {"text": …} or {"input_ids": […]} object per line) named .jsonl; rename it .jsonl if that is what it holds`);
  }
  return /\.jsonl(\.gz)?$/i.test(file) ? 'jsonl' : 'txt';
}

function wrapStreamError(file: string, e: unknown): FfmergeError {
  if (e instanceof FfmergeError) return e;
  const code = (e as NodeJS.ErrnoException).code;
  if (code === 'ENOENT' || code === 'EACCES' || code === 'EISDIR') return notFound(file, e);
  return new FfmergeError('INVALID_DATA', `${file} could not be read as text: ${(e as Error).message}`, { cause: e });
}

/**
 * A text file's contents (.txt or .gz) in chunks, as the readers read them: inflated when gzip-compressed, without
 * a byte-order mark, line ends as `newlines()` reads them (the last chunk is what newlines() held back, maybe "").
 */
async function* textChunks(file: string): AsyncGenerator<string> {
  const { gzip } = await checkTextFile(file);
  const raw = fs.createReadStream(file);
  const stream = gzip ? pipeline(raw, zlib.createGunzip(), () => {}) : raw;
  stream.setEncoding('utf8');
  const lf = newlines();
  let first = true;
  try {
    for await (const chunk of stream as AsyncIterable<string>) {
      yield lf(first ? dropBom(chunk) : chunk);
      first = false;
    }
  } catch (e) {
    throw wrapStreamError(file, e);
  } finally {
    stream.destroy();
  }
  yield lf('', true);
}

/**
 * Streams the lines of a text file (.txt or .gz), without their line terminators: "\n", "\r\n" or a lone "\r",
 * as `newlines()` reads them.
 */
export async function* readLines(file: string): AsyncGenerator<string> {
  checkPath(file, 'readLines(file): file');
  const line = lineSplitter();
  let text = false; // a line with something besides whitespace was seen
  for await (const chunk of textChunks(file)) {
    for (const p of line(chunk)) {
      text ||= /\S/.test(p);
      yield p;
    }
  }
  // the last line, unless the text ends with a line break
  const [last = ''] = line('', true);
  if (last !== '') {
    text ||= /\S/.test(last);
    yield last;
  }
  // only reached when the caller read to the end: a reader that stops early has had its lines
  if (!text) throw noTextError(file);
}

/**
 * Streams the documents of a dataset: each line of a text file, or the `field` string of each line of a
 * JSON Lines file (blank lines skipped). A line that is not JSON, or lacks the field, is INVALID_DATA.
 */
export async function* readDocuments(file: string, opts: TextSourceOptions = {}): AsyncGenerator<string> {
  checkPath(file, 'readDocuments(file, options): file');
  checkOptions(opts, 'readDocuments(file, options): options');
  if (formatOf(file, opts) === 'txt') {
    yield* readLines(file);
    return;
  }
  const field = opts.field ?? 'text';
  let lineNo = 0;
  let text = false;
  for await (const line of readLines(file)) {
    lineNo++;
    if (line.trim() === '') continue;
    const v = jsonLineDocument(line, field);
    if (typeof v !== 'string') throw new FfmergeError('INVALID_DATA', `${file} line ${lineNo} ${v.problem}`);
    text ||= /\S/.test(v);
    yield v;
  }
  // rows such as {"text": ""} only: as empty as an empty file
  if (!text) throw noTextError(file);
}

/**
 * The whole dataset as one string: a text file's contents (inflated if gzip, without a byte-order mark, line ends
 * as `newlines()` reads them), or a JSON Lines file's documents joined with "\n".
 */
export async function readText(file: string, opts: TextSourceOptions = {}): Promise<string> {
  checkPath(file, 'readText(file, options): file');
  checkOptions(opts, 'readText(file, options): options');
  const jsonl = formatOf(file, opts) === 'jsonl';
  const parts: string[] = [];
  for await (const part of jsonl ? readDocuments(file, opts) : textChunks(file)) parts.push(part);
  // (readDocuments has refused documents without text already: the check is for plain text)
  const text = parts.join(jsonl ? '\n' : '');
  if (!/\S/.test(text)) throw noTextError(file);
  return text;
}
