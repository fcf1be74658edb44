import { RidgeAccumulator } from '../lib/native/ridge';
import { ridgeReference, splitSolution } from './reference/ridge';

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32 - 0.5;
  };
}

describe('RidgeAccumulator (native) vs float64 reference', () => {
  it.each([
    [1, 1, 5],
    [7, 3, 40],
    [33, 17, 600], // more rows than one native block, odd sizes
    [97, 70, 300], // W crosses the 64-wide tiles the job transposes X in, both ways
  ])('p=%i m=%i n=%i', async (p, m, n) => {
    const r = rng(p * 100 + m);
    const H = Float32Array.from({ length: n * p }, r);
    const Y = Float32Array.from({ length: n * m }, r);
    const acc = new RidgeAccumulator(p, m);
    // two uneven chunks: accumulation must be additive
    const cut = Math.floor(n / 3);
    await acc.add(H.subarray(0, cut * p), Y.subarray(0, cut * m), cut);
    await acc.add(H.subarray(cut * p), Y.subarray(cut * m), n - cut);
    expect(acc.count).toBe(n);
    const got = await acc.solve(1e-3);
    const want = splitSolution(ridgeReference(H, Y, n, p, m, 1e-3), p, m);
    let scale = 0;
    for (const v of want.w) scale = Math.max(scale, Math.abs(v));
    for (let i = 0; i < want.w.length; i++) expect(Math.abs(got.w[i]! - want.w[i]!)).toBeLessThan(1e-4 * Math.max(1, scale));
    for (let i = 0; i < want.b.length; i++) expect(Math.abs(got.b[i]! - want.b[i]!)).toBeLessThan(1e-4 * Math.max(1, scale));
  });

  it('recovers exact linear targets when λ → 0', async () => {
    const p = 9;
    const m = 4;
    const n = 300;
    const r = rng(7);
    const H = Float32Array.from({ length: n * p }, r);
    const W = Float64Array.from({ length: m * p }, r);
    const b = Float64Array.from({ length: m }, r);
    const Y = new Float32Array(n * m);
    for (let i = 0; i < n; i++)
      for (let o = 0; o < m; o++) {
        let s = b[o]!;
        for (let j = 0; j < p; j++) s += W[o * p + j]! * H[i * p + j]!;
        Y[i * m + o] = s;
      }
    const acc = new RidgeAccumulator(p, m);
    await acc.add(H, Y, n);
    const sol = await acc.solve(1e-9);
    for (let i = 0; i < W.length; i++) expect(sol.w[i]).toBeCloseTo(W[i]!, 3);
    for (let i = 0; i < m; i++) expect(sol.b[i]).toBeCloseTo(b[i]!, 3);
  });

  it('reports a singular system with SINGULAR_MATRIX', async () => {
    const acc = new RidgeAccumulator(3, 1);
    await acc.add(new Float32Array(3 * 5), new Float32Array(5), 5); // all-zero features, λ = 0
    await expect(acc.solve(0)).rejects.toMatchObject({ code: 'SINGULAR_MATRIX' });
  });

  it('every unit dead with a ridge factor: W = 0 and the bias the targets\' mean, as the reference (tester AX: SINGULAR_MATRIX ended compress)', async () => {
    // a layer whose up_proj is all zeros: the mean diagonal, and so a relative λ, is 0
    const [p, m, n] = [4, 3, 11];
    const Y = Float32Array.from({ length: n * m }, rng(3));
    const acc = new RidgeAccumulator(p, m);
    await acc.add(new Float32Array(n * p), Y, n);
    const got = await acc.solve(1e-3);
    const want = splitSolution(ridgeReference(new Float32Array(n * p), Y, n, p, m, 1e-3), p, m);
    expect(Array.from(got.w)).toEqual(new Array(m * p).fill(0));
    for (let o = 0; o < m; o++) {
      let mean = 0;
      for (let r = 0; r < n; r++) mean += Y[r * m + o]!;
      expect(got.b[o]).toBeCloseTo(mean / n, 6);
      expect(want.b[o]).toBeCloseTo(mean / n, 6);
    }
    // the subset of columns too (select's solve)
    expect(Array.from((await acc.solve(1e-3, { columns: [1, 3] })).w)).toEqual(new Array(m * 2).fill(0));
  });

  it('refuses a batch holding NaN or Inf whole, at the add, and the sums stay as they were (tester DO: refused only at the solve, for good)', async () => {
    const [p, m, n] = [5, 2, 40];
    const r = rng(11);
    const H = Float32Array.from({ length: n * p }, r);
    const Y = Float32Array.from({ length: n * m }, r);
    const clean = new RidgeAccumulator(p, m);
    await clean.add(H, Y, n);
    const acc = new RidgeAccumulator(p, m);
    const badH = H.slice();
    badH[7 * p + 3] = NaN;
    await expect(acc.add(badH, Y, n)).rejects.toMatchObject({ code: 'NON_FINITE_INPUT', message: expect.stringContaining('NaN at row 7, unit 3') });
    const badY = Y.slice();
    badY[2 * m + 1] = -Infinity;
    await expect(acc.add(H, badY, n)).rejects.toMatchObject({ code: 'NON_FINITE_INPUT', message: expect.stringContaining('targets hold Inf at row 2, output 1') });
    expect(acc.count).toBe(0);
    await acc.add(H, Y, n);
    expect(await acc.solve()).toEqual(await clean.solve());
  });

  it('addFF refuses NaN or Inf in its inputs or targets whole, in any row block, naming the row of the batch (tester DT: a later block was half added; NaN inputs through relu passed)', async () => {
    // p = 4096: a row block is 64 MiB / (4 p) = 4,096 rows, so row 5,000 lies in the second block
    const [p, d, m, n] = [4096, 8, 8, 8192];
    const r = rng(21);
    const f = (k: number) => Float32Array.from({ length: k }, r);
    const ff = { d, dFF: p, wIn: f(p * d), bIn: f(p), wOut: f(d * p), bOut: f(d) };
    const X = f(n * d);
    const Y = f(n * m);
    const badY = Y.slice();
    badY[5000 * m + 3] = NaN;
    const badX = X.slice();
    badX.fill(NaN, 7 * d, 8 * d); // through relu, max(0, NaN) is 0 in the hidden units
    const acc = new RidgeAccumulator(p, m);
    await expect(acc.addFF(X, n, ff, 'relu', badY)).rejects.toMatchObject({ code: 'NON_FINITE_INPUT', message: expect.stringContaining('targets hold NaN at row 5000, output 3; the batch was not added') });
    await expect(acc.addFF(badX, n, ff, 'relu', Y)).rejects.toMatchObject({ code: 'NON_FINITE_INPUT', message: expect.stringContaining('inputs hold NaN at row 7, value 0') });
    expect(acc.count).toBe(0);
    await acc.addFF(X, n, ff, 'relu', Y); // still usable
    expect(acc.count).toBe(n);
  });

  it('addFF whose hidden units overflow in its first block refuses the batch and leaves the sums usable; in a later block, unusable', async () => {
    const [p, d, m, n] = [4096, 8, 2, 8192]; // row blocks of 4,096 rows, as above
    const r = rng(22);
    const f = (k: number) => Float32Array.from({ length: k }, r);
    const ff = { d, dFF: p, wIn: f(p * d).map((v) => v * 1e36), bIn: f(p), wOut: f(d * p), bOut: f(d) };
    const X = f(n * d).map((v) => v * 1e-36); // hidden units of about 1: finite
    const Y = f(n * m);
    const early = X.slice(), late = X.slice();
    early.fill(1e6, 3 * d, 4 * d); // 1e42: Inf in row 3's hidden units, first block
    late.fill(1e6, 5000 * d, 5001 * d); // in the second block
    const acc = new RidgeAccumulator(p, m);
    await expect(acc.addFF(early, n, ff, 'relu', Y)).rejects.toMatchObject({ code: 'NON_FINITE_INPUT' });
    expect(acc.count).toBe(0);
    await acc.addFF(X, n, ff, 'relu', Y); // nothing was added: still usable
    expect(acc.count).toBe(n);
    // said once: "were not added" is cut from the refusal (tester EJ: it said both)
    await expect(acc.addFF(late, n, ff, 'relu', Y)).rejects.toMatchObject({ code: 'NON_FINITE_INPUT', message: expect.stringMatching(/^refit: the hidden activations hold Inf at row 5000, unit \d+ \(in the block from row 4096\); the 4096 rows before it were added, so these sums can no longer be used$/) });
    await expect(acc.addFF(X, n, ff, 'relu', Y)).rejects.toMatchObject({ code: 'INVALID_STATE' });
  });

  it('an add stopped half-way leaves sums nothing may use: INVALID_STATE, where solves came out silently wrong (tester DO)', async () => {
    // long enough that the abort lands between row blocks (256 rows each), as in correlation.test.ts
    const [p, m, n] = [192, 2, 40_000];
    const H = Float32Array.from({ length: n * p }, (_, k) => ((k * 7919) % 1009) / 1009);
    const Y = Float32Array.from({ length: n * m }, (_, k) => ((k * 104729) % 1013) / 1013);
    const acc = new RidgeAccumulator(p, m);
    const ac = new AbortController();
    // aborted at the first report: row blocks already summed, the rest not
    await expect(acc.add(H, Y, n, { signal: ac.signal, onProgress: () => ac.abort() })).rejects.toMatchObject({ code: 'ABORTED' });
    await expect(acc.add(H.subarray(0, 10 * p), Y.subarray(0, 10 * m), 10)).rejects.toMatchObject({ code: 'INVALID_STATE' });
    expect(acc.count).toBe(0); // nothing to solve: refused as such (INVALID_ARGUMENT) before the sums are read
    await expect(acc.solve()).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
  });

  it('rejects wrong shapes and empty solves', async () => {
    const acc = new RidgeAccumulator(3, 2);
    await expect(acc.add(new Float32Array(5), new Float32Array(4), 2)).rejects.toMatchObject({ code: 'SHAPE_MISMATCH' });
    await expect(acc.solve()).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
  });
});

