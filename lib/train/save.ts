/**
 * A trained model written back as a checkpoint (what `ffmerge finetune` writes, for library users too): its
 * weights replace the source checkpoint's tensors under their stored names and layouts (slotReplacements), so
 * a tied compressed source stays tied and keeps its size, and everything else — config, tokenizer, dtypes,
 * the `ffmerge` record — is the source's, but for the record's `finetune` and the README.md model card, which
 * describe the trained weights. Written atomically, like every output (writeCheckpoint).
 */
import { readConfig } from '../model/load';
import { checkModel, type Model } from '../model/model';
import { FfmergeError, showValue } from '../errors';
import { isObject } from '../arguments';
import { CheckpointReader } from '../checkpoint/ties';
import { asRecorded, folderMerges, recordedLabel } from '../checkpoint/earlier-merges';
import { checkExtraFiles, checkMaxShardSize, checkOutputDir, checkpointFile, RUN_KEYS, writeCheckpoint, type ExtraFile, type WriteCheckpointResult } from '../checkpoint/write';
import { checkJobOptions, runNativeJob, type JobOptions, type ProgressFn } from '../native/job';
import { trainAddon } from '../native/train';
import { slotReplacements } from './replacements';
import { outputCard } from '../pipeline/model-card';
import { TRAINING_KEYS, trainingRuns } from '../checkpoint/training-record';
import { describeStacks } from '../model/plan';
import type { ModelSpec } from '../model/spec';
import { expandedError, sharedFFGroups, sharesOneFF } from './ties';
import type { RecordedWindow } from '../checkpoint/earlier-merges';

export interface SaveTrainedOptions {
  /** The checkpoint the model was loaded from: what is not a weight of the model is taken from it. */
  source: string;
  /** Output directory; must not exist or be empty unless `overwrite`. */
  out: string;
  overwrite?: boolean | undefined;
  /**
   * Added to config.json's `ffmerge` record (the source's record is kept). Its `finetune` (a summary of the run:
   * steps, data, losses…, as `ffmerge finetune` gives) goes into the record and the README.md written beside it.
   * The record's own keys (format, ties, windows, k, method…) are refused: the writer and the source set them.
   */
  info?: Record<string, unknown> | undefined;
  /** Extra files written into the output directory, plain file name → contents (not the weights or config.json):
   *  a string, or a function of what was written (writeCheckpoint's). */
  extraFiles?: Record<string, ExtraFile> | undefined;
  /** Largest bytes of tensor data per safetensors file (writeCheckpoint's: default 5 GB; above it, sharded). */
  maxShardSize?: number | undefined;
  signal?: AbortSignal | undefined;
  /** Progress: reading the weights ('slots'), then the write ('save', in bytes). */
  onProgress?: ProgressFn | undefined;
}

/**
 * Every weight slot of a model (native slot names, float32), read and widened on the addon's pool; slots that
 * share a parameter (a merged window's FF, a tied head) share one array.
 */
export function slotTensors(model: Model, opts: JobOptions = {}): Promise<Record<string, Float32Array>> {
  return runNativeJob('slots', (onProgress) => trainAddon().modelSlotTensors(model.nativeHandle(), onProgress), opts);
}

/** The spec fields that fix the model's tensors (names, shapes) and what its config says it is. */
const SHAPE_KEYS = ['family', 'layers', 'dModel', 'nHeads', 'nKvHeads', 'headDim', 'dFF', 'vocab', 'maxPositions', 'gatedFF', 'tiedEmbeddings', 'input', 'head', 'numLabels', 'channels', 'imageH', 'imageW', 'patch'] as const satisfies readonly (keyof ModelSpec)[];

/**
 * The source is the checkpoint the model was loaded from, or one of the same model and merges: the output takes
 * its config, record and every tensor the model does not replace, so another model's folder would fail on a
 * missing tensor or, worse, be written with ties or a record that contradict the weights.
 */
