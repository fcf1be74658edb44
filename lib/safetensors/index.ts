/**
 * safetensors reading and writing.
 *
 * Format: 8-byte little-endian header length N, N bytes of JSON {name: {dtype, shape, data_offsets:[b,e]},
 * "__metadata__": {str: str}}, then the data block; offsets are relative to the data block.
 *
 * Tensors are read on demand (one positioned read each), never whole files into the JS heap.
 * NOTE: this first version validates little; the hardened reader (all malformed-input codes, shards, fuzzing)
 * keeps this API.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { FfmergeError } from '../errors';

export type DType = 'F32' | 'F16' | 'BF16' | 'F64' | 'I64' | 'I32' | 'U8' | 'BOOL';

export interface TensorInfo {
  name: string;
  dtype: DType;
  shape: number[];
  /** Absolute path of the file holding the tensor. */
  file: string;
  /** Byte offset of the tensor's data in that file. */
  byteOffset: number;
  byteLength: number;
}

export interface TensorToWrite {
  name: string;
  dtype: DType;
  shape: number[];
  data: ArrayBufferView;
}

export class SafetensorsReader {
  private constructor(
    private readonly tensors: Map<string, TensorInfo>,
    readonly metadata: Record<string, string>,
  ) {}

  /** Opens a .safetensors file, or a model directory (model.safetensors or model.safetensors.index.json). */
  static async open(p: string): Promise<SafetensorsReader> {
    const file = fs.statSync(p).isDirectory() ? path.join(p, 'model.safetensors') : p;
    const fh = await fs.promises.open(file, 'r');
    try {
      const head = Buffer.alloc(8);
      await fh.read(head, 0, 8, 0);
      const n = Number(head.readBigUInt64LE(0));
      const json = Buffer.alloc(n);
      await fh.read(json, 0, n, 8);
      const header = JSON.parse(json.toString('utf8')) as Record<string, unknown>;
      const tensors = new Map<string, TensorInfo>();
      let metadata: Record<string, string> = {};
      for (const [name, v] of Object.entries(header)) {
        if (name === '__metadata__') {
          metadata = v as Record<string, string>;
          continue;
        }
        const t = v as { dtype: DType; shape: number[]; data_offsets: [number, number] };
        tensors.set(name, {
          name,
          dtype: t.dtype,
          shape: t.shape,
          file: path.resolve(file),
          byteOffset: 8 + n + t.data_offsets[0],
          byteLength: t.data_offsets[1] - t.data_offsets[0],
        });
      }
      return new SafetensorsReader(tensors, metadata);
    } finally {
      await fh.close();
    }
  }

  names(): string[] {
    return [...this.tensors.keys()];
  }

  has(name: string): boolean {
    return this.tensors.has(name);
  }

  info(name: string): TensorInfo {
    const t = this.tensors.get(name);
    if (!t) throw new FfmergeError('TENSOR_NOT_FOUND', `tensor "${name}" is not in the checkpoint`);
    return t;
  }

  /** The tensor's bytes as stored. */
  async readRaw(name: string): Promise<Uint8Array> {
    const t = this.info(name);
    const out = new Uint8Array(t.byteLength);
    const fh = await fs.promises.open(t.file, 'r');
    try {
      await fh.read(out, 0, t.byteLength, t.byteOffset);
    } finally {
      await fh.close();
    }
    return out;
  }

  /** The tensor converted to float32 (F16/BF16/F64/integers are converted). */
  async readF32(name: string): Promise<Float32Array> {
    const t = this.info(name);
    const raw = await this.readRaw(name);
    return toF32(t.dtype, raw);
  }
}

export function toF32(dtype: DType, raw: Uint8Array): Float32Array {
  const buf = raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength);
  switch (dtype) {
    case 'F32':
      return new Float32Array(buf);
    case 'F64':
      return Float32Array.from(new Float64Array(buf));
    case 'I32':
      return Float32Array.from(new Int32Array(buf));
    case 'I64':
      return Float32Array.from(new BigInt64Array(buf), (v) => Number(v));
    case 'U8':
    case 'BOOL':
      return Float32Array.from(raw);
    case 'F16': {
      const h = new Uint16Array(buf);
      const out = new Float32Array(h.length);
      for (let i = 0; i < h.length; i++) out[i] = halfToFloat(h[i]!);
      return out;
    }
    case 'BF16': {
      const h = new Uint16Array(buf);
      const bits = new Uint32Array(h.length);
      for (let i = 0; i < h.length; i++) bits[i] = h[i]! << 16;
      return new Float32Array(bits.buffer);
    }
  }
}

function halfToFloat(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const f = h & 0x3ff;
  if (e === 0) return s * 2 ** -14 * (f / 1024);
  if (e === 31) return f ? NaN : s * Infinity;
  return s * 2 ** (e - 15) * (1 + f / 1024);
}

/** Writes tensors (data 8-byte aligned) to `file` atomically: a temp file in the same folder, then rename. */
export async function writeSafetensors(
  file: string,
  tensors: TensorToWrite[],
  metadata: Record<string, string> = {},
): Promise<void> {
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length) header.__metadata__ = metadata;
  let offset = 0;
  for (const t of tensors) {
    const len = t.data.byteLength;
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + len] };
    offset += len;
  }
  let json = Buffer.from(JSON.stringify(header), 'utf8');
  const pad = (8 - (json.length % 8)) % 8;
  if (pad) json = Buffer.concat([json, Buffer.alloc(pad, 0x20)]);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  const tmp = path.join(path.dirname(file), `.ffmerge-tmp-${process.pid}-${Date.now()}-${path.basename(file)}`);
  const fh = await fs.promises.open(tmp, 'w');
  try {
    await fh.write(len);
    await fh.write(json);
    for (const t of tensors) await fh.write(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength));
    await fh.sync();
  } catch (e) {
    await fh.close().catch(() => {});
    await fs.promises.rm(tmp, { force: true });
    throw e;
  }
  await fh.close();
  await fs.promises.rename(tmp, file);
}
