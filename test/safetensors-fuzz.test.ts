/**
 * Mutation fuzzing of the safetensors reader: valid files are damaged (bit flips, truncations, edited header
 * numbers, edited length prefix, edited JSON text) and every case must either load (and then read every
 * tensor consistently) or throw an FfmergeError with a safetensors code. Deterministic (seeded PRNG).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ErrorCode, FfmergeError } from '../lib/errors';
import { DTYPE_SIZE, SafetensorsReader, writeSafetensors } from '../lib/safetensors';
import { prng, randomBytes } from './helpers/safetensors-bytes';

const ALLOWED: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  'SAFETENSORS_TRUNCATED',
  'SAFETENSORS_HEADER_TOO_LARGE',
  'SAFETENSORS_INVALID_HEADER',
  'SAFETENSORS_UNKNOWN_DTYPE',
  'SAFETENSORS_OUT_OF_BOUNDS',
  'SAFETENSORS_OVERLAP',
  'SAFETENSORS_HOLE',
  'SAFETENSORS_SIZE_MISMATCH',
]);

const INTERESTING = [0, 1, -1, 2, 3, 7, 8, 9, 15, 16, 17, 255, 256, 4096, 65535, 2 ** 31, 2 ** 32, 2 ** 53, 2 ** 64, 1e300, -1e300, 1.5, -0.5];

let dir: string;
const bases: Uint8Array[] = [];

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ffmerge-fuzz-'));
  const rnd = prng(42);
  const f = path.join(dir, 'base.safetensors');
  await writeSafetensors(
    f,
    [
      { name: 'w', dtype: 'F32', shape: [3, 5], data: randomBytes(60, rnd) },
      { name: 'h', dtype: 'F16', shape: [7], data: randomBytes(14, rnd) },
      { name: 'b', dtype: 'BF16', shape: [2, 2], data: randomBytes(8, rnd) },
      { name: 'd', dtype: 'F64', shape: [3], data: randomBytes(24, rnd) },
      { name: 'l', dtype: 'I64', shape: [2], data: randomBytes(16, rnd) },
      { name: 'i', dtype: 'I32', shape: [1, 1, 3], data: randomBytes(12, rnd) },
      { name: 'u', dtype: 'U8', shape: [5], data: randomBytes(5, rnd) },
      { name: 'z', dtype: 'BOOL', shape: [0], data: new Uint8Array(0) },
      { name: 's', dtype: 'U8', shape: [], data: randomBytes(1, rnd) },
    ],
    { format: 'pt', k: 'v' },
  );
  bases.push(new Uint8Array(fs.readFileSync(f)));
  await writeSafetensors(f, [{ name: 'only', dtype: 'F32', shape: [4], data: new Float32Array([1, 2, 3, 4]) }]);
  bases.push(new Uint8Array(fs.readFileSync(f)));
});

afterAll(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

function headerLength(b: Uint8Array): number {
  return Number(new DataView(b.buffer, b.byteOffset, 8).getBigUint64(0, true));
}

function withHeader(base: Uint8Array, text: string, keepLength: boolean): Uint8Array {
  const n = headerLength(base);
  const json = Buffer.from(text, 'utf8');
  const out = new Uint8Array(8 + json.length + base.length - 8 - n);
  new DataView(out.buffer).setBigUint64(0, BigInt(keepLength ? n : json.length), true);
  out.set(json, 8);
  out.set(base.subarray(8 + n), 8 + json.length);
  return out;
}

/** One random mutation of `base`. */
function mutate(base: Uint8Array, rnd: () => number): { kind: string; bytes: Uint8Array } {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)]!;
  const n = headerLength(base);
  const text = Buffer.from(base.subarray(8, 8 + n)).toString('utf8');
  switch (Math.floor(rnd() * 7)) {
    case 0: {
      // Bit flips, mostly inside the prefix and header where they matter.
      const b = base.slice();
      const flips = 1 + Math.floor(rnd() * 4);
      for (let i = 0; i < flips; i++) {
        const pos = rnd() < 0.85 ? Math.floor(rnd() * (8 + n)) : Math.floor(rnd() * b.length);
        b[pos]! ^= 1 << Math.floor(rnd() * 8);
      }
      return { kind: 'flip', bytes: b };
    }
    case 1:
      return { kind: 'truncate', bytes: base.slice(0, Math.floor(rnd() * base.length)) };
    case 2: {
      // Replace one number of the JSON header with an interesting or nearby value.
      const nums = [...text.matchAll(/-?\d+(\.\d+)?/g)];
      if (!nums.length) return { kind: 'noop', bytes: base };
      const m = pick(nums);
      const old = Number(m[0]);
      const value = rnd() < 0.5 ? pick(INTERESTING) : old + Math.floor(rnd() * 17) - 8;
      const edited = text.slice(0, m.index) + String(value) + text.slice(m.index! + m[0].length);
      return { kind: 'number', bytes: withHeader(base, edited, rnd() < 0.2) };
    }
    case 3: {
      // Edit the length prefix.
      const b = base.slice();
      const v = rnd() < 0.5 ? BigInt(n + Math.floor(rnd() * 33) - 16) : BigInt.asUintN(64, BigInt(Math.floor(rnd() * 2 ** 52)) << BigInt(Math.floor(rnd() * 12)));
      new DataView(b.buffer).setBigUint64(0, BigInt.asUintN(64, v), true);
      return { kind: 'length', bytes: b };
    }
    case 4: {
      // Delete, duplicate or replace a span of the JSON text (keys, quotes, brackets, dtype names).
      const i = Math.floor(rnd() * text.length);
      const len = 1 + Math.floor(rnd() * 6);
      const r = rnd();
      const insert = pick(['', '"', '{', '}', '[', ']', ',', ':', '-', 'F8', 'null', '"dtype"', text.slice(i, i + len)]);
      const edited = r < 0.33 ? text.slice(0, i) + text.slice(i + len) : text.slice(0, i) + insert + text.slice(i + (r < 0.66 ? 0 : len));
      return { kind: 'text', bytes: withHeader(base, edited, rnd() < 0.2) };
    }
    case 5: {
      // Move one tensor's whole byte range (overlaps, holes, out-of-bounds ranges of the right size).
      const ranges = [...text.matchAll(/"data_offsets":\[(\d+),(\d+)\]/g)];
      if (!ranges.length) return { kind: 'noop', bytes: base };
      const m = pick(ranges);
      const delta = pick([-8, -4, -2, -1, 1, 2, 4, 8, 64]);
      const moved = `"data_offsets":[${Number(m[1]) + delta},${Number(m[2]) + delta}]`;
      return { kind: 'move', bytes: withHeader(base, text.slice(0, m.index) + moved + text.slice(m.index! + m[0].length), false) };
    }
    default: {
      // Append or remove data bytes (holes, out-of-bounds offsets).
      const extra = Math.floor(rnd() * 16) - 8;
      const b = extra >= 0 ? new Uint8Array([...base, ...randomBytes(extra, rnd)]) : base.slice(0, base.length + extra);
      return { kind: 'data-length', bytes: b };
    }
  }
}

