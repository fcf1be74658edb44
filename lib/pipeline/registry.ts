/**
 * Plug-ins by name: merge methods, recover methods, baselines and tasks each live in a registry, so adding
 * one to ffmerge is one file plus one line in its folder's index.ts, and an unknown name is one typed error
 * listing what exists. A registry never changes once made: a caller's own plug-ins (compress's `plugins`)
 * make a new one for that call, so jobs running side by side in one process never see each other's.
 */
import { FfmergeError, showValue } from '../errors';

export interface Named {
  readonly name: string;
  /** One line for --help and the report. */
  readonly description: string;
}

/**
 * A name that can be given on the command line: up to 64 letters, digits, '.', '_' and '-', starting with a
 * letter or digit ("a,b" could not be picked from a comma list such as --baselines, " none" would not be found).
 */
const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/** What every entry of one kind must have besides its name and description. */
export interface RegistryKind {
  /** In messages: "merge method", "baseline", … */
  readonly what: string;
  /** The option that picks one ("method", "baselines"). */
  readonly option: string;
  /** The function each entry must have ("merge", "recover", "candidates"). */
  readonly entry: string;
  /** Names that mean something else where this kind is picked ('auto' for a merge method). */
  readonly reserved?: readonly string[];
}

/**
 * What a registry hands out: a frozen stand-in whose fields were read once and whose functions call the
 * item's own, so that no caller (nor another call's plug-in) can change ffmerge's methods for everyone
 * through `MERGE_METHODS.get('select').merge = …`. Class instances keep their prototype's methods.
 */
const STAND_IN = Symbol('ffmerge registry stand-in');

function standIn<T extends object>(item: T, name: string): T {
  // an entry of the registry that with() extends is one already: kept, not wrapped in a second one
  if (Object.isFrozen(item) && (item as Record<symbol, unknown>)[STAND_IN] === name) return item;
  const out: Record<string | symbol, unknown> = { [STAND_IN]: name };
  for (let o: object | null = item; o && o !== Object.prototype; o = Object.getPrototypeOf(o) as object | null) {
    for (const key of Object.getOwnPropertyNames(o)) {
      if (key === 'constructor' || key in out) continue;
      const v = (item as Record<string, unknown>)[key];
      out[key] = typeof v === 'function' ? (...a: unknown[]) => ((item as Record<string, unknown>)[key] as (...b: unknown[]) => unknown)(...a) : Array.isArray(v) ? Object.freeze([...v]) : v;
    }
  }
  return Object.freeze({ ...out, name }) as T;
}

/** Plug-ins by name: an unknown name is INVALID_ARGUMENT listing the known. */
export class Registry<T extends Named> {
  // a frozen list in a frozen instance, in the order given: nothing can add, swap or remove an entry (a
  // `#private` field would do as well, but its declaration breaks consumers whose TypeScript targets ES5)
  private readonly entries: readonly (readonly [string, T])[];

  constructor(
    readonly kind: RegistryKind,
    items: readonly T[],
  ) {
    if (typeof kind !== 'object' || kind === null || ![kind.what, kind.option, kind.entry].every((v) => typeof v === 'string') || !Array.isArray(items)) {
      throw new FfmergeError('INVALID_ARGUMENT', `new Registry(kind, items): kind is { what, option, entry } (strings) and items a list (got ${showValue(kind)}, ${showValue(items)}); a caller's own plug-ins go to compress's plugins`);
    }
    const map = new Map<string, T>();
    for (const item of items) {
      try {
        const name = this.checkedName(item, map);
        map.set(name, standIn(item, name));
      } catch (e) {
        // a getter or Proxy of the plug-in's that throws while it is read: its failure, named as such
        if (e instanceof FfmergeError) throw e;
        throw new FfmergeError('PLUGIN_FAILED', `a ${kind.what} given to this call could not be read: ${e instanceof Error ? e.message : showValue(e)}`, { cause: e });
      }
    }
    this.entries = Object.freeze([...map].map((e) => Object.freeze(e)));
    Object.freeze(this);
  }

  /**
   * These entries and `more` (a call's own plug-ins) as a new registry; this one is not changed. A name
   * that is taken, reserved or not writable on the command line, or an entry without its function, is
   * INVALID_ARGUMENT.
   */
  with(more: readonly T[] | undefined): Registry<T> {
    if (more === undefined) return this;
    if (!Array.isArray(more)) throw new FfmergeError('INVALID_ARGUMENT', `plugins: the ${this.kind.what}s must be a list (got ${showValue(more)})`);
    return more.length ? new Registry(this.kind, [...this.all(), ...more]) : this;
  }

  /** The item called `name`; anything else is INVALID_ARGUMENT naming the choices. */
  get(name: unknown): T {
    const item = this.entries.find(([n]) => n === name)?.[1];
    if (!item) {
      throw new FfmergeError('INVALID_ARGUMENT', `${this.kind.option} must be one of ${this.names().join(', ')} (got ${showValue(name)})`);
    }
    return item;
  }

  names(): string[] {
    return this.entries.map(([n]) => n);
  }

  all(): T[] {
    return this.entries.map(([, item]) => item);
  }

  /** The item's name, read once (a getter could answer another name later: compress uses this one). */
  private checkedName(item: unknown, seen: ReadonlyMap<string, T>): string {
    const { what, entry, reserved = [] } = this.kind;
    const o = item as Record<string, unknown> | null;
    const name = typeof o === 'object' && o !== null ? o.name : undefined;
    if (typeof name !== 'string' || typeof o!.description !== 'string' || typeof o![entry] !== 'function') {
      throw new FfmergeError('INVALID_ARGUMENT', `a ${what} is an object with a name, a description and ${entry}() (got ${showValue(item)})`);
    }
    if (!NAME.test(name) || reserved.includes(name)) {
      throw new FfmergeError(
        'INVALID_ARGUMENT',
        `a ${what}'s name is up to 64 letters, digits, '.', '_' and '-', starting with a letter or digit${reserved.length ? `, and not ${reserved.join(' or ')}` : ''} (got ${showValue(name)})`,
      );
    }
    if (seen.has(name)) throw new FfmergeError('INVALID_ARGUMENT', `${what} ${showValue(name)} is given twice (the ${what}s: ${[...seen.keys()].join(', ')}); give yours a name of its own`);
    return name;
  }
}
