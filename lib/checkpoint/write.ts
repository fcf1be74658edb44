/**
 * Writing a compressed checkpoint from its source checkpoint plus the FF tensors ffmerge replaced.
 *
 * - `expanded`: the source's tensor names and shapes, every merged position holding the merged weights:
 *   loads anywhere the original loads.
 * - `tied`: each shared tensor stored once; the tie map goes into the safetensors `__metadata__` and
 *   config.json (`ffmerge.ties`), and CheckpointReader (or the README's few lines of Python) restores it.
 *
 * Tensors are streamed one at a time from the source file to the output (memory stays at one tensor), in the
 * source's dtype (BF16 in → BF16 out; replacements are rounded to it). Above `maxShardSize` bytes the weights
 * are sharded as Hugging Face does (`model-00001-of-00003.safetensors` + `model.safetensors.index.json`), side
 * files (tokenizer, generation config…) are copied, and the whole directory is built under a temporary name
 * beside the target and renamed into place, so a failed or aborted run leaves nothing behind. The input is
 * never overwritten; an existing non-empty output directory is refused unless `overwrite` is set.
 */
import { readConfig } from '../model/load';
import { checkCheckpoint } from '../model/plan';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { FfmergeError, showValue } from '../errors';
import { checkArrayOf, checkBoolean, checkPath, isObject } from '../arguments';
import { DTYPE_SIZE, FLOAT_DTYPES, INDEX_FILE_NAME, writeSafetensors, type DType, type TensorToWrite } from '../safetensors';
import { configText } from './config-text';
import { checkJobOptions, throwIfAborted, withJobScope, type JobOptions, type JobScope, type ProgressFn } from '../native/job';
import { architectureOf, ffPieceMismatch, ffStacks, stackOf } from '../model/architectures';
import { checkFFWeights, transpose, transposeSliced, type FFWeights } from '../model/ff-weights';
import { CheckpointReader, TIES_METADATA_KEY, asStored, checkAddedTies, checkReplacement, type TieMap } from './ties';
import { checkGivenTies, checkInfoWindows } from './earlier-merges';
import { checkSourceUnchanged, sourceStamp } from './source-stamp';
import { deadRunTemps, whyMissing } from '../files';
import { isFloat32Array } from '../typed-arrays';
import { holdTempOutput } from '../native/temp-outputs';

export type OutputFormat = 'expanded' | 'tied';

/**
 * An extra file of an output: its contents, or a function of the bytes written (report.json's `out.bytes`
 * is known only once the weights are written, yet must be in the folder before it is renamed into place).
 */
export type ExtraFile = string | ((written: { bytes: number }) => string);

export interface WriteCheckpointOptions {
  /** Source model directory (config.json + model.safetensors, possibly itself a tied ffmerge output). */
  source: string;
  /** Output directory to create. */
  out: string;
  format: OutputFormat;
  /** Replacement tensors by name, float32, in the stored layout and shape of the tensor they replace. */
  replace?: Map<string, Float32Array> | undefined;
  /** Names that share one stored tensor: tied name → stored name. In `expanded` output each gets a copy. */
  ties?: TieMap | undefined;
  /** Recorded under config.json's `ffmerge` key (method, windows, …); ties are added for `tied`. */
  info?: Record<string, unknown> | undefined;
  /** Extra files written into the output directory (e.g. report.json), name → contents (see ExtraFile). */
  extraFiles?: Record<string, ExtraFile> | undefined;
  overwrite?: boolean | undefined;
  signal?: AbortSignal | undefined;
  /**
   * Progress as phase 'save', in bytes of tensor data read for the output. The last report comes before the
   * output is renamed into place, so a callback that throws there leaves no output.
   */
  onProgress?: ProgressFn | undefined;
  /**
   * Largest tensor bytes per safetensors file (default 5 GB, Hugging Face's `max_shard_size`). A checkpoint
   * that fits is one model.safetensors; a larger one is sharded in tensor order (a tensor larger than this
   * gets a shard of its own).
   */
  maxShardSize?: number | undefined;
}

/** Throws INVALID_ARGUMENT unless maxShardSize, when given, is a positive number of bytes (Infinity: never shard). */
export function checkMaxShardSize(v: unknown): void {
  if (v !== undefined && (typeof v !== 'number' || !(Number.isSafeInteger(v) || v === Infinity) || v <= 0)) {
    throw new FfmergeError('INVALID_ARGUMENT', `maxShardSize must be a positive whole number of bytes, or Infinity (got ${showValue(v)})`);
  }
}

/** Hugging Face's default `max_shard_size` ("5GB"). */
const DEFAULT_MAX_SHARD_SIZE = 5_000_000_000;

export interface WriteCheckpointResult {
  out: string;
  /** Bytes of the weight files (model.safetensors, or all shards). */
  bytes: number;
  /** The weight files written, in order (one unless sharded). */
  files: string[];
  /** Parameters stored in model.safetensors (tied tensors counted once). */
  storedParams: number;
}

/**
 * A side file (tokenizer, preprocessor config) copied into an output: the output is the user's to edit, so a
 * read-only input (a shared cache, a read-only mount) stays read-only there only.
 */
