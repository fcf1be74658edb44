/**
 * Parsing and validating a safetensors header. Every field is checked before anything is sized by it, so a
 * damaged or hostile file ends in an FfmergeError with a stable code, never in a huge allocation or a crash.
 *
 * Layout: u64 LE header length N | N bytes of UTF-8 JSON | data block. The JSON maps tensor names to
 * {dtype, shape, data_offsets: [begin, end]} (offsets relative to the data block) plus an optional
 * "__metadata__": {string: string}. The tensors must tile the data block exactly: no overlaps, no holes,
 * no trailing bytes (the same rule as the reference Rust implementation).
 */
import { FfmergeError, showValue } from '../errors';
import { isObject } from '../arguments';
import { DTYPE_SIZE, DType, isDType } from './dtype';

/** Largest header accepted (the reference implementation's limit). */
export const MAX_HEADER_BYTES = 100_000_000;

export interface HeaderEntry {
  name: string;
  dtype: DType;
  shape: number[];
  /** Offsets relative to the data block. */
  begin: number;
  end: number;
}

export interface ParsedHeader {
  /** Entries in the order the JSON lists them. */
  entries: HeaderEntry[];
  metadata: Record<string, string>;
  /** Absolute offset of the data block (8 + N). */
  dataStart: number;
}

function invalid(where: string, msg: string): FfmergeError {
  return new FfmergeError('SAFETENSORS_INVALID_HEADER', `${where}: invalid safetensors header: ${msg}`);
}

/**
 * Reads N from the 8-byte prefix and checks it against the limit and the file size.
 * Returns N as a safe number.
 */
export function parseHeaderLength(prefix: Uint8Array, fileSize: number, where: string): number {
  if (fileSize < 8 || prefix.byteLength < 8) {
    throw new FfmergeError('SAFETENSORS_TRUNCATED', `${where}: file is ${fileSize} bytes, too short for a safetensors header`);
  }
  const n = new DataView(prefix.buffer, prefix.byteOffset, 8).getBigUint64(0, true);
  if (n > BigInt(MAX_HEADER_BYTES)) {
    throw new FfmergeError(
      'SAFETENSORS_HEADER_TOO_LARGE',
      `${where}: header claims ${n} bytes, over the ${MAX_HEADER_BYTES}-byte limit (not a safetensors file, or damaged)`,
    );
  }
  const len = Number(n);
  if (8 + len > fileSize) {
    throw new FfmergeError(
      'SAFETENSORS_TRUNCATED',
      `${where}: header claims ${len} bytes but the file has only ${fileSize - 8} after the length prefix (truncated?)`,
    );
  }
  return len;
}

/**
 * Element count of a validated shape; `tooMany()` is thrown when it cannot be represented exactly. A partial
 * product past 2^53 counts too ([2^52, 2^52, 0] is refused, though it has 0 elements): the writer counts the same
 * way, so it never writes a file the reader refuses.
 */
export function elementCount(shape: readonly number[], tooMany: () => Error): number {
  let n = 1;
  for (const d of shape) {
    n *= d;
    if (!Number.isSafeInteger(n)) throw tooMany();
  }
  return n;
}

/**
 * Validates the JSON header bytes against a data block of `dataLength` bytes.
 * `where` names the file in messages.
 */
export function parseHeaderJson(json: Uint8Array, headerLength: number, dataLength: number, where: string): ParsedHeader {
  // The format's rule (Hugging Face's safetensors: InvalidHeaderStart): the header begins with "{", so a
  // byte-order mark, which the decoder would drop silently, is refused.
  if (json.length === 0) throw invalid(where, 'header is empty (its length is 0)');
  if (json[0] !== 0x7b) throw invalid(where, `header does not begin with "{" (it begins with byte 0x${json[0]!.toString(16).padStart(2, '0')}; the format allows no byte-order mark or space before it)`);
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(json);
  } catch {
    throw invalid(where, 'header is not valid UTF-8');
  }
  let root: unknown;
  try {
    root = JSON.parse(text);
  } catch (e) {
    throw invalid(where, `header is not valid JSON (${(e as Error).message})`);
  }
  if (!isObject(root)) {
    throw invalid(where, 'header JSON is not an object');
  }

  let metadata: Record<string, string> = {};
  const entries: HeaderEntry[] = [];
  for (const [name, v] of Object.entries(root)) {
    if (name === '__metadata__') {
      metadata = parseMetadata(v, where);
      continue;
    }
    entries.push(parseEntry(name, v, dataLength, where));
  }
  checkTiling(entries, dataLength, where);
  return { entries, metadata, dataStart: 8 + headerLength };
}

