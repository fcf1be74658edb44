/**
 * Graph → ONNX protobuf file (with the onnx-proto package's generated protobufjs code: the ONNX schema, not a
 * hand-written encoder). Weights go inline as raw_data, or, when they would push the file past protobuf's
 * 2 GB message limit (or when asked), into one external data file beside it, as the ONNX convention says:
 * tensors of at least 1 KiB go there, each 64 KiB-aligned when at least 1 MiB so runtimes can map them.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { onnx } from 'onnx-proto';
import { FfmergeError, abortError } from '../../errors';
import type { JobOptions } from '../../native/job';
import { f32ToF16 } from '../../safetensors';
import { forSlices, SLICE_ELEMENTS } from '../../merge/slices';
import { DT, type AttrValue, type Graph, type Initializer, type ValueInfo, type WeightInitializer } from './graph';

export const OPSET = 17;
/** IR version 8 goes with opset 17 (onnx 1.12). */
const IR_VERSION = 8;
/** Protobuf refuses messages of 2 GiB; weights above this (leaving room for the graph) go external. */
const INLINE_LIMIT = 2 ** 31 - 64 * 2 ** 20;
const EXTERNAL_MIN_BYTES = 1024;
const ALIGN_MIN_BYTES = 2 ** 20;
const ALIGNMENT = 65536;

interface SerializeOptions extends JobOptions {
  /** Weights in an external data file: 'auto' (default) only above 2 GB. */
  externalData?: boolean | 'auto' | undefined;
}

export interface SerializeResult {
  /** Bytes of the .onnx file, and of its external data file (0 when inline). */
  onnxBytes: number;
  dataBytes: number;
  external: boolean;
  /** Bytes of all weight initializers (each stored tensor once). */
  weightBytes: number;
  /** External data file name (relative to the .onnx), when used. */
  dataFile?: string;
}

function elemSize(t: number): number {
  return t === DT.FLOAT16 ? 2 : t === DT.BOOL ? 1 : t === DT.INT64 ? 8 : 4;
}

export function initializerBytes(init: Initializer): number {
  return init.dims.reduce((a, b) => a * b, 1) * elemSize(init.elemType);
}

function valueInfo(v: ValueInfo): onnx.IValueInfoProto {
  return {
    name: v.name,
    type: {
      tensorType: {
        elemType: v.elemType,
        ...(v.shape ? { shape: { dim: v.shape.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) } } : {}),
      },
    },
  };
}

/** Nodes, inputs and outputs of `g` (a branch has no initializers of its own: it reads its root's). */
function graphProto(g: Graph, initializer: onnx.ITensorProto[] = []): onnx.IGraphProto {
  return {
    name: g.name,
    node: g.nodes.map((n) => ({
      name: n.name,
      opType: n.op,
      input: n.inputs,
      output: n.outputs,
      attribute: Object.entries(n.attrs).map(([k, v]) => attribute(k, v)),
    })),
    initializer,
    input: g.inputs.map(valueInfo),
    output: g.outputs.map(valueInfo),
  };
}

function attribute(name: string, v: AttrValue): onnx.IAttributeProto {
  const T = onnx.AttributeProto.AttributeType;
  if (typeof v === 'string') return { name, type: T.STRING, s: Buffer.from(v, 'utf8') };
  if (Array.isArray(v)) return { name, type: T.INTS, ints: v };
  if (typeof v === 'object' && 'graph' in v) return { name, type: T.GRAPH, g: graphProto(v.graph) };
  if (typeof v === 'object') return { name, type: T.FLOAT, f: v.float };
  return Number.isInteger(v) ? { name, type: T.INT, i: v } : { name, type: T.FLOAT, f: v };
}

/** Float32 exponent bits all set: ±Inf or NaN. */
const F32_EXP = 0x7f800000;
/** Half exponent bits all set: ±Inf or NaN (what an overflowing float32 becomes). */
const F16_EXP = 0x7c00;