export function copyWritable(from: string, to: string): void {
  fs.copyFileSync(from, to);
  fs.chmodSync(to, fs.statSync(to).mode | 0o200);
}

/**
 * The names of a model folder's regular files, a symbolic link to one included where it points inside the
 * folder, or, in the Hugging Face cache, into the repo's `blobs/` (its `snapshots/<rev>/` holds nothing but links
 * there). A link out of the folder is left out: a downloaded repo's `NOTICE -> /etc/passwd` was copied into every
 * output, shipping the host's file with the model (tester GD).
 */
export function regularFileNames(dir: string): string[] {
  const real = fs.realpathSync(dir);
  const blobs = path.basename(path.dirname(real)) === 'snapshots' ? path.join(path.dirname(path.dirname(real)), 'blobs') : undefined;
  const linkToFile = (name: string): boolean => {
    try {
      const target = fs.realpathSync(path.join(dir, name));
      if (!isWithin(target, real) && !(blobs !== undefined && isWithin(target, blobs))) return false;
      return fs.statSync(target).isFile();
    } catch {
      return false; // a dangling link or a loop: nothing to copy
    }
  };
  return fs.readdirSync(dir, { withFileTypes: true }).filter((e) => e.isFile() || (e.isSymbolicLink() && linkToFile(e.name))).map((e) => e.name);
}

/**
 * Weights in any format a Hub snapshot carries beside safetensors (PyTorch, TensorFlow, Flax, Rust, TFLite, GGUF,
 * ONNX, Keras, Core ML, checkpoints) and their shard indexes: the source's, unmerged, so never copied.
 */
const WEIGHT_FILE = /\.(safetensors|bin|pt|pth|ckpt|h5|keras|msgpack|ot|tflite|gguf|ggml|onnx|onnx_data|pb|npz|npy|pdparams|mlmodel)$|\.index\.json$|\.onnx\.data$|^openvino_.*\.xml$/;

/** Files that describe the weights or the fixture's own reference outputs: never copied. */
export function isWeightOrReferenceFile(name: string): boolean {
  return WEIGHT_FILE.test(name) || ['config.json', 'report.json', 'eval.json'].includes(name) || name.startsWith('reference.');
}

/** A file a checkpoint writer makes itself: config.json and the weights (shards and their index). */
export const checkpointFile = (name: string): boolean => name === 'config.json' || name.endsWith('.safetensors') || name.endsWith('.safetensors.index.json');

/**
 * A writer's `extraFiles`: plain file names (a name with a folder in it, or `..`, would be written elsewhere
 * than the output, outside its atomic rename) with string contents, none of them a file the writer makes
 * itself (`own`): written over the weights or config.json, the result would describe files the folder lacks.
 */
export function checkExtraFiles(files: unknown, what: string, own: (name: string) => boolean): void {
  if (files === undefined) return;
  if (!isObject(files)) throw new FfmergeError('INVALID_ARGUMENT', `${what}: extraFiles must be an object of file name → contents (got ${showValue(files)})`);
  for (const [name, text] of Object.entries(files)) {
    if (name === '' || name === '.' || name === '..' || /[/\\\0]/.test(name)) {
      throw new FfmergeError('INVALID_ARGUMENT', `${what}: extraFiles name ${showValue(name)} is not a plain file name: each file is written into the output folder itself`);
    }
    if (own(name)) throw new FfmergeError('INVALID_ARGUMENT', `${what}: extraFiles ${showValue(name)} is a file the writer makes itself (the weights or config.json): give another name`);
    if (typeof text !== 'string' && typeof text !== 'function') throw new FfmergeError('INVALID_ARGUMENT', `${what}: extraFiles ${showValue(name)} must be a string (got ${showValue(text)})`);
  }
}

/**
 * Whether `inner` is `outer` or inside it: by real path, and by the identity (device, inode) of what exists of
 * both. The second holds on a case-insensitive disk, where realpath keeps the case typed ("./GPT2" is "./gpt2").
 */
function isWithin(inner: string, outer: string): boolean {
  const a = realpathLoose(inner);
  const b = realpathLoose(outer);
  if (a === b || a.startsWith(b + path.sep)) return true;
  let o: fs.Stats;
  try {
    o = fs.statSync(b);
  } catch {
    return false; // an outer folder not there yet holds nothing
  }
  for (let cur = a; ; cur = path.dirname(cur)) {
    try {
      const st = fs.statSync(cur);
      if (st.dev === o.dev && st.ino === o.ino) return true;
    } catch {
      // not there yet: its parent may be
    }
    if (path.dirname(cur) === cur) return false;
  }
}

/** The real path of `p`, resolving symlinks of the part that exists (the rest may not exist yet). */
function realpathLoose(p: string): string {
  const abs = path.resolve(p);
  const rest: string[] = [];
  let cur = abs;
  for (;;) {
    try {
      return path.join(fs.realpathSync(cur), ...rest.reverse());
    } catch {
      const up = path.dirname(cur);
      if (up === cur) return abs;
      rest.push(path.basename(cur));
      cur = up;
    }
  }
}

