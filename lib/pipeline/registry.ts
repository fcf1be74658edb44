/**
 * Plug-ins by name: merge methods, recover methods, baselines and tasks each live in a registry, so adding
 * one is one file plus one `register` line, and an unknown name is one typed error listing what exists.
 */
import { FfmergeError, showValue } from '../errors';

export interface Named {
  readonly name: string;
  /** One line for --help and the report. */
  readonly description: string;
}

/** Plug-ins by name (merge methods, recover methods, baselines): an unknown name is INVALID_ARGUMENT listing the known. */
export class Registry<T extends Named> {
  private readonly items = new Map<string, T>();

  /** `what` names the kind in messages ("merge method", "baseline", …); `option` the option that picks one. */
  constructor(
    readonly what: string,
    readonly option: string,
  ) {}

  register(item: T): this {
    if (this.items.has(item.name)) throw new Error(`${this.what} "${item.name}" is registered twice`);
    this.items.set(item.name, item);
    return this;
  }

  /** The item called `name`; anything else is INVALID_ARGUMENT naming the choices. */
  get(name: unknown): T {
    const item = typeof name === 'string' ? this.items.get(name) : undefined;
    if (!item) {
      throw new FfmergeError('INVALID_ARGUMENT', `${this.option} must be one of ${this.names().join(', ')} (got ${showValue(name)})`);
    }
    return item;
  }

  names(): string[] {
    return [...this.items.keys()];
  }

  all(): T[] {
    return [...this.items.values()];
  }
}
