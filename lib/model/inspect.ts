/**
 * What a checkpoint holds and what merging would save: architecture, layers, parameters, the FF share, and
 * for each k the parameters and bytes a merge of k FF sublayers removes (k−1 FF parameter sets per stack).
 * Reads only config.json and the safetensors header, so it is instant on any model size; only an expanded
 * ffmerge output's merged copies are read, pair by pair, to tell whether they still agree (as convert and
 * export decide).
 */
import { checkFolder, MAX_JSON_FILE_BYTES, readRegularFileSync, whyMissing } from '../files';
import * as path from 'node:path';
import { FfmergeError, showValue } from '../errors';
import { checkBoolean, checkPath, isObject } from '../arguments';
import { checkJobOptions, guardProgress, throwIfAborted, type JobOptions, type ProgressFn } from '../native/job';
import { CheckpointReader, storedName } from '../checkpoint/ties';
import { comparedPairs, mergedLayers, recordedWindows, tiedWindows, windowDifference, RECOVERED_KEY, type RecordedWindow } from '../checkpoint/earlier-merges';
import { FF_KEYS, ffTies } from '../checkpoint/write';
import { DTYPE_SIZE } from '../safetensors';
import { ffStacks } from './architectures';
import { BUFFERS, checkCheckpoint } from './plan';

export interface StackSummary {
  name: 'decoder' | 'encoder';
  layers: number;
  /** Parameters of one FF sublayer (all its tensors). */
  ffParamsPerLayer: number;
  /** Bytes of layer 0's FF sublayer (every layer's, unless `ffBytesByLayer` is given). */
  ffBytesPerLayer: number;
  /**
   * Only where the layers store their FF in different dtypes (a checkpoint cast layer by layer): each layer's
   * FF bytes, and its dtypes ("F16", or "F32/F16" for tensors stored apart). Compress merges only layers stored alike.
   */
  ffBytesByLayer?: number[];
  ffDtypeByLayer?: string[];
  /** Only for a model with earlier merges: the layers that already share their FF (what compress refuses to merge again). */
  mergedLayers?: number[];
  /** Only for a model with earlier merges: the largest k with a window of free layers (0: none left). */
  maxK?: number;
}

/** A merge a checkpoint carries, as inspect counts it. */
export interface MergeWindow {
  stack: 'decoder' | 'encoder';
  window: string;
  layers: number[];
  /** Held only in the tie map (an output written before its record listed every merge). */
  unrecorded?: true;
}

/** A window the record lists that the checkpoint does not back (`MergeSummary.inconsistent`), and why. */
export interface InconsistentWindow extends MergeWindow {
  /**
   * `not tied`: a tied checkpoint that does not tie `tensor` to `differsFrom` (the record and the tie map
   * disagree). `copies differ`: an expanded output whose copy `tensor` no longer equals `differsFrom`, the copy
   * it would share (changed after compressing); `convert --format tied` refuses such a model and `export`
   * writes the window unshared.
   */
  found: 'not tied' | 'copies differ';
  tensor: string;
  differsFrom: string;
  reason: string;
}

/** What an ffmerge output carries (absent for a model with neither an ffmerge record nor ties). */
export interface MergeSummary {
  /** The merges counted: the record's windows the checkpoint agrees with, and those only the tie map holds. */
  windows: MergeWindow[];
  /**
   * Windows the record lists that the checkpoint does not back, not counted: a tied checkpoint that does not tie
   * them, or an expanded output whose copies of them differ (read and compared as convert and export do).
   */
  inconsistent: InconsistentWindow[];
  /** Why the record or the tie map could not be read as merges (compress and convert refuse such a source). */
  problem?: string;
}

export interface KSaving {
  k: number;
  paramsRemoved: number;
  /** The least a window of k removes; `bytesRemovedMax` the most, where windows of other dtypes differ. */
  bytesRemoved: number;
  bytesRemovedMax?: number;
  /** paramsRemoved / totalParams (of tiedParams for an expanded output, as compress reports it). */
  fraction: number;
  /**
   * The `--stacks` value compress needs for this k when its default (one window index in every stack) finds
   * none free: `independent` when each stack has a window of its own, else the one stack that has one.
   */
  stacks?: string;
}