/** The temp folder names of one output: `.<base>.ffmerge-tmp-<pid>-<ms>-<rand>`, and `…-old` while replacing. */
export function tempName(target: string): string {
  const rand = Math.random().toString(36).slice(2, 8);
  return path.join(path.dirname(target), `.${path.basename(target)}.ffmerge-tmp-${process.pid}-${Date.now()}-${rand}`);
}

/**
 * Removes the temp folders a killed run left beside `out` (its process is gone). A `-old` folder is the
 * previous output a run with overwrite had moved aside when it died: when nothing took its place it is put
 * back, so a kill during the swap never loses the old output. Folders of live processes are left alone.
 */
function sweepStaleTemps(out: string): void {
  const target = path.resolve(out);
  const dir = path.dirname(target);
  const esc = path.basename(target).replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  // the random part is never "old": earlier versions wrote names without one, whose `-old` it would swallow,
  // and the old output they had moved aside would be deleted instead of put back
  const re = new RegExp(`^\\.${esc}\\.ffmerge-tmp-(\\d+)-\\d+(?:-(?!old$)[a-z0-9]+)?(-old)?$`);
  for (const m of deadRunTemps(dir, re).sort((a, b) => Number(b[0].endsWith('-old')) - Number(a[0].endsWith('-old')))) {
    const full = path.join(dir, m[0]);
    try {
      if (m[2] && !fs.existsSync(target)) fs.renameSync(full, target);
      else fs.rmSync(full, { recursive: true, force: true });
    } catch {
      /* another run sweeping the same folder got there first */
    }
  }
}

/**
 * Refuses an output directory that would overwrite the input, lie inside it, or replace an existing non-empty
 * directory (unless `overwrite`), and one whose parent cannot be written; sweeps temp folders that killed runs
 * left beside it. Call it before any long work so a bad --out fails at once. The final rename checks again
 * (another run may have written the same output meanwhile).
 */
export function checkOutputDir(source: string, out: string, overwrite = false, inputs: readonly unknown[] = []): void {
  checkPath(source, 'the source model folder');
  checkPath(out, 'the output folder (out)');
  checkBoolean(overwrite, 'overwrite');
  // "~/x" reaches here unexpanded (--out=~/x, a quoted path, a library call): it would make a folder named "~"
  if (/^~(?:$|[\\/])/.test(out)) {
    throw new FfmergeError('INVALID_ARGUMENT', `the output ${out} starts with "~", which nothing expanded (the shell does not after "=" or in quotes): write the path out, or use $HOME`);
  }
  if (!Array.isArray(inputs)) throw new FfmergeError('INVALID_ARGUMENT', `checkOutputDir: inputs must be a list of the run's data paths (got ${showValue(inputs)})`);
  let src: string;
  try {
    src = fs.realpathSync(source);
  } catch (e) {
    throw new FfmergeError('DATA_NOT_FOUND', `the source model folder ${source} ${whyMissing(source)}`, { cause: e });
  }
  if (!fs.statSync(src).isDirectory()) throw new FfmergeError('DATA_NOT_FOUND', `the source model ${source} is not a folder (a model folder holds config.json and the weights)`);
  sweepStaleTemps(out);
  const target = path.resolve(out);
  if (isWithin(src, target)) {
    throw new FfmergeError('OUTPUT_EXISTS', `the output ${out} would overwrite the input model ${source}; choose another --out`);
  }
  if (isWithin(target, src)) {
    throw new FfmergeError('INVALID_ARGUMENT', `the output ${out} is inside the input model folder ${source}; choose a folder outside it`);
  }
  // the run's data files: replacing a folder that holds one would delete it (--overwrite replaces the folder whole)
  for (const file of inputPaths(inputs)) {
    if (isWithin(file, target)) {
      throw new FfmergeError('OUTPUT_EXISTS', `the output ${out} holds ${file}, an input of this run, which writing the output would delete; choose another --out`);
    }
  }
  // The output is built under a longer temp name (with -old for the folder it replaces), which must fit too.
  // 255 bytes: NAME_MAX almost everywhere.
  const longest = Buffer.byteLength(`${path.basename(tempName(target))}-old`);
  if (longest > 255) {
    throw new FfmergeError('OUTPUT_NOT_WRITABLE', `the output's folder name ${path.basename(target)} is too long: it is written under a temporary name ${longest - 255} bytes longer than a folder name may be (255); give a name of at most ${Buffer.byteLength(path.basename(target)) - (longest - 255)} bytes`);
  }
  checkWritableParent(target, out);
  // A rename onto a link in place of the output fails (after all the work) or, with overwrite, replaces the link.
  if (fs.lstatSync(target, { throwIfNoEntry: false })?.isSymbolicLink()) {
    throw new FfmergeError('OUTPUT_EXISTS', `the output ${out} is a symbolic link (to ${fs.readlinkSync(target)}); give the folder it points to, or another path`);
  }
  if (!fs.existsSync(target)) return;
  const st = fs.statSync(target);
  if (!st.isDirectory()) throw new FfmergeError('OUTPUT_EXISTS', `the output ${out} exists and is not a directory`);
  // a mount point (a container's `-v host:/out`) cannot be renamed onto or away (EBUSY after all the work)
  if (isMountPoint(realpathLoose(target), st)) {
    throw new FfmergeError('OUTPUT_NOT_WRITABLE', `the output ${out} is a mount point, which cannot be replaced by renaming a finished folder onto it: give a folder inside it (${path.join(out, 'model')})`);
  }
  const entries = fs.readdirSync(target);
  if (entries.length > 0 && !overwrite) {
    throw new FfmergeError('OUTPUT_EXISTS', `the output directory ${out} exists and is not empty (to replace it: --overwrite, or overwrite: true in the library)`);
  }
  // --overwrite replaces the folder whole: only a model folder (an earlier output), never one of other files
  if (entries.length > 0 && !entries.includes('config.json')) {
    throw new FfmergeError('OUTPUT_EXISTS', `the output directory ${out} is not a model folder (it has no config.json), and --overwrite replaces only a model folder whole: choose another --out, or empty it first`);
  }
}

