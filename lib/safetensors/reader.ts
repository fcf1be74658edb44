/**
 * Reading safetensors checkpoints: one file, or a sharded checkpoint (model.safetensors.index.json naming a
 * shard per tensor). Headers are validated on open (see header.ts); tensor data is read on demand, one
 * positioned read per tensor, through one file handle per shard held until close().
 */
import { readRegularFile } from '../files';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { FfmergeError, showValue } from '../errors';
import { isUint8Array } from '../typed-arrays';
import { DTYPE_SIZE, DType, assertLittleEndian, toF32 } from './dtype';
import { HeaderEntry, MAX_HEADER_BYTES, parseHeaderJson, parseHeaderLength } from './header';
import { ByteSource, FileSource, MemorySource } from './source';
import { checkFloat32Array, checkOptions, checkPath, isObject } from '../arguments';

const SINGLE_FILE_NAME = 'model.safetensors';
export const INDEX_FILE_NAME = 'model.safetensors.index.json';

export interface TensorInfo {
  name: string;
  dtype: DType;
  shape: number[];
  /** Absolute path of the file holding the tensor (for in-memory checkpoints, the name given). */
  file: string;
  /** Byte offset of the tensor's data in that file. */
  byteOffset: number;
  byteLength: number;
}

export interface ReadRawOptions {
  /** Read into this buffer (its first byteLength bytes) instead of allocating one. */
  into?: Uint8Array | undefined;
}

export interface ReadF32Options {
  /** Write the float32 values here (length must equal the element count) instead of allocating. */
  into?: Float32Array | undefined;
}

export type TypedTensorData = Float32Array | Float64Array | Int32Array | BigInt64Array | Uint16Array | Uint8Array;

/** The typed array of each dtype's elements (F16/BF16 as their raw bits). */
const TYPED_ARRAY: Record<DType, new (buffer: ArrayBufferLike, byteOffset: number, length: number) => TypedTensorData> = {
  F32: Float32Array,
  F64: Float64Array,
  I32: Int32Array,
  I64: BigInt64Array,
  F16: Uint16Array,
  BF16: Uint16Array,
  U8: Uint8Array,
  BOOL: Uint8Array,
};

interface Located {
  info: TensorInfo;
  source: ByteSource;
}

/**
 * Reads a safetensors file (or a sharded folder's index): the header checked against the file before any data
 * is trusted, tensors read by name as typed arrays (F16/BF16 widened on request). close() when done.
 */
export class SafetensorsReader {
  private closed = false;

  private constructor(
    private readonly tensors: Map<string, Located>,
    private readonly sources: ByteSource[],
    readonly metadata: Record<string, string>,
    /**
     * Each shard's own metadata, by file name (empty for a single file). `metadata` merges them, the first
     * shard's value winning; a reader that needs every shard to agree on a key compares these.
     */
    readonly fileMetadata: ReadonlyMap<string, Readonly<Record<string, string>>> = new Map(),
  ) {}

  /** Bytes of the file or files read (every shard of a sharded checkpoint): what a checkpoint takes on disk. */
  get fileBytes(): number {
    return this.sources.reduce((n, s) => n + s.size, 0);
  }

  /**
   * Opens a .safetensors file, a model.safetensors.index.json, or a model directory holding either
   * (model.safetensors preferred). Call close() when done to release the file handles.
   */
  static async open(p: string): Promise<SafetensorsReader> {
    checkPath(p, 'SafetensorsReader.open(path): path');
    let st: fs.Stats;
    try {
      st = await fs.promises.stat(p);
    } catch (e) {
      throw new FfmergeError('IO_ERROR', `cannot open checkpoint ${p}: ${(e as Error).message}`, { cause: e });
    }
    if (st.isDirectory()) {
      const single = path.join(p, SINGLE_FILE_NAME);
      const index = path.join(p, INDEX_FILE_NAME);
      if (fs.existsSync(single)) return SafetensorsReader.openSingle(single);
      if (fs.existsSync(index)) return SafetensorsReader.openSharded(index);
      throw new FfmergeError('IO_ERROR', `${p} holds neither ${SINGLE_FILE_NAME} nor ${INDEX_FILE_NAME}`);
    }
    return p.endsWith('.index.json') ? SafetensorsReader.openSharded(p) : SafetensorsReader.openSingle(p);
  }

