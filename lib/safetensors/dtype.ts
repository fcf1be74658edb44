/**
 * safetensors element types and conversions between them and float32 (the type ffmerge computes in).
 * All conversions assume the little-endian byte order safetensors stores (and every platform Node runs on
 * in practice; `assertLittleEndian` guards the zero-copy paths).
 */
import * as os from 'node:os';
import { FfmergeError, showValue } from '../errors';
import { isUint8Array } from '../typed-arrays';
import { checkFloat32Array } from '../arguments';

export type DType = 'F32' | 'F16' | 'BF16' | 'F64' | 'I64' | 'I32' | 'U8' | 'BOOL';

/** Bytes per element of each dtype. */
export const DTYPE_SIZE: Readonly<Record<DType, number>> = {
  F64: 8,
  I64: 8,
  F32: 4,
  I32: 4,
  F16: 2,
  BF16: 2,
  U8: 1,
  BOOL: 1,
};

export function isDType(s: unknown): s is DType {
  return typeof s === 'string' && Object.prototype.hasOwnProperty.call(DTYPE_SIZE, s);
}

/**
 * The dtypes a model weight may be stored in. The readers can convert integer and boolean tensors to float32
 * too (a checkpoint may hold integer buffers beside its weights, BERT's position_ids say), but a weight stored
 * as one is a damaged or edited header: its values read as whole numbers and the model computes garbage.
 */
export const FLOAT_DTYPES: readonly DType[] = ['F32', 'F16', 'BF16', 'F64'];

/**
 * Throws SAFETENSORS_UNKNOWN_DTYPE unless `dtype` is a floating-point type: what every reader of a model weight
 * (the load plan, hence the loader, the checkpoint writer, the exporter and inspect) checks before using it.
 * `note` adds where the dtype comes from (a tied name's stored tensor).
 */
export function checkWeightDType(dtype: DType, name: string, where: string, note = ''): void {
  if (FLOAT_DTYPES.includes(dtype)) return;
  throw new FfmergeError(
    'SAFETENSORS_UNKNOWN_DTYPE',
    `${where}: tensor "${name}"${note} is stored as ${dtype}, which is not a floating-point type; a model weight must be ${FLOAT_DTYPES.join(', ')} (was the header edited, or the tensor saved from the wrong variable?)`,
  );
}

export function assertLittleEndian(): void {
  if (os.endianness() !== 'LE') {
    throw new FfmergeError('IO_ERROR', 'safetensors I/O needs a little-endian host');
  }
}

/**
 * Converts `raw` (bytes of `dtype`, little-endian) to float32. With `out` given (length = element count), the
 * result is written there; otherwise a new array is returned. F32 input is copied once (never aliased).
 */
export function toF32(dtype: DType, raw: Uint8Array, out?: Float32Array): Float32Array {
  if (!isDType(dtype)) throw new FfmergeError('SAFETENSORS_UNKNOWN_DTYPE', `toF32: unknown dtype ${showValue(dtype)}`);
  // raw is bytes: a Float32Array would be read as its own element count of bytes
  if (!isUint8Array(raw)) throw new FfmergeError('INVALID_ARGUMENT', `toF32(dtype, raw): raw must be the tensor's bytes, a Uint8Array (got ${showValue(raw)})`);
  if (out !== undefined) checkFloat32Array(out, 'toF32: out');
  const size = DTYPE_SIZE[dtype];
  if (raw.byteLength % size !== 0) {
    throw new FfmergeError('SAFETENSORS_SIZE_MISMATCH', `${raw.byteLength} bytes is not a whole number of ${dtype} elements`);
  }
  const n = raw.byteLength / size;
  if (out && out.length !== n) {
    throw new FfmergeError('INVALID_ARGUMENT', `output array holds ${out.length} elements but the tensor has ${n}`);
  }
  const dst = out ?? new Float32Array(n);
  if (raw.byteOffset % size === 0) {
    // Aligned input (every buffer the reader allocates): typed-array views and bulk conversion.
    const b = raw.buffer;
    const o = raw.byteOffset;
    switch (dtype) {
      case 'F32':
        dst.set(new Float32Array(b, o, n));
        return dst;
      case 'F64':
        dst.set(new Float64Array(b, o, n));
        return dst;
      case 'I32':
        dst.set(new Int32Array(b, o, n));
        return dst;
      case 'U8':
        dst.set(raw);
        return dst;
      case 'F16': {
        const h = new Uint16Array(b, o, n);
        const table = F16_TABLE;
        for (let i = 0; i < n; i++) dst[i] = table[h[i]!]!;
        return dst;
      }
      case 'BF16': {
        const h = new Uint16Array(b, o, n);
        const bits = new Int32Array(dst.buffer, dst.byteOffset, n); // Int32: the shifted sign bit stays an int32
        for (let i = 0; i < n; i++) bits[i] = h[i]! << 16;
        return dst;
      }
      default:
        break; // I64, BOOL: the general path below
    }
  }
  // DataView reads are alignment-free, so `raw` may sit at any byte offset. (U8 is always aligned: never here.)
  const dv = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
  switch (dtype) {
    case 'F32':
      new Uint8Array(dst.buffer, dst.byteOffset, n * 4).set(raw);
      break;
    case 'F64':
      for (let i = 0; i < n; i++) dst[i] = dv.getFloat64(i * 8, true);
      break;
    case 'I32':
      for (let i = 0; i < n; i++) dst[i] = dv.getInt32(i * 4, true);
      break;
    case 'I64':
      for (let i = 0; i < n; i++) dst[i] = Number(dv.getBigInt64(i * 8, true));
      break;
    case 'BOOL':
      for (let i = 0; i < n; i++) dst[i] = raw[i] ? 1 : 0;
      break;
    case 'F16':
      for (let i = 0; i < n; i++) dst[i] = f16BitsToF32(dv.getUint16(i * 2, true));
      break;
    case 'BF16': {
      const bits = new Int32Array(dst.buffer, dst.byteOffset, n); // Int32: the shifted sign bit stays an int32
      for (let i = 0; i < n; i++) bits[i] = dv.getUint16(i * 2, true) << 16;
      break;
    }
  }
  return dst;
}

