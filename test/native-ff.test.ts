/**
 * NativeFF (an FF held in native memory, shared with jobs without a copy) and select's prescreen gains
 * computed in one native job (CorrelationAccumulator.addFF + explained), against float64 references on random
 * inputs of odd sizes, with and without biases and a gate.
 */
import { CorrelationAccumulator } from '../lib/native/correlation';
import { NativeFF } from '../lib/native/native-ff';
import { ffApply, RidgeAccumulator } from '../lib/native/ridge';
import { ffForwardReference, type Activation } from './reference/ff';
import type { FFWeights } from '../lib/model/ff-weights';
import { randomFF, rng } from './helpers/random-ff';

/** Rows `units` of ff's input side, in JS. */
function rowsOf(ff: FFWeights, units: number[]): Pick<FFWeights, 'wIn' | 'bIn' | 'wGate' | 'bGate'> {
  const take = (m: Float32Array, w: number) => Float32Array.from(units.flatMap((u) => Array.from(m.subarray(u * w, u * w + w))));
  return {
    wIn: take(ff.wIn, ff.d),
    ...(ff.bIn ? { bIn: take(ff.bIn, 1) } : {}),
    ...(ff.wGate ? { wGate: take(ff.wGate, ff.d) } : {}),
    ...(ff.bGate ? { bGate: take(ff.bGate, 1) } : {}),
  };
}

describe('NativeFF', () => {
  it('is filled by parts and gives back the rows asked, in their order', async () => {
    const r = rng(3);
    const a = randomFF(r, 7, 5, true, true);
    const b = randomFF(r, 7, 3, true, true);
    const pool = new NativeFF(8, 7, { bIn: true, gate: true, bGate: true });
    await pool.set(0, a);
    await pool.set(5, b);
    const got = await pool.rows([6, 0, 4, 7]);
    expect(got.dFF).toBe(4);
    const want = { ...rowsOf(a, [0, 4]) };
    const wantB = rowsOf(b, [1, 2]);
    for (const k of ['wIn', 'bIn', 'wGate', 'bGate'] as const) {
      const w = k === 'wIn' || k === 'wGate' ? 7 : 1;
      const expected = [...wantB[k]!.subarray(0, w), ...want[k]!.subarray(0, w), ...want[k]!.subarray(w, 2 * w), ...wantB[k]!.subarray(w, 2 * w)];
      expect(Array.from(got[k]!)).toEqual(expected);
    }
    pool.dispose();
    await expect(pool.rows([0])).rejects.toMatchObject({ code: 'INVALID_STATE' });
  });

  it('refuses parts it was not made with, rows that do not fit, and indices out of range', async () => {
    const r = rng(5);
    const ff = randomFF(r, 4, 3, false, true);
    const pool = new NativeFF(5, 4, { bIn: true, gate: false, bGate: false });
    await pool.set(0, ff);
    const before = await pool.rows([0, 1, 2]);
    await expect(pool.set(3, ff)).rejects.toMatchObject({ code: 'SHAPE_MISMATCH' });
    await expect(pool.set(0, { ...ff, bIn: ff.bIn!.subarray(1) })).rejects.toMatchObject({ code: 'SHAPE_MISMATCH' });
    expect(Array.from((await pool.rows([0, 1, 2])).wIn)).toEqual(Array.from(before.wIn)); // a refused set changes nothing
    await expect(pool.set(0, randomFF(r, 4, 3, true, true))).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(pool.set(0, randomFF(r, 5, 3, false, true))).rejects.toMatchObject({ code: 'SHAPE_MISMATCH' });
    expect(() => new NativeFF(0, 4, { bIn: false, gate: false, bGate: false })).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
    await expect(pool.rows([5])).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    pool.dispose();
    pool.dispose(); // twice is fine
  });

  it('feeds ffApply and the least-squares sums exactly as the JS FF does, and refuses set() while a job reads it', async () => {
    const r = rng(11);
    const n = 37;
    for (const gated of [false, true]) {
      const ff = randomFF(r, 9, 13, gated, true);
      const X = Float32Array.from({ length: n * 9 }, r);
      const Y = Float32Array.from({ length: n * 9 }, r);
      const native = await NativeFF.of(ff);
      expect(Array.from(await ffApply(native, X, n, 'silu', false))).toEqual(Array.from(await ffApply(ff, X, n, 'silu', false)));
      const a = new RidgeAccumulator(13, 9);
      const b = new RidgeAccumulator(13, 9);
      const running = ffApply(native, X, n, 'silu', false);
      await expect(native.set(0, ff)).rejects.toMatchObject({ code: 'BUSY' });
      await running;
      await a.addFF(X, n, native, 'silu', Y);
      await b.addFF(X, n, ff, 'silu', Y);
      const [sa, sb] = [await a.solve(), await b.solve()];
      expect(Array.from(sa.w)).toEqual(Array.from(sb.w));
      await native.set(0, ff); // no job now
      native.dispose();
    }
  });
});