  /** A reader over a safetensors file already in memory (`name` appears in messages and TensorInfo.file). */
  static async fromBytes(bytes: Uint8Array, name = '<memory>'): Promise<SafetensorsReader> {
    if (!isUint8Array(bytes)) throw new FfmergeError('INVALID_ARGUMENT', `SafetensorsReader.fromBytes(bytes): bytes must be a Uint8Array (got ${showValue(bytes)})`);
    return SafetensorsReader.fromSource(new MemorySource(name, bytes));
  }

  private static async fromSource(src: ByteSource): Promise<SafetensorsReader> {
    const h = await readHeader(src);
    const map = new Map<string, Located>();
    for (const e of h.entries) map.set(e.name, { info: toInfo(e, src.name, h.dataStart), source: src });
    return new SafetensorsReader(map, [src], h.metadata);
  }

  private static async openSingle(file: string): Promise<SafetensorsReader> {
    const src = await FileSource.open(path.resolve(file));
    try {
      return await SafetensorsReader.fromSource(src);
    } catch (e) {
      await src.close().catch(() => {});
      throw e;
    }
  }

  private static async openSharded(indexFile: string): Promise<SafetensorsReader> {
    const dir = path.dirname(path.resolve(indexFile));
    const weightMap = await readIndex(indexFile);
    const shardNames = [...new Set(weightMap.values())];
    const sources: ByteSource[] = [];
    try {
      const headers = new Map<string, Awaited<ReturnType<typeof readHeader>> & { src: ByteSource }>();
      // Every shard is checked to exist before any is opened.
      const files = shardNames.map((shard) => resolveShard(dir, shard, indexFile));
      for (const [i, shard] of shardNames.entries()) {
        const src = await FileSource.open(files[i]!);

        sources.push(src);
        headers.set(shard, { ...(await readHeader(src)), src });
      }
      const map = new Map<string, Located>();
      const metadata: Record<string, string> = {};
      for (const h of headers.values()) for (const [k, v] of Object.entries(h.metadata)) metadata[k] ??= v;
      for (const [name, shard] of weightMap) {
        const h = headers.get(shard)!;
        const e = h.byName.get(name);
        if (!e) {
          throw new FfmergeError('TENSOR_NOT_FOUND', `${indexFile} places tensor "${name}" in ${shard}, which does not hold it`);
        }
        map.set(name, { info: toInfo(e, h.src.name, h.dataStart), source: h.src });
      }
      return new SafetensorsReader(map, sources, metadata, new Map([...headers].map(([shard, h]) => [shard, h.metadata])));
    } catch (e) {
      await Promise.all(sources.map((s) => s.close().catch(() => {})));
      throw e;
    }
  }

  names(): string[] {
    return [...this.tensors.keys()];
  }

  has(name: string): boolean {
    return this.tensors.has(name);
  }

  info(name: string): TensorInfo {
    return this.locate(name).info;
  }

  /** The tensor's bytes as stored (little-endian). */
  async readRaw(name: string, opts: ReadRawOptions = {}): Promise<Uint8Array> {
    checkOptions(opts, 'readRaw(name, options): options', ['into']);
    // a Float32Array's subarray counts elements: it read 4× the tensor's bytes, the next tensor's included
    if (opts.into !== undefined && !isUint8Array(opts.into)) {
      throw new FfmergeError('INVALID_ARGUMENT', `readRaw: into must be a Uint8Array (got ${showValue(opts.into)})`);
    }
    const { info, source } = this.locate(name);
    if (opts.into && opts.into.byteLength < info.byteLength) {
      throw new FfmergeError('INVALID_ARGUMENT', `buffer of ${opts.into.byteLength} bytes is too small for tensor "${name}" (${info.byteLength} bytes)`);
    }
    const out = opts.into?.subarray(0, info.byteLength) ?? new Uint8Array(info.byteLength);
    await source.readExact(out, info.byteOffset);
    return out;
  }

  /** The tensor as float32 (F16/BF16/F64/integers converted). F32 tensors are read straight into the result. */
  async readF32(name: string, opts: ReadF32Options = {}): Promise<Float32Array> {
    checkOptions(opts, 'readF32(name, options): options', ['into']);
    if (opts.into !== undefined) checkFloat32Array(opts.into, 'readF32: into');
    const { info, source } = this.locate(name);
    const n = info.byteLength / DTYPE_SIZE[info.dtype];
    if (opts.into && opts.into.length !== n) {
      throw new FfmergeError('INVALID_ARGUMENT', `output array holds ${opts.into.length} elements but tensor "${name}" has ${n}`);
    }
    if (info.dtype === 'F32') {
      assertLittleEndian();
      const out = opts.into ?? new Float32Array(n);
      await source.readExact(new Uint8Array(out.buffer, out.byteOffset, info.byteLength), info.byteOffset);
      return out;
    }
    const raw = new Uint8Array(info.byteLength);
    await source.readExact(raw, info.byteOffset);
    return toF32(info.dtype, raw, opts.into);
  }

