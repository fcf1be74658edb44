/**
 * The merges a source model already carries when it is itself an ffmerge output. Compressing it again must
 * keep them: the output's `ffmerge.windows` lists them beside the new ones (convert re-ties from that list, so
 * an expanded output that forgot them would lose their saving on the way back to tied), and a new window may
 * not take in a layer that already shares its FF with others (see `mergedLayers`).
 */
import { FfmergeError, abortError, showValue } from '../errors';
import { ffStacks, type Config, type StackName } from '../model/architectures';
import type { CheckpointReader, TieMap } from './ties';
import { ffTies } from './write';

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
  const info = (config as Record<string, unknown>).ffmerge;
  if (info === undefined) return [];
  if (typeof info !== 'object' || info === null || Array.isArray(info)) {
    throw new FfmergeError('INVALID_CONFIG', `${where}: config.json's ffmerge record must be an object (got ${showValue(info)})`);
  }
  const windows = Object.hasOwn(info, 'windows') ? (info as Record<string, unknown>).windows : undefined;
  if (windows === undefined) return [];
  if (!Array.isArray(windows)) throw new FfmergeError('INVALID_CONFIG', `${where}: ffmerge.windows must be a list (got ${showValue(windows)})`);
  const stacks = new Map(ffStacks(config).map((s) => [s.name as string, s.layers]));
  return windows.map((w: unknown, i) => {
    const bad = (why: string) => new FfmergeError('INVALID_CONFIG', `${where}: ffmerge.windows[${i}] ${why} (got ${showValue(w)})`);
    if (typeof w !== 'object' || w === null || Array.isArray(w)) throw bad('must be an object { stack, layers, … }');
    const { stack, layers } = w as Record<string, unknown>;
    const n = typeof stack === 'string' ? stacks.get(stack) : undefined;
    if (n === undefined) throw bad(`names no stack of this model (it has: ${[...stacks.keys()].join(', ')})`);
    if (!Array.isArray(layers) || layers.length < 2 || layers.some((l) => !Number.isInteger(l) || l < 0 || l >= n) || new Set(layers).size !== layers.length) {
      throw bad(`must list at least two distinct layers of the ${String(stack)} stack (0 to ${n - 1})`);
    }
    return w as RecordedWindow;
  });
}

const FF_KEYS = ['wIn', 'bIn', 'wGate', 'bGate', 'wOut', 'bOut'] as const;

/**
 * Per stack, the layers whose FF already belongs to a merge: those the record lists, and those whose FF
 * tensors the checkpoint's tie map ties or is tied to (an output written before its record listed every
 * merge). Merging such a layer again would give it an FF of its own and so break the old tie: the model would
 * be no smaller than its source, only worse, and merging the very window again saves nothing at all.
 */
export function mergedLayers(config: Config, recorded: readonly RecordedWindow[], ties: TieMap): Map<StackName, Set<number>> {
  const stored = new Set(Object.values(ties));
  const out = new Map<StackName, Set<number>>();
  for (const s of ffStacks(config)) {
    const set = new Set<number>();
    for (const w of recorded) if (w.stack === s.name) for (const l of w.layers) set.add(l);
    for (let l = 0; l < s.layers; l++) {
      const names = s.ff(l);
      const tensors = FF_KEYS.map((k) => names[k]).filter((t): t is string => t !== undefined);
      if (tensors.some((t) => Object.hasOwn(ties, t) || stored.has(t))) set.add(l);
    }
    out.set(s.name, set);
  }
  return out;
}

/** "decoder 0-1, decoder 3-4": the recorded windows for a message. */
export function recordedLabel(recorded: readonly RecordedWindow[]): string {
  return recorded.map((w) => `${w.stack} ${typeof w.window === 'string' ? w.window : w.layers.join('+')}`).join(', ');
}

/**
 * The ties that store each recorded window's FF once, less those the checkpoint already has (an expanded
 * output has none). Each tied copy must still equal the copy it would share: an expanded model changed after
 * compressing (fine-tuned without its ties, edited) is refused, INVALID_DATA, since tying would silently
 * discard the change.
 */
export async function recordedTies(config: Config, recorded: readonly RecordedWindow[], src: CheckpointReader, signal?: AbortSignal): Promise<TieMap> {
  let all: TieMap = {};
  for (const w of recorded) all = { ...all, ...ffTies(config, w.stack, w.layers) };
  const added: TieMap = {};
  for (const [tied, stored] of Object.entries(all)) {
    if (signal?.aborted) throw abortError();
    if (src.resolve(tied) === src.resolve(stored)) continue; // already tied in the source
    const [a, b] = await Promise.all([src.readRaw(tied), src.readRaw(stored)]);
    if (!Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength))) {
      throw new FfmergeError('INVALID_DATA', `${tied} differs from ${stored}, the copy it would be tied to (was the expanded model changed after compressing?); refusing to discard that difference`);
    }
    added[tied] = stored;
  }
  return added;
}
