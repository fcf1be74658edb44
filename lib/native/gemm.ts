/**
 * The native single-precision GEMM (native/core/gemm.cc) as an async job:
 *   const c = await matmul(a, b, { m, n, k, transB: true });   // c = a · bᵀ, m×n, row-major
 * Runs on the addon's thread pool off the main thread; an AbortSignal stops it before it starts.
 */
import * as buffer from 'node:buffer';
import * as os from 'node:os';
import { FfmergeError, showValue } from '../errors';
import { checkMatmulShape, type MatmulShape } from './matmul-shape';
import { checkJobOptions, type JobOptions, type NativeJobHandle, type NativeProgress, runNativeJob } from './job';
import { checkBoolean, checkFloat32Array, checkOneOf } from '../arguments';
import { addonModule } from './loader';
import { type StagedFloatsHandle, withStaged } from './staged';

export type { MatmulShape } from './matmul-shape';

/** Micro-kernels sgemm can run; which exist depends on the CPU (see `gemmKernels()`). */
export type GemmKernel = (typeof GEMM_KERNELS)[number];
const GEMM_KERNELS = ['portable', 'avx2', 'avx512'] as const;

export interface MatmulOptions extends JobOptions {
  /** Force a micro-kernel (default: FFMERGE_GEMM_KERNEL, else the best this CPU supports). */
  kernel?: GemmKernel | undefined;
  /** c = alpha·op(a)·op(b) + beta·c (defaults 1 and 0). */
  alpha?: number | undefined;
  beta?: number | undefined;
  /**
   * Write into this m×n array instead of a new one (its values are the input C when beta ≠ 0). The new one is
   * made on the pool, in native memory: transferring it to a worker copies it, this one does not.
   */
  out?: Float32Array | undefined;
  /**
   * Copy a and b into native memory a slice at a time over the next turns of the event loop (lib/native/staged.ts)
   * instead of at the call (a few hundred ms at 2048²): they must then not change until the promise settles.
   */
  stage?: boolean | undefined;
}

interface GemmAddon {
  sgemm(
    a: Float32Array | StagedFloatsHandle,
    b: Float32Array | StagedFloatsHandle,
    c: Float32Array | null,
    m: number,
    n: number,
    k: number,
    transA: boolean,
    transB: boolean,
    alpha: number,
    beta: number,
    kernel: string | undefined,
    onProgress: NativeProgress,
  ): NativeJobHandle<Float32Array>;
  gemmKernels(): string[];
}

/** The GEMM micro-kernels this CPU supports, "portable" first and the default choice last. */
export function gemmKernels(): GemmKernel[] {
  return addonModule<GemmAddon>().gemmKernels() as GemmKernel[];
}

/** Whether two typed arrays view overlapping bytes of the same buffer. */
function overlaps(x: Float32Array, y: Float32Array): boolean {
  if (x.buffer !== y.buffer || x.byteLength === 0 || y.byteLength === 0) return false;
  return x.byteOffset < y.byteOffset + y.byteLength && y.byteOffset < x.byteOffset + x.byteLength;
}

/**
 * Refuses an m×n output larger than this machine's memory. m·n is not bounded by a and b (k may be 0), so a
 * shape such as m = 2³¹ asked for 16 GiB, which Linux grants and then kills the process for while the product
 * writes it: OUT_OF_MEMORY. The output itself is made on the pool and handed over without a copy.
 */
function checkOutputFits(m: number, n: number): void {
  if (m * n > buffer.constants.MAX_LENGTH) {
    throw new FfmergeError('OUT_OF_MEMORY', `matmul: the ${m}×${n} output has more values than a Float32Array holds (${buffer.constants.MAX_LENGTH})`);
  }
  const bytes = 4 * m * n;
  if (bytes > os.totalmem()) {
    throw new FfmergeError('OUT_OF_MEMORY', `matmul: the ${m}×${n} output would take ${Math.round(bytes / 2 ** 20)} MiB, more than this machine's ${Math.round(os.totalmem() / 2 ** 20)} MiB of memory`);
  }
}

/** c = alpha·op(a)·op(b) + beta·c with op(a) m×k (a stored k×m when transA) and op(b) k×n (b stored n×k when transB). */
export async function matmul(
  a: Float32Array,
  b: Float32Array,
  shape: MatmulShape,
  opts: MatmulOptions = {},
): Promise<Float32Array> {
  for (const [name, x] of [['a', a], ['b', b]] as const) {
    checkFloat32Array(x, `matmul(a, b, shape): ${name}`);
  }
  checkMatmulShape(a, b, shape);
  checkJobOptions(opts, 'matmul(a, b, shape, options): options', ['kernel', 'alpha', 'beta', 'out', 'stage']);
  const { m, n, k, transA = false, transB = false } = shape;
  const { alpha = 1, beta = 0, kernel, out } = opts;
  checkBoolean(opts.stage, 'matmul: stage');
  if (out !== undefined) checkFloat32Array(out, 'matmul: out');
  checkOneOf(kernel, 'matmul: kernel', GEMM_KERNELS);
  if (typeof alpha !== 'number' || typeof beta !== 'number' || !Number.isFinite(alpha) || !Number.isFinite(beta)) {
    throw new FfmergeError('INVALID_ARGUMENT', `matmul: alpha and beta must be finite numbers (got ${showValue(alpha)}, ${showValue(beta)})`);
  }
  if (out === undefined) checkOutputFits(m, n);
  else if (out.length !== m * n) throw new FfmergeError('SHAPE_MISMATCH', `matmul: out holds ${out.length} values but m·n = ${m}·${n} = ${m * n}`);
  else if (overlaps(out, a) || overlaps(out, b)) throw new FfmergeError('INVALID_ARGUMENT', 'matmul: out must not share memory with a or b (it is written while they are read)');
  return withStaged([{ a, b }], opts, ([staged]) =>
    runNativeJob('matmul', (onProgress) => addonModule<GemmAddon>().sgemm(staged!.a, staged!.b, out ?? null, m, n, k, transA, transB, alpha, beta, kernel, onProgress), opts),
    [out],
  );
}