export interface ModelSummary {
  dir: string;
  modelType: string;
  architectures: string[];
  stacks: StackSummary[];
  /** Parameters stored in the checkpoint (tied tensors counted once). */
  totalParams: number;
  totalBytes: number;
  /** Parameters stored per dtype ({"F32": 262144}; a mixed checkpoint lists each), largest first; they sum to totalParams. */
  dtypes: Record<string, number>;
  ffParams: number;
  ffShare: number;
  /** Already merged by ffmerge (a tied output): the recorded info. */
  ffmerge?: Record<string, unknown>;
  /** The merges the model carries, checked against its tie map (only for an ffmerge output or a tied checkpoint). */
  merges?: MergeSummary;
  /**
   * An expanded ffmerge output stores each merge's copies; its tied form (what compress counts from, and
   * what `convert --format tied` gives) holds this many parameters. Absent when nothing is stored twice.
   */
  tiedParams?: number;
  /** Per k: what merging k adjacent FF sublayers not merged yet would remove (a stack with no such window adds nothing). */
  savings: KSaving[];
}

/**
 * A parsed config.json must be an object that ffmerge can write back (the output's config.json, --json
 * reports): JSON nested so deeply that JSON.stringify overflows the stack is refused here, with a code.
 */
function checkConfigObject(c: unknown, file: string): Record<string, unknown> {
  if (!isObject(c)) throw new FfmergeError('INVALID_CONFIG', `${file} is not a JSON object (got ${showValue(c)})`);
  try {
    JSON.stringify(c);
  } catch {
    throw new FfmergeError('INVALID_CONFIG', `${file} nests values too deeply to be processed`);
  }
  return c;
}

/**
 * A model folder's config.json, read by `read` (sync for inspect, async for the loader): a regular file only
 * (a FIFO would block forever), and not one so large that parsing it is the problem. A folder without one, or a
 * path that is a file, is DATA_NOT_FOUND saying so.
 */
export function configOf(dir: string, read: (file: string) => string): Record<string, unknown>;
export function configOf(dir: string, read: (file: string) => Promise<string>): Promise<Record<string, unknown>>;
export function configOf(dir: string, read: (file: string) => string | Promise<string>): Record<string, unknown> | Promise<Record<string, unknown>> {
  const file = path.join(dir, 'config.json');
  const failed = (e: unknown): never => {
    if (e instanceof FfmergeError) throw e;
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new FfmergeError('DATA_NOT_FOUND', `${dir} is not a model directory (no config.json)`);
    if (code === 'ENOTDIR' || code === 'ELOOP') checkFolder(dir, 'model directory', 'config.json and the weights');
    if (code === 'ELOOP') throw new FfmergeError('DATA_NOT_FOUND', `${file} ${whyMissing(file)}`);
    throw new FfmergeError('IO_ERROR', `cannot read ${file}: ${(e as Error).message}`, { cause: e });
  };
  const parsed = (text: string) => {
    let c: unknown;
    try {
      c = JSON.parse(text);
    } catch (e) {
      throw new FfmergeError('INVALID_CONFIG', `${file} is not valid JSON: ${(e as Error).message}`);
    }
    return checkConfigObject(c, file);
  };
  let text: string | Promise<string>;
  try {
    text = read(file);
  } catch (e) {
    return failed(e);
  }
  return typeof text === 'string' ? parsed(text) : text.then(parsed, failed);
}

export interface InspectOptions {
  /**
   * Whether an expanded ffmerge output's merged copies are read and compared (default true), so that a window
   * whose copies differ is listed under `merges.inconsistent`, not counted. Compress and eval read the summary
   * for the model's shape only, and compress checks the copies itself (recordedTies): they pass false, so the
   * copies are not read twice.
   */
  compareCopies?: boolean | undefined;
  /** Stops the comparison of copies (gigabytes at 7B width) between tensors: ABORTED. */
  signal?: AbortSignal | undefined;
  /** Phase 'inspect': merged windows whose copies were compared, of those to compare. */
  onProgress?: ProgressFn | undefined;
}

/**
 * What a model folder holds, from its config and safetensors headers (and, for an expanded ffmerge output, its
 * merged copies: `compareCopies`): architecture, stacks and layers, FF share of the parameters, earlier merges,
 * and what each k would save.
 */
