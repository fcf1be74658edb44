/**
 * An FF in one native job (ffApply: hidden units or output) and the least-squares sums fed from it (addFF),
 * against float64 references built from the scalar activations (lib/model/activation.ts), on random inputs
 * of odd sizes, with and without biases and a gate.
 */
import { ffApply, RidgeAccumulator } from '../lib/native/ridge';
import { CorrelationAccumulator } from '../lib/native/correlation';
import { activate, type Activation } from './reference/ff';
import type { FFWeights } from '../lib/model/ff-weights';
import { randomFF, rng } from './helpers/random-ff';

/** float64 reference: H [n, dFF], or the output [n, d]. */
function reference(ff: FFWeights, X: Float32Array, n: number, act: Activation): { H: Float64Array; Y: Float64Array } {
  const { d, dFF } = ff;
  const H = new Float64Array(n * dFF);
  for (let r = 0; r < n; r++) {
    for (let u = 0; u < dFF; u++) {
      let up = ff.bIn ? ff.bIn[u]! : 0;
      let gate = ff.bGate ? ff.bGate[u]! : 0;
      for (let k = 0; k < d; k++) {
        up += X[r * d + k]! * ff.wIn[u * d + k]!;
        if (ff.wGate) gate += X[r * d + k]! * ff.wGate[u * d + k]!;
      }
      H[r * dFF + u] = ff.wGate ? activate(act, gate) * up : activate(act, up);
    }
  }
  const Y = new Float64Array(n * d);
  for (let r = 0; r < n; r++) {
    for (let o = 0; o < d; o++) {
      let s = ff.bOut ? ff.bOut[o]! : 0;
      for (let u = 0; u < dFF; u++) s += H[r * dFF + u]! * ff.wOut[o * dFF + u]!;
      Y[r * d + o] = s;
    }
  }
  return { H, Y };
}

const close = (got: ArrayLike<number>, want: ArrayLike<number>, tol: number) => {
  expect(got.length).toBe(want.length);
  for (let i = 0; i < want.length; i++) expect(Math.abs(got[i]! - want[i]!)).toBeLessThan(tol * Math.max(1, Math.abs(want[i]!)));
};

