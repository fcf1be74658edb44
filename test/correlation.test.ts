import { CorrelationAccumulator, correlate } from '../lib/native/correlation';
import { STAGE_MIN } from '../lib/native/staged';
import { permutationFromCorrelation } from '../lib/native/assignment';
import { pearsonReference } from '../lib/reference/correlation';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { FfmergeError } from '../lib/errors';
import { mulberry32 as rng } from './reference/random';

// Seeded normal samples (mulberry32 + Box–Muller): failures reproduce.

/** rows × d activations: offset + noise + (unit % 3) × a factor shared by all layers, so units correlate. */
function layer(normal: () => number, common: Float64Array, d: number, offset = 0, scale = 1): Float32Array {
  const rows = common.length;
  const x = new Float32Array(rows * d);
  for (let r = 0; r < rows; r++) for (let a = 0; a < d; a++) x[r * d + a] = offset + scale * (normal() + (a % 3) * common[r]!);
  return x;
}

function commonFactor(normal: () => number, rows: number): Float64Array {
  return Float64Array.from({ length: rows }, () => normal());
}

function maxAbsDiff(got: Float32Array, want: Float64Array): number {
  expect(got.length).toBe(want.length);
  let m = 0;
  for (let k = 0; k < got.length; k++) m = Math.max(m, Math.abs(got[k]! - want[k]!));
  return m;
}

/** Feeds rows [r0, r0 + n) of every layer as one batch. */
async function feed(acc: CorrelationAccumulator, layers: (Float32Array | null)[], batches: number[]): Promise<void> {
  let r0 = 0;
  for (const n of batches) {
    await acc.add(
      layers.map((x, l) => (x ? x.subarray(r0 * acc.dims[l]!, (r0 + n) * acc.dims[l]!) : null)),
      n,
    );
    r0 += n;
  }
}

async function rejection(p: Promise<unknown>): Promise<FfmergeError> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(FfmergeError);
    return e as FfmergeError;
  }
  throw new Error('expected a rejection');
}