/** The file paths among compress's and finetune's data options: strings, or the strings of a source object. */
function inputPaths(inputs: readonly unknown[]): string[] {
  return inputs
    .flatMap((x) => (typeof x === 'string' ? [x] : isObject(x) && !ArrayBuffer.isView(x) ? Object.values(x) : []))
    .filter((p): p is string => typeof p === 'string' && p !== '');
}

/** A directory on another device than its parent, or listed as a mount point by the kernel (a bind mount). */
function isMountPoint(dir: string, st: fs.Stats): boolean {
  const parent = fs.statSync(path.dirname(dir), { throwIfNoEntry: false });
  if (parent && (parent.dev !== st.dev || (parent.ino === st.ino && parent.dev === st.dev))) return true;
  let info: string;
  try {
    info = fs.readFileSync('/proc/self/mountinfo', 'utf8'); // Linux; elsewhere the device test above decides
  } catch {
    return false;
  }
  // field 5 is the mount point, with spaces and the like written as octal escapes
  const unescape = (p: string) => p.replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8)));
  return info.split('\n').some((line) => unescape(line.split(' ')[4] ?? '') === dir);
}

/**
 * The nearest existing ancestor of the output must be a folder this process can create folders in: tried
 * with a probe folder (created and removed at once), since permission bits say nothing for root or on a
 * read-only mount.
 */
function checkWritableParent(target: string, out: string): void {
  let dir = path.dirname(target);
  const bad = (why: string) => new FfmergeError('OUTPUT_NOT_WRITABLE', `cannot write the output ${out}: ${why}`);
  while (!fs.existsSync(dir) && path.dirname(dir) !== dir) {
    // a name that is there but leads nowhere (a dangling link) is where the folders would be made: not past it
    if (fs.lstatSync(dir, { throwIfNoEntry: false })) throw bad(`${dir} ${whyMissing(dir)}`);
    dir = path.dirname(dir);
  }
  let st: fs.Stats;
  try {
    st = fs.statSync(dir);
  } catch (e) {
    throw bad((e as Error).message);
  }
  if (!st.isDirectory()) throw bad(`${dir} is not a directory`);
  try {
    fs.rmdirSync(fs.mkdtempSync(path.join(dir, '.ffmerge-probe-')));
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const why = { EACCES: 'permission denied', EPERM: 'not permitted', EROFS: 'a read-only file system', ENOSPC: 'no space left', ENOENT: 'it takes no new folders' }[code ?? ''];
    throw bad(`${dir} is not writable (${why ? `${why}, ${code}` : (code ?? (e as Error).message)})`);
  }
}

/** Whether a rename failed because something is already at the target. */
function targetTaken(e: unknown): boolean {
  const code = (e as NodeJS.ErrnoException).code;
  return code === 'ENOTEMPTY' || code === 'EEXIST' || code === 'ENOTDIR' || code === 'EISDIR';
}

/**
 * Moves the finished temp folder into place. Without overwrite, a target that appeared since checkOutputDir
 * (another run writing the same output) is refused: rename(2) replaces only an empty directory, and a
 * non-empty one fails ENOTEMPTY, so the check and the move are one step and no finished output is lost.
 * With overwrite, the old output is moved aside first and removed once the new one is in place.
 */
export function moveIntoPlace(tmp: string, target: string, out: string, overwrite: boolean): void {
  if (overwrite) {
    // Runs that overwrite one output at once: the last to rename wins. Another run may move the old output
    // away, or put its own in place, between any two of these steps: each such step is tried again.
    for (let attempt = 0; attempt < 8; attempt++) {
      if (!fs.existsSync(target)) {
        try {
          fs.renameSync(tmp, target);
          return;
        } catch (e) {
          if (targetTaken(e)) continue;
          throw e;
        }
      }
      const old = `${tmp}-old`;
      // Held from before it exists: a worker stopped (or process.exit()) from here on puts the old output back
      // if nothing took its place, where the sweep of a live process never would.
      const releaseOld = holdTempOutput(old, target);
      try {
        try {
          fs.renameSync(target, old);
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code === 'ENOENT') continue; // moved away by another run: try again
          throw e;
        }
        try {
          fs.renameSync(tmp, target);
        } catch (e) {
          if (targetTaken(e)) {
            discard(old, target); // another run's output took the place
            continue;
          }
          try {
            fs.renameSync(old, target); // the place is still empty: the old output goes back
          } catch {
            // sweepStaleTemps restores it once this process is gone
          }
          throw e;
        }
        discard(old, target);
        return;
      } finally {
        releaseOld();
      }
    }
    throw new FfmergeError('OUTPUT_EXISTS', `the output directory ${out} kept being replaced by other runs writing it at the same time; nothing of this run was kept`);
  }
  try {
    fs.renameSync(tmp, target);
  } catch (e) {
    if (!targetTaken(e)) throw e;
    throw new FfmergeError('OUTPUT_EXISTS', `the output directory ${out} was written by another run meanwhile (to replace it: --overwrite, or overwrite: true in the library)`);
  }
}

