/**
 * The merges a source model already carries when it is itself an ffmerge output. Compressing it again must
 * keep them: the output's `ffmerge.windows` lists them beside the new ones (convert re-ties from that list, so
 * an expanded output that forgot them would lose their saving on the way back to tied), and a new window may
 * not take in a layer that already shares its FF with others (see `mergedLayers`).
 */
import { FfmergeError, showValue } from '../errors';
import { isObject } from '../arguments';
import { ffStacks, type Config, type FFTensorNames, type StackName } from '../model/architectures';
import { CheckpointReader, storedName, type TieMap } from './ties';
import { ffmergeRecord } from './record';
import { FF_KEYS, ffTies } from './write';
import { checkCheckpoint } from '../model/plan';
import { throwIfAborted, type JobOptions } from '../native/job';

/** One entry of config.json's `ffmerge.windows`: the stack and its layers that share one FF (other keys kept as written). */
export interface RecordedWindow {
  stack: StackName;
  layers: number[];
  [key: string]: unknown;
}

/**
 * The windows config.json's `ffmerge` record lists ([] for a model ffmerge has not merged), checked against
 * the model's stacks: the record comes from a file, and a bad one must fail here with its place named, not as
 * a tie to a tensor that does not exist.
 */
export function recordedWindows(config: Config, where: string): RecordedWindow[] {
  const info = ffmergeRecord(config, where);
  if (info === undefined) return [];
  const windows = Object.hasOwn(info, 'windows') ? info.windows : undefined;
  if (windows === undefined) return [];
  if (!Array.isArray(windows)) throw new FfmergeError('INVALID_CONFIG', `${where}: ffmerge.windows must be a list (got ${showValue(windows)})`);
  const stacks = new Map(ffStacks(config).map((s) => [s.name as string, s.layers]));
  // each layer belongs to one merge at most (compress never merges a merged layer again): a window listed twice,
  // or two that overlap, is no record ffmerge writes (one owner map, not pairwise checks: a list of thousands
  // of windows made compress quadratic)
  const owner = new Map<string, number>();
  return windows.map((w: unknown, i) => {
    const bad = (why: string) => new FfmergeError('INVALID_CONFIG', `${where}: ffmerge.windows[${i}] ${why} (got ${showValue(w)})`);
    if (!isObject(w)) throw bad('must be an object { stack, layers, … }');
    const { stack, layers } = w;
    const n = typeof stack === 'string' ? stacks.get(stack) : undefined;
    if (n === undefined) throw bad(`names no stack of this model (it has: ${[...stacks.keys()].join(', ')})`);
    if (!Array.isArray(layers) || layers.length < 2 || layers.some((l) => !Number.isInteger(l) || l < 0 || l >= n) || new Set(layers).size !== layers.length) {
      throw bad(`must list at least two distinct layers of the ${String(stack)} stack (0 to ${n - 1})`);
    }
    for (const l of layers as number[]) {
      const j = owner.get(`${stack}:${l}`);
      if (j !== undefined) throw bad(`takes in ${String(stack)} layer ${l}, which ffmerge.windows[${j}] already merged (a layer belongs to one merge)`);
      owner.set(`${stack}:${l}`, i);
    }
    return w as RecordedWindow;
  });
}

/**
 * Per stack, the layers whose FF already belongs to a merge: those the record lists, and those whose FF
 * tensors the checkpoint's tie map ties or is tied to (an output written before its record listed every
 * merge). Merging such a layer again would give it an FF of its own and so break the old tie: the model would
 * be no smaller than its source, only worse.
 */
export function mergedLayers(config: Config, recorded: readonly RecordedWindow[], ties: TieMap): Map<StackName, Set<number>> {
  const stored = new Set(Object.values(ties));
  const out = new Map<StackName, Set<number>>();
  for (const s of ffStacks(config)) {
    const set = new Set<number>();
    for (const w of recorded) if (w.stack === s.name) for (const l of w.layers) set.add(l);
    for (let l = 0; l < s.layers; l++) {
      if (ffTensors(s.ff(l)).some((t) => Object.hasOwn(ties, t) || stored.has(t))) set.add(l);
    }
    out.set(s.name, set);
  }
  return out;
}

/** A layer's FF tensor names, in FF_KEYS order. */
function ffTensors(names: FFTensorNames): string[] {
  return FF_KEYS.map((k) => names[k]).filter((t): t is string => t !== undefined);
}

/** The key a window recovered from the tie map carries in the record (its value says where it came from). */
export const RECOVERED_KEY = 'recoveredFrom';

