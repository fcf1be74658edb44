/**
 * Where the shared fixtures and data live: ../shared beside the checkout (CI lays it there), or
 * FFMERGE_SHARED. Tests that need them call describeShared / sharedPath; when the folder is absent they are
 * skipped and say so, never faked.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

export const SHARED_DIR = path.resolve(process.env.FFMERGE_SHARED ?? path.join(__dirname, '..', '..', '..', 'shared'));

export function hasShared(...rel: string[]): boolean {
  return fs.existsSync(path.join(SHARED_DIR, ...rel));
}

export function sharedPath(...rel: string[]): string {
  return path.join(SHARED_DIR, ...rel);
}

/** describe() when ../shared/<rel> exists, else a skipped describe (body not run) naming what is missing. */
export function describeShared(rel: string, name: string, fn: () => void): void {
  if (hasShared(rel)) {
    describe(name, fn);
  } else {
    // eslint-disable-next-line no-console
    console.warn(`skipping "${name}": ${path.join(SHARED_DIR, rel)} not found (needs ../shared beside the checkout)`);
    // The body is not run at all: describe.skip would still run it to collect tests, and bodies read fixture
    // files at that point. One skipped test carries the reason into jest's summary.
    describe.skip(name, () => {
      it.skip(`needs ${path.join(SHARED_DIR, rel)}`, () => {});
    });
  }
}