describe('CorrelationAccumulator', () => {
  it('matches the float64 reference on odd sizes and uneven batches (incl. 1-row batches)', async () => {
    const normal = rng(1);
    const batches = [1, 37, 200, 1, 95, 3];
    const rows = batches.reduce((a, b) => a + b, 0);
    const common = commonFactor(normal, rows);
    const dims = [1, 3, 17, 129, 5];
    const data = dims.map((d, l) => (l === 4 ? null : layer(normal, common, d, 0.3 * l)));
    const pairs: [number, number][] = [[3, 3], [0, 3], [2, 1], [1, 1], [3, 2]];
    const acc = new CorrelationAccumulator(dims, pairs);
    acc.setBlockRows(64); // several fp32 blocks inside the large batches
    await feed(acc, data, batches);
    expect(acc.count).toBe(rows);
    for (let p = 0; p < pairs.length; p++) {
      const [i, j] = pairs[p]!;
      const got = await acc.finalize(p);
      const want = pearsonReference(data[i]!, data[j]!, rows, dims[i]!, dims[j]!);
      expect(maxAbsDiff(got, want)).toBeLessThan(1e-6);
    }
  });

  it('stays within 1e-6 at the default block size with strongly correlated units', async () => {
    const normal = rng(2);
    const rows = 5000;
    const common = commonFactor(normal, rows);
    const x = layer(normal, common, 31, 0, 0.2); // units 1, 2 (mod 3) correlate at ~0.98 / 0.995
    const y = layer(normal, common, 40, 0, 0.2);
    const acc = new CorrelationAccumulator([31, 40], [[0, 1], [0, 0]]);
    await feed(acc, [x, y], [4097, 903]);
    expect(maxAbsDiff(await acc.finalize(0), pearsonReference(x, y, rows, 31, 40))).toBeLessThan(1e-6);
    expect(maxAbsDiff(await acc.finalize(1), pearsonReference(x, x, rows, 31, 31))).toBeLessThan(1e-6);
  });

  it('is accurate when means are large relative to stds (+1000 offset, std 1)', async () => {
    const normal = rng(3);
    const rows = 3001;
    const common = commonFactor(normal, rows);
    const x = layer(normal, common, 21, 1000);
    const y = layer(normal, common, 10, -2500);
    const acc = new CorrelationAccumulator([21, 10], [[0, 1], [1, 1]]);
    await feed(acc, [x, y], [500, 1, 2000, 500]);
    expect(maxAbsDiff(await acc.finalize(0), pearsonReference(x, y, rows, 21, 10))).toBeLessThan(1e-6);
    expect(maxAbsDiff(await acc.finalize(1), pearsonReference(y, y, rows, 10, 10))).toBeLessThan(1e-6);
  });

  // The cross sums are float32 products: unscaled, values near 1e19 overflowed them (every r came out ±1) and
  // values near 1e-23 underflowed them (the diagonal came out 0.4), with no error. Pearson's r is scale-free.
  it('is accurate at extreme but finite scales (1e19, 1e-23, 1e-30), and explained() keeps the units of y', async () => {
    const normal = rng(31);
    const rows = 700;
    const common = commonFactor(normal, rows);
    const x0 = layer(normal, common, 9, 0);
    const y0 = layer(normal, common, 7, 3);
    for (const [sx, sy] of [[1e19, 1e-23], [1e-30, 1e19], [1, 1e-23]] as const) {
      const x = x0.map((v) => v * sx);
      const y = y0.map((v) => v * sy);
      const acc = new CorrelationAccumulator([9, 7], [[0, 1], [1, 1]]);
      acc.setBlockRows(128);
      await feed(acc, [x, y], [300, 400]);
      expect(maxAbsDiff(await acc.finalize(0), pearsonReference(x, y, rows, 9, 7))).toBeLessThan(1e-6);
      expect(maxAbsDiff(await acc.finalize(1), pearsonReference(y, y, rows, 7, 7))).toBeLessThan(1e-6);
    }
    const explainedOf = async (y: Float32Array) => {
      const acc = new CorrelationAccumulator([9, 7], [[0, 1]]);
      await feed(acc, [x0, y], [rows]);
      return acc.explained(0);
    };
    const plain = await explainedOf(y0);
    const tiny = await explainedOf(y0.map((v) => v * 2 ** -80));
    for (let a = 0; a < 9; a++) expect(tiny[a]! / 2 ** -160).toBeCloseTo(plain[a]!, 4);
  });

  it('a first batch that does not vary (one row) scales by its values: 1e-30 and 1e30 units stream right (tester DO: a diagonal of −1, or finite data refused)', async () => {
    const normal = rng(33);
    const rows = 120;
    const x0 = layer(normal, commonFactor(normal, rows), 6, 0.5);
    for (const scale of [1e-30, 1e30, 1]) {
      const x = x0.map((v) => v * scale);
      const acc = new CorrelationAccumulator([6], [[0, 0]]);
      await feed(acc, [x], [1, 1, rows - 2]);
      expect(maxAbsDiff(await acc.finalize(0), pearsonReference(x, x, rows, 6, 6))).toBeLessThan(1e-6);
    }
    // near 1 the scale stays 1: a first row of 1e-6, then rows of 1e9, were refused as too wide (tester DT)
    const y = x0.map((v, k) => (k < 6 ? v * 1e-6 : v * 1e9));
    const acc = new CorrelationAccumulator([6], [[0, 0]]);
    await feed(acc, [y], [1, rows - 1]);
    // (the first row is the shift, far from the later rows' mean: float32 products keep 5 to 6 digits)
    expect(maxAbsDiff(await acc.finalize(0), pearsonReference(y, y, rows, 6, 6))).toBeLessThan(2e-5);
  });

  it('correlates finite values near float\'s limit, whose differences overflow float32 (tester DO: refused as spreading 2^2147483647 times wider)', async () => {
    const x = Float32Array.from([3.4e38, -3.4e38, 3.4e38, -3.3e38, 1e38, 0]);
    const y = Float32Array.from([1, -1, 1, -0.9, 0.3, 0]);
    expect(maxAbsDiff(await correlate(x, y, 6, 1, 1), pearsonReference(x, y, 6, 1, 1))).toBeLessThan(1e-6);
  });

  it('refuses a later batch far wider than the first, whose float32 products would overflow', async () => {
    const normal = rng(32);
    const x = layer(normal, commonFactor(normal, 40), 5, 0);
    for (let k = 20 * 5; k < 40 * 5; k++) x[k] = x[k]! * 2 ** 60;
    const acc = new CorrelationAccumulator([5], [[0, 0]]);
    await acc.add([x.subarray(0, 100)], 20);
    const e = await rejection(acc.add([x.subarray(100)], 20));
    expect(e.code).toBe('NON_FINITE_ACTIVATIONS');
    expect(e.message).toMatch(/layer 0 spread about 2\^6\d times wider than in the first batch/);
  });

  it('gives 0, not NaN, for constant units', async () => {
    const normal = rng(4);
    const rows = 60;
    const d = 6;
    const x = new Float32Array(rows * d);
    for (let r = 0; r < rows; r++) {
      for (let a = 0; a < d; a++) x[r * d + a] = a === 2 ? 7.125 : a === 4 ? 0 : normal();
    }
    const acc = new CorrelationAccumulator([d], [[0, 0]]);
    await feed(acc, [x], [1, 20, 39]);
    const c = await acc.finalize(0);
    for (let a = 0; a < d; a++) {
      for (let b = 0; b < d; b++) {
        const v = c[a * d + b]!;
        expect(Number.isFinite(v)).toBe(true);
        if ([a, b].some((u) => u === 2 || u === 4)) expect(v).toBe(0);
      }
    }
    expect(c[0]).toBeCloseTo(1, 6);
  });

  it('rejects a batch with NaN or Inf whole, naming the layer', async () => {
    const normal = rng(5);
    const rows = 20;
    const x = layer(normal, commonFactor(normal, rows), 4);
    const y = layer(normal, commonFactor(normal, rows), 9);
    const acc = new CorrelationAccumulator([4, 9], [[0, 1]]);
    await acc.add([x.subarray(0, 40), y.subarray(0, 90)], 10);
    const before = await acc.finalize(0);
    for (const bad of [NaN, Infinity]) {
      const yBad = y.slice(90);
      yBad[33] = bad;
      const err = await rejection(acc.add([x.subarray(40), yBad], 10));
      expect(err.code).toBe('NON_FINITE_ACTIVATIONS');
      expect(err.message).toMatch(/layer 1/);
    }
    expect(acc.count).toBe(10);
    expect(await acc.finalize(0)).toEqual(before);
  });

  it('aborts: before a batch it changes nothing; half-way it makes the accumulator refuse further use', async () => {
    const normal = rng(6);
    const rows = 200;
    const x = layer(normal, commonFactor(normal, rows), 8);
    const acc = new CorrelationAccumulator([8], [[0, 0]]);
    const early = new AbortController();
    early.abort();
    expect((await rejection(acc.add([x], rows, { signal: early.signal }))).code).toBe('ABORTED');
    expect(acc.count).toBe(0);
    await acc.add([x], rows);
    expect(maxAbsDiff(await acc.finalize(0), pearsonReference(x, x, rows, 8, 8))).toBeLessThan(1e-6);

    // Many small blocks; abort on the first progress report, which comes after the first block is in.
    const bigRows = 40000;
    const d = 192;
    // Cheap deterministic fill: the values do not matter here, only that the work is long.
    const big = Float32Array.from({ length: bigRows * d }, (_, k) => ((k * 7919) % 1009) / 1009);
    const mid = new CorrelationAccumulator([d], [[0, 0]]);
    mid.setBlockRows(32);
    const ctrl = new AbortController();
    const err = await rejection(mid.add([big], bigRows, { signal: ctrl.signal, onProgress: () => ctrl.abort() }));
    expect(err.code).toBe('ABORTED');
    expect(mid.count).toBe(0);
    expect((await rejection(mid.finalize(0))).code).toBe('INVALID_STATE');
    expect((await rejection(mid.add([big.subarray(0, d)], 1))).code).toBe('INVALID_STATE');
  });

  it('allows one job at a time (BUSY) and works again once it settled', async () => {
    const normal = rng(7);
    const rows = 3000;
    const x = layer(normal, commonFactor(normal, rows), 64);
    const acc = new CorrelationAccumulator([64], [[0, 0]]);
    const first = acc.add([x], rows);
    expect((await rejection(acc.add([x], rows))).code).toBe('BUSY');
    expect((await rejection(acc.finalize(0))).code).toBe('BUSY');
    await first;
    expect(maxAbsDiff(await acc.finalize(0), pearsonReference(x, x, rows, 64, 64))).toBeLessThan(1e-6);
  });

  it('reports progress and validates shapes and arguments with typed errors', async () => {
    const acc = new CorrelationAccumulator([3, 4], [[0, 1]]);
    const x = new Float32Array(6);
    const y = new Float32Array(8);
    expect((await rejection(acc.add([x], 2))).code).toBe('SHAPE_MISMATCH');
    expect((await rejection(acc.add([x, new Float32Array(7)], 2))).code).toBe('SHAPE_MISMATCH');
    expect((await rejection(acc.add([x, y], 3))).code).toBe('SHAPE_MISMATCH');
    expect((await rejection(acc.add([x, null], 2))).code).toBe('INVALID_ARGUMENT');
    expect((await rejection(acc.finalize(0))).code).toBe('INVALID_STATE');
    expect((await rejection(acc.finalize(1))).code).toBe('INVALID_ARGUMENT');
    expect(() => new CorrelationAccumulator([3, 4], [[0, 2]])).toThrow(FfmergeError);
    expect(() => new CorrelationAccumulator([3, 0], [[0, 1]])).toThrow(/positive integer/);
    expect(() => new CorrelationAccumulator([3], [])).toThrow(FfmergeError);

    const normal = rng(8);
    x.forEach((_, k) => (x[k] = normal()));
    y.forEach((_, k) => (y[k] = normal()));
    const phases: string[] = [];
    await acc.add([x, y], 2, { onProgress: (p) => phases.push(p.phase) });
    expect(phases).toContain('correlation.add');
    expect(acc.backend).toMatch(/^(cpu|cuda)$/);
  });
});

