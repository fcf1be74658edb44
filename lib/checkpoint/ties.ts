/**
 * Tied checkpoints: ffmerge's `tied` output stores each merged FF tensor once and records which other names
 * share it. The tie map ({tied name → stored name}) lives in the safetensors `__metadata__` under
 * `ffmerge_ties` (a JSON string, as metadata values must be strings) and in config.json under
 * `ffmerge.ties`. `CheckpointReader` reads either kind of checkpoint and serves every logical tensor name,
 * resolving ties, so the rest of ffmerge never needs to know whether a checkpoint was tied.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { FfmergeError, showValue } from '../errors';
import { SafetensorsReader, type TensorInfo } from '../safetensors';
import { checkPath, isObject } from '../arguments';

export type TieMap = Record<string, string>;

export const TIES_METADATA_KEY = 'ffmerge_ties';

/** Parses and checks a tie map against the stored tensor names. */
function parseTies(json: string | undefined, stored: (name: string) => boolean, where: string): TieMap {
  if (json === undefined) return {};
  let ties: unknown;
  try {
    ties = JSON.parse(json);
  } catch {
    throw new FfmergeError('INVALID_CONFIG', `${where}: the ffmerge tie map is not valid JSON`);
  }
  if (!isObject(ties)) {
    throw new FfmergeError('INVALID_CONFIG', `${where}: the ffmerge tie map must be an object {tied name: stored name}`);
  }
  for (const [name, target] of Object.entries(ties)) {
    if (typeof target !== 'string' || !stored(target)) {
      throw new FfmergeError('INVALID_CONFIG', `${where}: tensor "${name}" is tied to ${showValue(target)}, which the file does not store`);
    }
    if (stored(name)) {
      throw new FfmergeError('INVALID_CONFIG', `${where}: tensor "${name}" is both stored and tied to "${target}"`);
    }
  }
  return ties as TieMap;
}

/**
 * What a folder without safetensors holds instead, said in the refusal: the likely mistakes. Weights in a format
 * ffmerge does not read (its own ONNX export, PyTorch .bin) are the wrong folder given, INVALID_ARGUMENT; a
 * folder with no weights at all lacks its tensors, TENSOR_NOT_FOUND.
 */
function otherFormat(dir: string): { code: 'INVALID_ARGUMENT' | 'TENSOR_NOT_FOUND'; why: string } {
  const has = (f: string) => fs.existsSync(path.join(dir, f));
  let names: string[] = [];
  try {
    names = fs.readdirSync(dir);
  } catch {
    // unlisted: the refusal says only what is missing
  }
  const onnx = { code: 'INVALID_ARGUMENT', why: ': it holds an ONNX export, which ffmerge writes but does not read; give the safetensors folder it was exported from' } as const;
  // Optimum's layout (onnx/), or a .onnx file at the top, as torch.onnx.export writes it
  if (has('onnx')) return onnx;
  if (has('pytorch_model.bin') || has('pytorch_model.bin.index.json')) {
    return { code: 'INVALID_ARGUMENT', why: ': it holds PyTorch .bin weights; save them as safetensors first (transformers: model.save_pretrained(dir, safe_serialization=True))' };
  }
  // after .bin weights: beside them, a .onnx file was exported from them, and they are what can be converted
  if (names.some((f) => /\.onnx$/i.test(f))) return onnx;
  // shards without the index that says which tensor each holds (named as transformers names them: a
  // reference.safetensors or an adapter beside no weights is no shard)
  const shards = names.filter((f) => /-\d+-of-\d+\.safetensors$/i.test(f)).sort();
  if (shards.length) {
    const list = shards.length > 3 ? `${shards.slice(0, 3).join(', ')} and ${shards.length - 3} more` : shards.join(', ');
    return { code: 'TENSOR_NOT_FOUND', why: `, and no model.safetensors.index.json for the safetensors files it holds (${list}): copy the index that came with the shards` };
  }
  return { code: 'TENSOR_NOT_FOUND', why: '' };
}

/** A checkpoint (tied or not) seen as its full set of logical tensor names. */
export class CheckpointReader {
  private constructor(
    readonly dir: string,
    readonly reader: SafetensorsReader,
    readonly ties: TieMap,
  ) {}

  static async open(dir: string): Promise<CheckpointReader> {
    checkPath(dir, 'CheckpointReader.open(dir): dir');
    const file = path.join(dir, 'model.safetensors');
    if (!fs.existsSync(file) && !fs.existsSync(path.join(dir, 'model.safetensors.index.json'))) {
      const { code, why } = otherFormat(dir);
      throw new FfmergeError(code, `${dir} has no model.safetensors (ffmerge reads safetensors checkpoints)${why}`);
    }
    // a directory: single file or sharded (the reader picks; a sharded tied output has its tie map in every shard)
    const reader = await SafetensorsReader.open(dir);
    try {
      // a sharded output carries its tie map in every shard: one that says otherwise (or lacks it beside shards
      // that have it) was edited or came from elsewhere
      const maps = [...reader.fileMetadata].map(([shard, m]) => [shard, m[TIES_METADATA_KEY]] as const);
      const odd = maps.find(([, m]) => m !== maps[0]![1]);
      if (odd) {
        const [first, firstMap] = maps[0]!;
        const how =
          odd[1] === undefined ? `has no tie map, unlike ${first}` : firstMap === undefined ? `has a tie map, unlike ${first}` : `has a tie map that differs from ${first}'s`;
        throw new FfmergeError('INVALID_CONFIG', `${dir}: shard ${odd[0]} ${how}: every shard of an ffmerge output carries the same ${TIES_METADATA_KEY} (edited, or shards of two outputs)`);
      }
      const ties = parseTies(reader.metadata[TIES_METADATA_KEY], (n) => reader.has(n), file);
      return new CheckpointReader(dir, reader, ties);
    } catch (e) {
      await reader.close();
      throw e;
    }
  }