/**
 * Removes a moved-aside old output. It first loses its `-old` name (one rename), so a kill halfway through
 * the removal leaves a plain temp folder that the next sweep deletes, never a half-deleted `-old` that the
 * sweep would put back in place of a missing output.
 */
function discard(old: string, target: string): void {
  const dead = tempName(target);
  // held while it is removed (file by file): a stop halfway leaves nothing for a live process's sweep to miss
  const release = holdTempOutput(dead);
  try {
    fs.renameSync(old, dead);
    fs.rmSync(dead, { recursive: true, force: true });
  } finally {
    release();
  }
}

interface PlannedTensor {
  name: string;
  dtype: DType;
  shape: number[];
  byteLength: number;
  /** Where the bytes come from: a replacement array, or a source tensor name. */
  data: Float32Array | { from: string };
}

/**
 * Writes a safetensors checkpoint folder atomically (temp folder + rename): tensors from the source or given
 * arrays, shared tensors stored once when `ties` are given, sharded above maxShardSize, config.json with its
 * `ffmerge` record, and the source's side files (tokenizer, generation config…) copied.
 */
export function writeCheckpoint(opts: WriteCheckpointOptions): Promise<WriteCheckpointResult> {
  return writeCheckpointOf(opts);
}

/** The `ffmerge` record's keys that describe one run, the latest (README): compress sets them. */
export const RUN_KEYS: readonly string[] = ['method', 'anchor', 'recover', 'k', 'stacks'];

/**
 * `info` (what a writer records under config.json's `ffmerge`) is an object without the keys the writer sets from
 * what it writes (`own`): given, they would contradict the files written.
 */
export function checkRecordInfo(info: unknown, what: string, own: readonly string[]): void {
  if (info === undefined) return;
  if (!isObject(info)) throw new FfmergeError('INVALID_ARGUMENT', `${what}: info must be an object (got ${showValue(info)})`);
  const taken = own.filter((k) => Object.hasOwn(info, k));
  if (taken.length > 0) {
    throw new FfmergeError('INVALID_ARGUMENT', `${what}: info ${taken.map((k) => showValue(k)).join(', ')} ${taken.length > 1 ? 'are' : 'is'} set by the writer from what it writes${taken.includes('ties') ? ' (give ties as the ties option)' : ''}`);
  }
}

/**
 * The edits a writer is handed, by type: `replace` a Map of tensor name → Float32Array, `ties` an object of
 * name → name, `info` something JSON can write.
 */
export function checkEdits(opts: { replace?: unknown; ties?: unknown; info?: unknown }, what: string): void {
  const { replace, ties, info } = opts;
  if (replace !== undefined) {
    if (Object.prototype.toString.call(replace) !== '[object Map]') throw new FfmergeError('INVALID_ARGUMENT', `${what}: replace must be a Map of tensor name → Float32Array (got ${showValue(replace)})`);
    for (const [k, v] of replace as Map<unknown, unknown>) {
      if (typeof k !== 'string' || !isFloat32Array(v)) throw new FfmergeError('INVALID_ARGUMENT', `${what}: replace maps ${showValue(k)} to ${showValue(v)}; it maps tensor names to Float32Arrays`);
    }
  }
  if (ties !== undefined) {
    if (!isObject(ties)) throw new FfmergeError('INVALID_ARGUMENT', `${what}: ties must be an object of tied name → stored name (got ${showValue(ties)})`);
    for (const [k, v] of Object.entries(ties)) {
      if (typeof v !== 'string') throw new FfmergeError('INVALID_ARGUMENT', `${what}: ties maps ${showValue(k)} to ${showValue(v)}, not a tensor name`);
    }
  }
  if (info !== undefined) {
    // NaN and ±Infinity are written by JSON as null: a record that silently says something else than it was given
    const nonFinite = (key: string, v: unknown) => {
      if (typeof v === 'number' && !Number.isFinite(v)) throw new FfmergeError('INVALID_ARGUMENT', `${what}: info holds ${v} under ${showValue(key)}, which JSON cannot hold (it would be written as null)`);
      return v;
    };
    try {
      JSON.stringify(info, nonFinite);
    } catch (e) {
      if (e instanceof FfmergeError) throw e;
      throw new FfmergeError('INVALID_ARGUMENT', `${what}: info cannot be written as JSON (${(e as Error).message})`, { cause: e });
    }
  }
}

