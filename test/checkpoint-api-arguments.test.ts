/**
 * The checkpoint API given what an untyped caller may pass (tester AM): wrong array types where bytes or floats
 * are read or written, layers out of range, metadata that is not a plain object, edits of the wrong type. Each
 * is a typed FfmergeError, never a silent wrong result (a Float32Array `into` read past its tensor, a Map of
 * metadata dropped), a file the reader then refuses, or a TypeError from deep inside.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as vm from 'node:vm';
import * as lib from '../lib/index';
import { codeOf } from './helpers/expect-code';

const MODEL = path.resolve(__dirname, '..', 'models', 'llama-stories260k');
const config = JSON.parse(fs.readFileSync(path.join(MODEL, 'config.json'), 'utf8')) as Record<string, unknown>;
let dir: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ffmerge-ckpt-args-'));
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

/* eslint-disable @typescript-eslint/no-explicit-any */
const bad = (v: unknown): any => v;


describe('reading and converting tensors', () => {
  let file: string;
  beforeAll(async () => {
    file = path.join(dir, 'two.safetensors');
    await lib.writeSafetensors(file, [
      { name: 'a', dtype: 'F32', shape: [2], data: Float32Array.of(1, 2) },
      { name: 'b', dtype: 'F32', shape: [6], data: new Float32Array(6).fill(9) },
    ]);
  });

  test("readRaw's into must be bytes (a Float32Array read 4× the tensor: the next tensor's bytes too)", async () => {
    const r = await lib.SafetensorsReader.open(file);
    try {
      expect(await codeOf(() => r.readRaw('a', { into: bad(new Float32Array(8)) }))).toBe('INVALID_ARGUMENT');
      expect(await codeOf(() => r.readRaw('a', bad(null)))).toBe('INVALID_ARGUMENT');
      expect(await codeOf(() => r.readRaw('a', { into: bad(5) }))).toBe('INVALID_ARGUMENT');
      const into = new Uint8Array(16);
      expect(Array.from(new Float32Array((await r.readRaw('a', { into })).slice().buffer))).toEqual([1, 2]);
      // readF32's into is a Float32Array (a Float64Array got garbage, a plain array was returned untouched)
      for (const into of [new Float64Array(2), [0, 0], new Uint8Array(2)]) expect(await codeOf(() => r.readF32('a', { into: bad(into) }))).toBe('INVALID_ARGUMENT');
      expect(Array.from(await r.readF32('a', { into: new Float32Array(2) }))).toEqual([1, 2]);
    } finally {
      await r.close();
    }
    expect(await codeOf(() => lib.SafetensorsReader.fromBytes(bad(5)))).toBe('INVALID_ARGUMENT');
  });

  test('the converters take the array types they say (a Float64Array became [0, 16256], U8 of floats 8 values)', async () => {
    for (const f of [lib.f32ToF16, lib.f32ToBF16]) {
      for (const v of [new Float64Array([1, 2]), [1, 2], 5, null, new Uint8Array(3)]) expect(await codeOf(() => f(bad(v)))).toBe('INVALID_ARGUMENT');
    }
    expect(await codeOf(() => lib.toF32('U8', bad(Float32Array.of(1.5, 300))))).toBe('INVALID_ARGUMENT');
    expect(await codeOf(() => lib.toF32('BF16', new Uint8Array(4), bad(new Float64Array(2))))).toBe('INVALID_ARGUMENT');
    expect(await codeOf(() => lib.toF32('F32', bad(null)))).toBe('INVALID_ARGUMENT');
    expect(await codeOf(() => lib.toF32(bad('XX'), new Uint8Array(4)))).toBe('SAFETENSORS_UNKNOWN_DTYPE');
    expect(Array.from(lib.toF32('F16', new Uint8Array(lib.f32ToF16(Float32Array.of(1.5, -2)).buffer)))).toEqual([1.5, -2]);
  });
});

describe('writing safetensors files the reader then refused', () => {
  const t = { name: 'a', dtype: 'F32' as const, shape: [1], data: Float32Array.of(1) };
  test('metadata is a plain object of strings (a Map was dropped unsaid; an inherited toJSON replaced it)', async () => {
    const f = path.join(dir, 'meta.safetensors');
    expect(await codeOf(() => lib.writeSafetensors(f, [t], bad(new Map([['k', 'v']]))))).toBe('INVALID_ARGUMENT');
    const evil = Object.assign(Object.create({ toJSON: () => 'evil' }) as object, { k: 'v' });
    expect(await codeOf(() => lib.writeSafetensors(f, [t], bad(evil)))).toBe('INVALID_ARGUMENT');
    // a plain object from another realm (a vm context) is a plain object
    await lib.writeSafetensors(f, [t], vm.runInNewContext('({ j: "w" })') as Record<string, string>);
    await lib.writeSafetensors(f, [t], Object.assign(Object.create(null) as Record<string, string>, { k: 'v' }));
    const r = await lib.SafetensorsReader.open(f);
    expect(r.metadata).toEqual({ k: 'v' });
    await r.close();
  });

  test('a header past the readers\' limit, and a shape whose partial product passes 2^53, are refused before writing', async () => {
    const f = path.join(dir, 'big.safetensors');
    expect(await codeOf(() => lib.writeSafetensors(f, [t], { k: 'x'.repeat(lib.MAX_HEADER_BYTES + 1) }))).toBe('SAFETENSORS_HEADER_TOO_LARGE');
    expect(await codeOf(() => lib.writeSafetensors(f, [{ ...t, shape: [2 ** 52, 2 ** 52, 0], data: new Float32Array(0) }]))).toBe('INVALID_ARGUMENT');
    expect(await codeOf(() => lib.writeSafetensors(f, [bad(null)]))).toBe('INVALID_ARGUMENT');
    expect(await codeOf(() => lib.writeSafetensors(f, [{ ...t, shape: bad([1n]) }]))).toBe('INVALID_ARGUMENT');
    expect(fs.existsSync(f)).toBe(false);
    expect(fs.readdirSync(dir).filter((n) => n.startsWith('.ffmerge-tmp'))).toEqual([]);
  });
});

