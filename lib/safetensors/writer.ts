/**
 * Writing one safetensors file, atomically (temp file in the same folder, fsync, rename).
 *
 * Tensor data may be given eagerly (a typed array) or lazily (a function returning one, awaited just before
 * the tensor is written), so a whole model never has to be in memory at once: the header only needs each
 * tensor's dtype and shape. Tensors are laid out largest element size first, so every tensor's data starts
 * at a multiple of its own element size (the data block itself starts 8-byte aligned); the header lists them
 * in the caller's order.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { FfmergeError, showValue } from '../errors';
import { checkOptions, checkPath, isArrayOf } from '../arguments';
import { isFloat32Array } from '../typed-arrays';
import { DTYPE_SIZE, DType, assertLittleEndian, f32ToBF16, f32ToF16, isDType } from './dtype';
import { deadRunTemps } from '../files';
import { MAX_HEADER_BYTES, elementCount } from './header';
import { checkJobOptions, guardProgress, throwIfAborted, type JobOptions } from '../native/job';
import { holdTempOutput } from '../native/temp-outputs';
import { forSlices, SLICE_ELEMENTS } from '../merge/slices';

export type TensorData = ArrayBufferView;

export interface TensorToWrite {
  name: string;
  dtype: DType;
  shape: number[];
  /**
   * The bytes (little-endian) of `dtype`, or a function producing them when the writer reaches this tensor.
   * A Float32Array given for an F16 or BF16 tensor is converted (round to nearest even), for F64 widened.
   */
  data: TensorData | (() => TensorData | Promise<TensorData>);
}

const MAX_CHUNK = 1 << 30;

/**
 * Writes tensors to `file` atomically: a temp file in the same folder, then rename over `file`. `signal` stops
 * it between tensors (ABORTED, the temp file removed, `file` untouched); progress is phase 'save' in bytes
 * written, one report per tensor.
 */