  /** Releases the file handles. */
  close(): Promise<void> {
    return this.reader.close();
  }

  /** Names stored in the file, in file order. */
  storedNames(): string[] {
    return this.reader.names();
  }

  /** Every logical name: stored names, then tied names. */
  names(): string[] {
    return [...this.reader.names(), ...Object.keys(this.ties)];
  }

  // Object.hasOwn, never `in` or a bare lookup: names come from files, and a tensor named "constructor" or
  // "toString" would otherwise resolve to Object.prototype's function.
  has(name: string): boolean {
    return this.reader.has(name) || Object.hasOwn(this.ties, name);
  }

  /** The stored tensor a name resolves to. */
  resolve(name: string): string {
    return Object.hasOwn(this.ties, name) ? this.ties[name]! : name;
  }

  info(name: string): TensorInfo {
    return this.reader.info(this.resolve(name));
  }

  readF32(name: string): Promise<Float32Array> {
    return this.reader.readF32(this.resolve(name));
  }

  readRaw(name: string): Promise<Uint8Array> {
    return this.reader.readRaw(this.resolve(name));
  }
}

/**
 * The name a tensor is stored under: as named, or without its first component (GPT-2's "transformer.",
 * BERT's "bert.": checkpoints saved from the bare model lack it; the loader resolves the same way).
 */
export function storedName(reader: CheckpointReader, name: string): string | undefined {
  if (reader.has(name)) return name;
  const dot = name.indexOf('.');
  return dot > 0 && reader.has(name.slice(dot + 1)) ? name.slice(dot + 1) : undefined;
}

/**
 * Replacements and ties handed to a writer, named as the architecture names them (ffReplacements, ffTies:
 * "transformer.h.0.mlp.c_fc.weight"), under the names the checkpoint stores (a bare GPT-2's "h.0.mlp.c_fc.weight").
 * Names the checkpoint has in neither form stay as given, for the writer's own TENSOR_NOT_FOUND.
 */
export function asStored(reader: CheckpointReader, replace: Map<string, Float32Array> | undefined, ties: TieMap | undefined): { replace: Map<string, Float32Array>; ties: TieMap } {
  const n = (name: string) => storedName(reader, name) ?? name;
  const out: TieMap = Object.create(null) as TieMap;
  for (const [a, b] of Object.entries(ties ?? {})) out[n(a)] = n(b);
  return { replace: new Map([...(replace ?? [])].map(([k, v]) => [n(k), v])), ties: { ...out } };
}

/** SHAPE_MISMATCH unless a replacement holds as many values as the tensor of `shape` it replaces. */
export function checkReplacement(name: string, data: Float32Array, shape: readonly number[]): void {
  const n = shape.reduce((a, b) => a * b, 1);
  if (data.length !== n) throw new FfmergeError('SHAPE_MISMATCH', `replacement for "${name}" has ${data.length} values, the tensor has ${n} (${shape.join('×')})`);
}

/**
 * Ties a caller adds on top of a checkpoint's own (the merge's, convert's): the tied name is served the stored
 * tensor's bytes from then on, so both must exist and agree in shape and dtype, or the output would hold a
 * tensor of the wrong size under that name. (A checkpoint's own tie map names tensors the file does not store,
 * which have no shape of their own: the architecture check, model/plan.ts, catches those.)
 */
export function checkAddedTies(reader: CheckpointReader, ties: TieMap): void {
  for (const [name, target] of Object.entries(ties)) {
    if (!reader.has(name) || !reader.has(target)) {
      throw new FfmergeError('TENSOR_NOT_FOUND', `tie ${name} → ${target} names a tensor the checkpoint does not have`);
    }
    const a = reader.info(name);
    const b = reader.info(target);
    if (a.dtype !== b.dtype || a.shape.length !== b.shape.length || a.shape.some((v, i) => v !== b.shape[i])) {
      throw new FfmergeError(
        'SHAPE_MISMATCH',
        `tie ${name} → ${target}: "${name}" is ${a.dtype} [${a.shape.join(', ')}] but "${target}" is ${b.dtype} [${b.shape.join(', ')}]; only tensors of the same shape and dtype can share storage`,
      );
    }
  }
}

/** The tie map of a checkpoint directory ({} for an ordinary checkpoint). */
export async function readTies(dir: string): Promise<TieMap> {
  const r = await CheckpointReader.open(dir);
  await r.close();
  return r.ties;
}