export async function inspectModel(dir: string, opts: InspectOptions = {}): Promise<ModelSummary> {
  checkPath(dir, 'inspectModel(dir): dir');
  checkJobOptions(opts, 'inspectModel(dir, options): options', ['compareCopies']);
  checkBoolean(opts.compareCopies, 'inspectModel: compareCopies');
  throwIfAborted(opts.signal);
  const config = configOf(dir, (f) => readRegularFileSync(f, 'INVALID_CONFIG', MAX_JSON_FILE_BYTES));
  const stacks = ffStacks(config);
  const ckpt = await CheckpointReader.open(dir);
  try {
    return await summarize(dir, config, stacks, ckpt, opts.compareCopies ?? true, opts);
  } finally {
    await ckpt.close();
  }
}

/**
 * The config's layer counts against the tensors, before anything is sized by them (1e9 layers in a config
 * beside a 2-layer checkpoint would size arrays by it).
 */
function checkLayerCounts(stacks: ReturnType<typeof ffStacks>, ckpt: CheckpointReader): void {
  const tensors = ckpt.names().length;
  for (const s of stacks) {
    if (s.layers > tensors) {
      throw new FfmergeError('INVALID_CONFIG', `config.json gives the ${s.name} ${s.layers} layers, but the checkpoint holds only ${tensors} tensors`);
    }
    const last = s.ff(s.layers - 1).wIn;
    if (storedName(ckpt, s.ff(0).wIn) !== undefined && storedName(ckpt, last) === undefined) {
      throw new FfmergeError('INVALID_CONFIG', `config.json gives the ${s.name} ${s.layers} layers, but the checkpoint has no tensor "${last}" (the FF of its last layer)`);
    }
  }
}

