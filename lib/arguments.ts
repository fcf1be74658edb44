/**
 * Checks of a public function's arguments, shared so that every function refuses a value of the wrong type the
 * same way: an FfmergeError INVALID_ARGUMENT whose message names the argument and what it must be, never a
 * TypeError from Node (a path that is not a string) or from our own code, and never a value taken silently.
 * Arguments that are models live in lib/model/model.ts (checkModel), FF weights in lib/model/ff-weights.ts.
 */
import { FfmergeError, showValue } from './errors';
import { isFloat32Array } from './typed-arrays';

function invalid(what: string, must: string, v: unknown): FfmergeError {
  return new FfmergeError('INVALID_ARGUMENT', `${what} must be ${must} (got ${showValue(v)})`);
}

/** A JSON object (parsed config, option bag): not null, not an array. */
export const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** A finite number above 0 (sizes, rates and rope factors in configs and specs). */
export const isFinitePositive = (v: unknown): v is number => typeof v === 'number' && v > 0 && Number.isFinite(v);

/** A path argument: a non-empty string without NUL bytes (which Node refuses with a TypeError). */
export function checkPath(v: unknown, what: string): asserts v is string {
  if (typeof v !== 'string' || v === '' || v.includes('\0')) throw invalid(what, 'a path (a non-empty string)', v);
}

/**
 * An options argument: undefined (all defaults) or an object. With `keys`, a key outside them whose value is not
 * undefined is refused (a misspelt option would otherwise be ignored).
 */
export function checkOptions(v: unknown, what: string, keys?: readonly string[]): void {
  if (v === undefined) return;
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw invalid(what, 'an object', v);
  if (!keys) return;
  for (const [key, value] of Object.entries(v)) {
    if (value !== undefined && !keys.includes(key)) {
      throw new FfmergeError('INVALID_ARGUMENT', `${what}: unknown option ${showValue(key)} (the options are ${keys.join(', ')})`);
    }
  }
}

/** A Float32Array argument, from any realm (the addon's arrays come from Node's main realm). */
export function checkFloat32Array(v: unknown, what: string): asserts v is Float32Array {
  if (!isFloat32Array(v)) throw invalid(what, 'a Float32Array', v);
}

/** An optional boolean (an option given as 'no' or 1 is refused, not read as truthy). */
export function checkBoolean(v: unknown, what: string): asserts v is boolean | undefined {
  if (v !== undefined && typeof v !== 'boolean') throw invalid(what, 'true or false', v);
}

/** An optional value that must be one of `allowed`. */
export function checkOneOf<T>(v: unknown, what: string, allowed: readonly T[]): asserts v is T | undefined {
  if (v !== undefined && !allowed.includes(v as T)) throw invalid(what, allowed.map((a) => showValue(a)).join(' or '), v);
}

const integerFrom = (min: number) => (min === 0 ? 'a non-negative integer' : min === 1 ? 'a positive integer' : `an integer ≥ ${min}`);

/** An optional integer ≥ min (a string '5', NaN or 2.5 is refused). */
export function checkInt(v: unknown, what: string, min = 0): asserts v is number | undefined {
  if (v !== undefined && (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min)) throw invalid(what, integerFrom(min), v);
}

/** A required integer ≥ min (undefined is refused too, unlike checkInt's optional one). */
export function checkCount(v: unknown, what: string, min = 0): asserts v is number {
  if (v === undefined) throw invalid(what, integerFrom(min), v);
  checkInt(v, what, min);
}

/**
 * Whether v is an array whose every entry passes `ok`, the holes of a sparse array included (as undefined):
 * Array.prototype.every skips holes, so `[, x]` would pass it and be read as undefined later.
 */
export function isArrayOf<T>(v: unknown, ok: (e: unknown) => boolean): v is T[] {
  if (!Array.isArray(v)) return false;
  for (let i = 0; i < v.length; i++) if (!ok(v[i])) return false;
  return true;
}

/** A list argument whose every entry passes `ok` (`kind` says what an entry must be). */
export function checkArrayOf<T>(v: unknown, what: string, kind: string, ok: (e: unknown) => boolean): asserts v is T[] {
  if (!Array.isArray(v)) throw invalid(what, `a list of ${kind}`, v);
  const i = v.findIndex((e) => !ok(e));
  if (i >= 0) throw invalid(`${what}[${i}]`, kind, v[i]);
}
