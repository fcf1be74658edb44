/**
 * The native core's public wrappers (matmul, assignment, correlation, ridge, the async FF ops) given what an
 * untyped caller may pass (tester AK): null, strings, values past 2³¹ or 2³², sparse arrays, arrays detached or
 * changed while a call runs, sizes larger than the machine. Each is a typed FfmergeError, never a TypeError,
 * a value read as something else (maximize: 'no' read as true, 2³² as 0), or a process killed for memory.
 */
import * as os from 'node:os';
import * as path from 'node:path';
import * as lib from '../lib/index';
import * as ref from '../lib/reference/index';
import { codeOf } from './helpers/expect-code';
import type { Model } from '../lib/model/model';

const MODEL = path.resolve(__dirname, '..', 'models', 'llama-stories260k');

/* eslint-disable @typescript-eslint/no-explicit-any */
const bad = (v: unknown): any => v;


const X = new Float32Array([1, 2, 3, 4, 5, 7]); // 3 rows × 2

describe('sizes larger than the machine are OUT_OF_MEMORY before anything is allocated', () => {
  // Before: the process was killed (Linux grants the memory, then the OOM killer ends the process while it is zeroed).
  test('correlation sums of layers 2³¹ wide', async () => {
    expect(await codeOf(() => new lib.CorrelationAccumulator([2 ** 31], [[0, 0]]))).toBe('OUT_OF_MEMORY');
    const acc = lib.CorrelationAccumulator.inFlight([2 ** 20, 3]);
    expect(await codeOf(() => acc.addPair(0, 0))).toBe('OUT_OF_MEMORY'); // 8 TiB of cross sums
    expect(acc.addPair(1, 1)).toBe(0); // the accumulator is still usable
  });

  test('correlate checks the shapes before it sizes the sums (x is not rows × dx)', async () => {
    expect(await codeOf(() => lib.correlate(new Float32Array(6), new Float32Array(6), 3, 2 ** 31, 2))).toBe('SHAPE_MISMATCH');
  });

  test('a matmul output m·n larger than memory (k = 0 leaves m·n unbounded by the inputs)', async () => {
    const e = new Float32Array(0);
    const huge = Math.ceil(os.totalmem() / 4 / 2) + 1;
    expect(await codeOf(() => lib.matmul(e, e, { m: huge, n: 2, k: 0 }))).toBe('OUT_OF_MEMORY');
    expect(await codeOf(() => lib.matmul(e, e, { m: 2 ** 32 + 1, n: 1, k: 0 }))).toBe('OUT_OF_MEMORY'); // a RangeError before
    expect(Array.from(await lib.matmul(e, e, { m: 2, n: 3, k: 0 }))).toEqual([0, 0, 0, 0, 0, 0]);
  });
});

