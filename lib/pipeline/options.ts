/**
 * The options of compress(), for every task. Common options (what, where, how, output) apply to every
 * model; data and budget options belong to one task each (the task lists them in `optionKeys`), and giving
 * one that the model's task does not read is an error, never silently ignored.
 */
import { FfmergeError, showValue } from '../errors';
import type { OutputFormat } from '../checkpoint/write';
import type { StackName } from '../model/model';
import type { Anchor, Window } from '../merge/windows';
import type { ProgressFn } from '../native/job';
import type { Baseline, MergeMethod, RecoverMethod } from './plugins';
import type { TaskKind } from './task';

export type CompressFormat = OutputFormat | 'onnx';

/** A text file (.txt/.gz, .jsonl of {"text"} or of {"input_ids"}), or token sequences already cut. */
export type TokenSource = string | Int32Array[];
/**
 * Calibration sampled from the model itself (blocks of blockSize tokens from its start token, at a temperature,
 * seeded) instead of read from a file: as many tokens as the budget asks, in the model's own distribution.
 */
export interface SampledSource {
  sample: { temperature?: number | undefined; seed?: number | undefined };
}
/** Images: an idx pair (Fashion-MNIST style) or a folder with one sub-folder per class. */
export type ImageSource = { images: string; labels: string } | { folder: string };
/** Sentence pairs: two line-aligned files (.gz read transparently) or one TSV "source<TAB>target". */
export type ParallelSource = { source: string; target: string } | { tsv: string };
/**
 * Which stacks of an encoder–decoder model are merged: the same window in both (the paper), each stack's
 * own best window, or one stack only. Single-stack models merge their one stack.
 */
export type StackMode = 'both-same' | 'independent' | StackName;

// The registries' own entries, offered by an editor; any other name is checked against the registry when
// compress runs (`string & {}` keeps the literals from collapsing into string).
/** A merge method of MERGE_METHODS, or 'auto'. */
export type MergeMethodName = 'auto' | 'permute' | 'vanilla' | 'select' | (string & {});
/** A recover method of RECOVER_METHODS. */
export type RecoverMethodName = 'none' | 'refit' | 'refit-seq' | 'refit-res' | 'finetune' | (string & {});
/** A baseline of BASELINES. */
export type BaselineName = 'drop-ff' | 'drop-layers' | 'paper' | (string & {});
/**
 * A task of TASKS: a recover method's `tasks` is checked against them when it compiles (a caller's own task
 * (Plugins.tasks) is named there with a cast, and checked when compress runs).
 */
export type TaskName = 'language-modeling' | 'image-classification' | 'translation';

/**
 * A caller's own plug-ins, for one compress call: picked by name (method, recover, baselines) beside
 * ffmerge's own, seen by no other call. A name must be new, and writable on the command line.
 */
export interface Plugins {
  mergeMethods?: MergeMethod[];
  recoverMethods?: RecoverMethod[];
  baselines?: Baseline[];
  /**
   * Tasks asked before ffmerge's own, in this order: the first whose accepts() takes the model is the run's
   * (so a caller can score a model ffmerge has a task for on its own data and metric).
   */
  tasks?: TaskKind[];
}

export interface CompressOptions {
  // ---- what, where, how (every task) ----
  /** FF sublayers merged into one per window (≥ 2). Give k or fraction; default: fraction 0.25. */
  k?: number | undefined;
  /** Share of FF sublayers to remove (k = 1 + round(fraction × layers)). */
  fraction?: number | undefined;
  /** 'auto' (search every start), "a-b", "a-b,c-d", or Window objects. Default 'auto'. */
  window?: 'auto' | string | Window | Window[] | undefined;
  anchor?: Anchor | undefined;
  /**
   * A merge method by name (see MERGE_METHODS): 'permute' (the paper), 'vanilla', 'select'; or 'auto', the
   * default when neither method nor recover is given: compress compares DEFAULT_COMBOS (method + recover) at
   * every window and keeps the best on validation. With a method named, the recover method defaults to
   * 'none'; with only a recover method named, the method is 'permute'. The paper's plain merge: method
   * 'permute', recover 'none'.
   */
  method?: MergeMethodName | undefined;
  /** A recover method by name (see RECOVER_METHODS): 'none', 'refit', 'refit-seq', 'refit-res', 'finetune'. */
  recover?: RecoverMethodName | undefined;
  /** Baselines by name (see BASELINES), each searched over its own windows at the merge's size. */
  baselines?: BaselineName[] | undefined;
  /** Merge methods, recover methods and baselines of the caller's own, for this call only. */
  plugins?: Plugins | undefined;
  /** Encoder–decoder models: which stacks are merged (default 'both-same'). */
  stacks?: StackMode | undefined;
  /**
   * Bytes the `select` merge's normal equations may take per window (default 128 MiB). A wider pool (k × d_ff
   * units; GPT-2-small with k = 4 needs 1.2 GB) is first cut, per source layer, to the units that explain the
   * most alone, down to what fits but never below 1.25 × d_ff.
   */
  selectMemory?: number | undefined;
  /**
   * Keep each layer's weights on disk and read them when a pass reaches the layer (loadModel's `stream`):
   * 'auto' (default) streams checkpoints of at least 2 GiB; true streams any, for a lower peak at the cost of
   * re-reading the layers on every pass.
   */
  stream?: boolean | 'auto' | undefined;
  // ---- output ----
  /** Where to write the compressed checkpoint (omit to only evaluate). */
  out?: string | undefined;
  /** A checkpoint format, or 'onnx': the ONNX export (lib/export/onnx) of the merged model. */
  format?: CompressFormat | undefined;
  overwrite?: boolean | undefined;
  /** Largest bytes per safetensors file of the output (default 5 GB, as Hugging Face); above it, sharded. */
  maxShardSize?: number | undefined;
  signal?: AbortSignal | undefined;
  onProgress?: ProgressFn | undefined;

