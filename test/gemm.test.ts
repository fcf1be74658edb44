import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { isFfmergeError } from '../lib/errors';
import { gemmKernels, matmul } from '../lib/native/gemm';
import { loadAddon } from '../lib/native/loader';
import { matmulAbsReference, matmulReference } from '../lib/reference/matmul';
import type { MatmulShape } from '../lib/native/matmul-shape';
import { mulberry32 as rng } from './reference/random';

// Small deterministic generator (mulberry32) so failures reproduce.

function randomArray(n: number, next: () => number): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = next() * 2 - 1;
  return out;
}

/** Index of the first element outside the fp32 error bound 1e-6·(k+4)·Σ|a·b| (−1 when all fit). */
function firstMismatch(got: Float32Array, want: Float32Array, scale: Float64Array, k: number): number {
  for (let i = 0; i < want.length; i++) {
    const tol = 1e-6 * (k + 4) * scale[i]! + 1e-30;
    if (!(Math.abs(got[i]! - want[i]!) <= tol)) return i;
  }
  return -1;
}

const shapes: Array<[number, number, number]> = [
  [1, 1, 1],
  [1, 17, 33],
  [33, 1, 17],
  [5, 7, 1],
  [2, 3, 5],
  [15, 31, 63],
  [17, 65, 33],
  [31, 33, 129],
  [65, 127, 7],
  [129, 63, 65],
  [13, 257, 31],
];
const transposes: Array<[boolean, boolean]> = [
  [false, false],
  [true, false],
  [false, true],
  [true, true],
];