/** float64: per unit of ff, Σ_o corr(h, y_o)² · var(y_o) over the rows. */
function explainedReference(H: Float64Array, Y: Float32Array, n: number, p: number, m: number): Float64Array {
  const mean = (get: (r: number) => number) => {
    let s = 0;
    for (let r = 0; r < n; r++) s += get(r);
    return s / n;
  };
  const out = new Float64Array(p);
  const my = Array.from({ length: m }, (_, o) => mean((r) => Y[r * m + o]!));
  const vy = Array.from({ length: m }, (_, o) => mean((r) => (Y[r * m + o]! - my[o]!) ** 2));
  for (let u = 0; u < p; u++) {
    const mh = mean((r) => H[r * p + u]!);
    const vh = mean((r) => (H[r * p + u]! - mh) ** 2);
    if (vh === 0) continue;
    for (let o = 0; o < m; o++) {
      if (vy[o] === 0) continue;
      const cov = mean((r) => (H[r * p + u]! - mh) * (Y[r * m + o]! - my[o]!));
      out[u]! += (cov * cov) / (vh * vy[o]!) * vy[o]!;
    }
  }
  return out;
}

describe("select's prescreen gains in one native job", () => {
  const cases: [Activation, number[], number, number, boolean, boolean][] = [
    ['silu', [1, 40, 7], 6, 11, true, false],
    ['gelu_new', [53], 5, 17, false, true],
    ['relu', [3, 30], 4, 9, false, false],
    ['silu', [64, 65], 8, 23, true, true],
  ];
  it.each(cases)('%s, batches %j, d %i, units %i (gated %s, biased %s)', async (act, batches, d, p, gated, biased) => {
    const r = rng(batches.length * 31 + d * 7 + p);
    const ff = randomFF(r, d, p, gated, biased);
    const n = batches.reduce((a, b) => a + b, 0);
    const X = Float32Array.from({ length: n * d }, r);
    // targets that depend on the inputs (and one constant column), so gains differ between units
    const Y = new Float32Array(n * d);
    for (let i = 0; i < n; i++) {
      for (let o = 0; o < d; o++) Y[i * d + o] = o === 2 ? 0.5 : X[i * d + ((o + 1) % d)]! * (o + 1) + 0.1 * r();
    }
    const want = explainedReference(ffForwardReference(ff, X, n, act).hidden, Y, n, p, d);
    for (const input of [ff, await NativeFF.of(ff)]) {
      const corr = new CorrelationAccumulator([p, d], [[0, 1]]);
      let at = 0;
      for (const rows of batches) {
        await corr.addFF(X.subarray(at * d, (at + rows) * d), rows, input, act, Y.subarray(at * d, (at + rows) * d));
        at += rows;
      }
      const got = await corr.explained(0, { release: true });
      expect(got.length).toBe(p);
      for (let u = 0; u < p; u++) expect(Math.abs(got[u]! - want[u]!)).toBeLessThan(1e-4 * Math.max(1e-3, want[u]!));
      await expect(corr.explained(0)).rejects.toMatchObject({ code: 'INVALID_STATE' });
      if (input instanceof NativeFF) input.dispose();
    }
  });

  it('refuses an accumulator that is not [units, m] and a NaN input', async () => {
    const r = rng(2);
    const ff = randomFF(r, 3, 4, false, true);
    const X = Float32Array.from({ length: 6 }, r);
    const Y = Float32Array.from({ length: 6 }, r);
    await expect(new CorrelationAccumulator([4, 3, 3], [[0, 1]]).addFF(X, 2, ff, 'relu', Y)).rejects.toMatchObject({ code: 'SHAPE_MISMATCH' });
    await expect(new CorrelationAccumulator([5, 3], [[0, 1]]).addFF(X, 2, ff, 'relu', Y)).rejects.toMatchObject({ code: 'SHAPE_MISMATCH' });
    X[1] = NaN;
    await expect(new CorrelationAccumulator([4, 3], [[0, 1]]).addFF(X, 2, ff, 'gelu_new', Y)).rejects.toMatchObject({ code: 'NON_FINITE_ACTIVATIONS' });
  });
});