describe('pairs in flight (CorrelationAccumulator.inFlight)', () => {
  it('opens pairs one at a time, finalizes with release, and equals an accumulator holding every pair', async () => {
    const normal = rng(21);
    const rows = 300;
    const common = commonFactor(normal, rows);
    const xs = [layer(normal, common, 17, 3), layer(normal, common, 17, -2), layer(normal, common, 17, 0, 4)];
    const pairs: [number, number][] = [[0, 1], [0, 2], [2, 1]];
    const fixed = new CorrelationAccumulator([17, 17, 17], pairs);
    await feed(fixed, xs, [100, 7, 193]);
    const acc = CorrelationAccumulator.inFlight([17, 17, 17]);
    expect(acc.pairs).toEqual([]);
    for (const [k, [i, j]] of pairs.entries()) {
      const p = acc.addPair(i, j);
      expect(p).toBe(k);
      // only the open pair's layers are needed
      await feed(acc, xs.map((x, l) => (l === i || l === j ? x : null)), [100, 7, 193]);
      expect(acc.pairCount(p)).toBe(rows);
      const got = await acc.finalize(p, { release: true });
      expect(Array.from(got)).toEqual(Array.from(await fixed.finalize(k)));
      expect(maxAbsDiff(got, pearsonReference(xs[i]!, xs[j]!, rows, 17, 17))).toBeLessThan(1e-6);
      expect((await rejection(acc.finalize(p))).code).toBe('INVALID_STATE');
      acc.release(p); // twice: a no-op
    }
    expect(acc.usedLayers()).toEqual([]);
    expect((await rejection(acc.add(xs, rows))).code).toBe('INVALID_STATE');
    expect(() => acc.addPair(0, 3)).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
    expect(() => acc.release(9)).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
  });
});