/** Loads a case; returns 'ok' or the error code. Anything other than a typed safetensors error fails the test. */
async function check(open: () => Promise<SafetensorsReader>, size: number, kind: string): Promise<string> {
  let r: SafetensorsReader;
  try {
    r = await open();
  } catch (e) {
    if (!(e instanceof FfmergeError) || !ALLOWED.has(e.code)) {
      throw new Error(`mutation "${kind}" threw an untyped or unexpected error: ${String(e)} ${(e as FfmergeError).code ?? ''}`);
    }
    return e.code;
  }
  try {
    let total = 0;
    for (const name of r.names()) {
      const info = r.info(name);
      const numel = info.shape.reduce((a, b) => a * b, 1);
      if (info.byteLength !== numel * DTYPE_SIZE[info.dtype]) throw new Error(`loaded tensor "${name}" has an inconsistent size`);
      if (info.byteOffset + info.byteLength > size) throw new Error(`loaded tensor "${name}" lies past the end of the file`);
      total += info.byteLength;
      const raw = await r.readRaw(name);
      const f = await r.readF32(name);
      if (raw.byteLength !== info.byteLength || f.length !== numel) throw new Error(`read of "${name}" has the wrong size`);
    }
    if (total > size) throw new Error('loaded tensors claim more bytes than the file holds');
  } finally {
    await r.close();
  }
  return 'ok';
}

describe('safetensors fuzzing', () => {
  test('10000 in-memory mutations: each loads or throws a typed error', async () => {
    const rnd = prng(20261127);
    const outcomes = new Map<string, number>();
    const t0 = Date.now();
    for (let i = 0; i < 10000; i++) {
      const base = bases[i % bases.length]!;
      const { kind, bytes } = mutate(base, rnd);
      const out = await check(() => SafetensorsReader.fromBytes(bytes, `case-${i}`), bytes.length, kind);
      outcomes.set(out, (outcomes.get(out) ?? 0) + 1);
    }
    const elapsed = Date.now() - t0;
    // The fuzzer must actually reach the validation paths, and the valid outcome.
    expect(outcomes.get('ok') ?? 0).toBeGreaterThan(50);
    expect([...outcomes.keys()].filter((k) => k !== 'ok').sort()).toEqual([...ALLOWED].sort());
    // eslint-disable-next-line no-console
    console.log(`fuzz outcomes in ${elapsed} ms:`, Object.fromEntries([...outcomes].sort()));
  });

  test('400 mutations through real files (held file handle path)', async () => {
    const rnd = prng(7);
    const f = path.join(dir, 'case.safetensors');
    const seen = new Set<string>();
    for (let i = 0; i < 400; i++) {
      const { kind, bytes } = mutate(bases[0]!, rnd);
      fs.writeFileSync(f, bytes);
      seen.add(await check(() => SafetensorsReader.open(f), bytes.length, kind));
    }
    expect(seen.has('ok')).toBe(true);
    expect(seen.size).toBeGreaterThanOrEqual(5);
  });
});