async function summarize(dir: string, config: Record<string, unknown>, stacks: ReturnType<typeof ffStacks>, ckpt: CheckpointReader, compareCopies: boolean, job: JobOptions): Promise<ModelSummary> {
  checkLayerCounts(stacks, ckpt);
  // then the loader's own check (headers only), so what inspect accepts, eval, compress and export accept too
  checkCheckpoint(config, ckpt, dir);
  const numel = (name: string) => ckpt.info(name).shape.reduce((a, b) => a * b, 1);
  let totalParams = 0;
  let totalBytes = 0;
  const byDtype = new Map<string, number>();
  for (const name of ckpt.storedNames()) {
    const info = ckpt.info(name);
    const n = numel(name);
    totalBytes += n * DTYPE_SIZE[info.dtype];
    if (BUFFERS.test(name)) continue; // stored, but not a parameter
    totalParams += n;
    byDtype.set(info.dtype, (byDtype.get(info.dtype) ?? 0) + n);
  }
  const dtypes = Object.fromEntries([...byDtype].sort((a, b) => b[1] - a[1]));
  // FF parameters as stored: in a tied (compressed) checkpoint the layers of a merged window share one copy,
  // which counts once, as it does in totalParams.
  const storedFF = new Set<string>();
  let ffParams = 0;
  /** One layer's FF as stored: parameters, bytes, and the dtypes of its tensors ("F32", "F32/F16"). */
  const layerFF = (s: (typeof stacks)[number], l: number) => {
    const names = s.ff(l);
    let params = 0;
    let bytes = 0;
    const dtypes = new Set<string>();
    for (const key of FF_KEYS) {
      // by stored name (a bare GPT-2 stores "h.0.mlp.c_fc.weight" for "transformer.h.0…")
      const t = names[key];
      const stored = t === undefined ? undefined : storedName(ckpt, t);
      if (stored === undefined) continue;
      const info = ckpt.info(stored);
      const n = numel(stored);
      params += n;
      bytes += n * DTYPE_SIZE[info.dtype];
      dtypes.add(info.dtype);
      if (!storedFF.has(ckpt.resolve(stored))) ffParams += n;
      storedFF.add(ckpt.resolve(stored));
    }
    return { params, bytes, dtype: [...dtypes].join('/') };
  };
  const summaries: StackSummary[] = stacks.map((s) => {
    const layers = Array.from({ length: s.layers }, (_, l) => layerFF(s, l));
    const mixed = layers.some((x) => x.dtype !== layers[0]!.dtype || x.bytes !== layers[0]!.bytes);
    return {
      name: s.name,
      layers: s.layers,
      ffParamsPerLayer: layers[0]!.params,
      ffBytesPerLayer: layers[0]!.bytes,
      ...(mixed ? { ffBytesByLayer: layers.map((x) => x.bytes), ffDtypeByLayer: layers.map((x) => x.dtype) } : {}),
    };
  });
  const merges = await mergeSummary(dir, config, ckpt, compareCopies, job);
  // the layers compress refuses to merge again (record and tie map, as compress reads them)
  const done = mergedLayers(config, merges?.recorded ?? [], ckpt.ties);
  const minLayers = Math.min(...summaries.map((s) => s.layers));
  // windows as compress enumerates them: k adjacent layers from `start`, none merged yet in stack s
  // and, as compress requires, stored alike: one merged FF is written once, in one dtype
  const freeAt = (s: StackSummary, start: number, k: number) => {
    const set = done.get(s.name);
    const dtypes = s.ffDtypeByLayer;
    for (let l = start; l < start + k; l++) {
      if (set?.has(l) || (dtypes && dtypes[l] !== dtypes[start])) return false;
    }
    return true;
  };
  const bytesAt = (s: StackSummary, l: number) => s.ffBytesByLayer?.[l] ?? s.ffBytesPerLayer;
  const starts = (k: number) => Array.from({ length: minLayers - k + 1 }, (_, i) => i);
  const free = (s: StackSummary, k: number) => starts(k).some((start) => freeAt(s, start, k));
  // compress's default merges one window at the same place in every stack: free together, or only stack by stack
  const together = (k: number) => starts(k).some((start) => summaries.every((s) => freeAt(s, start, k)));
  // An expanded output stores its merges' copies; compress counts from its tied form, and so do the fractions here.
  let copies = 0;
  for (const w of merges?.windows ?? []) {
    for (const [t, st] of Object.entries(ffTies(config, w.stack, w.layers))) {
      if (ckpt.has(t) && ckpt.has(st) && ckpt.resolve(t) !== ckpt.resolve(st)) copies += numel(t);
    }
  }
  const tiedParams = totalParams - copies;
  const savings: KSaving[] = [];
  for (let k = 2; k <= minLayers; k++) {
    const all = together(k);
    const open = all ? summaries : summaries.filter((s) => free(s, k));
    if (open.length === 0) break; // no larger window is free either (each holds a free window of k)
    const paramsRemoved = open.reduce((a, s) => a + (k - 1) * s.ffParamsPerLayer, 0);
    // bytes depend on where the window falls when layers differ in dtype: the least and the most
    const bytes = all
      ? starts(k).filter((st) => summaries.every((s) => freeAt(s, st, k))).map((st) => summaries.reduce((a, s) => a + (k - 1) * bytesAt(s, st), 0))
      : [Math.min, Math.max].map((pick) => open.reduce((a, s) => a + pick(...starts(k).filter((st) => freeAt(s, st, k)).map((st) => (k - 1) * bytesAt(s, st))), 0));
    const [bytesRemoved, most] = [Math.min(...bytes), Math.max(...bytes)];
    // compress merges the stacks it is given, each needing a free window: both (two stacks), or one named alone
    const only = all ? undefined : open.length === 1 ? open[0]!.name : 'independent';
    savings.push({ k, paramsRemoved, bytesRemoved, ...(most !== bytesRemoved ? { bytesRemovedMax: most } : {}), fraction: paramsRemoved / tiedParams, ...(only ? { stacks: only } : {}) });
  }
  if ([...done.values()].some((set) => set.size > 0)) {
    for (const s of summaries) {
      s.mergedLayers = [...(done.get(s.name) ?? [])].sort((a, b) => a - b);
      s.maxK = 0;
      for (let k = 2; k <= minLayers && free(s, k); k++) s.maxK = k;
    }
  }
  return {
    dir: path.resolve(dir),
    modelType: String(config.model_type),
    architectures: Array.isArray(config.architectures) ? config.architectures.filter((a): a is string => typeof a === 'string') : [],
    stacks: summaries,
    totalParams,
    totalBytes,
    dtypes,
    ffParams,
    ffShare: ffParams / totalParams,
    ...(copies > 0 ? { tiedParams } : {}),
    ...(typeof config.ffmerge === 'object' && config.ffmerge ? { ffmerge: config.ffmerge as Record<string, unknown> } : {}),
    ...(merges ? { merges: { windows: merges.windows, inconsistent: merges.inconsistent, ...(merges.problem !== undefined ? { problem: merges.problem } : {}) } } : {}),
    savings,
  };
}