/**
 * A weight with NaN/Inf, or (for fp16) a finite value past fp16's range, which the conversion turns into Inf,
 * gives a model whose every output is NaN; the runtimes load it without a word. Checked here, where each
 * tensor passes once on its way to the file (the fp16 case on the converted bits, so no second pass there),
 * in slices with the event loop run between them, as the conversion is (a 7B-width FF matrix is 45 M values).
 */
async function checkedBytes(init: WeightInitializer, data: Float32Array, signal?: AbortSignal): Promise<Uint8Array> {
  const half = init.elemType === DT.FLOAT16 ? new Uint16Array(data.length) : undefined;
  const bits = half ?? new Uint32Array(data.buffer, data.byteOffset, data.length);
  const exp = half ? F16_EXP : F32_EXP;
  let i = -1;
  await forSlices(data.length, SLICE_ELEMENTS, (i0, i1) => {
    if (i >= 0) return;
    if (half) half.set(f32ToF16(data.subarray(i0, i1)), i0);
    for (let j = i0; j < i1; j++) {
      if ((bits[j]! & exp) === exp) {
        i = j;
        return;
      }
    }
  }, signal);
  if (i >= 0) {
    const v = data[i]!;
    const where = `tensor "${init.name}" (element ${i} of [${init.dims.join(', ')}])`;
    if (!Number.isFinite(v)) {
      throw new FfmergeError('NON_FINITE_INPUT', `${where} is ${v}: the checkpoint holds non-finite weights (corrupt, or from a diverged training run), and the exported model would output NaN`);
    }
    throw new FfmergeError('INVALID_ARGUMENT', `${where} is ${v}, beyond fp16's largest value (65504): it would be stored as Infinity; export with fp32 weights (--dtype fp32)`);
  }
  const typed = half ?? data;
  return new Uint8Array(typed.buffer, typed.byteOffset, typed.byteLength);
}

/** Little-endian bytes of an initializer's data (this package only runs on little-endian hosts). */
async function bytesOf(init: Initializer, signal?: AbortSignal): Promise<Uint8Array> {
  if (init.kind === 'const') {
    const a = init.elemType === DT.INT64 ? BigInt64Array.from(init.values, (v) => BigInt(v)) : Float32Array.from(init.values);
    return new Uint8Array(a.buffer);
  }
  return checkedBytes(init, await init.read(), signal);
}

/** Whether `g`'s initializers are too large for one protobuf message (the 'auto' rule for external data). */
export function needsExternalData(g: Graph): boolean {
  return g.initializers.reduce((s, i) => s + initializerBytes(i), 0) > INLINE_LIMIT;
}

/** A protobuf varint (n a non-negative safe integer: lengths past 2^32 included, so no 32-bit shifts). */
function varint(n: number): Uint8Array {
  const out: number[] = [];
  while (n >= 0x80) {
    out.push((n % 0x80) | 0x80);
    n = Math.floor(n / 0x80);
  }
  out.push(n);
  return Uint8Array.from(out);
}

/**
 * All of `b` at `position`, in writes of at most 1 GiB: Node refuses one write past 2^31 − 1 bytes, and a write
 * may write less than asked.
 */
async function writeAt(fh: fs.promises.FileHandle, b: Uint8Array, position: number): Promise<void> {
  let done = 0;
  while (done < b.byteLength) {
    const { bytesWritten } = await fh.write(b, done, Math.min(2 ** 30, b.byteLength - done), position + done);
    if (bytesWritten === 0) throw new FfmergeError('IO_ERROR', 'the ONNX file could not be written: a write wrote nothing');
    done += bytesWritten;
  }
}

/** A length-delimited field's key: field number and wire type 2. */
const lengthDelimited = (field: number) => Uint8Array.of((field << 3) | 2);
/** ModelProto.graph, GraphProto.initializer, TensorProto.raw_data (onnx.proto's field numbers). */
const MODEL_GRAPH = lengthDelimited(7);
const GRAPH_INITIALIZER = lengthDelimited(5);
const TENSOR_RAW_DATA = lengthDelimited(9);