/** IEEE binary16 bits → number (exact). */
export function f16BitsToF32(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const f = h & 0x3ff;
  if (e === 0) return s * 2 ** -24 * f;
  if (e === 31) return f ? NaN : s * Infinity;
  return s * 2 ** (e - 15) * (1 + f / 1024);
}

/** All 65536 F16 values as float32 (256 KiB; exact, since F16 ⊂ F32). Built once at load, never written. */
const F16_TABLE: Float32Array = (() => {
  const t = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) t[h] = f16BitsToF32(h);
  return t;
})();

/** The IEEE bits of Math.fround(v). */
function f32Bits(v: number): number {
  return new Uint32Array(new Float32Array([v]).buffer)[0]!;
}

/** float32 value → binary16 bits, round to nearest even; overflow → ±Inf, NaN stays NaN (quiet). */
export function f32ToF16Bits(v: number): number {
  return f16FromF32Bits(f32Bits(v));
}

/** float32 value → bfloat16 bits, round to nearest even; NaN stays NaN (quiet). */
export function f32ToBF16Bits(v: number): number {
  return bf16FromF32Bits(f32Bits(v));
}

function f16FromF32Bits(x: number): number {
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  const mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 | (mant >>> 13) : 0);
  const e = exp - 127 + 15;
  if (e >= 31) return sign | 0x7c00;
  if (e <= 0) {
    // Subnormal half (or zero): shift the full significand (with implicit 1) into place, rounding to even.
    if (e < -10) return sign;
    const m = mant | 0x800000;
    const shift = 14 - e;
    const half = 1 << (shift - 1);
    const rest = m & ((1 << shift) - 1);
    let r = m >>> shift;
    if (rest > half || (rest === half && (r & 1) === 1)) r++;
    return sign | r;
  }
  let r = (e << 10) | (mant >>> 13);
  const rest = mant & 0x1fff;
  // A carry out of the mantissa bumps the exponent, which is the right result (and reaches Inf at the top).
  if (rest > 0x1000 || (rest === 0x1000 && (r & 1) === 1)) r++;
  return sign | r;
}

function bf16FromF32Bits(x: number): number {
  if ((x & 0x7f800000) === 0x7f800000 && (x & 0x7fffff) !== 0) return ((x >>> 16) | 0x40) & 0xffff;
  const lsb = (x >>> 16) & 1;
  return ((x + 0x7fff + lsb) >>> 16) & 0xffff;
}

/** Float32Array → F16 bytes (round to nearest even). */
export function f32ToF16(src: Float32Array): Uint16Array {
  checkFloat32Array(src, 'f32ToF16(src): src');
  const bits = new Uint32Array(src.buffer, src.byteOffset, src.length);
  const out = new Uint16Array(src.length);
  for (let i = 0; i < src.length; i++) out[i] = f16FromF32Bits(bits[i]!);
  return out;
}

/** Float32Array → BF16 bytes (round to nearest even). */
export function f32ToBF16(src: Float32Array): Uint16Array {
  checkFloat32Array(src, 'f32ToBF16(src): src');
  const bits = new Uint32Array(src.buffer, src.byteOffset, src.length);
  const out = new Uint16Array(src.length);
  for (let i = 0; i < src.length; i++) out[i] = bf16FromF32Bits(bits[i]!);
  return out;
}
