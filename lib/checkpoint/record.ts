/**
 * config.json's `ffmerge` record against the checkpoint it describes, the parts every reader of a checkpoint
 * must agree on (model/plan.ts `checkCheckpoint` calls these, so eval, compress, finetune, convert, export and
 * inspect all refuse the same files): the record's shape, its copy of the tie map (`ffmerge.ties`) against the
 * safetensors metadata's (`ffmerge_ties`, the one the readers resolve), and tied names the model does not use.
 * The record's windows and format are checked where a record is carried into an output (earlier-merges.ts).
 */
import { FfmergeError, showValue } from '../errors';
import { isObject } from '../arguments';
import { TIES_METADATA_KEY, type CheckpointReader, type TieMap } from './ties';

/**
 * The `ffmerge` record of a parsed config.json: undefined where there is none, INVALID_CONFIG where there is
 * something else than an object (a string or null spread into an output's record would write garbage, and
 * "no record" would be a lie about a tied checkpoint).
 */
export function ffmergeRecord(config: Record<string, unknown>, where: string): Record<string, unknown> | undefined {
  if (!Object.hasOwn(config, 'ffmerge')) return undefined;
  const info = config.ffmerge;
  if (!isObject(info)) {
    throw new FfmergeError('INVALID_CONFIG', `${where}: config.json's ffmerge record must be an object (got ${showValue(info)})`);
  }
  return info;
}

/**
 * The record's `ties` ({} where it has none), checked to be a map of names to names. Its copy is what a
 * Hugging Face user re-ties from (the README's snippet), so it must be well-formed like the metadata's.
 */
function recordTies(record: Record<string, unknown> | undefined, where: string): TieMap | undefined {
  if (record === undefined || !Object.hasOwn(record, 'ties')) return undefined;
  const ties = record.ties;
  if (!isObject(ties)) {
    throw new FfmergeError('INVALID_CONFIG', `${where}: config.json's ffmerge.ties must be an object {tied name: stored name} (got ${showValue(ties)})`);
  }
  for (const [name, target] of Object.entries(ties)) {
    if (typeof target !== 'string') throw new FfmergeError('INVALID_CONFIG', `${where}: config.json's ffmerge.ties ties "${name}" to ${showValue(target)}, not a tensor name`);
  }
  return ties as TieMap;
}

/**
 * config.json's ffmerge.ties must be the checkpoint's tie map, entry for entry: ffmerge writes both copies,
 * the readers resolve the metadata's, and a Hugging Face user re-ties from the config's; two maps that differ
 * give two different models. A record without `ties` (an expanded output, a fine-tuned record written before
 * ties were recorded) is not compared. Runs before the architecture check, so a checkpoint whose metadata lost
 * its map is named as that, not as a missing tensor.
 */
export function checkRecordTies(config: Record<string, unknown>, reader: CheckpointReader, where: string): void {
  const recorded = recordTies(ffmergeRecord(config, where), where);
  if (recorded === undefined) return;
  const meta = reader.ties;
  const entries = Object.entries(recorded);
  if (Object.keys(meta).length === 0) {
    // the map is gone from the file but the config still ties names the file does not store: a tool rewrote
    // model.safetensors without its __metadata__ (as convert says of a config that lost its record)
    const unstored = entries.filter(([name]) => !reader.has(name));
    if (unstored.length > 0) {
      const [name, target] = unstored[0]!;
      throw new FfmergeError(
        'INVALID_CONFIG',
        `${where}: config.json's ffmerge record ties ${entries.length} tensors to others ("${name}" → "${target}"${entries.length > 1 ? ', …' : ''}), yet the checkpoint's safetensors metadata has no tie map (${TIES_METADATA_KEY}), so ${unstored.length === 1 ? 'that tensor is' : `${unstored.length} tensors are`} missing: the safetensors file was rewritten without its metadata; put back the model.safetensors ffmerge wrote`,
      );
    }
  }
  const disagree = (how: string) =>
    new FfmergeError('INVALID_CONFIG', `${where}: config.json's ffmerge.ties and the checkpoint's tie map (safetensors metadata ${TIES_METADATA_KEY}) disagree: ${how}`);
  for (const [name, target] of entries) {
    if (!Object.hasOwn(meta, name)) {
      throw disagree(`the config ties "${name}" to "${target}", the checkpoint does not tie "${name}"${reader.has(name) ? ' (it stores it)' : ''}`);
    }
    if (meta[name] !== target) throw disagree(`the config ties "${name}" to "${target}", the checkpoint to "${meta[name]}"`);
  }
  for (const [name, target] of Object.entries(meta)) {
    if (!Object.hasOwn(recorded, name)) throw disagree(`the checkpoint ties "${name}" to "${target}", config.json's ffmerge.ties does not list "${name}"`);
  }
}

/**
 * Every name the tie map ties must be a tensor the architecture reads (`used`, the stored names the load plan
 * resolved): the loaders never ask for another, but an expanded output would write it as a tensor of its own,
 * which a Hugging Face loader reports as an unexpected key.
 */
export function checkTiedNamesUsed(reader: CheckpointReader, used: ReadonlySet<string>, where: string): void {
  for (const [name, target] of Object.entries(reader.ties)) {
    if (!used.has(name)) {
      throw new FfmergeError(
        'INVALID_CONFIG',
        `${where}: the checkpoint's ffmerge tie map ties "${name}" to "${target}", but the model has no tensor "${name}" (config.json does not describe it): the tie map was edited or belongs to another model`,
      );
    }
  }
}