export async function writeSafetensors(
  file: string,
  tensors: TensorToWrite[],
  metadata: Record<string, string> = {},
  opts: JobOptions = {},
): Promise<void> {
  checkPath(file, 'writeSafetensors(file, tensors): file');
  if (!Array.isArray(tensors)) throw new FfmergeError('INVALID_ARGUMENT', `writeSafetensors(file, tensors): tensors must be a list of { name, dtype, shape, data } (got ${showValue(tensors)})`);
  checkOptions(metadata, 'writeSafetensors(file, tensors, metadata): metadata');
  // a plain object (a Map's entries would be dropped, an inherited toJSON would change what is written), told
  // by shape, not by this realm's Object.prototype: a plain object from a vm context is one too
  const proto = Object.getPrototypeOf(metadata) as object | null;
  const plain = Object.prototype.toString.call(metadata) === '[object Object]' && (proto === null || Object.getPrototypeOf(proto) === null) && typeof (metadata as { toJSON?: unknown }).toJSON !== 'function';
  if (!plain) {
    throw new FfmergeError('INVALID_ARGUMENT', `writeSafetensors: metadata must be a plain object of strings (got ${showValue(metadata)})`);
  }
  checkJobOptions(opts, 'writeSafetensors(file, tensors, metadata, options)', []);
  throwIfAborted(opts.signal);
  assertLittleEndian();
  const sizes = tensors.map((t, i) => validate(t, i));
  const names = new Set<string>();
  for (const t of tensors) {
    if (names.has(t.name)) throw new FfmergeError('INVALID_ARGUMENT', `tensor "${t.name}" is listed twice`);
    names.add(t.name);
  }
  for (const [k, v] of Object.entries(metadata)) {
    if (typeof v !== 'string') throw new FfmergeError('INVALID_ARGUMENT', `metadata "${k}" must be a string`);
  }

  // Layout order: larger element sizes first (stable), so each tensor is aligned to its element size.
  const order = tensors.map((_, i) => i).sort((a, b) => DTYPE_SIZE[tensors[b]!.dtype] - DTYPE_SIZE[tensors[a]!.dtype] || a - b);
  const offsets = new Array<[number, number]>(tensors.length);
  let offset = 0;
  for (const i of order) {
    offsets[i] = [offset, offset + sizes[i]!];
    offset += sizes[i]!;
  }

  // No prototype: a tensor named "__proto__" must become a key like any other (on a plain object the
  // assignment would set the prototype and drop the tensor from the header, a file our reader rejects).
  const header: Record<string, unknown> = Object.create(null) as Record<string, unknown>;
  if (Object.keys(metadata).length) header.__metadata__ = { ...metadata };
  tensors.forEach((t, i) => {
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: offsets[i] };
  });
  let json = Buffer.from(JSON.stringify(header), 'utf8');
  if (json.length > MAX_HEADER_BYTES) {
    throw new FfmergeError('SAFETENSORS_HEADER_TOO_LARGE', `writeSafetensors: the header (names, shapes and metadata) would be ${json.length} bytes, over the ${MAX_HEADER_BYTES}-byte limit readers accept`);
  }
  const pad = (8 - ((8 + json.length) % 8)) % 8;
  if (pad) json = Buffer.concat([json, Buffer.alloc(pad, 0x20)]);
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(BigInt(json.length));

  const dir = path.dirname(path.resolve(file));
  sweepDeadTemps(dir, path.basename(file));
  const tmp = path.join(dir, `.ffmerge-tmp-${process.pid}-${Date.now()}-${Math.random().toString(36).slice(2, 8)}-${path.basename(file)}`);
  // A progress callback that throws (or whose promise rejects) fails the write with its own error, not IO_ERROR
  let failed: { error: unknown } | undefined;
  const report = opts.onProgress && guardProgress(opts.onProgress, (error) => (failed ??= { error }));
  const stopIfAsked = () => {
    if (failed) throw failed.error;
    throwIfAborted(opts.signal);
  };
  // held until renamed or removed: a worker terminated mid-write, or process.exit(), runs none of the cleanup below
  const release = holdTempOutput(tmp);
  try {
    let fh: fs.promises.FileHandle;
    try {
      fh = await fs.promises.open(tmp, 'wx');
    } catch (e) {
      throw new FfmergeError('IO_ERROR', `cannot create ${tmp}: ${(e as Error).message}`, { cause: e });
    }
    try {
      await writeAll(fh, prefix);
      await writeAll(fh, json);
      let done = 0;
      for (const i of order) {
        stopIfAsked();
        const t = tensors[i]!;
        const bytes = await toBytes(t, await (typeof t.data === 'function' ? t.data() : t.data), opts.signal);
        if (bytes.byteLength !== sizes[i]) {
          throw new FfmergeError(
            'SAFETENSORS_SIZE_MISMATCH',
            `tensor "${t.name}" is ${t.dtype}[${t.shape.join(', ')}] = ${sizes[i]} bytes but its data has ${bytes.byteLength}`,
          );
        }
        await writeAll(fh, bytes);
        report?.({ phase: 'save', done: (done += sizes[i]!), total: offset });
      }
      await fh.sync();
      await fh.close();
      stopIfAsked();
    } catch (e) {
      await fh.close().catch(() => {});
      await fs.promises.rm(tmp, { force: true });
      if (e instanceof FfmergeError || (failed && e === failed.error)) throw e;
      throw new FfmergeError('IO_ERROR', `writing ${file} failed: ${(e as Error).message}`, { cause: e });
    }
    try {
      await fs.promises.rename(tmp, file);
    } catch (e) {
      await fs.promises.rm(tmp, { force: true });
      throw new FfmergeError('IO_ERROR', `cannot move the written file into place at ${file}: ${(e as Error).message}`, { cause: e });
    }
  } finally {
    release();
  }
}