/**
 * writeCheckpoint, for a caller that read the source before it (convert): `earlierStamp` is the source's state
 * when that reading began, so a source replaced meanwhile is SOURCE_CHANGED, not an output mixing the two.
 * `outer`: the scope of a caller that runs this write inside its own job; committed with this one. Internal (not
 * exported by the package).
 */
export async function writeCheckpointOf(opts: WriteCheckpointOptions, earlierStamp?: string, outer?: JobScope): Promise<WriteCheckpointResult> {
  if (typeof opts !== 'object' || opts === null) throw new FfmergeError('INVALID_ARGUMENT', `writeCheckpoint(options): options must be an object { source, out, format, … } (got ${showValue(opts)})`);
  checkJobOptions(opts, 'writeCheckpoint(options): options', ['source', 'out', 'format', 'replace', 'ties', 'info', 'extraFiles', 'overwrite', 'maxShardSize']);
  checkRecordInfo(opts.info, 'writeCheckpoint', ['format', 'ties']);
  checkEdits(opts, 'writeCheckpoint');
  const maxShardSize = opts.maxShardSize; // read once: the value checked is the value used
  checkMaxShardSize(maxShardSize);
  checkExtraFiles(opts.extraFiles, 'writeCheckpoint', checkpointFile);
  if (opts.format !== 'tied' && opts.format !== 'expanded') throw new FfmergeError('INVALID_ARGUMENT', `writeCheckpoint: format must be tied or expanded (got ${showValue(opts.format)})`);
  const { source, out } = opts;
  checkOutputDir(source, out, opts.overwrite);
  return withJobScope(opts, async (o, scope) => {
    // the source as it is now: one replaced while the output is written is refused before the rename
    const stamp = earlierStamp ?? sourceStamp(source);
    const src = await CheckpointReader.open(source);
    try {
      // renamed into place, the caller's call stands too, whatever its callback does after
      return await writePlanned({ ...o, maxShardSize }, src, outer ? { commit: () => (scope.commit(), outer.commit()) } : scope, stamp);
    } finally {
      await src.close();
    }
  });
}