describe('wrong types and values are INVALID_ARGUMENT, not a TypeError or a value read as another', () => {
  test('correlation', async () => {
    for (const call of [
      () => lib.correlate(X, bad(null), 3, 2, 2),
      () => lib.correlate(bad(null), X, 3, 2, 2),
      () => lib.correlate(X, X, 3, 2, 2, bad(null)),
      () => lib.correlate(X, X, 3, bad('2'), 2),
      () => new lib.CorrelationAccumulator([2], bad([null])),
      () => new lib.CorrelationAccumulator([2, 2], bad([, [0, 1]])), // eslint-disable-line no-sparse-arrays
      () => new lib.CorrelationAccumulator([2], bad([[0, 0, 5]])),
    ]) {
      expect(await codeOf(call)).toBe('INVALID_ARGUMENT');
    }
    const acc = new lib.CorrelationAccumulator([2], [[0, 0]]);
    expect(await codeOf(() => acc.add([X], 3, bad({ stage: 'yes' })))).toBe('INVALID_ARGUMENT');
    await acc.add([X], 3);
    for (const call of [
      () => acc.finalize(0, bad(null)),
      () => acc.alignment(0, bad(null)),
      () => acc.explained(0, bad(null)),
      () => acc.finalize(0, bad({ release: 'yes' })),
      () => acc.finalize(0, bad({ relase: true })),
      () => acc.addFF(X, 3, bad(null), 'relu', X),
    ]) {
      expect(await codeOf(call)).toBe('INVALID_ARGUMENT');
    }
    expect(Array.from(await acc.finalize(0))).toEqual([1, expect.closeTo(0.99340, 4), expect.closeTo(0.99340, 4), 1]);
  });

  test('assignment: maximize must be a boolean and a misspelt option is refused', async () => {
    const C = new Float64Array([1, 2, 3, 2, 4, 6, 3, 6, 9]);
    // Before: 'no' maximised (objective 14 instead of 10), and `maximise` minimised unsaid
    expect(await codeOf(() => lib.linearSumAssignment(C, 3, 3, bad({ maximize: 'no' })))).toBe('INVALID_ARGUMENT');
    expect(await codeOf(() => lib.linearSumAssignment(C, 3, 3, bad({ maximise: true })))).toBe('INVALID_ARGUMENT');
    expect((await lib.linearSumAssignment(C, 3, 3, { maximize: true })).objective).toBe(14);
    expect(await codeOf(() => lib.permutationFromCorrelation(bad(null), 2))).toBe('INVALID_ARGUMENT');
    expect(await codeOf(() => lib.permutationFromCorrelation(new Float32Array(4), bad('2')))).toBe('INVALID_ARGUMENT');
    expect(await codeOf(() => lib.permutationFromCorrelation(new Float32Array(4), NaN))).toBe('INVALID_ARGUMENT');
    expect(await codeOf(() => lib.matmul(new Float32Array(1), new Float32Array(1), { m: 1, n: 1, k: 1 }, bad({ kernel: '' })))).toBe('INVALID_ARGUMENT');
    expect(await codeOf(() => ref.linearSumAssignmentReference(bad(null), 3, 3))).toBe('INVALID_ARGUMENT');
    expect(await codeOf(() => ref.matmulReference(bad(null), new Float32Array(1), { m: 1, n: 1, k: 1 }))).toBe('INVALID_ARGUMENT');
    expect(await codeOf(() => ref.matmulReference(bad('abcd'), new Float32Array(4), { m: 2, n: 2, k: 2 }))).toBe('INVALID_ARGUMENT');
  });

  test('ridge: columns and forced are integers in range (2³² was read as column 0, NaN and 1.7 as 0 and 1)', async () => {
    const r = new lib.RidgeAccumulator(2, 1);
    // a rejection, as every async call's (a TypeError was thrown synchronously)
    await expect(r.add(bad(null), new Float32Array(3), 3)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await r.add(new Float32Array([1, 0, 0, 1, 1, 1]), new Float32Array([1, 2, 3]), 3);
    for (const call of [
      () => r.solve(1e-3, bad(null)),
      () => r.solve(1e-3, { columns: [2 ** 32] }),
      () => r.solve(1e-3, { columns: [NaN, 1.7] }),
      () => r.solve(1e-3, { columns: bad('01') }),
      () => r.solve(1e-3, bad({ bias: 'no' })),
      () => r.select(1, { forced: [NaN] }),
      () => r.select(bad('1')),
      () => r.addFF(new Float32Array(2), 1, bad(null), 'relu', new Float32Array(1)),
    ]) {
      expect(await codeOf(call)).toBe('INVALID_ARGUMENT');
    }
    expect((await r.solve(1e-3, { columns: Int32Array.of(1) })).w.length).toBe(1);
  });

  test('a forward pass captures no layer index of 2³² or more (it came back as layer 0 under the key 4294967296)', async () => {
    let m: Model | undefined;
    try {
      m = await lib.loadModel(MODEL);
      const ids = Int32Array.of(1, 2, 3);
      for (const key of ['captureFFInput', 'captureFFOutput', 'captureFF'] as const) {
        expect(await codeOf(() => m!.forward({ ids, batch: 1, seq: 3 }, { output: 'hidden', [key]: [2 ** 32] }))).toBe('INVALID_ARGUMENT');
      }
      const r = await m.forward({ ids, batch: 1, seq: 3 }, { output: 'hidden', captureFFInput: [1] });
      expect([...r.ffInput!.keys()]).toEqual([1]);
    } finally {
      m?.dispose();
    }
  });
});

describe('the async FF ops read arrays over many turns of the event loop', () => {
  const d = 1024, dFF = 2048; // a few slices each
  const ffOf = (): lib.FFWeights => ({
    d,
    dFF,
    wIn: Float32Array.from({ length: d * dFF }, (_, i) => i % 977),
    wOut: Float32Array.from({ length: d * dFF }, (_, i) => i % 983),
  });

  test('a permutation changed after the call does not change the result (it made rows that were no permutation)', async () => {
    const ff = ffOf();
    const perm = Int32Array.from({ length: dFF }, (_, i) => dFF - 1 - i);
    const p = lib.permuteFFAsync(ff, perm);
    perm.fill(0);
    const out = await p;
    expect(Array.from(out.wIn.subarray(0, d))).toEqual(Array.from(ff.wIn.subarray((dFF - 1) * d, dFF * d)));
    expect(out.wIn.subarray(d, 2 * d)).toEqual(ff.wIn.subarray((dFF - 2) * d, (dFF - 1) * d));
  });

  const detach = (x: Float32Array) => structuredClone(x.buffer, { transfer: [x.buffer as ArrayBuffer] });

  test('an array detached while it is read is BUFFER_DETACHED (permute returned an empty W_out, average NaN)', async () => {
    const ff = ffOf();
    const p = lib.permuteFFAsync(ff, Int32Array.from({ length: dFF }, (_, i) => i));
    detach(ff.wOut);
    await expect(p).rejects.toMatchObject({ code: 'BUFFER_DETACHED' });
    const a = ffOf();
    const q = lib.averageFFAsync([a, ffOf()]);
    detach(a.wOut);
    await expect(q).rejects.toMatchObject({ code: 'BUFFER_DETACHED' });
  });
});