describe('select and solve on a subset of columns (select merge)', () => {
  it('a solve on some columns equals a fresh accumulation of those columns; the greedy takes the columns Y is made of', async () => {
    const r = rng(11);
    const n = 400;
    const p = 9;
    const m = 3;
    const H = Float32Array.from({ length: n * p }, r);
    // Y built from columns 6 and 2 (plus a little noise): those are the first two picks after the intercept
    const Y = Float32Array.from({ length: n * m }, (_, i) => {
      const row = Math.floor(i / m);
      const o = i % m;
      return 3 * H[row * p + 6]! * (o + 1) - 1.5 * H[row * p + 2]! + 0.01 * r();
    });
    const acc = new RidgeAccumulator(p, m);
    await acc.add(H, Y, n);
    const taken = await acc.select(3, { forced: [p], lambdaRel: 0 });
    expect(Array.from(taken)).toEqual([p, 6, 2]);

    const cols = [7, 2, 4];
    const Hs = Float32Array.from({ length: n * cols.length }, (_, i) => H[Math.floor(i / cols.length) * p + cols[i % cols.length]!]!);
    const fresh = new RidgeAccumulator(cols.length, m);
    await fresh.add(Hs, Y, n);
    const a = await acc.solve(1e-3, { columns: cols });
    const b = await fresh.solve(1e-3);
    a.w.forEach((v, i) => expect(v).toBeCloseTo(b.w[i]!, 4));
    a.b.forEach((v, i) => expect(v).toBeCloseTo(b.b[i]!, 4));
    await expect(new RidgeAccumulator(2, 1).select(1)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
  });
});
