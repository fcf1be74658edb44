/**
 * The environment variables ffmerge reads, checked once when the addon loads: a value it cannot read is an
 * INVALID_ARGUMENT naming the variable. They used to be misread
 * silently: FFMERGE_THREADS=abc ran on every core, =4x on 4; FFMERGE_BACKEND=foo chose automatically;
 * FFMERGE_NO_MMAP=yes kept mapping; FFMERGE_DEBUG=0 turned debugging on.
 */
import { FfmergeError } from '../errors';

type Rule = { what: string; ok: (v: string) => boolean };

const count = (max: number): Rule => ({ what: `a whole number from 1 to ${max}`, ok: (v) => /^[1-9]\d*$/.test(v) && Number(v) <= max });
const flag: Rule = { what: '0 or 1', ok: (v) => v === '0' || v === '1' };

/** Each variable and what it may hold (unset or empty: the default). */
export const ENVIRONMENT: Readonly<Record<string, Rule>> = {
  FFMERGE_THREADS: count(4095),
  FFMERGE_JOB_THREADS: count(4095),
  FFMERGE_BACKEND: { what: 'cpu, cuda or auto', ok: (v) => ['cpu', 'cuda', 'auto'].includes(v.toLowerCase()) },
  // the native side reads it only at each product: checked here so every command refuses a bad name
  FFMERGE_GEMM_KERNEL: { what: 'auto, portable, avx2 or avx512', ok: (v) => ['auto', 'portable', 'avx2', 'avx512'].includes(v) },
  FFMERGE_NO_MMAP: flag,
  FFMERGE_PROGRESS: flag,
  FFMERGE_DEBUG: flag,
  FFMERGE_MALLOC_DEFAULTS: flag,
  FFMERGE_FROM_SOURCE: flag,
};

export function checkEnvironment(env: NodeJS.ProcessEnv = process.env): void {
  for (const [name, rule] of Object.entries(ENVIRONMENT)) {
    const v = env[name];
    if (v === undefined || v === '' || rule.ok(v)) continue;
    throw new FfmergeError('INVALID_ARGUMENT', `the environment variable ${name} must be ${rule.what} (got ${JSON.stringify(v)}); unset it for the default`);
  }
}

/** A 0/1 variable of the list above: on only when "1". */
export function envFlag(name: keyof typeof ENVIRONMENT, env: NodeJS.ProcessEnv = process.env): boolean {
  return env[name] === '1';
}