describe('native sgemm (matmul)', () => {
  const kernels = gemmKernels();

  it('lists the kernels this CPU supports, portable first and the default last', () => {
    expect(kernels[0]).toBe('portable');
    expect(loadAddon().info.gemmKernel).toBe(kernels[kernels.length - 1]);
  });

  it('matches the float64 reference for every kernel, transpose and odd size', async () => {
    const next = rng(42);
    for (const [m, n, k] of shapes) {
      for (const [transA, transB] of transposes) {
        const shape: MatmulShape = { m, n, k, transA, transB };
        const a = randomArray(m * k, next);
        const b = randomArray(k * n, next);
        const want = matmulReference(a, b, shape);
        const scale = matmulAbsReference(a, b, shape);
        for (const kernel of kernels) {
          const got = await matmul(a, b, shape, { kernel });
          const bad = firstMismatch(got, want, scale, k);
          if (bad >= 0) {
            throw new Error(
              `${kernel} m=${m} n=${n} k=${k} transA=${transA} transB=${transB}: c[${bad}] = ${got[bad]} want ${want[bad]}`,
            );
          }
        }
      }
    }
  });

  it('applies alpha and beta to an existing output, and beta = 0 ignores NaN in it', async () => {
    const next = rng(7);
    const shape = { m: 37, n: 45, k: 29, transB: true };
    const a = randomArray(37 * 29, next);
    const b = randomArray(45 * 29, next);
    const ab = matmulReference(a, b, shape);
    const scale = matmulAbsReference(a, b, shape);
    for (const kernel of kernels) {
      const c0 = randomArray(37 * 45, next);
      const out = Float32Array.from(c0);
      const got = await matmul(a, b, shape, { kernel, alpha: -1.5, beta: 0.25, out });
      expect(got).toBe(out);
      const want = ab.map((v, i) => -1.5 * v + 0.25 * c0[i]!);
      const bound = scale.map((s, i) => 1.5 * s + 0.25 * Math.abs(c0[i]!));
      expect(firstMismatch(got, want, bound, 29)).toBe(-1);

      const nanOut = new Float32Array(37 * 45).fill(NaN);
      await matmul(a, b, shape, { kernel, out: nanOut, beta: 0 });
      expect(firstMismatch(nanOut, ab, scale, 29)).toBe(-1);
    }
  });

  it('k = 0 gives beta·c', async () => {
    const out = new Float32Array([1, 2, 3, 4, 5, 6]);
    await matmul(new Float32Array(0), new Float32Array(0), { m: 2, n: 3, k: 0 }, { out, beta: 2 });
    expect(Array.from(out)).toEqual([2, 4, 6, 8, 10, 12]);
    const zeros = await matmul(new Float32Array(0), new Float32Array(0), { m: 2, n: 3, k: 0 });
    expect(Array.from(zeros)).toEqual([0, 0, 0, 0, 0, 0]);
  });

  it('is correct on a shape large enough to use every thread', async () => {
    const next = rng(3);
    const shape = { m: 300, n: 517, k: 259 };
    const a = randomArray(300 * 259, next);
    const b = randomArray(259 * 517, next);
    const got = await matmul(a, b, shape);
    expect(firstMismatch(got, matmulReference(a, b, shape), matmulAbsReference(a, b, shape), 259)).toBe(-1);
  });

  it('with { stage: true } copies large inputs in slices and gives the same product, bit for bit (tester CF)', async () => {
    const next = rng(4);
    // a: 1031 × 1033 floats, past STAGE_MIN (1 Mi), so it is staged; b (1033 × 7) is copied at the call
    const shape = { m: 1031, n: 7, k: 1033, transB: true };
    const a = randomArray(1031 * 1033, next);
    const b = randomArray(7 * 1033, next);
    const plain = await matmul(a, b, shape);
    const staged = await matmul(a, b, shape, { stage: true });
    expect(staged).toEqual(plain);
    expect(firstMismatch(staged, matmulReference(a, b, shape), matmulAbsReference(a, b, shape), 1033)).toBe(-1);
    // the same array as both operands is staged once
    const sq = randomArray(1031 * 1031, next);
    expect(await matmul(sq, sq, { m: 1031, n: 1031, k: 1031, transB: true }, { stage: true })).toEqual(await matmul(sq, sq, { m: 1031, n: 1031, k: 1031, transB: true }));
    const e = await matmul(a, b, shape, { stage: 'yes' as unknown as boolean }).catch((x: unknown) => x);
    expect(isFfmergeError(e) && e.code).toBe('INVALID_ARGUMENT');
    // an array left unstaged (b, out) is read once staging is done: detached meanwhile, it is BUFFER_DETACHED, as at
    // the call, not SHAPE_MISMATCH (tester CJ)
    const b2 = b.slice();
    const p1 = matmul(a, b2, shape, { stage: true });
    structuredClone(b2.buffer, { transfer: [b2.buffer] });
    expect(await p1.catch((x: unknown) => isFfmergeError(x) && x.code)).toBe('BUFFER_DETACHED');
    const out = new Float32Array(1031 * 7);
    const p2 = matmul(a, b, shape, { stage: true, out });
    structuredClone(out.buffer, { transfer: [out.buffer] });
    expect(await p2.catch((x: unknown) => isFfmergeError(x) && x.code)).toBe('BUFFER_DETACHED');
  });

  it('reports progress as {phase, done, total}', async () => {
    const seen: Array<{ phase: string; done: number; total: number }> = [];
    await matmul(new Float32Array(6), new Float32Array(12), { m: 2, n: 4, k: 3 }, { onProgress: (p) => seen.push(p) });
    expect(seen.length).toBeGreaterThan(0);
    expect(seen[seen.length - 1]).toEqual({ phase: 'matmul', done: 24, total: 24 });
  });

  it('rejects bad shapes, kernels and an aborted signal with typed errors', async () => {
    const a = new Float32Array(6);
    const b = new Float32Array(6);
    await expect(matmul(a, b, { m: 3, n: 2, k: 3 })).rejects.toMatchObject({ code: 'SHAPE_MISMATCH' });
    await expect(matmul(a, b, { m: 2.5, n: 2, k: 3 })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(matmul(a, b, { m: 2, n: 2, k: 3 }, { out: new Float32Array(5) })).rejects.toMatchObject({
      code: 'SHAPE_MISMATCH',
    });
    const square = new Float32Array(4);
    await expect(matmul(square, square.subarray(0, 4), { m: 2, n: 2, k: 2 }, { out: square })).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
    });
    const bad = matmul(a, b, { m: 2, n: 2, k: 3 }, { kernel: 'sse9' as 'avx2' });
    await expect(bad).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await bad.catch((e: unknown) => expect(isFfmergeError(e)).toBe(true));
    const ctl = new AbortController();
    ctl.abort();
    await expect(matmul(a, b, { m: 2, n: 2, k: 3 }, { signal: ctl.signal })).rejects.toMatchObject({ code: 'ABORTED' });
  });

  it('FFMERGE_GEMM_KERNEL forces a kernel for every caller (checked in a child process)', () => {
    // jest gives tests a copy of process.env, so the native getenv is exercised in a fresh Node process.
    const root = path.resolve(__dirname, '..');
    const script = `
      const addon = require(require('node-gyp-build').resolve(${JSON.stringify(root)}));
      const c = new Float32Array(4);
      const h = addon.sgemm(new Float32Array([1,2,3,4]), new Float32Array([5,6,7,8]), c, 2, 2, 2, false, false, 1, 0, undefined, undefined);
      h.promise.then(() => console.log(JSON.stringify({ kernel: addon.buildInfo().gemmKernel, c: Array.from(c) })),
                     (e) => console.log(JSON.stringify({ kernel: addon.buildInfo().gemmKernel, code: e.code })));`;
    for (const kernel of [...kernels, 'bogus']) {
      const r = spawnSync(process.execPath, ['-e', script], {
        env: { ...process.env, FFMERGE_GEMM_KERNEL: kernel },
        encoding: 'utf8',
      });
      expect(r.status).toBe(0);
      const res = JSON.parse(r.stdout) as { kernel: string; c?: number[]; code?: string };
      if (kernel === 'bogus') {
        expect(res.kernel).toMatch(/^invalid/);
        expect(res.code).toBe('INVALID_ARGUMENT');
      } else {
        expect(res.kernel).toBe(kernel);
        expect(res.c).toEqual([19, 22, 43, 50]);
      }
    }
  });
});