async function writePlanned(opts: WriteCheckpointOptions, src: CheckpointReader, scope: JobScope, stamp: string): Promise<WriteCheckpointResult> {
  const { source, out, format } = opts;
  const config = await readConfig(source);
  // The source as the loader would see it (headers only): a tie map that drops a tensor or ties one to a
  // tensor of another shape, or a config that leaves out stored layers, must fail here, not in the output.
  checkCheckpoint(config, src, source);
  const { replace, ties: given } = asStored(src, opts.replace, opts.ties);
  for (const [name, data] of replace) checkReplacement(name, data, src.info(name).shape);
  checkAddedTies(src, given);
  checkGivenTies(config, given, 'writeCheckpoint');
  const ties = { ...src.ties, ...given };
  for (const [name, target] of Object.entries(ties)) {
    if (Object.hasOwn(ties, target)) throw new FfmergeError('INVALID_ARGUMENT', `tie ${name} → ${target}: "${target}" is itself tied`);
  }

  const plan: PlannedTensor[] = [];
  for (const name of src.names()) {
    // Object.hasOwn: tensor names come from files, and "constructor" or "__proto__" is a name like any other.
    const tiedTo = Object.hasOwn(ties, name) ? ties[name] : undefined;
    if (format === 'tied' && tiedTo !== undefined) continue;
    const { dtype, shape, byteLength } = src.info(name);
    const rep = replace.get(tiedTo ?? name) ?? replace.get(name);
    // F16/BF16 checkpoints keep their dtype: the writer rounds the float32 replacement to nearest even (and
    // widens it for F64, which the loader reads as float32 too).
    if (rep && !FLOAT_DTYPES.includes(dtype)) {
      throw new FfmergeError('INVALID_ARGUMENT', `"${name}" is stored as ${dtype}; FF weights must be floating point`);
    }
    plan.push({ name, dtype, shape, byteLength: rep ? rep.length * DTYPE_SIZE[dtype] : byteLength, data: rep ?? { from: name } });
  }

  // One order whatever the route (a tied source lists its tied names last), so convert and compress write
  // identical files: by name, in code points.
  plan.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));

  const metadata: Record<string, string> = { format: 'pt' };
  checkInfoWindows(config, opts.info, ties, format === 'tied', 'writeCheckpoint');
  const ffmergeInfo: Record<string, unknown> = { format, ...opts.info };
  if (format === 'tied' && Object.keys(ties).length) {
    metadata[TIES_METADATA_KEY] = JSON.stringify(ties);
    ffmergeInfo.ties = ties;
  }
  const outConfig = { ...config, ffmerge: ffmergeInfo };

  const target = path.resolve(out);
  const tmp = tempName(target);
  const madeParent = fs.mkdirSync(path.dirname(target), { recursive: true });
  const release = holdTempOutput(tmp); // before it exists: a stop between the two would leave it
  try {
    fs.mkdirSync(tmp);
    // progress counts bytes of tensor data written
    const total = plan.reduce((n, t) => n + t.byteLength, 0);
    let written = 0;
    opts.onProgress?.({ phase: 'save', done: 0, total });
    const writeJob = (): JobOptions => {
      const base = written;
      const report = opts.onProgress;
      return { signal: opts.signal, onProgress: report && ((p) => report({ phase: 'save', done: base + p.done, total })) };
    };
    // Streamed: each source tensor is read just before it is written, so memory holds one tensor at a time.
    const tensors: TensorToWrite[] = plan.map((t) => ({
      name: t.name,
      dtype: t.dtype,
      shape: t.shape,
      // isView, not instanceof: arrays made by the native addon may come from another JS realm (jest)
      data: ArrayBuffer.isView(t.data)
        ? t.data
        : async () => {
            throwIfAborted(opts.signal);
            return src.readRaw((t.data as { from: string }).from);
          },
    }));
    const shards = shardTensors(plan, opts.maxShardSize ?? DEFAULT_MAX_SHARD_SIZE);
    const files: string[] = [];
    if (shards.length === 1) {
      files.push('model.safetensors');
      await writeSafetensors(path.join(tmp, files[0]!), tensors, metadata, writeJob());
    } else {
      const weightMap: Record<string, string> = Object.create(null) as Record<string, string>;
      for (const [i, idx] of shards.entries()) {
        const name = shardName(i, shards.length);
        files.push(name);
        throwIfAborted(opts.signal);
        // every shard carries the metadata (ties included): readers merge it, and each shard stands alone
        await writeSafetensors(path.join(tmp, name), idx.map((j) => tensors[j]!), metadata, writeJob());
        written += idx.reduce((n, j) => n + plan[j]!.byteLength, 0);
        for (const j of idx) weightMap[plan[j]!.name] = name;
      }
      fs.writeFileSync(path.join(tmp, INDEX_FILE_NAME), JSON.stringify({ metadata: { total_size: total }, weight_map: weightMap }, null, 2) + '\n');
    }
    throwIfAborted(opts.signal);
    const bytes = files.reduce((n, f) => n + fs.statSync(path.join(tmp, f)).size, 0);
    fs.writeFileSync(path.join(tmp, 'config.json'), configText(path.join(source, 'config.json'), outConfig));
    for (const name of regularFileNames(source)) {
      if (!isWeightOrReferenceFile(name)) copyWritable(path.join(source, name), path.join(tmp, name));
    }
    for (const [name, text] of Object.entries(opts.extraFiles ?? {})) fs.writeFileSync(path.join(tmp, name), typeof text === 'function' ? text({ bytes }) : text);
    throwIfAborted(opts.signal);
    checkSourceUnchanged(source, stamp, 'its output was written');
    moveIntoPlace(tmp, target, out, opts.overwrite === true);
    scope.commit();
    const storedParams = plan.reduce((s, t) => s + t.byteLength / DTYPE_SIZE[t.dtype], 0);
    return { out: target, bytes, files, storedParams };
  } catch (e) {
    throw failedOutput(e, tmp, target, madeParent, out);
  } finally {
    release();
  }
}

/**
 * Undoes a failed output write and says why: the temp folder and the folders mkdir -p made are removed (what
 * cannot be, on a file system gone read-only, is left for the next run's sweep, not hiding the cause), and an
 * OS error (disk full, file too large, read-only, no permission) becomes IO_ERROR naming the output.
 */
export function failedOutput(e: unknown, tmp: string, target: string, madeParent: string | undefined, out: string): unknown {
  try {
    fs.rmSync(tmp, { recursive: true, force: true });
  } catch {
    // left for the next run's sweep
  }
  removeMadeParents(path.dirname(target), madeParent);
  const code = (e as NodeJS.ErrnoException | undefined)?.code;
  if (e instanceof FfmergeError || !(e instanceof Error) || typeof code !== 'string' || !/^E[A-Z0-9]+$/.test(code)) return e;
  return new FfmergeError('IO_ERROR', `cannot write the output ${out}: ${e.message}`, { cause: e });
}

/**
 * Removes the folders an output's mkdir -p made (`first`, the top one it made, down to `dir`) when the output
 * was not written. Only empty ones: a folder another run or the user wrote into meanwhile stays.
 */
function removeMadeParents(dir: string, first: string | undefined): void {
  if (first === undefined) return;
  for (let d = dir; ; d = path.dirname(d)) {
    try {
      fs.rmdirSync(d);
    } catch {
      return;
    }
    if (d === path.resolve(first) || path.dirname(d) === d) return;
  }
}

/** Groups tensors (indices, in order) into shards of at most maxBytes of data each; a larger tensor stands alone. */
function shardTensors(plan: { byteLength: number }[], maxBytes: number): number[][] {
  const shards: number[][] = [[]];
  let size = 0;
  plan.forEach((t, i) => {
    const cur = shards[shards.length - 1]!;
    if (cur.length > 0 && size + t.byteLength > maxBytes) {
      shards.push([i]);
      size = t.byteLength;
    } else {
      cur.push(i);
      size += t.byteLength;
    }
  });
  return shards;
}