const asMerge = (w: RecordedWindow): MergeWindow => ({
  stack: w.stack,
  window: typeof w.window === 'string' ? w.window : w.layers.join('+'),
  layers: [...w.layers],
  ...(Object.hasOwn(w, RECOVERED_KEY) ? { unrecorded: true as const } : {}),
});

/**
 * The merges an ffmerge output (or any tied checkpoint) carries: the record's windows, less those the checkpoint
 * does not back (not counted), plus the windows only the tie map holds. A tied checkpoint is checked from its
 * headers (each window's copies tied); an expanded output stores each copy, so its windows' copies are read and
 * compared (`windowDifference`, export's and convert's test), tensor by tensor. A record or tie map compress
 * would refuse is not an error here (inspect is where one looks at it): it is reported as `problem`, and only
 * what could be read is counted.
 */
async function mergeSummary(dir: string, config: Record<string, unknown>, ckpt: CheckpointReader, compareCopies: boolean, job: JobOptions): Promise<(MergeSummary & { recorded: RecordedWindow[] }) | undefined> {
  const tiedCheckpoint = Object.keys(ckpt.ties).length > 0;
  if (!tiedCheckpoint && !(typeof config.ffmerge === 'object' && config.ffmerge !== null)) return undefined;
  let problem: string | undefined;
  // what could be read, the first refusal kept as `problem`
  const readOr = (read: () => RecordedWindow[]): RecordedWindow[] => {
    try {
      return read();
    } catch (e) {
      if (!(e instanceof FfmergeError)) throw e;
      problem ??= e.message;
      return [];
    }
  };
  const recorded = readOr(() => recordedWindows(config, dir));
  const tiedSource = tiedCheckpoint || (config.ffmerge as Record<string, unknown> | undefined)?.format === 'tied';
  // a tied checkpoint stores each merge once: a recorded window whose copies it does not tie is not a merge of it
  const untied = (w: RecordedWindow) =>
    Object.entries(ffTies(config, w.stack, w.layers)).find(([a, b]) => {
      const [x, y] = [storedName(ckpt, a), storedName(ckpt, b)];
      return x === undefined || y === undefined || ckpt.resolve(x) !== ckpt.resolve(y);
    });
  const inconsistent: { w: RecordedWindow; found: InconsistentWindow['found']; pair: [string, string] }[] = [];
  // counted by the pair of copies read (one window of a large model is gigabytes)
  const pairs = !tiedSource && compareCopies ? recorded.map((w) => comparedPairs(config, w, ckpt).length) : [];
  const compared = pairs.reduce((a, b) => a + b, 0);
  let done = 0;
  // the caller's callback guarded: what it throws, or an async one's rejection, fails this call at the next pair
  let failure: { e: unknown } | undefined;
  const report = job.onProgress && guardProgress(job.onProgress, (e) => (failure = { e }));
  const progress = (n: number) => {
    report?.({ phase: 'inspect', done: n, total: compared, unit: 'tensors' });
    if (failure) throw failure.e;
  };
  if (compared) progress(0);
  for (const [i, w] of recorded.entries()) {
    if (tiedSource) {
      const pair = untied(w);
      if (pair) inconsistent.push({ w, found: 'not tied', pair });
    } else if (compareCopies) {
      // an expanded output: each copy read and compared with the one it would share, as convert and export do
      if (failure) throw failure.e; // an async callback's rejection, heard since
      const before = done;
      const pair = await windowDifference(config, w, ckpt, job.signal, () => progress(++done));
      if (pair) inconsistent.push({ w, found: 'copies differ', pair });
      // one that differs is left at its first difference: its other pairs are not read
      if (done !== before + pairs[i]!) progress((done = before + pairs[i]!));
    }
  }
  const unrecorded = readOr(() => tiedWindows(config, recorded, ckpt.ties, dir));
  return {
    recorded,
    windows: [...recorded.filter((w) => !inconsistent.some((x) => x.w === w)), ...unrecorded].map(asMerge),
    inconsistent: inconsistent.map(({ w, found, pair: [tensor, differsFrom] }) => ({
      ...asMerge(w),
      found,
      tensor,
      differsFrom,
      reason:
        found === 'not tied'
          ? `the tied checkpoint does not tie ${tensor} to ${differsFrom} (the record and the tie map disagree)`
          : `${tensor} differs from ${differsFrom}, the copy it would share (was the expanded output changed after compressing, e.g. fine-tuned without its ties?)`,
    })),
    ...(problem !== undefined ? { problem } : {}),
  };
}