/**
 * Writes `g` as `file` (+ `file`_data when external); the folder must exist.
 *
 * The file is one ModelProto, written a piece at a time: the model's and the graph's other fields encoded by
 * protobufjs, then each initializer as it is read, its raw bytes straight from the tensor: encoded as one
 * message in memory, it would hold the event loop and a second copy of the weights. Lengths come first in
 * protobuf, so every initializer's size is known before any is read
 * (initializerBytes); a piece of another size is an internal error, never a file that misreads.
 */
export async function writeOnnx(g: Graph, file: string, opts: SerializeOptions = {}): Promise<SerializeResult> {
  const weights = g.initializers.filter((i) => i.kind === 'weight');
  const weightBytes = weights.reduce((s, i) => s + initializerBytes(i), 0);
  const external = opts.externalData === true || ((opts.externalData ?? 'auto') === 'auto' && needsExternalData(g));
  const dataFile = `${path.basename(file)}_data`;
  // each initializer's place: in the external file (offset, 64 KiB-aligned from 1 MiB) or inline (raw_data)
  let dataBytes = 0;
  const planned = g.initializers.map((init) => {
    const bytes = initializerBytes(init);
    const t: onnx.ITensorProto = { name: init.name, dims: init.dims, dataType: init.elemType };
    const outside = external && init.kind === 'weight' && bytes >= EXTERNAL_MIN_BYTES;
    let offset = 0;
    if (outside) {
      if (bytes >= ALIGN_MIN_BYTES) dataBytes = Math.ceil(dataBytes / ALIGNMENT) * ALIGNMENT;
      offset = dataBytes;
      t.dataLocation = onnx.TensorProto.DataLocation.EXTERNAL;
      t.externalData = [
        { key: 'location', value: dataFile },
        { key: 'offset', value: String(offset) },
        { key: 'length', value: String(bytes) },
      ];
      dataBytes += bytes;
    }
    const head = onnx.TensorProto.encode(t).finish();
    const length = head.byteLength + (outside ? 0 : TENSOR_RAW_DATA.byteLength + varint(bytes).byteLength + bytes);
    return { init, bytes, outside, offset, head, length };
  });
  const model: onnx.IModelProto = {
    irVersion: IR_VERSION,
    opsetImport: [{ domain: '', version: OPSET }],
    producerName: 'ffmerge',
    producerVersion: '',
  };
  const modelHead = onnx.ModelProto.encode(model).finish();
  const graphHead = onnx.GraphProto.encode(graphProto(g)).finish();
  const graphLength = planned.reduce((n, p) => n + GRAPH_INITIALIZER.byteLength + varint(p.length).byteLength + p.length, graphHead.byteLength);
  const fh = await fs.promises.open(file, 'w');
  const data = external ? await fs.promises.open(path.join(path.dirname(file), dataFile), 'w').catch(async (e: unknown) => {
    await fh.close();
    throw e;
  }) : undefined;
  let onnxBytes = 0;
  const put = async (...parts: Uint8Array[]) => {
    for (const b of parts) {
      await writeAt(fh, b, onnxBytes);
      onnxBytes += b.byteLength;
    }
  };
  try {
    await put(modelHead, MODEL_GRAPH, varint(graphLength), graphHead);
    let done = 0;
    for (const p of planned) {
      if (opts.signal?.aborted) throw abortError(opts.signal);
      const raw = await bytesOf(p.init, opts.signal);
      if (raw.byteLength !== p.bytes) throw new Error(`internal: initializer "${p.init.name}" holds ${raw.byteLength} bytes, ${p.bytes} were planned`);
      await put(GRAPH_INITIALIZER, varint(p.length), p.head);
      if (p.outside) await writeAt(data!, raw, p.offset);
      else await put(TENSOR_RAW_DATA, varint(raw.byteLength), raw);
      if (p.init.kind === 'weight') opts.onProgress?.({ phase: 'onnx', done: ++done, total: weights.length, unit: 'tensors' });
    }
  } finally {
    await data?.close();
    await fh.close();
  }
  if (opts.signal?.aborted) throw abortError(opts.signal);
  return { onnxBytes, dataBytes, external, weightBytes, ...(external ? { dataFile } : {}) };
}
