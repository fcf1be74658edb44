import { isFfmergeError } from '../lib/errors';
import { assignmentKernels, linearSumAssignment, permutationFromCorrelation } from '../lib/native/assignment';
import { linearSumAssignmentReference, type AssignmentResult } from '../lib/reference/assignment';
import { pearsonCrossCorrelationSmall } from './reference/pearson-small';
import { SafetensorsReader } from '../lib/safetensors';
import { describeShared, sharedPath } from './helpers/shared';
import { mulberry32 as rng, normalFrom as normal } from './reference/random';

// Small deterministic PRNG (mulberry32) and a Box–Muller normal, so failures reproduce.

function shuffled(n: number, r: () => number): Int32Array {
  const p = Int32Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1));
    [p[i], p[j]] = [p[j] as number, p[i] as number];
  }
  return p;
}

/** Best objective over all injective maps of the smaller side into the larger (≤ 8×8). */
function bruteForce(c: ArrayLike<number>, rows: number, cols: number, maximize: boolean): number {
  const tr = rows > cols;
  const n = tr ? cols : rows;
  const m = tr ? rows : cols;
  const at = (a: number, b: number) => (tr ? (c[b * cols + a] as number) : (c[a * cols + b] as number));
  let best = maximize ? -Infinity : Infinity;
  const used = new Uint8Array(m);
  const rec = (a: number, sum: number) => {
    if (a === n) {
      best = maximize ? Math.max(best, sum) : Math.min(best, sum);
      return;
    }
    for (let b = 0; b < m; b++) {
      if (used[b]) continue;
      used[b] = 1;
      rec(a + 1, sum + at(a, b));
      used[b] = 0;
    }
  };
  rec(0, 0);
  return best;
}

/** Checks the result is a valid matching and that its objective is what it claims. */
function expectValid(res: AssignmentResult, c: ArrayLike<number>, rows: number, cols: number): void {
  const k = Math.min(rows, cols);
  expect(res.rowInd.length).toBe(k);
  expect(res.colInd.length).toBe(k);
  const seen = new Set<number>();
  let sum = 0;
  for (let t = 0; t < k; t++) {
    const r = res.rowInd[t] as number;
    const q = res.colInd[t] as number;
    if (t > 0) expect(r).toBeGreaterThan(res.rowInd[t - 1] as number);
    expect(r >= 0 && r < rows && q >= 0 && q < cols).toBe(true);
    seen.add(q);
    sum += c[r * cols + q] as number;
  }
  expect(seen.size).toBe(k);
  expect(res.objective).toBeCloseTo(sum, 9);
}

function relClose(a: number, b: number, rel = 1e-9): void {
  expect(Math.abs(a - b)).toBeLessThanOrEqual(rel * Math.max(1, Math.abs(a), Math.abs(b)));
}

type Kind = 'uniform' | 'integer' | 'constant' | 'correlation';
function matrix(kind: Kind, rows: number, cols: number, r: () => number): Float32Array {
  const c = new Float32Array(rows * cols);
  if (kind === 'uniform') for (let k = 0; k < c.length; k++) c[k] = r() * 2 - 1;
  if (kind === 'integer') for (let k = 0; k < c.length; k++) c[k] = Math.floor(r() * 4);
  if (kind === 'constant') c.fill(0.5);
  if (kind === 'correlation') c.set(correlationLike(rows, cols, r));
  return c;
}

/** Correlation between two random-feature activation sets sharing a hidden partial matching (with noise). */
function correlationLike(rows: number, cols: number, r: () => number): Float64Array {
  const tokens = 96;
  const g = normal(r);
  const x = new Float64Array(tokens * rows);
  for (let k = 0; k < x.length; k++) x[k] = g();
  const y = new Float64Array(tokens * cols);
  const src = shuffled(Math.max(rows, cols), r);
  for (let t = 0; t < tokens; t++) {
    for (let b = 0; b < cols; b++) {
      const a = src[b] as number;
      const shared = a < rows && b % 3 !== 0 ? (x[t * rows + a] as number) : 0;
      y[t * cols + b] = shared + 0.8 * g();
    }
  }
  return pearsonCrossCorrelationSmall(x, y, tokens, rows, cols);
}