/** Whether a window's layers (in any order) are `ascending`'s. */
function sameLayers(layers: readonly number[], ascending: readonly number[]): boolean {
  return layers.length === ascending.length && [...layers].sort((a, b) => a - b).every((l, i) => l === ascending[i]);
}

/** "0-1" for adjacent layers, "0+2" otherwise. */
function layersLabel(layers: readonly number[]): string {
  const contiguous = layers.every((l, i) => i === 0 || l === layers[i - 1]! + 1);
  return contiguous ? `${layers[0]}-${layers[layers.length - 1]}` : layers.join('+');
}

/**
 * The windows the checkpoint's tie map implies, per stack: groups of two or more layers whose FF tensors all
 * resolve, key by key, to the same stored tensors (an output written before its record listed every merge holds
 * some merges only there; left out of a new record they would be lost on a convert to expanded and back).
 *
 * A tie map that ties only some of a layer's FF tensors, or ties them to tensors no other layer of the stack
 * shares as a whole, is refused (INVALID_CONFIG): a record can only say "these layers share one FF", so such a
 * tie can neither be recorded nor dropped safely. A tie group that overlaps a recorded window without being that
 * window is refused the same way: the record and the tie map disagree about which layers share an FF.
 */
export function tiedWindows(config: Config, recorded: readonly RecordedWindow[], ties: TieMap, where: string, given = false): RecordedWindow[] {
  if (Object.keys(ties).length === 0) return [];
  const stored = new Set(Object.values(ties));
  // a name as the tie map knows it: as the architecture names it, or without its first component (GPT-2's
  // "transformer.": checkpoints saved from the bare model lack it, as the loader resolves)
  const variants = (t: string) => {
    const dot = t.indexOf('.');
    return dot > 0 ? [t, t.slice(dot + 1)] : [t];
  };
  const touched = (t: string) => variants(t).some((n) => Object.hasOwn(ties, n) || stored.has(n));
  const target = (t: string) => {
    for (const n of variants(t)) {
      if (Object.hasOwn(ties, n)) return ties[n]!;
      if (stored.has(n)) return n;
    }
    return t;
  };
  const bad = (why: string) =>
    new FfmergeError(given ? 'INVALID_ARGUMENT' : 'INVALID_CONFIG', `${where}: ${given ? 'the tie map given' : "the checkpoint's ffmerge tie map"} ${why}; ffmerge merges whole FF sublayers and records them as windows, so it cannot keep such a tie`);
  const out: RecordedWindow[] = [];
  for (const s of ffStacks(config)) {
    const groups = new Map<string, number[]>();
    for (let l = 0; l < s.layers; l++) {
      const tensors = ffTensors(s.ff(l));
      const tied = tensors.filter(touched);
      if (tied.length === 0) continue;
      if (tied.length < tensors.length) {
        throw bad(`ties only some of ${s.name} layer ${l}'s FF tensors (${tied.map((t) => showValue(t)).join(', ')}, not ${tensors.filter((t) => !touched(t)).map((t) => showValue(t)).join(', ')})`);
      }
      const key = JSON.stringify(tensors.map(target));
      groups.set(key, [...(groups.get(key) ?? []), l]);
    }
    for (const [key, layers] of groups) {
      if (layers.length < 2) {
        throw bad(`ties ${s.name} layer ${layers[0]}'s FF tensors to ${(JSON.parse(key) as string[]).map((t) => showValue(t)).join(', ')}, which no other layer of the ${s.name} stack shares as a whole FF`);
      }
      if (recorded.some((w) => w.stack === s.name && sameLayers(w.layers, layers))) continue;
      const clash = recorded.find((w) => w.stack === s.name && w.layers.some((l) => layers.includes(l)));
      if (clash) {
        throw new FfmergeError(
          'INVALID_CONFIG',
          `${where}: config.json's ffmerge record and the checkpoint's tie map disagree: the record lists ${recordedLabel([clash])}, the tie map ties ${s.name} layers ${layers.join(', ')} to one FF`,
        );
      }
      out.push({ stack: s.name, window: layersLabel(layers), layers, [RECOVERED_KEY]: 'tie map' });
    }
  }
  return out;
}

/**
 * Ties handed to a writer (writeCheckpoint's or exportOnnx's `ties`) tie whole FF sublayers, as a merge does,
 * or tensors outside the FFs: a tie of some of a layer's FF tensors would be written, and the output then
 * refused by every reader of ffmerge's (INVALID_ARGUMENT, before anything is written).
 */