describe('ffApply (native) vs the float64 reference', () => {
  const cases: [Activation, number, number, number][] = [
    ['gelu_new', 1, 1, 1],
    ['gelu', 7, 5, 13],
    ['silu', 33, 17, 9],
    ['swish', 3, 2, 4],
    ['relu', 129, 11, 37],
  ];
  it.each(cases)('%s, n %i, d %i, d_ff %i: plain and gated, with and without biases', async (act, n, d, dFF) => {
    const r = rng(n * 97 + d * 13 + dFF);
    const X = Float32Array.from({ length: n * d }, r);
    for (const gated of [false, true]) {
      for (const biased of [false, true]) {
        const ff = randomFF(r, d, dFF, gated, biased);
        const want = reference(ff, X, n, act);
        close(await ffApply(ff, X, n, act, false), want.H, 1e-5);
        close(await ffApply(ff, X, n, act, true), want.Y, 1e-4);
      }
    }
  });

  it('refuses bad shapes and names with typed errors, and honours an aborted signal', async () => {
    const ff = randomFF(rng(1), 3, 4, true, true);
    expect(() => ffApply(ff, new Float32Array(5), 2, 'relu', false)).toThrow(expect.objectContaining({ code: 'SHAPE_MISMATCH' }));
    await expect(ffApply({ ...ff, bIn: new Float32Array(3) }, new Float32Array(6), 2, 'relu', false)).rejects.toMatchObject({ code: 'SHAPE_MISMATCH' });
    await expect(ffApply({ ...ff, wGate: new Float32Array(5) }, new Float32Array(6), 2, 'relu', false)).rejects.toMatchObject({ code: 'SHAPE_MISMATCH' });
    await expect(ffApply(ff, new Float32Array(6), 2, 'tanh' as Activation, false)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    const ac = new AbortController();
    ac.abort();
    await expect(ffApply(ff, new Float32Array(6), 2, 'relu', false, { signal: ac.signal })).rejects.toMatchObject({ code: 'ABORTED' });
  });
});

describe('RidgeAccumulator.addFF: the hidden units computed in the job', () => {
  it.each([[false], [true]])('gated %s: the same sums as add() with the reference hidden units', async (gated) => {
    const r = rng(gated ? 5 : 6);
    const n = 257;
    const d = 6;
    const dFF = 11;
    const m = 3;
    const ff = randomFF(r, d, dFF, gated, true);
    const X = Float32Array.from({ length: n * d }, r);
    const Y = Float32Array.from({ length: n * m }, r);
    const viaFF = new RidgeAccumulator(dFF, m);
    await viaFF.addFF(X.subarray(0, 100 * d), 100, ff, 'gelu_new', Y.subarray(0, 100 * m));
    await viaFF.addFF(X.subarray(100 * d), n - 100, ff, 'gelu_new', Y.subarray(100 * m));
    const plain = new RidgeAccumulator(dFF, m);
    await plain.add(Float32Array.from(reference(ff, X, n, 'gelu_new').H), Y, n);
    expect(viaFF.count).toBe(n);
    for (const opts of [{}, { bias: false }, { columns: [9, 0, 4] }, { columns: [2, 7], bias: false }]) {
      const a = await viaFF.solve(1e-3, opts);
      const b = await plain.solve(1e-3, opts);
      close(a.w, b.w, 1e-3);
      close(a.b, b.b, 1e-3);
      if (opts.bias === false) expect(Array.from(a.b)).toEqual(new Array(m).fill(0));
    }
    expect(Array.from(await viaFF.select(4, { forced: [dFF] }))).toEqual(Array.from(await plain.select(4, { forced: [dFF] })));
    await expect(Promise.resolve().then(() => viaFF.addFF(X, n, { ...ff, dFF: 5 }, 'relu', Y))).rejects.toMatchObject({ code: 'SHAPE_MISMATCH' });
    await expect(viaFF.solve(1e-3, { columns: [dFF] })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
  });
});

describe('CorrelationAccumulator.addFF refuses non-finite rows whole', () => {
  it('NaN in the inputs (through relu too) or in a later block of the targets: the batch refused, the row named in it, the sums as they were (tester DW)', async () => {
    // 4,096 units: a row block is 32 Mi / 4,096 = 8,192 rows, so row 12,000 lies in the second block
    const r = rng(31);
    const [d, dFF, m, n] = [8, 4096, 8, 16_384];
    const ff = randomFF(r, d, dFF, false, true);
    const X = Float32Array.from({ length: n * d }, r);
    const Y = Float32Array.from({ length: n * m }, r);
    const badY = Y.slice();
    badY[12_000 * m + 3] = NaN;
    const badX = X.slice();
    badX.fill(NaN, 7 * d, 8 * d); // relu(NaN) is 0 in the hidden units: the check of H alone let it through
    const acc = new CorrelationAccumulator([dFF, m], [[0, 1]]);
    await expect(acc.addFF(X, n, ff, 'relu', badY)).rejects.toMatchObject({ code: 'NON_FINITE_ACTIVATIONS', message: expect.stringContaining('targets hold NaN at row 12000, unit 3; the batch was not added') });
    await expect(acc.addFF(badX, n, ff, 'relu', Y)).rejects.toMatchObject({ code: 'NON_FINITE_ACTIVATIONS', message: expect.stringContaining('FF inputs hold NaN at row 7, value 0') });
    expect(acc.count).toBe(0);
    await acc.addFF(X.subarray(0, 100 * d), 100, ff, 'relu', Y.subarray(0, 100 * m)); // still usable
    expect(acc.count).toBe(100);
  });

  it("hidden units that overflow in a later block are named by the batch's row, once; the sums are then unusable (tester EJ)", async () => {
    const r = rng(32);
    const [d, dFF, m, n] = [8, 4096, 2, 16_384]; // blocks of 8,192 rows
    const ff = randomFF(r, d, dFF, false, true);
    ff.wIn = ff.wIn.map((v) => v * 1e36);
    const X = Float32Array.from({ length: n * d }, () => r() * 1e-36);
    X.fill(1e6, 12_000 * d, 12_001 * d); // 1e42 × … : Inf in row 12,000's hidden units
    const Y = Float32Array.from({ length: n * m }, r);
    const acc = new CorrelationAccumulator([dFF, m], [[0, 1]]);
    const e = await acc.addFF(X, n, ff, 'relu', Y).catch((x: unknown) => x as Error);
    expect(e).toMatchObject({ code: 'NON_FINITE_ACTIVATIONS', message: expect.stringMatching(/\(batch row 12000, unit \d+\) \(in the block from row 8192\); the 8192 rows before it were added, so this accumulator can no longer be used$/) });
    expect((e as Error).message).not.toMatch(/was not added/);
    await expect(acc.addFF(X.subarray(0, d), 1, ff, 'relu', Y.subarray(0, m))).rejects.toMatchObject({ code: 'INVALID_STATE' });
  });

  it('no rows: nothing added, for both accumulators (tester EJ: SHAPE_MISMATCH naming the FF)', async () => {
    const ff = randomFF(rng(33), 4, 8, false, true);
    const corr = new CorrelationAccumulator([8, 3], [[0, 1]]);
    await corr.addFF(new Float32Array(0), 0, ff, 'relu', new Float32Array(0));
    expect(corr.count).toBe(0);
    const ridge = new RidgeAccumulator(8, 3);
    await ridge.addFF(new Float32Array(0), 0, ff, 'relu', new Float32Array(0));
    expect(ridge.count).toBe(0);
  });

  it("progress counts the batch's rows forwards only, however many row blocks (tester EJ: each block's own count restarted it)", async () => {
    const r = rng(34);
    const [d, dFF, m, n] = [8, 512, 2, 80_000]; // correlation: blocks of 65,536 rows; ridge: 32,768
    const ff = randomFF(r, d, dFF, false, true);
    const X = Float32Array.from({ length: n * d }, r);
    const Y = Float32Array.from({ length: n * m }, r);
    for (const acc of [new CorrelationAccumulator([dFF, m], [[0, 1]]), new RidgeAccumulator(dFF, m)]) {
      const seen: [number, number][] = [];
      await acc.addFF(X, n, ff, 'relu', Y, { onProgress: (p) => void seen.push([p.done, p.total]) });
      expect(seen.every(([, t]) => t === n)).toBe(true);
      expect(seen.every(([x], i) => i === 0 || x >= seen[i - 1]![0])).toBe(true);
      expect(seen.at(-1)).toEqual([n, n]);
    }
  });
});