describe('alignment (finalize and assignment in one job)', () => {
  it('equals permutationFromCorrelation on the finalized matrix, frees the sums, and refuses unequal widths', async () => {
    const normal = rng(33);
    const rows = 211;
    const common = commonFactor(normal, rows);
    // odd widths; units of layer 1 are layer 0's, shuffled, plus noise, so the best permutation is not the identity
    const d = 37;
    const x0 = layer(normal, common, d, 1);
    const shuffle = Array.from({ length: d }, (_, i) => (i * 11 + 5) % d);
    const x1 = new Float32Array(rows * d);
    for (let r = 0; r < rows; r++) for (let a = 0; a < d; a++) x1[r * d + shuffle[a]!] = x0[r * d + a]! + 0.3 * normal();
    const pairs: [number, number][] = [[0, 1], [1, 1]];
    const a = new CorrelationAccumulator([d, d], pairs);
    const b = new CorrelationAccumulator([d, d], pairs);
    await feed(a, [x0, x1], [1, 100, 110]);
    await feed(b, [x0, x1], [1, 100, 110]);
    const want = await permutationFromCorrelation(await b.finalize(0), d);
    const got = await a.alignment(0, { release: true });
    expect(Array.from(got)).toEqual(Array.from(want));
    expect(Array.from(got)).toEqual(shuffle);
    expect((await rejection(a.alignment(0))).code).toBe('INVALID_STATE');
    expect(Array.from(await a.alignment(1))).toEqual(Array.from({ length: d }, (_, i) => i));
    const uneven = new CorrelationAccumulator([d, 5], [[0, 1]]);
    expect((await rejection(uneven.alignment(0))).code).toBe('INVALID_ARGUMENT');
    expect((await rejection(uneven.alignment(3))).code).toBe('INVALID_ARGUMENT');
  });
});