function parseMetadata(v: unknown, where: string): Record<string, string> {
  if (!isObject(v)) throw invalid(where, '"__metadata__" is not an object');
  const out: Record<string, string> = Object.create(null) as Record<string, string>;  // keys come from the file
  for (const [k, s] of Object.entries(v)) {
    if (typeof s !== 'string') throw invalid(where, `"__metadata__"."${k}" is not a string`);
    out[k] = s;
  }
  return out;
}

function parseEntry(name: string, v: unknown, dataLength: number, where: string): HeaderEntry {
  if (!isObject(v)) throw invalid(where, `entry "${name}" is not an object`);
  const { dtype, shape, data_offsets: offsets } = v;
  if (typeof dtype !== 'string') throw invalid(where, `tensor "${name}" has no string "dtype"`);
  if (!isDType(dtype)) {
    throw new FfmergeError(
      'SAFETENSORS_UNKNOWN_DTYPE',
      `${where}: tensor "${name}" has dtype "${dtype.slice(0, 40)}", which ffmerge does not read (supported: ${Object.keys(DTYPE_SIZE).join(', ')})`,
    );
  }
  if (!Array.isArray(shape)) throw invalid(where, `tensor "${name}" has no "shape" array`);
  for (const d of shape) {
    if (!Number.isSafeInteger(d) || d < 0) throw invalid(where, `tensor "${name}" has shape entry ${showValue(d)}, not a non-negative integer`);
  }
  if (!Array.isArray(offsets) || offsets.length !== 2) {
    throw invalid(where, `tensor "${name}" has no "data_offsets" pair`);
  }
  const [begin, end] = offsets as unknown[];
  const isNonNegInt = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v) && v >= 0;
  if (!isNonNegInt(begin) || !isNonNegInt(end)) {
    throw invalid(where, `tensor "${name}" has data_offsets ${showValue(offsets)} that are not non-negative integers`);
  }
  // A whole number past 2^53 − 1 is no malformed header but an offset past any file (and JSON.parse has already
  // rounded it: 2^53 + 1 reads as 2^53): reported as the reader reports every offset past the data block.
  if (!Number.isSafeInteger(begin) || !Number.isSafeInteger(end)) {
    throw new FfmergeError(
      'SAFETENSORS_OUT_OF_BOUNDS',
      `${where}: tensor "${name}" has data_offsets [${BigInt(begin)}, ${BigInt(end)}], beyond the data block's ${dataLength} bytes (an offset past 2^53 − 1 is not even exactly representable; a header that lies, or is damaged)`,
    );
  }
  if (begin > end) throw invalid(where, `tensor "${name}" has data_offsets [${begin}, ${end}] that end before they begin`);
  if (end > dataLength) {
    throw new FfmergeError(
      'SAFETENSORS_OUT_OF_BOUNDS',
      `${where}: tensor "${name}" spans bytes [${begin}, ${end}) but the data block has only ${dataLength} bytes (a file cut short, by an interrupted download or copy, or a header that lies)`,
    );
  }
  const expected = elementCount(shape as number[], () => invalid(where, `shape [${shape.join(', ')}] has more elements than can be addressed`)) * DTYPE_SIZE[dtype];
  if (!Number.isSafeInteger(expected) || expected !== end - begin) {
    throw new FfmergeError(
      'SAFETENSORS_SIZE_MISMATCH',
      `${where}: tensor "${name}" is ${dtype}[${(shape as number[]).join(', ')}] = ${expected} bytes but its data_offsets cover ${end - begin}`,
    );
  }
  return { name, dtype, shape: [...(shape as number[])], begin, end };
}

/** The tensors must cover [0, dataLength) exactly once. */
function checkTiling(entries: HeaderEntry[], dataLength: number, where: string): void {
  const sorted = [...entries].sort((a, b) => a.begin - b.begin || a.end - b.end);
  let pos = 0;
  let prev = '(start of data)';
  for (const t of sorted) {
    if (t.begin < pos) {
      throw new FfmergeError('SAFETENSORS_OVERLAP', `${where}: tensors "${prev}" and "${t.name}" overlap at byte ${t.begin} of the data block`);
    }
    if (t.begin > pos) {
      throw new FfmergeError('SAFETENSORS_HOLE', `${where}: bytes [${pos}, ${t.begin}) of the data block between "${prev}" and "${t.name}" belong to no tensor`);
    }
    pos = t.end;
    prev = t.name;
  }
  if (pos !== dataLength) {
    throw new FfmergeError('SAFETENSORS_HOLE', `${where}: the data block has ${dataLength - pos} bytes after the last tensor that belong to no tensor`);
  }
}
