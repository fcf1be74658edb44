/**
 * Turning CLI flags into library options: number parsing, name checks against the registries, and the data
 * flags of each task (a data flag that the model's task does not read is refused with its flag name).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { FfmergeError } from '../errors';
import { modelName } from '../files';
import type { ImageSource, ParallelSource } from '../pipeline/options';
import { packageRoot } from '../native/loader';

/** The model a command runs on when none is named (compress, inspect): the bundled llama-stories260k. */
export function modelOrBundled(model: string | undefined): string {
  return model ?? path.join(packageRoot, 'models', 'llama-stories260k');
}

/** A decimal integer flag of at least `min` (1: positive; 0: non-negative; --k's 2 said as such). */
export function int(v: string | undefined, what: string, min = 1): number | undefined {
  if (v === undefined) return undefined;
  // decimal digits only: Number() would also read "0x2", "1e1" and " 2 " as integers
  const n = /^[0-9]+$/.test(v) ? Number(v) : NaN;
  const kind = min === 0 ? 'a non-negative integer' : min === 1 ? 'a positive integer' : `an integer ≥ ${min}`;
  if (!Number.isSafeInteger(n) || n < min) throw new FfmergeError('INVALID_ARGUMENT', `--${what} must be ${kind}, got "${v}"`);
  return n;
}

/** A decimal number as written ("1e-4", ".5"), else NaN: Number() would also read "0x10" and " 2 ". */
export function decimal(v: string): number {
  return /^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/i.test(v) ? Number(v) : NaN;
}

const BYTE_UNITS: Record<string, number> = { '': 1, b: 1, kb: 1e3, mb: 1e6, gb: 1e9, tb: 1e12, kib: 2 ** 10, mib: 2 ** 20, gib: 2 ** 30, tib: 2 ** 40 };

/**
 * A size in bytes: an integer, or one with a unit as Hugging Face's max_shard_size takes it ("5GB" = 5·10⁹,
 * "500MiB" = 500·2²⁰; case-blind, decimals allowed before a unit: "1.5GB").
 */
export function byteSize(v: string | undefined, what: string): number | undefined {
  if (v === undefined) return undefined;
  const m = /^([0-9]+(?:\.[0-9]+)?)\s*([a-z]*)$/i.exec(v.trim());
  const unit = m ? BYTE_UNITS[m[2]!.toLowerCase()] : undefined;
  const n = m && unit !== undefined && (unit > 1 || !m[1]!.includes('.')) ? Math.floor(Number(m[1]) * unit) : NaN;
  if (!Number.isSafeInteger(n) || n < 1) {
    throw new FfmergeError('INVALID_ARGUMENT', `--${what} must be a positive number of bytes, as an integer or with a unit (5GB, 500MiB), got "${v}"`);
  }
  return n;
}

/** The flag's value when it names one of `allowed`; an unset flag stays undefined. */
export function oneOf<T extends string>(v: string, allowed: readonly T[], what: string): T;
export function oneOf<T extends string>(v: string | undefined, allowed: readonly T[], what: string): T | undefined;
export function oneOf<T extends string>(v: string | undefined, allowed: readonly T[], what: string): T | undefined {
  if (v !== undefined && !(allowed as readonly string[]).includes(v)) throw new FfmergeError('INVALID_ARGUMENT', `--${what} must be one of ${allowed.join(', ')}, got "${v}"`);
  return v as T | undefined;
}

const kebab = (key: string) => key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);

/** Refuses any of `given`'s set flags that `flags` (each task's own) lists for another task but not for `task`. */
export function refuseFlags(given: object, flags: Readonly<Record<string, readonly string[]>>, task: string, modelType: string): void {
  const allowed = Object.hasOwn(flags, task) ? flags[task]! : [];
  for (const key of new Set(Object.values(flags).flat())) {
    if ((given as Record<string, unknown>)[key] !== undefined && !allowed.includes(key)) {
      const own = Object.hasOwn(flags, task) ? '' : ', a task of --plugins: it reads its own data';
      throw new FfmergeError('OPTION_NOT_APPLICABLE', `--${kebab(key)} does not apply to ${modelType} models (${task}${own})`);
    }
  }
}

/** Data flags of one split (the split prefix names valid/test: --valid-images, --test-source, …). */
export interface SplitFlags {
  data?: string;
  images?: string;
  labels?: string;
  source?: string;
  target?: string;
}

/** The image source named by one split's flags, or undefined when none is given. */
export function imageSourceFrom(f: SplitFlags, prefix: string): ImageSource | undefined {
  const flag = (s: string) => (prefix ? `--${prefix}-${s}` : `--${s}`);
  const dataFlag = prefix ? `--${prefix}` : '--data';
  if (f.data !== undefined) {
    if (f.images !== undefined || f.labels !== undefined) throw new FfmergeError('INVALID_ARGUMENT', `give ${flag('images')}/${flag('labels')} or ${dataFlag} <folder>, not both`);
    if (fs.existsSync(f.data) && !fs.statSync(f.data).isDirectory()) {
      throw new FfmergeError('INVALID_ARGUMENT', `${f.data} is a file: for an image model ${dataFlag} names an image folder (one sub-folder per class); idx files go in ${flag('images')} and ${flag('labels')}`);
    }
    return { folder: f.data };
  }
  if (f.images === undefined && f.labels === undefined) return undefined;
  if (f.images === undefined || f.labels === undefined) throw new FfmergeError('INVALID_ARGUMENT', `${flag('images')} and ${flag('labels')} go together (idx files of the same images)`);
  return { images: f.images, labels: f.labels };
}

export function parallelSourceFrom(f: SplitFlags, prefix: string): ParallelSource | undefined {
  const flag = (s: string) => (prefix ? `--${prefix}-${s}` : `--${s}`);
  if (f.data !== undefined) {
    if (f.source !== undefined || f.target !== undefined) throw new FfmergeError('INVALID_ARGUMENT', `give ${flag('source')}/${flag('target')} or ${prefix ? `--${prefix}` : '--data'} <file.tsv>, not both`);
    return { tsv: f.data };
  }
  if (f.source === undefined && f.target === undefined) return undefined;
  if (f.source === undefined || f.target === undefined) throw new FfmergeError('INVALID_ARGUMENT', `${flag('source')} and ${flag('target')} go together (line-aligned translations)`);
  return { source: f.source, target: f.target };
}

export function dropUndefined<T extends object>(x: T): T {
  return Object.fromEntries(Object.entries(x).filter(([, v]) => v !== undefined)) as T;
}

/**
 * The output folder a command writes when --out is not given: ./<model folder name><suffix>, in the current
 * folder. Run from inside the model folder (`ffmerge compress .`) that is inside the input: refused here,
 * naming the default, rather than by the writer's check of --out.
 */
export function defaultOut(model: string, suffix: string): string {
  const modelDir = path.resolve(model);
  // a folder in Hugging Face's cache is named by its repository, not its snapshot's hash: gpt2-ffmerge
  const out = `${path.basename(modelName(modelDir))}${suffix}`;
  const rel = path.relative(modelDir, path.resolve(out));
  // (a folder that is no model is left to the command's own check, which says so)
  if (!rel.startsWith('..') && !path.isAbsolute(rel) && fs.existsSync(path.join(modelDir, 'config.json'))) {
    throw new FfmergeError('INVALID_ARGUMENT', `the default output ./${out} would be inside the model folder ${model} (the current folder is in it): give --out <a folder outside it>, or run from outside the model folder`);
  }
  return out;
}