describe('linearSumAssignment (native)', () => {
  it('is optimal against brute force for every shape up to 8×8, both directions', async () => {
    const r = rng(1);
    for (let rows = 1; rows <= 8; rows++) {
      for (let cols = 1; cols <= 8; cols++) {
        for (const kind of ['uniform', 'integer'] as const) {
          const c = matrix(kind, rows, cols, r);
          for (const maximize of [false, true]) {
            const want = bruteForce(c, rows, cols, maximize);
            const got = await linearSumAssignment(c, rows, cols, { maximize });
            expectValid(got, c, rows, cols);
            relClose(got.objective, want, 1e-12);
            const ref = linearSumAssignmentReference(c, rows, cols, { maximize });
            expectValid(ref, c, rows, cols);
            relClose(ref.objective, want, 1e-12);
          }
        }
      }
    }
  });

  it.each([
    ['uniform', 500],
    ['integer', 500],
    ['constant', 500],
    ['correlation', 500],
    ['uniform', 1],
    ['correlation', 97],
  ] as const)('matches the pure-TS solver on %s matrices, n = %i', async (kind, n) => {
    const r = rng(n + kind.length);
    const c = matrix(kind, n, n, r);
    for (const maximize of [true, false]) {
      const got = await linearSumAssignment(c, n, n, { maximize });
      expectValid(got, c, n, n);
      const ref = linearSumAssignmentReference(c, n, n, { maximize });
      relClose(got.objective, ref.objective);
    }
  });

  it('solves rectangular matrices both ways (float32 and float64)', async () => {
    const r = rng(9);
    for (const [rows, cols] of [
      [37, 120],
      [120, 37],
      [1, 50],
      [50, 1],
      [200, 199],
    ] as const) {
      for (const kind of ['uniform', 'integer', 'correlation'] as const) {
        const c32 = matrix(kind, rows, cols, r);
        const c64 = Float64Array.from(c32);
        for (const maximize of [true, false]) {
          const ref = linearSumAssignmentReference(c32, rows, cols, { maximize });
          const a = await linearSumAssignment(c32, rows, cols, { maximize });
          const b = await linearSumAssignment(c64, rows, cols, { maximize });
          expectValid(a, c32, rows, cols);
          expectValid(b, c64, rows, cols);
          relClose(a.objective, ref.objective);
          relClose(b.objective, ref.objective);
        }
      }
    }
  });

  it('returns the identical assignment with every kernel this CPU runs', async () => {
    const { auto, supported } = assignmentKernels();
    expect(supported).toContain('scalar');
    expect(supported).toContain(auto);
    const r = rng(4);
    for (const [rows, cols] of [
      [301, 301],
      [53, 90],
    ] as const) {
      const c = matrix('correlation', rows, cols, r);
      const base = await linearSumAssignment(c, rows, cols, { maximize: true, kernel: 'scalar' });
      for (const kernel of supported) {
        const got = await linearSumAssignment(c, rows, cols, { maximize: true, kernel });
        expect(Array.from(got.colInd)).toEqual(Array.from(base.colInd));
        expect(got.objective).toBe(base.objective);
      }
    }
  });

  it('rejects NaN and infinite entries with NON_FINITE_INPUT', async () => {
    for (const bad of [NaN, Infinity, -Infinity]) {
      const c = new Float32Array(12).fill(1);
      c[7] = bad;
      await expect(linearSumAssignment(c, 3, 4)).rejects.toMatchObject({
        code: 'NON_FINITE_INPUT',
        message: expect.stringContaining('row 1, column 3'),
      });
      expect(() => linearSumAssignmentReference(c, 3, 4)).toThrow(expect.objectContaining({ code: 'NON_FINITE_INPUT' }));
    }
  });

  it('rejects a length that does not match rows×cols, and non-float arrays', async () => {
    await expect(linearSumAssignment(new Float32Array(10), 3, 4)).rejects.toMatchObject({ code: 'SHAPE_MISMATCH' });
    await expect(linearSumAssignment(new Float32Array(12), -3, -4)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(
      linearSumAssignment(new Int32Array(12) as unknown as Float32Array, 3, 4),
    ).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(permutationFromCorrelation(new Float32Array(10), 3)).rejects.toMatchObject({ code: 'SHAPE_MISMATCH' });
  });

  it('handles empty matrices', async () => {
    const res = await linearSumAssignment(new Float32Array(0), 0, 7);
    expect(res.rowInd.length).toBe(0);
    expect(res.objective).toBe(0);
  });

  it('stops with ABORTED when the signal fires, before or during the job', async () => {
    const pre = new AbortController();
    pre.abort();
    await expect(linearSumAssignment(new Float32Array(4), 2, 2, { signal: pre.signal })).rejects.toMatchObject({
      code: 'ABORTED',
    });
    const n = 1500;
    const c = matrix('uniform', n, n, rng(5));
    const ctl = new AbortController();
    const p = linearSumAssignment(c, n, n, { signal: ctl.signal });
    ctl.abort(); // the job is already queued: its own cancel check must stop it
    const err: unknown = await p.catch((e: unknown) => e);
    expect(isFfmergeError(err, 'ABORTED')).toBe(true);
  });

  it('with { stage: true } copies a large float32 cost in slices and gives the same assignment (tester CF)', async () => {
    const next = rng(21);
    const n = 1031; // 1031² > STAGE_MIN (1 Mi): staged
    const cost = new Float32Array(n * n).map(() => next());
    const plain = await linearSumAssignment(cost, n, n, { maximize: true });
    const staged = await linearSumAssignment(cost, n, n, { maximize: true, stage: true });
    expect(staged.colInd).toEqual(plain.colInd);
    expect(staged.objective).toBe(plain.objective);
    expect(await permutationFromCorrelation(cost, n, { stage: true })).toEqual(await permutationFromCorrelation(cost, n));
    // a float64 cost is copied at the call either way
    const f64 = Float64Array.from(cost.subarray(0, 64 * 64));
    expect((await linearSumAssignment(f64, 64, 64, { stage: true })).colInd).toEqual((await linearSumAssignment(f64, 64, 64)).colInd);
    const e = await (async () => linearSumAssignment(cost, n, n, { stage: 1 as unknown as boolean }))().catch((x: unknown) => x);
    expect(isFfmergeError(e) && e.code).toBe('INVALID_ARGUMENT');
  });

  it('reports progress as rows assigned out of n', async () => {
    const n = 400;
    const c = matrix('uniform', n, n, rng(6));
    const seen: { phase: string; done: number; total: number }[] = [];
    await linearSumAssignment(c, n, n, { onProgress: (p) => seen.push(p) });
    expect(seen.length).toBeGreaterThan(0);
    const last = seen[seen.length - 1]!;
    expect(last).toEqual({ phase: 'assignment', done: n, total: n });
    for (const p of seen) expect(p.done).toBeLessThanOrEqual(p.total);
  });
});

describe('permutationFromCorrelation', () => {
  it('recovers a planted permutation from noisy correlated synthetic activations', async () => {
    const r = rng(12);
    const g = normal(r);
    const tokens = 3000;
    const d = 96;
    // X: anchor activations with some shared structure between units (a low-rank part), like real FF units.
    const rank = 8;
    const mix = Float64Array.from({ length: rank * d }, () => g() * 0.5);
    const x = new Float64Array(tokens * d);
    for (let t = 0; t < tokens; t++) {
      const z = Array.from({ length: rank }, g);
      for (let a = 0; a < d; a++) {
        let s = g();
        for (let q = 0; q < rank; q++) s += (z[q] as number) * (mix[q * d + a] as number);
        x[t * d + a] = s;
      }
    }
    // Y's unit b is X's unit planted[b], plus noise.
    const planted = shuffled(d, r);
    const y = new Float64Array(tokens * d);
    for (let t = 0; t < tokens; t++) {
      for (let b = 0; b < d; b++) y[t * d + b] = (x[t * d + (planted[b] as number)] as number) + 0.7 * g();
    }
    const corr = pearsonCrossCorrelationSmall(x, y, tokens, d, d);
    const perm = await permutationFromCorrelation(Float32Array.from(corr), d);
    // perm[a] is the unit of Y that goes to position a, so Y[:, perm[a]] must be X[:, a].
    for (let a = 0; a < d; a++) expect(planted[perm[a] as number]).toBe(a);
    // And it is the maximiser: no better than the reference solver's optimum, no worse either.
    const ref = linearSumAssignmentReference(corr, d, d, { maximize: true });
    let total = 0;
    for (let a = 0; a < d; a++) total += corr[a * d + (perm[a] as number)] as number;
    relClose(total, ref.objective, 1e-6);
  });
});

// Real FF pre-activations (the method's actual input) from the shared fixtures: correlations between
// adjacent layers, aligned natively and by the reference solver.
describeShared('fixtures', 'permutationFromCorrelation on real FF activations', () => {
  it.each([
    ['gpt2-sotu', 0, 1],
    ['gpt2-sotu', 6, 7],
    ['vit-fmnist', 2, 3],
  ] as const)('%s layers %i→%i: same optimum as the reference solver, better than no permutation', async (model, anchor, other) => {
    const st = await SafetensorsReader.open(sharedPath('fixtures', model, 'reference.safetensors'));
    const { shape } = st.info('fc1_preact');
    const all = await st.readF32('fc1_preact');
    await st.close();
    const layers = shape[0] as number;
    const d = shape[shape.length - 1] as number;
    const tokens = all.length / layers / d; // every position is a real token in these fixtures
    const layer = (l: number) => all.subarray(l * tokens * d, (l + 1) * tokens * d);
    const corr = pearsonCrossCorrelationSmall(layer(anchor), layer(other), tokens, d, d);
    const perm = await permutationFromCorrelation(Float32Array.from(corr), d);
    expect(new Set(perm).size).toBe(d);
    let aligned = 0;
    let identity = 0;
    for (let a = 0; a < d; a++) {
      aligned += corr[a * d + (perm[a] as number)] as number;
      identity += corr[a * d + a] as number;
    }
    const ref = linearSumAssignmentReference(Float32Array.from(corr), d, d, { maximize: true });
    relClose(aligned, ref.objective, 1e-6);
    expect(aligned).toBeGreaterThan(identity);
  });
});