describe('FF names and ties of a layer that is not there', () => {
  const ff = (d: number, dFF: number): lib.FFWeights => ({ d, dFF, wIn: new Float32Array(d * dFF), wOut: new Float32Array(d * dFF), wGate: new Float32Array(d * dFF) });
  test('ffReplacements: the layer in range and the FF of the config\'s sizes (32 × 344 passed as 64 × 172, scrambled)', async () => {
    const stack = lib.ffStacks(config)[0]!;
    const spec = lib.architectureOf(config).stacks[0]!.spec(config);
    for (const layer of [stack.layers, 0.5, -1, bad('1')]) expect(await codeOf(() => lib.ffReplacements(config, 'decoder', layer, ff(spec.dModel, spec.dFF)))).toBe('INVALID_ARGUMENT');
    expect(await codeOf(() => lib.ffReplacements(config, bad('encoder'), 0, ff(spec.dModel, spec.dFF)))).toBe('INVALID_ARGUMENT');
    expect(await codeOf(() => lib.ffReplacements(config, 'decoder', 0, ff(spec.dModel * 2, spec.dFF / 2)))).toBe('SHAPE_MISMATCH');
    expect(lib.ffReplacements(config, 'decoder', 0, ff(spec.dModel, spec.dFF)).size).toBe(3);
    // the pieces the layer stores, no more and no fewer: a bias it lacks was dropped, a gate left out kept the source's
    const { wGate: _gate, ...ungated } = ff(spec.dModel, spec.dFF);
    expect(() => lib.ffReplacements(config, 'decoder', 0, { ...ff(spec.dModel, spec.dFF), bOut: new Float32Array(spec.dModel) })).toThrow(
      expect.objectContaining({ code: 'SHAPE_MISMATCH', message: "ffReplacements(config, stack, layer, ff): ff is an FF with bOut, which the decoder stack's FF of llama lacks (layer 0)" }),
    );
    expect(() => lib.ffReplacements(config, 'decoder', 0, ungated)).toThrow(expect.objectContaining({ code: 'SHAPE_MISMATCH', message: expect.stringMatching(/an FF without wGate, which .* has/) }));
  });

  test('ffTies: distinct layers in range ("ab" tied layer b to a, [0, 0] a layer to itself)', async () => {
    for (const layers of [bad('ab'), [0, 0], [0, 99], [0, NaN], [-1, 0]]) expect(await codeOf(() => lib.ffTies(config, 'decoder', layers))).toBe('INVALID_ARGUMENT');
    expect(Object.keys(lib.ffTies(config, 'decoder', [0, 1])).length).toBe(3);
  });
});

describe('writeCheckpoint given a source that is not a folder, or edits of the wrong type', () => {
  test('typed errors, nothing written', async () => {
    const out = path.join(dir, 'out');
    const file = path.join(dir, 'two.safetensors');
    // before: a raw ENOENT (realpath) and ENOTDIR
    expect(await codeOf(() => lib.writeCheckpoint({ source: path.join(dir, 'nope'), out, format: 'tied' }))).toBe('DATA_NOT_FOUND');
    expect(await codeOf(() => lib.writeCheckpoint({ source: file, out, format: 'tied' }))).toBe('DATA_NOT_FOUND');
    expect(await codeOf(() => lib.checkOutputDir(MODEL, out, false, bad(null)))).toBe('INVALID_ARGUMENT');
    for (const edit of [
      { replace: bad({ 'model.norm.weight': new Float32Array(1) }) },
      { replace: new Map([['model.norm.weight', bad([1, 2])]]) },
      { replace: new Map([[bad(5), new Float32Array(1)]]) },
      { ties: bad({ 'model.layers.1.mlp.up_proj.weight': 5 }) },
      { info: { x: bad(1n) } },
    ]) {
      expect(await codeOf(() => lib.writeCheckpoint({ source: MODEL, out, format: 'tied', ...edit }))).toBe('INVALID_ARGUMENT');
    }
    expect(fs.existsSync(out)).toBe(false);
  });
});