describe('correlate', () => {
  it('correlates two matrices and a matrix with itself', async () => {
    const normal = rng(9);
    const rows = 77;
    const common = commonFactor(normal, rows);
    const x = layer(normal, common, 13, 5);
    const y = layer(normal, common, 2, -5);
    expect(maxAbsDiff(await correlate(x, y, rows, 13, 2), pearsonReference(x, y, rows, 13, 2))).toBeLessThan(1e-6);
    expect(maxAbsDiff(await correlate(x, x, rows, 13, 13), pearsonReference(x, x, rows, 13, 13))).toBeLessThan(1e-6);
    expect((await rejection(correlate(x, y, rows, 13, 3))).code).toBe('SHAPE_MISMATCH');
  });

  it('stages large inputs with { stage: true } and gives the same correlations (tester CF: it refused the option)', async () => {
    const normal = rng(10);
    const rows = 4099; // x: 4099 × 257 floats, past STAGE_MIN (1 Mi), so it is staged in slices
    const common = commonFactor(normal, rows);
    const x = layer(normal, common, 257, 1);
    const y = layer(normal, common, 3, -2);
    expect(x.length).toBeGreaterThan(STAGE_MIN);
    const plain = await correlate(x, y, rows, 257, 3);
    expect(await correlate(x, y, rows, 257, 3, { stage: true })).toEqual(plain);
    expect((await rejection(correlate(x, y, rows, 257, 3, { stage: 'yes' as unknown as boolean }))).code).toBe('INVALID_ARGUMENT');
  });
});

describe('CUDA build selection (needs build-cuda/, made by npm run build:cuda where nvcc exists)', () => {
  const cudaFile = path.join(__dirname, '..', 'build-cuda', 'Release', 'ffmerge_cuda.node');
  const built = fs.existsSync(cudaFile);
  if (!built) {
    it.skip('skipped: build-cuda/Release/ffmerge_cuda.node is absent (run npm run build:cuda to test this)', () => {});
    return;
  }

  function freshLoader(backend: string | undefined): typeof import('../lib/native/loader') {
    let mod: typeof import('../lib/native/loader') | undefined;
    jest.isolateModules(() => {
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      mod = require('../lib/native/loader') as typeof import('../lib/native/loader');
    });
    if (backend === undefined) delete process.env.FFMERGE_BACKEND;
    else process.env.FFMERGE_BACKEND = backend;
    return mod!;
  }

  it('uses the CUDA build only when it sees a device, and says why', () => {
    const prev = process.env.FFMERGE_BACKEND;
    try {
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      const raw = require(cudaFile) as { buildInfo(): { variant: string; cudaDevices?: number } };
      const info = raw.buildInfo();
      expect(info.variant).toBe('cuda');
      expect(typeof info.cudaDevices).toBe('number');
      const auto = freshLoader(undefined).loadAddon();
      if ((info.cudaDevices ?? 0) > 0) {
        expect(auto.info.variant).toBe('cuda');
        expect(auto.reason).toMatch(/CUDA device found/);
      } else {
        expect(auto.info.variant).toBe('cpu');
        expect(auto.reason).toMatch(/sees no CUDA device; using the CPU build/);
        expect(() => freshLoader('cuda').loadAddon()).toThrow(/FFMERGE_BACKEND=cuda/);
      }
    } finally {
      if (prev === undefined) delete process.env.FFMERGE_BACKEND;
      else process.env.FFMERGE_BACKEND = prev;
    }
  });
});