export function checkGivenTies(config: Config, ties: TieMap | undefined, where: string): void {
  if (!ties || Object.keys(ties).length === 0) return;
  // a chain first: its middle looks like a layer tied to one no other layer shares, which is not the cause
  for (const [name, target] of Object.entries(ties)) {
    if (Object.hasOwn(ties, target)) throw new FfmergeError('INVALID_ARGUMENT', `${where}: tie ${name} → ${target}: "${target}" is itself tied`);
  }
  tiedWindows(config, [], ties, where, true);
}

/**
 * The windows a writer's `info` records, against the ties it writes: every reader checks the two against each
 * other (`earlierWindows`, `recordedTies`), so a record that names a stack the model lacks, or lists a window
 * a tied output does not store once, would give an output ffmerge itself refuses (INVALID_ARGUMENT, before
 * anything is written). `ties` is everything the output ties: the source's and the given ones.
 */
export function checkInfoWindows(config: Config, info: Record<string, unknown> | undefined, ties: TieMap, tied: boolean, where: string): void {
  if (info === undefined || !Object.hasOwn(info, 'windows')) return;
  let recorded: RecordedWindow[];
  try {
    recorded = recordedWindows({ ...config, ffmerge: { windows: info.windows } }, `${where}: info`);
  } catch (e) {
    throw e instanceof FfmergeError && e.code === 'INVALID_CONFIG' ? new FfmergeError('INVALID_ARGUMENT', e.message) : e;
  }
  if (!tied) return;
  // the groups of layers the tie map ties whole, ascending (each layer in one group at most)
  const groups = tiedWindows(config, [], ties, where, true);
  for (const w of recorded) {
    if (!groups.some((g) => g.stack === w.stack && sameLayers(w.layers, g.layers))) {
      throw new FfmergeError(
        'INVALID_ARGUMENT',
        `${where}: info.windows lists ${recordedLabel([w])}, but the output's ties do not store those layers' FF as one copy; a tied output's record and tie map must agree, or ffmerge's readers refuse it`,
      );
    }
  }
}

/**
 * Every merge a source carries: the windows its record lists (checked, `recordedWindows`), then those only its
 * tie map holds (`tiedWindows`, marked `recoveredFrom: 'tie map'`). What compress and convert keep, tie and
 * write into their output's record. The checkpoint is checked against its architecture first (headers only),
 * so a tie the loader refuses (a tensor of another shape) is refused as the loader would, not as a merge.
 */
export function earlierWindows(config: Config, src: CheckpointReader, where: string): RecordedWindow[] {
  const recorded = recordedWindows(config, where);
  checkCheckpoint(config, src, where);
  checkRecordFormat(config, src, where);
  return [...recorded, ...tiedWindows(config, recorded, src.ties, where)];
}

/**
 * The record's `format` against the file: an `expanded` record over a checkpoint that ties tensors is a record
 * edited or copied from another output. Each command would otherwise act on the half it reads, so the
 * disagreement itself is the error.
 */
function checkRecordFormat(config: Config, src: CheckpointReader, where: string): void {
  const info = ffmergeRecord(config, where);
  if (info === undefined || !Object.hasOwn(info, 'format')) return;
  // ffmerge writes "tied" or "expanded" (an ONNX output is no checkpoint); anything else was written by hand
  if (info.format !== 'tied' && info.format !== 'expanded') {
    throw new FfmergeError('INVALID_CONFIG', `${where}: config.json's ffmerge record has format ${showValue(info.format)}; ffmerge writes "tied" or "expanded": put back the config.json ffmerge wrote with it`);
  }
  const tied = Object.keys(src.ties).length;
  if (info.format === 'expanded' && tied > 0) {
    throw new FfmergeError(
      'INVALID_CONFIG',
      `${where}: config.json's ffmerge record and the checkpoint disagree: the record says format "expanded" (every layer its own copy), but the checkpoint ties ${tied} tensors to others, as a tied output does; put back the config.json ffmerge wrote with it`,
    );
  }
}

/**
 * The merges of a model folder's checkpoint (`earlierWindows`: record and tie map checked against each other
 * and the architecture), for a command that carries the record into its output without merging (finetune):
 * the same refusals as compress, convert and export, before any long work.
 */
export async function folderMerges(dir: string, config: Config): Promise<RecordedWindow[]> {
  const src = await CheckpointReader.open(dir);
  try {
    return earlierWindows(config, src, dir);
  } finally {
    await src.close();
  }
}

/** The windows as an output's record lists them: one recovered from the tie map is recorded there now, so its mark goes. */
export function asRecorded(windows: readonly RecordedWindow[]): RecordedWindow[] {
  return windows.map((w) => {
    if (!Object.hasOwn(w, RECOVERED_KEY)) return w;
    const { [RECOVERED_KEY]: _from, ...rest } = w;
    return rest as RecordedWindow;
  });
}