function checkSourceFits(model: Model, source: string, config: Record<string, unknown>, windows: readonly RecordedWindow[]): void {
  const stack = describeStacks(config).find((s) => s.name === model.mainStack);
  const type = typeof config.model_type === 'string' ? config.model_type : 'unknown';
  const fix = 'give as source the folder the model was loaded from';
  if (!stack) throw new FfmergeError('INVALID_ARGUMENT', `saveTrained: source ${source} holds a ${type} model with no ${model.mainStack} stack; the model being saved is a ${model.spec.family} model: ${fix}`);
  const differ = SHAPE_KEYS.filter((k) => stack.spec[k] !== model.spec[k]).map((k) => `${k} ${showValue(stack.spec[k])} there, ${showValue(model.spec[k])} in the model`);
  if (differ.length > 0) {
    throw new FfmergeError('INVALID_ARGUMENT', `saveTrained: source ${source} is not the model being saved (${differ.join('; ')}): ${fix}`);
  }
  const expanded = (config.ffmerge as { format?: unknown } | undefined)?.format === 'expanded';
  const recorded = windows.filter((w) => w.stack === model.mainStack);
  for (const w of recorded) {
    if (sharesOneFF(model, w.layers)) continue;
    if (expanded) throw expandedError(`saveTrained: the model has a separate FF in each of ${model.mainStack} layers ${w.layers.join(', ')}, which source ${source} records as merged; it is`, source);
    throw new FfmergeError(
      'INVALID_ARGUMENT',
      `saveTrained: source ${source} records ${model.mainStack} layers ${w.layers.join(', ')} as merged (one FF, stored once), but the model being saved has a separate FF in each of them: written over it, all but one would be lost; ${fix}`,
    );
  }
  const same = (a: readonly number[], b: readonly number[]) => a.length === b.length && a.every((l) => b.includes(l));
  for (const g of sharedFFGroups(model)) {
    if (recorded.some((w) => same(w.layers, g))) continue;
    throw new FfmergeError(
      'INVALID_ARGUMENT',
      `saveTrained: the model's ${model.mainStack} layers ${g.join(', ')} share one FF (a merge), but source ${source} records no such merge: written over it they would become separate copies with no record of the merge; ${fix}`,
    );
  }
}

/**
 * Keys of the `ffmerge` record that describe the folder (its format, ties, merges, earlier runs): the writer
 * and the source set them, and a caller's `info` that replaced one would make a record ffmerge later refuses
 * (format "expanded" over a tied file) or a merge it no longer lists.
 */
const RECORD_KEYS: readonly string[] = [
  'version', 'format', 'ties', 'windows', ...RUN_KEYS, 'unshared', 'onnx',
  // the earlier runs (finetune itself is the caller's summary of this one)
  ...TRAINING_KEYS.filter((k) => k !== 'finetune'),
];

function checkInfo(info: unknown): void {
  if (info === undefined) return;
  if (!isObject(info)) throw new FfmergeError('INVALID_ARGUMENT', `saveTrained: info must be an object (got ${showValue(info)})`);
  const taken = Object.keys(info).filter((k) => RECORD_KEYS.includes(k));
  if (taken.length > 0) {
    throw new FfmergeError('INVALID_ARGUMENT', `saveTrained: info ${taken.map((k) => showValue(k)).join(', ')} ${taken.length > 1 ? 'are keys' : 'is a key'} of the ffmerge record that the writer and the source set: give the run's summary as finetune, and anything else under other names`);
  }
  if (Object.hasOwn(info, 'finetune')) checkSummary(info.finetune);
}

/** Keys of a run's summary (as `ffmerge finetune` writes it) that the model card reads, by the type they must have. */
const SUMMARY_COUNTS = ['steps', 'batch', 'seq', 'warmup', 'micro', 'seed', 'images', 'validationImages', 'trainingTokens', 'validationTokens', 'validationTokensLeftOut'];
const SUMMARY_NUMBERS = ['lr', 'weightDecay', 'clip', 'firstLoss', 'lastLoss', 'valBefore', 'valAfter', 'accuracyBefore', 'accuracyAfter'];
const SUMMARY_STRINGS = ['data', 'valid', 'schedule', 'trainable', 'split'];

/** The summary goes into the record and the model card, which reads it by these types. */
function checkSummary(f: unknown): void {
  const bad = (why: string) => new FfmergeError('INVALID_ARGUMENT', `saveTrained: info.finetune ${why} (the run's summary, as \`ffmerge finetune\` writes it: { steps, lr, batch, firstLoss, lastLoss, … })`);
  if (!isObject(f)) throw bad(`must be an object (got ${showValue(f)})`);
  if (Object.hasOwn(f, 'mergedBefore')) throw bad('mergedBefore is set by the writer, from the merges the source records');
  for (const [k, v] of Object.entries(f)) {
    if (v === undefined) continue; // left out of the JSON, as a key never given
    if (SUMMARY_COUNTS.includes(k) && !(Number.isSafeInteger(v) && (v as number) >= 0)) throw bad(`${k} must be a whole number ≥ 0 (got ${showValue(v)})`);
    if (SUMMARY_NUMBERS.includes(k) && !(typeof v === 'number' && Number.isFinite(v))) throw bad(`${k} must be a finite number (got ${showValue(v)})`);
    if (SUMMARY_STRINGS.includes(k) && typeof v !== 'string') throw bad(`${k} must be a string (got ${showValue(v)})`);
  }
}