  // ---- language modelling ----
  /**
   * Calibration tokens: read from a file or blocks, or sampled from the model itself ({ sample: {} }, which
   * then needs validation data). Validation defaults to the blocks after the calibration budget.
   */
  calibration?: TokenSource | SampledSource | undefined;
  /** Validation data: tokens (LM), images (vit), sentence pairs (marian). */
  validation?: TokenSource | ImageSource | ParallelSource | undefined;
  /** Held-out test data of the same kind, evaluated on the base, merged and baseline models. */
  test?: TokenSource | ImageSource | ParallelSource | undefined;
  calibrationTokens?: number | undefined;
  validationTokens?: number | undefined;
  /** Tokens each search candidate is scored on (the first validation blocks); default all validation tokens (a model with ≥ 1B
   *  parameters in its layers: as many as keep the search to about LARGE_SEARCH.passes validation passes). */
  searchTokens?: number | undefined;
  testTokens?: number | undefined;
  /**
   * Which blocks of a calibration or validation file the budgets take: 'head', the first ones (default), or
   * 'spread', blocks drawn across the whole file (a fixed seeded order; validation taken from the calibration
   * file is the blocks after calibration's, so the two are disjoint), so that both represent a file that is not
   * uniform from start to end. Test data is always read whole.
   */
  draw?: 'head' | 'spread' | undefined;
  /**
   * Seed of the run's random draws, an integer in [0, 2^32): `draw: 'spread'`'s block order, sampled calibration
   * (unless `calibration.sample.seed` is given) and recover 'finetune's batches. Absent: fixed seeds (spread
   * and sampling 1, finetune 0). A run that draws nothing at random refuses it (OPTION_NOT_APPLICABLE).
   */
  seed?: number | undefined;
  /**
   * Tokens per block when text is cut (and per sampled calibration row). Token-id rows and blocks given already
   * cut are used as they are: a blockSize with no text (or sampled calibration) to apply to is OPTION_NOT_APPLICABLE.
   */
  blockSize?: number | undefined;
  /** Blocks per forward batch. */
  batchBlocks?: number | undefined;

  /**
   * Image classification and translation: what the search ranks candidates by, the task's validation
   * 'metric' (accuracy, BLEU; the default) or 'loss' (mean cross-entropy of the labels or of the teacher-forced
   * references; lower is better). Accuracy on a few thousand images moves in steps of one image and BLEU on a
   * thousand sentences jumps with a few words, the loss does not. The reported metric is the task's either way.
   */
  selectBy?: 'metric' | 'loss' | undefined;

  // ---- image classification ----
  /** Calibration and validation images (validation: a later range of the same set unless `validation` is given). */
  images?: ImageSource | undefined;
  /** Images whose every position (CLS + patches) is a feature (default 600 ≈ 10k tokens on 17-token images). */
  calibrationImages?: number | undefined;
  /**
   * First validation image (default: 55000 when the set has 60000 images, as Fashion-MNIST's split; else right
   * after calibration; 0 in a separate `validation` set). Inside the calibration images of the same file it is
   * INVALID_ARGUMENT.
   */
  validationStart?: number | undefined;
  /** Validation images (default: the whole validation range, at most 5,000). */
  validationImages?: number | undefined;
  testImages?: number | undefined;

  // ---- translation ----
  /** Calibration pairs (teacher forcing on the reference; padding masked). */
  parallel?: ParallelSource | undefined;
  calibrationPairs?: number | undefined;
  /** Validation sentences translated per candidate (default: the whole validation split, at most 1,024). */
  validationSentences?: number | undefined;
  testSentences?: number | undefined;
}

/** Without k or fraction: remove about a quarter of the FF sublayers (k = 4 on 12 layers, 2 on 5). */
export const DEFAULT_FRACTION = 0.25;

/** Options every task reads. */
export const COMMON_KEYS: readonly (keyof CompressOptions)[] = [
  'k', 'fraction', 'window', 'anchor', 'method', 'recover', 'baselines', 'plugins', 'stacks', 'selectMemory', 'stream', 'out', 'format', 'overwrite', 'maxShardSize', 'seed', 'signal', 'onProgress',
];

/** Each of these options, where given, is a positive integer. */
export function checkPositiveInts(o: CompressOptions, keys: readonly (keyof CompressOptions)[]): void {
  for (const k of keys) {
    const v = o[k];
    if (v !== undefined && !(typeof v === 'number' && Number.isInteger(v) && v > 0)) throw new FfmergeError('INVALID_ARGUMENT', `${k} must be a positive integer (got ${showValue(v)})`);
  }
}

export function checkSelectBy(v: unknown): void {
  if (v !== undefined && v !== 'metric' && v !== 'loss') throw new FfmergeError('INVALID_ARGUMENT', `selectBy must be 'metric' or 'loss' (got ${showValue(v)})`);
}

/**
 * A budget of the test split (testTokens, testImages, testSentences) without test data would be ignored: refused.
 * The message names the option and its CLI flags, so library callers and CLI users both read their own words.
 */
export function checkTestBudget(o: CompressOptions, key: 'testTokens' | 'testImages' | 'testSentences', flags: { budget: string; test: string }): void {
  if (o[key] !== undefined && o.test === undefined) {
    throw new FfmergeError('OPTION_NOT_APPLICABLE', `${key} (${flags.budget}) budgets the test data, and none is given: give test data with it (test, ${flags.test})`);
  }
}
