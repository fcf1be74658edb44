import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ErrorCode, FfmergeError } from '../lib/errors';
import {
  DType,
  DTYPE_SIZE,
  SafetensorsReader,
  TensorToWrite,
  f16BitsToF32,
  f32ToBF16Bits,
  f32ToF16Bits,
  toF32,
  writeSafetensors,
} from '../lib/safetensors';
import { buildSafetensors, prng, randomBytes } from './helpers/safetensors-bytes';
import { describeShared, sharedPath } from './helpers/shared';

let dir: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ffmerge-st-'));
});
afterAll(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

async function expectCode(p: Promise<unknown>, code: ErrorCode): Promise<void> {
  await expect(p).rejects.toBeInstanceOf(FfmergeError);
  await expect(p).rejects.toMatchObject({ code });
}

/** Opens bytes both from memory and from a file, expecting the same outcome. */
async function expectBytesRejected(bytes: Uint8Array, code: ErrorCode): Promise<void> {
  await expectCode(SafetensorsReader.fromBytes(bytes), code);
  const f = path.join(dir, `bad-${code}-${Math.random().toString(36).slice(2)}.safetensors`);
  fs.writeFileSync(f, bytes);
  await expectCode(SafetensorsReader.open(f), code);
}

const TYPED_NAME: Record<DType, string> = {
  F32: 'Float32Array',
  F64: 'Float64Array',
  I32: 'Int32Array',
  I64: 'BigInt64Array',
  F16: 'Uint16Array',
  BF16: 'Uint16Array',
  U8: 'Uint8Array',
  BOOL: 'Uint8Array',
};

const ALL_DTYPES: DType[] = ['F32', 'F16', 'BF16', 'F64', 'I64', 'I32', 'U8', 'BOOL'];

function randomTensor(name: string, dtype: DType, shape: number[], rnd: () => number): TensorToWrite & { data: Uint8Array } {
  const n = shape.reduce((a, b) => a * b, 1);
  const data = randomBytes(n * DTYPE_SIZE[dtype], rnd);
  if (dtype === 'BOOL') for (let i = 0; i < data.length; i++) data[i]! &= 1;
  return { name, dtype, shape, data };
}

describe('safetensors round trip', () => {
  test('every dtype is bit-exact (odd sizes, scalar, empty), with metadata, aligned layout', async () => {
    const rnd = prng(1);
    const tensors = [
      ...ALL_DTYPES.map((d, i) => randomTensor(`t.${d}`, d, [3, 5 + i, 7], rnd)),
      randomTensor('scalar.u8', 'U8', [], rnd),
      randomTensor('odd.u8', 'U8', [13], rnd),
      randomTensor('empty.f32', 'F32', [0, 4], rnd),
      randomTensor('odd.f16', 'F16', [1, 9], rnd),
    ];
    const file = path.join(dir, 'round.safetensors');
    await writeSafetensors(file, tensors, { format: 'pt', note: 'ünïcode' });
    const r = await SafetensorsReader.open(file);
    try {
      expect(r.names()).toEqual(tensors.map((t) => t.name));
      expect(r.metadata).toEqual({ format: 'pt', note: 'ünïcode' });
      const headerLen = Number(fs.readFileSync(file).readBigUInt64LE(0));
      expect((8 + headerLen) % 8).toBe(0);
      for (const t of tensors) {
        const info = r.info(t.name);
        expect(info.dtype).toBe(t.dtype);
        expect(info.shape).toEqual(t.shape);
        expect(info.byteOffset % DTYPE_SIZE[t.dtype]).toBe(0);
        expect(Buffer.from(await r.readRaw(t.name)).equals(Buffer.from(t.data))).toBe(true);
        const typed = await r.readTyped(t.name);
        expect(typed.constructor.name).toBe(TYPED_NAME[t.dtype]);
        expect(Buffer.from(typed.buffer, typed.byteOffset, typed.byteLength).equals(Buffer.from(t.data))).toBe(true);
      }
    } finally {
      await r.close();
    }
    // An independent parse of the file agrees on offsets (the reader is not just undoing the writer).
    const buf = fs.readFileSync(file);
    const n = Number(buf.readBigUInt64LE(0));
    const header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8'));
    for (const t of tensors) {
      const [b, e] = header[t.name].data_offsets;
      expect(Buffer.from(buf.subarray(8 + n + b, 8 + n + e)).equals(Buffer.from(t.data))).toBe(true);
    }
  });

  test('lazy tensor data is produced one tensor at a time and awaited', async () => {
    const calls: string[] = [];
    const a = new Float32Array([1, 2, 3]);
    const b = new Int32Array([7, -8]);
    const file = path.join(dir, 'lazy.safetensors');
    const slow = <T>(name: string, v: T) => async () => {
      calls.push(`start ${name}`);
      await new Promise((r) => setTimeout(r, 5));
      calls.push(`end ${name}`);
      return v;
    };
    await writeSafetensors(file, [
      { name: 'a', dtype: 'F32', shape: [3], data: slow('a', a) },
      { name: 'b', dtype: 'I32', shape: [2], data: slow('b', b) },
      { name: 'c', dtype: 'F64', shape: [1], data: new Float64Array([0.5]) },
    ]);
    // Each producer runs only after the previous tensor is done: one tensor in memory at a time.
    expect(calls).toEqual(['start a', 'end a', 'start b', 'end b']);
    const r = await SafetensorsReader.open(file);
    expect(Array.from(await r.readF32('a'))).toEqual([1, 2, 3]);
    expect(Array.from(await r.readF32('b'))).toEqual([7, -8]);
    expect(Array.from(await r.readF32('c'))).toEqual([0.5]);
    await r.close();
  });

  test('F32 data written as F16/BF16 is rounded to nearest even', async () => {
    const src = new Float32Array([1, 1 + 2 ** -11, 1 + 3 * 2 ** -11, 65504, 65520, -0, 2 ** -24, 2 ** -25, 3 * 2 ** -25]);
    const file = path.join(dir, 'half.safetensors');
    await writeSafetensors(file, [
      { name: 'h', dtype: 'F16', shape: [src.length], data: src },
      { name: 'b', dtype: 'BF16', shape: [3], data: new Float32Array([1 + 2 ** -8, 1 + 3 * 2 ** -8, -3.5]) },
    ]);
    const r = await SafetensorsReader.open(file);
    const h = new Uint16Array((await r.readRaw('h')).slice().buffer);
    expect(Array.from(h)).toEqual([0x3c00, 0x3c00, 0x3c02, 0x7bff, 0x7c00, 0x8000, 0x0001, 0x0000, 0x0002]);
    const b = new Uint16Array((await r.readRaw('b')).slice().buffer);
    expect(Array.from(b)).toEqual([0x3f80, 0x3f82, 0xc060]);
    expect(Array.from(await r.readF32('b'))).toEqual([1, 1 + 2 ** -6, -3.5]);
    await r.close();
  });
});

describe('dtype conversion', () => {
  test('every F16 bit pattern converts exactly and back', () => {
    const bad: number[] = [];
    for (let h = 0; h < 0x10000; h++) {
      const v = f16BitsToF32(h);
      const ok = Number.isNaN(v)
        ? (h & 0x7c00) === 0x7c00 && (h & 0x3ff) !== 0 && Number.isNaN(f16BitsToF32(f32ToF16Bits(v)))
        : f32ToF16Bits(v) === h && Math.fround(v) === v;
      if (!ok) bad.push(h);
    }
    expect(bad).toEqual([]);
    expect(f16BitsToF32(0x3c00)).toBe(1);
    expect(f16BitsToF32(0x7bff)).toBe(65504);
    expect(f16BitsToF32(0x0001)).toBe(2 ** -24);
    expect(f16BitsToF32(0xc000)).toBe(-2);
  });

  test('F32 → F16 and → BF16 pick the nearest value, ties to even (float64 oracle)', () => {
    const rnd = prng(7);
    const f32 = new Float32Array(1);
    const u32 = new Uint32Array(f32.buffer);
    const bf16 = (bits: number) => {
      u32[0] = bits << 16;
      return f32[0]!;
    };
    const bad: string[] = [];
    for (let i = 0; i < 20000; i++) {
      // Random magnitudes across the whole half range, including subnormals and overflow.
      f32[0] = (rnd() < 0.5 ? -1 : 1) * 2 ** (rnd() * 44 - 28) * (1 + rnd());
      const v = f32[0]!;
      const a = Math.abs(v);
      for (const [kind, toBits, fromBits, max] of [
        ['f16', f32ToF16Bits, f16BitsToF32, 0x7c00],
        ['bf16', f32ToBF16Bits, bf16, 0x7f80],
      ] as const) {
        const h = toBits(v);
        const mag = h & 0x7fff;
        const signOk = (h & 0x8000) === (v < 0 ? 0x8000 : 0);
        let ok: boolean;
        if (mag === max) {
          // Overflow to Inf only from at least halfway past the largest finite value.
          const top = fromBits(max - 1);
          ok = a >= top + (top - fromBits(max - 2)) / 2;
        } else {
          const err = Math.abs(a - fromBits(mag));
          const errUp = Math.abs(a - fromBits(mag + 1));
          const errDown = mag > 0 ? Math.abs(a - fromBits(mag - 1)) : Infinity;
          ok = err <= errUp && err <= errDown && ((err !== errUp && err !== errDown) || (mag & 1) === 0);
        }
        if (!ok || !signOk) bad.push(`${kind}(${v}) = 0x${h.toString(16)}`);
      }
    }
    expect(bad).toEqual([]);
  });

  test('toF32 gives the same result from aligned and unaligned bytes, for every dtype', () => {
    const rnd = prng(9);
    for (const d of ALL_DTYPES) {
      const n = 37;
      const bytes = randomBytes(n * DTYPE_SIZE[d], rnd);
      if (d === 'BOOL') for (let i = 0; i < bytes.length; i++) bytes[i]! &= 1;
      const shifted = new Uint8Array(bytes.length + 1);
      shifted.set(bytes, 1);
      const a = toF32(d, bytes);
      const b = toF32(d, shifted.subarray(1));
      expect([d, Buffer.from(a.buffer).equals(Buffer.from(b.buffer))]).toEqual([d, true]);
    }
    const all = new Uint16Array(65536).map((_, i) => i);
    const viaTable = toF32('F16', new Uint8Array(all.buffer));
    const bad = Array.from(all).filter((h) => !Object.is(viaTable[h], Math.fround(f16BitsToF32(h))) && !Number.isNaN(viaTable[h]!));
    expect(bad).toEqual([]);
  });

  test('toF32 converts every dtype against plain references', () => {
    const rnd = prng(3);
    const f64 = new Float64Array(17).map(() => (rnd() - 0.5) * 1e6);
    expect(Array.from(toF32('F64', new Uint8Array(f64.buffer)))).toEqual(Array.from(Float32Array.from(f64)));
    const i64 = new BigInt64Array(17).map(() => BigInt(Math.floor((rnd() - 0.5) * 2 ** 40)));
    expect(Array.from(toF32('I64', new Uint8Array(i64.buffer)))).toEqual(Array.from(i64, (v) => Math.fround(Number(v))));
    const i32 = new Int32Array(17).map(() => Math.floor((rnd() - 0.5) * 2 ** 31));
    expect(Array.from(toF32('I32', new Uint8Array(i32.buffer)))).toEqual(Array.from(i32, (v) => Math.fround(v)));
    const u8 = randomBytes(17, rnd);
    expect(Array.from(toF32('U8', u8))).toEqual(Array.from(u8));
    expect(Array.from(toF32('BOOL', new Uint8Array([0, 1, 2])))).toEqual([0, 1, 1]);
    // Unaligned input (odd byte offset) is fine.
    const shifted = new Uint8Array(1 + 8);
    shifted.set(new Uint8Array(new Float32Array([1.5, -2]).buffer), 1);
    expect(Array.from(toF32('F32', shifted.subarray(1)))).toEqual([1.5, -2]);
    expect(Array.from(toF32('BF16', new Uint8Array(new Uint16Array([0x3fc0, 0xc000]).buffer)))).toEqual([1.5, -2]);
  });
});

describe('reader options', () => {
  let file: string;
  const w = new Float32Array([1, -2, 3.25, NaN, -0, Infinity, 7]);
  beforeAll(async () => {
    file = path.join(dir, 'opts.safetensors');
    await writeSafetensors(file, [
      { name: 'w', dtype: 'F32', shape: [7], data: w },
      { name: 'h', dtype: 'F16', shape: [2], data: new Uint16Array([0x3c00, 0xc000]) },
    ]);
  });

  test('readF32 and readRaw fill a caller buffer; F32 bits are preserved', async () => {
    const r = await SafetensorsReader.open(file);
    const into = new Float32Array(7);
    const got = await r.readF32('w', { into });
    expect(got).toBe(into);
    expect(Buffer.from(got.buffer).equals(Buffer.from(w.buffer))).toBe(true);
    const half = new Float32Array(2);
    expect(await r.readF32('h', { into: half })).toBe(half);
    expect(Array.from(half)).toEqual([1, -2]);
    const big = new Uint8Array(100);
    const raw = await r.readRaw('w', { into: big });
    expect(raw.buffer).toBe(big.buffer);
    expect(raw.byteLength).toBe(28);
    await expectCode(r.readF32('w', { into: new Float32Array(6) }), 'INVALID_ARGUMENT');
    await expectCode(r.readRaw('w', { into: new Uint8Array(27) }), 'INVALID_ARGUMENT');
    await expectCode(r.readRaw('nope'), 'TENSOR_NOT_FOUND');
    expect(() => r.info('nope')).toThrow(expect.objectContaining({ code: 'TENSOR_NOT_FOUND' }));
    await r.close();
    await r.close();
    await expectCode(r.readRaw('w'), 'INVALID_ARGUMENT');
  });

  const fdDir = '/proc/self/fd';
  (fs.existsSync(fdDir) ? test : test.skip)('one file handle is held per file, released by close()', async () => {
    const count = () => fs.readdirSync(fdDir).length;
    const before = count();
    const r = await SafetensorsReader.open(file);
    const open = count();
    expect(open).toBe(before + 1);
    for (let i = 0; i < 20; i++) await Promise.all([r.readF32('w'), r.readF32('h')]);
    expect(count()).toBe(open);
    await r.close();
    expect(count()).toBe(before);
  });
});

describe('writer errors', () => {
  test('bad inputs are typed errors and leave no file behind', async () => {
    const f = path.join(dir, 'w-err.safetensors');
    await expectCode(writeSafetensors(f, [{ name: 'a', dtype: 'F32', shape: [3], data: new Float32Array(2) }]), 'SAFETENSORS_SIZE_MISMATCH');
    await expectCode(
      writeSafetensors(f, [
        { name: 'a', dtype: 'F32', shape: [1], data: new Float32Array(1) },
        { name: 'a', dtype: 'F32', shape: [1], data: new Float32Array(1) },
      ]),
      'INVALID_ARGUMENT',
    );
    await expectCode(writeSafetensors(f, [{ name: 'a', dtype: 'Q4' as DType, shape: [1], data: new Uint8Array(1) }]), 'SAFETENSORS_UNKNOWN_DTYPE');
    await expectCode(writeSafetensors(f, [{ name: 'a', dtype: 'U8', shape: [-1], data: new Uint8Array(1) }]), 'INVALID_ARGUMENT');
    await expectCode(writeSafetensors(f, [{ name: '__metadata__', dtype: 'U8', shape: [1], data: new Uint8Array(1) }]), 'INVALID_ARGUMENT');
    expect(fs.existsSync(f)).toBe(false);

    // A lazy producer returning the wrong size aborts the write; an existing file stays as it was.
    await writeSafetensors(f, [{ name: 'old', dtype: 'U8', shape: [1], data: new Uint8Array([9]) }]);
    const before = fs.readFileSync(f);
    await expectCode(
      writeSafetensors(f, [
        { name: 'a', dtype: 'F32', shape: [2], data: new Float32Array(2) },
        { name: 'b', dtype: 'F32', shape: [4], data: () => new Float32Array(3) },
      ]),
      'SAFETENSORS_SIZE_MISMATCH',
    );
    await expect(writeSafetensors(f, [{ name: 'c', dtype: 'U8', shape: [1], data: () => Promise.reject(new Error('producer failed')) }])).rejects.toThrow(
      'producer failed',
    );
    expect(fs.readFileSync(f).equals(before)).toBe(true);
    expect(fs.readdirSync(dir).filter((n) => n.startsWith('.ffmerge-tmp'))).toEqual([]);
  });

  test('a signal stops the write between tensors and a progress callback sees every byte; neither leaves a file', async () => {
    const f = path.join(dir, 'w-signal.safetensors');
    const three = () => [
      { name: 'a', dtype: 'F32' as DType, shape: [4], data: new Float32Array(4) },
      { name: 'b', dtype: 'F32' as DType, shape: [2], data: () => new Float32Array(2) },
      { name: 'c', dtype: 'U8' as DType, shape: [3], data: new Uint8Array(3) },
    ];
    const seen: [string, number, number][] = [];
    await writeSafetensors(f, three(), {}, { onProgress: (p) => seen.push([p.phase, p.done, p.total]) });
    expect(seen).toEqual([['save', 16, 27], ['save', 24, 27], ['save', 27, 27]]);
    fs.rmSync(f);

    await expectCode(writeSafetensors(f, three(), {}, { signal: AbortSignal.abort() }), 'ABORTED');
    const ac = new AbortController();
    const lazy = three();
    lazy[1]!.data = () => (ac.abort(), new Float32Array(2));
    await expectCode(writeSafetensors(f, lazy, {}, { signal: ac.signal }), 'ABORTED');
    // the callback's own error, not IO_ERROR naming the temp file; an async one's rejection too
    await expect(writeSafetensors(f, three(), {}, { onProgress: () => { throw new Error('callback failed'); } })).rejects.toThrow('callback failed');
    await expect(writeSafetensors(f, three(), {}, { onProgress: () => Promise.reject(new Error('async callback failed')) })).rejects.toThrow('async callback failed');
    await expectCode(writeSafetensors(f, three(), {}, { sigal: ac.signal } as never), 'INVALID_ARGUMENT');
    expect(fs.existsSync(f)).toBe(false);
    expect(fs.readdirSync(dir).filter((n) => n.startsWith('.ffmerge-tmp'))).toEqual([]);
  });
});

describe('malformed files are rejected with their code', () => {
  const data = new Uint8Array(new Float32Array([1, 2, 3, 4]).buffer); // 16 bytes
  const ok = { a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, b: { dtype: 'F32', shape: [2], data_offsets: [8, 16] } };

  test('the unmodified base file loads', async () => {
    const r = await SafetensorsReader.fromBytes(buildSafetensors(ok, data));
    expect(Array.from(await r.readF32('b'))).toEqual([3, 4]);
  });

  test('file shorter than the length prefix', async () => {
    await expectBytesRejected(new Uint8Array(5), 'SAFETENSORS_TRUNCATED');
  });
  test('header length past end of file', async () => {
    const good = buildSafetensors(ok, data);
    await expectBytesRejected(buildSafetensors(ok, data, { headerLength: BigInt(good.length) }), 'SAFETENSORS_TRUNCATED');
    await expectBytesRejected(good.subarray(0, 20), 'SAFETENSORS_TRUNCATED');
  });
  test('header over 100 MB', async () => {
    await expectBytesRejected(buildSafetensors(ok, data, { headerLength: 100_000_001n }), 'SAFETENSORS_HEADER_TOO_LARGE');
    await expectBytesRejected(buildSafetensors(ok, data, { headerLength: 2n ** 64n - 1n }), 'SAFETENSORS_HEADER_TOO_LARGE');
  });
  test('invalid JSON, non-object JSON, invalid UTF-8', async () => {
    await expectBytesRejected(buildSafetensors({}, data, { headerText: '{"a": {"dtype": "F32",' }), 'SAFETENSORS_INVALID_HEADER');
    await expectBytesRejected(buildSafetensors({}, new Uint8Array(0), { headerText: '[1, 2]' }), 'SAFETENSORS_INVALID_HEADER');
    await expectBytesRejected(buildSafetensors({}, new Uint8Array(0), { headerText: 'null' }), 'SAFETENSORS_INVALID_HEADER');
    const bad = buildSafetensors({}, new Uint8Array(0), { headerText: '{"\u00e9":1}' });
    bad[10] = 0xff; // breaks the UTF-8 of the key
    await expectBytesRejected(bad, 'SAFETENSORS_INVALID_HEADER');
  });
  test('a header that does not begin with "{" (a byte-order mark, a space) is refused, as the format and HF refuse it', async () => {
    // tester EO: the UTF-8 decoder dropped a BOM, and the file was accepted
    const okText = JSON.stringify(ok);
    for (const lead of ['\ufeff', ' ', '\n']) {
      const bytes = buildSafetensors({}, data, { headerText: lead + okText });
      await expect(SafetensorsReader.fromBytes(bytes)).rejects.toMatchObject({ code: 'SAFETENSORS_INVALID_HEADER', message: expect.stringContaining('header does not begin with "{"') });
      await expectBytesRejected(bytes, 'SAFETENSORS_INVALID_HEADER');
    }
    await expect(SafetensorsReader.fromBytes(buildSafetensors({}, data, { headerText: '' }))).rejects.toMatchObject({ code: 'SAFETENSORS_INVALID_HEADER', message: expect.stringContaining('header is empty') });
    // trailing spaces are the format's padding, and still read
    const padded = await SafetensorsReader.fromBytes(buildSafetensors({}, data, { headerText: okText + '   ' }));
    expect(padded.names().length).toBeGreaterThan(0);
  });
  test('unknown dtype', async () => {
    await expectBytesRejected(buildSafetensors({ ...ok, a: { dtype: 'F8_E4M3', shape: [8], data_offsets: [0, 8] } }, data), 'SAFETENSORS_UNKNOWN_DTYPE');
  });
  test('header entry types', async () => {
    const cases: unknown[] = [
      { dtype: 32, shape: [2], data_offsets: [0, 8] },
      { dtype: 'F32', shape: 2, data_offsets: [0, 8] },
      { dtype: 'F32', shape: [-2], data_offsets: [0, 8] },
      { dtype: 'F32', shape: [2.5], data_offsets: [0, 8] },
      { dtype: 'F32', shape: ['2'], data_offsets: [0, 8] },
      { dtype: 'F32', shape: [2 ** 53], data_offsets: [0, 8] },
      { dtype: 'F32', shape: [2 ** 30, 2 ** 30, 2 ** 30], data_offsets: [0, 8] },
      { dtype: 'F32', shape: [2], data_offsets: [0] },
      { dtype: 'F32', shape: [2], data_offsets: [-8, 0] },
      { dtype: 'F32', shape: [2], data_offsets: [8, 0] },
      { dtype: 'F32', shape: [2], data_offsets: '0-8' },
      'a string',
      null,
    ];
    for (const a of cases) await expectBytesRejected(buildSafetensors({ ...ok, a }, data), 'SAFETENSORS_INVALID_HEADER');
    await expectBytesRejected(buildSafetensors({ ...ok, __metadata__: { n: 1 } }, data), 'SAFETENSORS_INVALID_HEADER');
    await expectBytesRejected(buildSafetensors({ ...ok, __metadata__: ['x'] }, data), 'SAFETENSORS_INVALID_HEADER');
  });
  test('offsets out of bounds', async () => {
    await expectBytesRejected(buildSafetensors({ ...ok, b: { dtype: 'F32', shape: [4], data_offsets: [8, 24] } }, data), 'SAFETENSORS_OUT_OF_BOUNDS');
  });
  test('offsets past 2^53 - 1 are out of bounds, not "not integers" (the exact value shown)', async () => {
    // 2^62 parses exactly; 2^53 + 1 is rounded by JSON.parse to 2^53: both lie past any file
    const huge = buildSafetensors({ ...ok, b: { dtype: 'F32', shape: [2], data_offsets: [2 ** 62, 2 ** 62 + 1024] } }, data);
    await expectBytesRejected(huge, 'SAFETENSORS_OUT_OF_BOUNDS');
    await expect(SafetensorsReader.fromBytes(huge)).rejects.toThrow(/data_offsets \[4611686018427387904, 4611686018427388928\], beyond the data block's 16 bytes .*not even exactly representable/);
    const text = JSON.stringify({ ...ok, b: { dtype: 'F32', shape: [2], data_offsets: [0, 0] } }).replace('"data_offsets":[0,0]', '"data_offsets":[8,9007199254740993]');
    await expectBytesRejected(buildSafetensors({}, data, { headerText: text }), 'SAFETENSORS_OUT_OF_BOUNDS');
    // a fraction or a negative number is still a malformed header, its value shown
    await expect(SafetensorsReader.fromBytes(buildSafetensors({ ...ok, b: { dtype: 'F32', shape: [2], data_offsets: [8, 15.5] } }, data))).rejects.toMatchObject({
      code: 'SAFETENSORS_INVALID_HEADER',
      message: expect.stringContaining('data_offsets [8,15.5] that are not non-negative integers'),
    });
  });
  test('overlapping tensors', async () => {
    await expectBytesRejected(buildSafetensors({ ...ok, b: { dtype: 'F32', shape: [3], data_offsets: [4, 16] } }, data), 'SAFETENSORS_OVERLAP');
    await expectBytesRejected(
      buildSafetensors({ ...ok, c: { dtype: 'F32', shape: [0], data_offsets: [4, 4] } }, data),
      'SAFETENSORS_OVERLAP',
    );
  });
  test('holes: a gap, a late start, trailing bytes', async () => {
    await expectBytesRejected(buildSafetensors({ ...ok, a: { dtype: 'F32', shape: [1], data_offsets: [0, 4] } }, data), 'SAFETENSORS_HOLE');
    await expectBytesRejected(
      buildSafetensors({ a: { dtype: 'F32', shape: [2], data_offsets: [8, 16] } }, data),
      'SAFETENSORS_HOLE',
    );
    await expectBytesRejected(buildSafetensors(ok, new Uint8Array([...data, 0, 0, 0, 0])), 'SAFETENSORS_HOLE');
  });
  test('shape × dtype size ≠ byte length', async () => {
    await expectBytesRejected(buildSafetensors({ ...ok, a: { dtype: 'F64', shape: [2], data_offsets: [0, 8] } }, data), 'SAFETENSORS_SIZE_MISMATCH');
    await expectBytesRejected(buildSafetensors({ ...ok, a: { dtype: 'F32', shape: [1, 3], data_offsets: [0, 8] } }, data), 'SAFETENSORS_SIZE_MISMATCH');
  });
});

describe('sharded checkpoints', () => {
  let sdir: string;
  const a = new Float32Array([1, 2, 3]);
  const b = new Uint16Array([0x3c00, 0x4000]);
  beforeAll(async () => {
    sdir = path.join(dir, 'sharded');
    fs.mkdirSync(sdir);
    await writeSafetensors(path.join(sdir, 'model-00001-of-00002.safetensors'), [{ name: 'x.a', dtype: 'F32', shape: [3], data: a }], { format: 'pt' });
    await writeSafetensors(path.join(sdir, 'model-00002-of-00002.safetensors'), [
      { name: 'x.b', dtype: 'F16', shape: [2], data: b },
      { name: 'unlisted', dtype: 'U8', shape: [1], data: new Uint8Array(1) },
    ]);
    fs.writeFileSync(
      path.join(sdir, 'model.safetensors.index.json'),
      JSON.stringify({
        metadata: { total_size: 16 },
        weight_map: { 'x.a': 'model-00001-of-00002.safetensors', 'x.b': 'model-00002-of-00002.safetensors' },
      }),
    );
  });

  test('opens from the folder or the index and reads from each shard', async () => {
    for (const p of [sdir, path.join(sdir, 'model.safetensors.index.json')]) {
      const r = await SafetensorsReader.open(p);
      expect(r.names()).toEqual(['x.a', 'x.b']);
      expect(r.metadata).toEqual({ format: 'pt' });
      expect(Array.from(await r.readF32('x.a'))).toEqual([1, 2, 3]);
      expect(Array.from(await r.readF32('x.b'))).toEqual([1, 2]);
      expect(r.info('x.b').file).toBe(path.join(sdir, 'model-00002-of-00002.safetensors'));
      await r.close();
    }
  });

  function writeIndex(name: string, weightMap: unknown): string {
    const f = path.join(sdir, name);
    fs.writeFileSync(f, JSON.stringify({ weight_map: weightMap }));
    return f;
  }

  test('an index naming a missing file, a missing tensor, or a path outside the folder', async () => {
    await expectCode(SafetensorsReader.open(writeIndex('m1.index.json', { 'x.a': 'model-00003-of-00003.safetensors' })), 'SAFETENSORS_MISSING_SHARD');
    await expectCode(SafetensorsReader.open(writeIndex('m2.index.json', { 'x.z': 'model-00001-of-00002.safetensors' })), 'TENSOR_NOT_FOUND');
    await expectCode(SafetensorsReader.open(writeIndex('m3.index.json', { 'x.a': '../round.safetensors' })), 'SAFETENSORS_INVALID_HEADER');
    await expectCode(SafetensorsReader.open(writeIndex('m4.index.json', { 'x.a': 3 })), 'SAFETENSORS_INVALID_HEADER');
    await expectCode(SafetensorsReader.open(writeIndex('m5.index.json', [])), 'SAFETENSORS_INVALID_HEADER');
    fs.writeFileSync(path.join(sdir, 'm6.index.json'), '{"weight_map": ');
    await expectCode(SafetensorsReader.open(path.join(sdir, 'm6.index.json')), 'SAFETENSORS_INVALID_HEADER');
  });

  test('a missing path or an empty folder is an IO_ERROR', async () => {
    await expectCode(SafetensorsReader.open(path.join(dir, 'does-not-exist.safetensors')), 'IO_ERROR');
    const empty = path.join(dir, 'empty');
    fs.mkdirSync(empty);
    await expectCode(SafetensorsReader.open(empty), 'IO_ERROR');
  });
});

describeShared('fixtures/gpt2-sotu/model.safetensors', 'gpt2-sotu checkpoint', () => {
  test('opens and its tensors have the shapes config.json implies', async () => {
    const cfg = JSON.parse(fs.readFileSync(sharedPath('fixtures', 'gpt2-sotu', 'config.json'), 'utf8'));
    const d: number = cfg.n_embd;
    const ff: number = cfg.n_inner ?? 4 * d;
    const expected = new Map<string, number[]>([
      ['transformer.wte.weight', [cfg.vocab_size, d]],
      ['transformer.wpe.weight', [cfg.n_positions, d]],
      ['transformer.ln_f.weight', [d]],
      ['transformer.ln_f.bias', [d]],
    ]);
    for (let l = 0; l < cfg.n_layer; l++) {
      const p = `transformer.h.${l}.`;
      for (const ln of ['ln_1', 'ln_2']) {
        expected.set(`${p}${ln}.weight`, [d]);
        expected.set(`${p}${ln}.bias`, [d]);
      }
      expected.set(`${p}attn.c_attn.weight`, [d, 3 * d]);
      expected.set(`${p}attn.c_attn.bias`, [3 * d]);
      expected.set(`${p}attn.c_proj.weight`, [d, d]);
      expected.set(`${p}attn.c_proj.bias`, [d]);
      expected.set(`${p}mlp.c_fc.weight`, [d, ff]);
      expected.set(`${p}mlp.c_fc.bias`, [ff]);
      expected.set(`${p}mlp.c_proj.weight`, [ff, d]);
      expected.set(`${p}mlp.c_proj.bias`, [d]);
    }
    const r = await SafetensorsReader.open(sharedPath('fixtures', 'gpt2-sotu'));
    try {
      expect(r.names().sort()).toEqual([...expected.keys()].sort());
      for (const [name, shape] of expected) {
        expect(r.info(name).shape).toEqual(shape);
        expect(r.info(name).dtype).toBe('F32');
      }
      const w = await r.readF32('transformer.h.0.mlp.c_fc.weight');
      expect(w.length).toBe(d * ff);
      expect(w.every(Number.isFinite)).toBe(true);
    } finally {
      await r.close();
    }
  });
});

// A writer killed mid-file (SIGKILL) left its temp file beside the target for good (tester S); the next write
// of the same file removes the dead writer's temps, and never a live one's.
test('writeSafetensors removes the temp files a killed writer of the same file left, not a live writer\'s', async () => {
  const { spawnSync } = await import('node:child_process');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ffmerge-st-sweep-'));
  try {
    const dead = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
    const deadPid = Number(dead.stdout);
    const stale = path.join(dir, `.ffmerge-tmp-${deadPid}-1700000000000-abc123-model.safetensors`);
    const live = path.join(dir, `.ffmerge-tmp-${process.pid}-${Date.now()}-def456-model.safetensors`);
    // this process's pid, named before it began: a killed earlier process that had the same pid (a container's)
    const samePid = path.join(dir, `.ffmerge-tmp-${process.pid}-${Math.floor(performance.timeOrigin) - 5000}-abc123-model.safetensors`);
    const other = path.join(dir, `.ffmerge-tmp-${deadPid}-1700000000000-abc123-other.safetensors`);
    for (const f of [stale, live, samePid, other]) fs.writeFileSync(f, 'partial');
    await writeSafetensors(path.join(dir, 'model.safetensors'), [{ name: 'x', dtype: 'F32', shape: [1], data: new Float32Array([1]) }]);
    expect(fs.existsSync(stale)).toBe(false);
    expect(fs.existsSync(samePid)).toBe(false);
    expect(fs.existsSync(live)).toBe(true);
    expect(fs.existsSync(other)).toBe(true); // another file's temps are that file's writer's business
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