/** Hugging Face's shard file name: model-00001-of-00003.safetensors. */
function shardName(i: number, n: number): string {
  const pad = (v: number) => String(v).padStart(5, '0');
  return `model-${pad(i + 1)}-of-${pad(n)}.safetensors`;
}

/** The replacement tensors (stored layout) for one FF sublayer given in canonical layout. */
export function ffReplacements(
  config: Record<string, unknown>,
  stack: 'decoder' | 'encoder',
  layer: number,
  ff: FFWeights,
): Map<string, Float32Array> {
  return new Map(ffPieces(config, stack, layer, ff).map(([name, data, t]) => [name, t ? transpose(data, t[0], t[1]) : data]));
}

/** ffReplacements with a Conv1D layout's matrices transposed in slices (compress's writer: see transposeSliced). */
export async function ffReplacementsSliced(
  config: Record<string, unknown>,
  stack: 'decoder' | 'encoder',
  layer: number,
  ff: FFWeights,
  signal?: AbortSignal,
): Promise<Map<string, Float32Array>> {
  const out = new Map<string, Float32Array>();
  for (const [name, data, t] of ffPieces(config, stack, layer, ff)) out.set(name, t ? await transposeSliced(data, t[0], t[1], signal) : data);
  return out;
}

/** ffReplacements' tensors, checked: each stored name, its canonical data, and [rows, cols] where it is stored transposed. */
function ffPieces(config: Record<string, unknown>, stack: 'decoder' | 'encoder', layer: number, ff: FFWeights): [string, Float32Array, [number, number]?][] {
  const st = stackOf(architectureOf(config), stack);
  checkStackLayers(config, stack, [layer], 'ffReplacements(config, stack, layer, ff)');
  checkFFWeights(ff, 'ffReplacements(config, stack, layer, ff): ff');
  // sizes from the config: another d × d_ff of the same product would pass the writer's length check, scrambled
  const spec = st.spec(config);
  if (ff.d !== spec.dModel || ff.dFF !== spec.dFF) {
    throw new FfmergeError('SHAPE_MISMATCH', `ffReplacements: ff is d ${ff.d} × d_ff ${ff.dFF}, the ${stack} stack's FF is ${spec.dModel} × ${spec.dFF}`);
  }
  const names = st.ff(config, layer);
  // a piece the architecture lacks would be dropped here, one it has kept from the source: either way the
  // written FF would not be the one given
  const mismatch = ffPieceMismatch(config, stack, layer, ff);
  if (mismatch) throw new FfmergeError('SHAPE_MISMATCH', `ffReplacements(config, stack, layer, ff): ff is ${mismatch}`);
  // canonical [out, in] is stored [in, out] by a Conv1D layout
  const dims = (rows: number, cols: number): [number, number] | undefined => (names.layout === 'linear' ? undefined : [rows, cols]);
  const out: [string, Float32Array, [number, number]?][] = [[names.wIn, ff.wIn, dims(ff.dFF, ff.d)], [names.wOut, ff.wOut, dims(ff.d, ff.dFF)]];
  if (names.wGate) out.push([names.wGate, ff.wGate!, dims(ff.dFF, ff.d)]);
  if (names.bIn) out.push([names.bIn, ff.bIn!]);
  if (names.bGate) out.push([names.bGate, ff.bGate!]);
  if (names.bOut) out.push([names.bOut, ff.bOut!]);
  return out;
}

/** Layer indices of a stack given to ffReplacements/ffTies: distinct integers in range. */
function checkStackLayers(config: Record<string, unknown>, stack: string, layers: unknown, what: string): void {
  const s = ffStacks(config).find((x) => x.name === stack);
  if (!s) throw new FfmergeError('INVALID_ARGUMENT', `${what}: this model has no ${showValue(stack)} stack (it has ${ffStacks(config).map((x) => x.name).join(', ')})`);
  checkArrayOf<number>(layers, `${what}: layers`, `layer indices 0 to ${s.layers - 1}`, (l) => Number.isInteger(l) && (l as number) >= 0 && (l as number) < s.layers);
  if (new Set(layers).size !== layers.length) throw new FfmergeError('INVALID_ARGUMENT', `${what}: layers ${showValue(layers)} lists a layer twice`);
}

/** The FF tensors of a layer, by their key in FFTensorNames / FFWeights. */
export const FF_KEYS = ['wIn', 'bIn', 'wGate', 'bGate', 'wOut', 'bOut'] as const;
/** Ties every FF tensor of layers[1..] to the same tensor of layers[0] (the stored copy). */
export function ffTies(config: Record<string, unknown>, stack: 'decoder' | 'encoder', layers: number[]): TieMap {
  const st = stackOf(architectureOf(config), stack);
  checkStackLayers(config, stack, layers, 'ffTies(config, stack, layers)');
  const first = layers[0];
  if (first === undefined) return {};
  const stored = st.ff(config, first);
  const ties: TieMap = {};
  for (const l of layers.slice(1)) {
    const names = st.ff(config, l);
    for (const key of FF_KEYS) {
      const a = names[key];
      const b = stored[key];
      if (a && b) ties[a] = b;
    }
  }
  return ties;
}