/**
 * Writes a trained model (finetune's result) over its source checkpoint's layout: the same tensor names, dtypes
 * and ties (a tied source stays tied), config and tokenizer from the source, the run in the ffmerge record and
 * the README.md model card; atomic.
 */
export async function saveTrained(model: Model, o: SaveTrainedOptions): Promise<WriteCheckpointResult> {
  checkModel(model, 'saveTrained(model, options): model');
  if (typeof o !== 'object' || o === null) throw new FfmergeError('INVALID_ARGUMENT', `saveTrained(model, options): options must be an object { source, out, … } (got ${showValue(o)})`);
  checkJobOptions(o, 'saveTrained(model, options): options', ['source', 'out', 'overwrite', 'info', 'extraFiles', 'maxShardSize']);
  checkMaxShardSize(o.maxShardSize);
  checkExtraFiles(o.extraFiles, 'saveTrained', checkpointFile);
  checkInfo(o.info);
  checkOutputDir(o.source, o.out, o.overwrite); // refused before the weights are read
  const job: JobOptions = { ...(o.signal ? { signal: o.signal } : {}), ...(o.onProgress ? { onProgress: o.onProgress } : {}) };
  // one session from here (entered before the first await): a dispose() meanwhile lets the save finish, as it
  // lets perplexity and finetune finish, and frees the weights after it
  return model.session(() => saveSession(model, o, job));
}

async function saveSession(model: Model, o: SaveTrainedOptions, job: JobOptions): Promise<WriteCheckpointResult> {
  const config = await readConfig(o.source);
  // the source's record goes into the output: checked first, as convert and export check it
  const windows = await folderMerges(o.source, config);
  checkSourceFits(model, o.source, config, windows);
  const slots = await slotTensors(model, job);
  const reader = await CheckpointReader.open(o.source);
  let replace: Map<string, Float32Array>;
  try {
    replace = await slotReplacements(config, model.spec, slots, (n) => reader.has(n), job.signal);
  } finally {
    await reader.close();
  }
  // the source's format is kept (an expanded output stays loadable anywhere); the writer records format and ties
  const { format: was, ties: _ties, ...source } = (config.ffmerge as Record<string, unknown> | undefined) ?? {};
  // every merge stays listed, those only an older output's tie map held included (as convert records them)
  const record = windows.length > 0 ? { ...source, windows: asRecorded(windows) } : source;
  const format = was === 'expanded' ? 'expanded' : 'tied';
  // The record says the weights were trained, with the caller's summary or none: a source's `finetune` describes
  // an earlier run, and a card (or a later convert's) reading no `finetune` would call the model untrained.
  // Every run the source had (its own, or its source's when it was compressed after one) is kept, oldest first.
  const earlier = trainingRuns(record);
  const kept = Object.fromEntries(Object.entries(record).filter(([k]) => !(TRAINING_KEYS as readonly string[]).includes(k)));
  const info = {
    ...kept,
    ...o.info,
    // when this run trained: after the merges the record lists (trainingRuns)
    finetune: { ...(o.info && Object.hasOwn(o.info, 'finetune') ? (o.info.finetune as object) : {}), mergedBefore: asRecorded(windows).map((w) => recordedLabel([w])) },
    ...(earlier.length > 0 ? { earlierFinetunes: earlier } : {}),
  };
  // The card is rebuilt, never copied: the source's describes the weights before training.
  const card = outputCard({ ...config, ffmerge: { format, ...info } }, format, o.out, undefined, o.source, true);
  return writeCheckpoint({
    source: o.source,
    out: o.out,
    format,
    replace,
    info,
    ...(o.extraFiles || card !== undefined ? { extraFiles: { ...(card !== undefined ? { 'README.md': card } : {}), ...o.extraFiles } } : {}),
    overwrite: Boolean(o.overwrite),
    ...(o.maxShardSize !== undefined ? { maxShardSize: o.maxShardSize } : {}),
    ...job,
  });
}