  /**
   * The tensor in its own element type, without conversion: F32 → Float32Array, F64 → Float64Array,
   * I32 → Int32Array, I64 → BigInt64Array, U8/BOOL → Uint8Array, F16/BF16 → Uint16Array of raw bits.
   */
  async readTyped(name: string): Promise<TypedTensorData> {
    const { info } = this.locate(name);
    assertLittleEndian();
    const raw = await this.readRaw(name); // freshly allocated, so aligned for every element size
    return new TYPED_ARRAY[info.dtype](raw.buffer, raw.byteOffset, info.byteLength / DTYPE_SIZE[info.dtype]);
  }

  /** Releases the file handles; later reads fail. Safe to call twice. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.all(this.sources.map((s) => s.close()));
  }

  private locate(name: string): Located {
    const t = this.tensors.get(name);
    if (!t) throw new FfmergeError('TENSOR_NOT_FOUND', `tensor "${name}" is not in the checkpoint`);
    if (this.closed) throw new FfmergeError('INVALID_ARGUMENT', `the checkpoint reader was closed before reading "${name}"`);
    return t;
  }
}

function toInfo(e: HeaderEntry, file: string, dataStart: number): TensorInfo {
  return {
    name: e.name,
    dtype: e.dtype,
    shape: e.shape,
    file,
    byteOffset: dataStart + e.begin,
    byteLength: e.end - e.begin,
  };
}

async function readHeader(src: ByteSource) {
  const prefix = new Uint8Array(Math.min(8, src.size));
  await src.readExact(prefix, 0);
  const n = parseHeaderLength(prefix, src.size, src.name);
  const json = new Uint8Array(n);
  await src.readExact(json, 8);
  const parsed = parseHeaderJson(json, n, src.size - 8 - n, src.name);
  return { ...parsed, byName: new Map(parsed.entries.map((e) => [e.name, e])) };
}

/** Reads model.safetensors.index.json: {"metadata": {...}, "weight_map": {tensor: shard file}}. */
async function readIndex(indexFile: string): Promise<Map<string, string>> {
  let text: string;
  try {
    text = await readRegularFile(indexFile, 'SAFETENSORS_INVALID_HEADER', MAX_HEADER_BYTES, 'SAFETENSORS_HEADER_TOO_LARGE');
  } catch (e) {
    if (e instanceof FfmergeError) throw e;
    throw new FfmergeError('IO_ERROR', `cannot read shard index ${indexFile}: ${(e as Error).message}`, { cause: e });
  }
  let root: unknown;
  try {
    root = JSON.parse(text);
  } catch (e) {
    throw new FfmergeError('SAFETENSORS_INVALID_HEADER', `${indexFile} is not valid JSON (${(e as Error).message})`);
  }
  const wm = (root as { weight_map?: unknown } | null)?.weight_map;
  if (!isObject(wm)) {
    throw new FfmergeError('SAFETENSORS_INVALID_HEADER', `${indexFile} has no "weight_map" object`);
  }
  const map = new Map<string, string>();
  for (const [name, shard] of Object.entries(wm)) {
    if (typeof shard !== 'string' || shard === '') {
      throw new FfmergeError('SAFETENSORS_INVALID_HEADER', `${indexFile}: "weight_map"."${name}" is not a file name`);
    }
    map.set(name, shard);
  }
  return map;
}

/** A shard must be a file inside the index's folder (no absolute paths, no "..") and must exist. */
function resolveShard(dir: string, shard: string, indexFile: string): string {
  const file = path.resolve(dir, shard);
  if (path.isAbsolute(shard) || /^\.\.(?:[\\/]|$)/.test(path.relative(dir, file))) {
    throw new FfmergeError('SAFETENSORS_INVALID_HEADER', `${indexFile} names shard ${showValue(shard)} outside its folder`);
  }
  if (!fs.existsSync(file)) {
    throw new FfmergeError('SAFETENSORS_MISSING_SHARD', `${indexFile} names shard ${showValue(shard)}, which is not in ${dir}`);
  }
  return file;
}