/** Checks name, dtype, shape and (for eager data) the byte count; returns the tensor's byte length. */
function validate(t: TensorToWrite, i: number): number {
  if (typeof t !== 'object' || t === null) throw new FfmergeError('INVALID_ARGUMENT', `writeSafetensors: tensors[${i}] must be { name, dtype, shape, data } (got ${showValue(t)})`);
  if (typeof t.name !== 'string' || t.name === '' || t.name === '__metadata__') {
    throw new FfmergeError('INVALID_ARGUMENT', `"${String(t.name)}" cannot be a tensor name`);
  }
  if (!isDType(t.dtype)) throw new FfmergeError('SAFETENSORS_UNKNOWN_DTYPE', `tensor "${t.name}" has unknown dtype "${String(t.dtype)}"`);
  if (!isArrayOf(t.shape, (d) => Number.isSafeInteger(d) && (d as number) >= 0)) {
    throw new FfmergeError('INVALID_ARGUMENT', `tensor "${t.name}" has shape ${showValue(t.shape)}; entries must be non-negative integers`);
  }
  // counted as the reader counts: [2^52, 2^52, 0] is 0 elements, but a file the reader refuses must not be written
  const bytes = elementCount(t.shape, () => new FfmergeError('INVALID_ARGUMENT', `tensor "${t.name}" has shape [${t.shape.join(', ')}], more elements than can be addressed`)) * DTYPE_SIZE[t.dtype];
  if (!Number.isSafeInteger(bytes)) throw new FfmergeError('INVALID_ARGUMENT', `tensor "${t.name}" is too large`);
  const data = t.data;
  if (typeof data !== 'function') {
    const have = convertsF32(t, data) ? data.length * DTYPE_SIZE[t.dtype] : data.byteLength;
    if (have !== bytes) {
      throw new FfmergeError(
        'SAFETENSORS_SIZE_MISMATCH',
        `tensor "${t.name}" is ${t.dtype}[${t.shape.join(', ')}] = ${bytes} bytes but its data has ${have}`,
      );
    }
  }
  return bytes;
}

/** Whether `data` (checked to be a typed array) is a Float32Array that is converted to t.dtype as it is written. */
function convertsF32(t: TensorToWrite, data: TensorData): data is Float32Array {
  if (!ArrayBuffer.isView(data)) throw new FfmergeError('INVALID_ARGUMENT', `tensor "${t.name}" data is not a typed array`);
  return isFloat32Array(data) && (t.dtype === 'F16' || t.dtype === 'BF16' || t.dtype === 'F64');
}

/**
 * The bytes of `data` as t.dtype. A Float32Array for an F16, BF16 or F64 tensor is converted in slices with the
 * event loop run between them (one FF matrix at 7B width is 45 M values).
 */
async function toBytes(t: TensorToWrite, data: TensorData, signal?: AbortSignal): Promise<Uint8Array> {
  if (convertsF32(t, data)) {
    const src = data;
    const out = t.dtype === 'F64' ? new Float64Array(src.length) : new Uint16Array(src.length);
    const convert = t.dtype === 'F64' ? (x: Float32Array) => x : t.dtype === 'F16' ? f32ToF16 : f32ToBF16;
    await forSlices(src.length, SLICE_ELEMENTS, (i0, i1) => out.set(convert(src.subarray(i0, i1)), i0), signal);
    data = out;
  }
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

async function writeAll(fh: fs.promises.FileHandle, bytes: Uint8Array): Promise<void> {
  let done = 0;
  while (done < bytes.byteLength) {
    const { bytesWritten } = await fh.write(bytes, done, Math.min(MAX_CHUNK, bytes.byteLength - done));
    done += bytesWritten;
  }
}

/** Removes the temp files a killed writer of `base` left in `dir` (their pid is gone); live writers' are kept. */
function sweepDeadTemps(dir: string, base: string): void {
  const esc = base.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const re = new RegExp(`^\\.ffmerge-tmp-(\\d+)-\\d+-[a-z0-9]+-${esc}$`);
  for (const [name] of deadRunTemps(dir, re)) {
    try {
      fs.rmSync(path.join(dir, name), { force: true });
    } catch {
      // another writer removed it first, or it cannot be: it stays
    }
  }
}
