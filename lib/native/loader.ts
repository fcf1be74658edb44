/**
 * Finds and loads the native addon.
 *
 * Two builds may exist: the CPU build (node-gyp, always built by `npm install`, or a prebuild) and the CUDA
 * build (`npm run build:cuda`, cmake-js, in build-cuda/). The CUDA build is used only when it loads and sees
 * a device; otherwise the CPU build is loaded and the reason is recorded, so `ffmerge --version` and the
 * library (`loadAddon()`) can say which build runs and why. FFMERGE_BACKEND=cpu|cuda forces a choice (cuda then fails
 * loudly instead of falling back).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { FfmergeError } from '../errors';
import { checkEnvironment, envFlag } from './env';

export interface BuildInfo {
  variant: 'cpu' | 'cuda';
  /** Compute threads of this instance's pool (FFMERGE_THREADS caps them). */
  threads: number;
  /** Jobs this instance runs at once, the rest waiting their turn (FFMERGE_JOB_THREADS, else UV_THREADPOOL_SIZE, else 4). */
  jobThreads: number;
  gemmKernel: string;
  compiler?: string;
  cudaDevices?: number;
  cudaDeviceName?: string;
}

export interface LoadedAddon {
  /** The raw module; typed views of it live next to each feature (see lib/native/*.ts). */
  readonly module: Record<string, unknown> & { buildInfo(): BuildInfo };
  readonly info: BuildInfo;
  readonly path: string;
  /** Where the binary came from: the prebuild shipped in the package, a local compile, or the CUDA build. */
  readonly origin: 'prebuilt' | 'built from source' | 'cuda build';
  /** Why this build was chosen, e.g. "CUDA build not found (run npm run build:cuda); using CPU build". */
  readonly reason: string;
}

/** The package's folder (two levels up from lib/native, three from dist/lib/native). */
export const packageRoot = path.resolve(__dirname, '..', '..', fs.existsSync(path.resolve(__dirname, '..', '..', 'package.json')) ? '' : '..');

function tryRequire(file: string): { mod?: LoadedAddon['module']; error?: string } {
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    return { mod: require(file) as LoadedAddon['module'] };
  } catch (e) {
    return { error: (e as Error).message.split('\n')[0] };
  }
}

function loadCpu(reason: string): LoadedAddon {
  let file: string;
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    file = (require('node-gyp-build') as { resolve(dir: string): string }).resolve(packageRoot);
  } catch (e) {
    // Installed with --ignore-scripts on a platform without a prebuild: `npm rebuild ffmerge` is the command
    // a consumer has (build:native exists only in a clone of ffmerge).
    throw new FfmergeError(
      'NATIVE_LOAD_FAILED',
      // found nowhere, whether none was built for this platform or its file was removed
      `no ffmerge native addon was found for ${process.platform}-${process.arch} in ${packageRoot} (${(e as Error).message.split('\n')[0]}); ` +
        'run "npm rebuild ffmerge" (in a clone of ffmerge: "npm run build:native"); it compiles from source with a C++17 compiler, python3 and make',
    );
  }
  const { mod, error } = tryRequire(file);
  if (!mod) {
    // a prebuild for a newer glibc than this system's, or a damaged file: compiling here is the way out
    throw new FfmergeError(
      'NATIVE_LOAD_FAILED',
      `the ffmerge native addon at ${file} failed to load: ${error}; ` +
        'run "npm rebuild ffmerge", which compiles it here when the prebuild does not load (a C++17 compiler, python3 and make; the prebuild needs glibc 2.34 or newer)',
    );
  }
  const origin = file.includes(`${path.sep}prebuilds${path.sep}`) ? 'prebuilt' : 'built from source';
  return { module: mod, info: mod.buildInfo(), path: file, origin, reason };
}

function load(): LoadedAddon {
  checkEnvironment(); // before the addon reads FFMERGE_THREADS and FFMERGE_JOB_THREADS itself
  const want = (process.env.FFMERGE_BACKEND || 'auto').toLowerCase();
  if (want === 'cpu') return loadCpu('FFMERGE_BACKEND=cpu');
  const cudaFile = path.join(packageRoot, 'build-cuda', 'Release', 'ffmerge_cuda.node');
  let reason: string;
  if (!fs.existsSync(cudaFile)) {
    reason = 'CUDA build not present (npm run build:cuda in a clone builds it where nvcc exists)';
  } else {
    const { mod, error } = tryRequire(cudaFile);
    if (!mod) {
      reason = `CUDA build failed to load: ${error}`;
    } else {
      const info = mod.buildInfo();
      if ((info.cudaDevices ?? 0) > 0) {
        return { module: mod, info, path: cudaFile, origin: 'cuda build', reason: `CUDA device found: ${info.cudaDeviceName ?? 'unknown'}` };
      }
      reason = 'CUDA build loaded but sees no CUDA device';
    }
  }
  if (want === 'cuda') throw new FfmergeError('NATIVE_LOAD_FAILED', `FFMERGE_BACKEND=cuda but ${reason}`);
  if (envFlag('FFMERGE_DEBUG')) process.stderr.write(`ffmerge: ${reason}; using the CPU build\n`);
  return loadCpu(`${reason}; using the CPU build`);
}

let cached: LoadedAddon | undefined;

/** Loads the addon once per process (a loaded module is immutable; later calls return the same one). */
export function loadAddon(): LoadedAddon {
  cached ??= load();
  return cached;
}

/** The addon's module as `T`, the typed view of the functions one feature calls (lib/native/*.ts). */
export function addonModule<T>(): T {
  return loadAddon().module as unknown as T;
}
