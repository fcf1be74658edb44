/** `compress --plugins <module>`: the user's own merge methods, recover methods, baselines and tasks, for this run. */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { FfmergeError } from '../errors';
import { whyMissing } from '../files';
import type { Plugins } from '../pipeline/options';

const KEYS = ['mergeMethods', 'recoverMethods', 'baselines', 'tasks'] as const;

// The package compiles to CommonJS, where TypeScript turns import() into require(), which cannot load an ES
// module on Node 20. Built at run time, the import() stays Node's own and loads either kind.
const importModule = new Function('url', 'return import(url)') as (url: string) => Promise<Record<string, unknown>>;

/**
 * The Plugins a module exports: as named exports (`exports.baselines = [...]`, `export const baselines`) or as
 * its default export. compress checks each plug-in (its name, its function) as it makes the run's registries.
 */
export async function loadPlugins(file: string | undefined): Promise<Plugins | undefined> {
  if (file === undefined) return undefined;
  const resolved = path.resolve(file);
  const exports = `give a JavaScript module that exports ${KEYS.join(', ')}`;
  if (!fs.existsSync(resolved)) throw new FfmergeError('DATA_NOT_FOUND', `--plugins: ${file} ${whyMissing(resolved)} (${exports})`);
  if (!fs.statSync(resolved).isFile()) throw new FfmergeError('DATA_NOT_FOUND', `--plugins: ${file} is not a file (${exports})`);
  let mod: Record<string, unknown>;
  try {
    mod = await importModule(pathToFileURL(resolved).href);
  } catch (e) {
    // the first line: Node's "Require stack:" lines after it name ffmerge's own files
    const message = String((e as Error)?.message ?? e).split('\n')[0];
    throw new FfmergeError('INVALID_ARGUMENT', `--plugins: ${file} could not be loaded: ${message}`, { cause: e });
  }
  const named = KEYS.some((k) => mod[k] !== undefined);
  const source = (named ? mod : mod.default) as Record<string, unknown> | undefined;
  if (typeof source !== 'object' || source === null || !KEYS.some((k) => source[k] !== undefined)) {
    throw new FfmergeError('INVALID_ARGUMENT', `--plugins: ${file} exports none of ${KEYS.join(', ')} (each a list of plug-ins, as named exports or in its default export)`);
  }
  return Object.fromEntries(KEYS.filter((k) => source[k] !== undefined).map((k) => [k, source[k]])) as Plugins;
}