/** "decoder 0-1, decoder 3-4": the recorded windows for a message. */
export function recordedLabel(recorded: readonly RecordedWindow[]): string {
  return recorded
    .map((w) => `${w.stack} ${typeof w.window === 'string' ? w.window : w.layers.join('+')}${Object.hasOwn(w, RECOVERED_KEY) ? ' (tied in the checkpoint, not in its record)' : ''}`)
    .join(', ');
}

/**
 * Whether two tensors hold the same bytes as stored (names as the architecture gives them, or as a bare
 * checkpoint stores them). The one test of "still identical" for an expanded output's copies: convert and
 * compress (`recordedTies`), export and inspect (`windowDifference`) all decide with it. Reads the pair only,
 * asynchronously (the file reads run off the main thread).
 */
async function sameBytes(src: CheckpointReader, a: string, b: string): Promise<boolean> {
  const [x, y] = await Promise.all([src.readRaw(storedName(src, a) ?? a), src.readRaw(storedName(src, b) ?? b)]);
  return Buffer.from(x.buffer, x.byteOffset, x.byteLength).equals(Buffer.from(y.buffer, y.byteOffset, y.byteLength));
}

/**
 * The first of a window's FF copies that differs from the copy it would share ([tied, stored]), or undefined
 * when every copy still agrees (a pair the checkpoint already ties agrees). Tensor by tensor, one pair read at a
 * time: how export decides which windows of an expanded output it can share, and inspect which it counts.
 */
export async function windowDifference(config: Config, w: RecordedWindow, src: CheckpointReader, signal?: AbortSignal, onPair?: () => void): Promise<[string, string] | undefined> {
  for (const [tied, stored] of comparedPairs(config, w, src)) {
    throwIfAborted(signal);
    if (!(await sameBytes(src, tied, stored))) return [tied, stored];
    onPair?.(); // one pair read (a window of a large model reads gigabytes: its callers count pairs, not windows)
  }
  return undefined;
}

/** The copy pairs ([tied, stored]) of a window a comparison reads: those the checkpoint does not tie already. */
export function comparedPairs(config: Config, w: RecordedWindow, src: CheckpointReader): [string, string][] {
  return Object.entries(ffTies(config, w.stack, w.layers)).filter(([tied, stored]) => src.resolve(tied) !== src.resolve(stored));
}

/**
 * The ties that store each recorded window's FF once, less those the checkpoint already has (an expanded
 * output has none). Each tied copy must still equal the copy it would share: an expanded model changed after
 * compressing (fine-tuned without its ties, edited) is refused, INVALID_DATA, since tying would silently
 * discard the change.
 */
export async function recordedTies(config: Config, recorded: readonly RecordedWindow[], src: CheckpointReader, job: JobOptions = {}): Promise<TieMap> {
  const { signal, onProgress } = job;
  const added: TieMap = {};
  // a tied source stores its merges once: a recorded window it does not tie is the record's error, not an edit
  const info = config.ffmerge as Record<string, unknown> | undefined;
  const tiedSource = Object.keys(src.ties).length > 0 || info?.format === 'tied';
  // the copies compared, counted (an expanded output of a large model reads gigabytes here), under the phase
  // inspect's comparison reports. Those already tied in the source are not read; nothing to compare reports nothing.
  const pairs = recorded.flatMap((w) => comparedPairs(config, w, src));
  let done = 0;
  const report = () => onProgress?.({ phase: 'inspect', done: done++, total: pairs.length, unit: 'tensors' });
  if (pairs.length) report();
  for (const [tied, stored] of pairs) {
    throwIfAborted(signal);
    if (!(await sameBytes(src, tied, stored))) {
      if (tiedSource) {
        const w = recorded.find((x) => Object.hasOwn(ffTies(config, x.stack, x.layers), tied))!;
        throw new FfmergeError(
          'INVALID_DATA',
          `config.json's ffmerge record and the checkpoint's tie map disagree: the record lists ${recordedLabel([w])}, but the tied checkpoint does not tie ${tied} to ${stored}, and the two differ; the record is wrong (or the tie map lost that merge), so ffmerge will not tie them`,
        );
      }
      throw new FfmergeError('INVALID_DATA', `${tied} differs from ${stored}, the copy it would be tied to (was the expanded model changed after compressing?); refusing to discard that difference`);
    }
    added[tied] = stored;
    report();
  }
  return added;
}
