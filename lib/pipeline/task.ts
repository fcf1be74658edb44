/**
 * A Task is what differs between language modelling, image classification and translation: the data, the
 * metric, how a candidate is scored, and how states are reused between candidates. Everything else — the
 * phases of compress(), the merge and recover methods, the baselines — is the same pipeline for all of them.
 * A caller's own TaskKind (compress's `plugins.tasks`) is held to this contract as ffmerge's are
 * (plugin-guard.ts): its data may live in its own closure, with no option of compress naming it.
 */
import type { FeatureBatch } from '../data/feature-batches';
import type { JobOptions } from '../native/job';
import type { Model } from '../model/model';
import type { ModelSummary } from '../model/inspect';
import type { CompressOptions, TaskName } from './options';
import type { Named } from './registry';

export interface MetricInfo {
  /** ffmerge's own, or a caller's task's (shown with 3 decimals). */
  name: 'perplexity' | 'accuracy' | 'bleu' | (string & {});
  higherIsBetter: boolean;
  /** Translation: the decoding that produced the number ("greedy", "beam search, 4 beams"). */
  decoding?: string;
}

/** The score search ranks candidates by, when it is not the metric itself. */
export interface SelectionInfo {
  name: 'loss';
  higherIsBetter: false;
}

/** What data a run used, in the task's unit. */
export interface DataCounts {
  unit: 'tokens' | 'images' | 'sentences' | (string & {});
  calibration: number;
  validation: number;
  /** Scored per search candidate (the first `search` validation units). */
  search: number;
  test?: number;
  /** LM only: tokens per block, when some data was cut into blocks (text) or sampled (absent when all were token-id rows). */
  blockSize?: number;
  /** LM only, with blockSize: whether validation or test was text cut into those blocks (`eval --block-size` reproduces it). */
  textScored?: boolean;
  /** Lines for people about where each split came from. */
  notes: string[];
}

export interface Task {
  readonly metric: MetricInfo;
  /** Forward batches whose FF pre-activations calibrate the merge (padding masked). */
  readonly calibration: FeatureBatch[];
  readonly data: DataCounts;
  /**
   * Called once before scoring with the `start` of every candidate it will score, one per candidate (a start
   * repeats); a task that can reuses the base model's states entering those layers (layers before a
   * candidate's start are the base model's), and may size its search split by what scoring them all costs.
   */
  prepare(starts: number[], opts: JobOptions): Promise<void>;
  /**
   * Set when search scores candidates by something other than the metric (classification ranked by
   * validation cross-entropy: smoother than accuracy on a few thousand images).
   */
  readonly selection?: SelectionInfo;
  /** The metric (or `selection`) of a candidate on the search split; `start` = the first layer (main stack) it changes. */
  search(model: Model, start: number, opts: JobOptions): Promise<number>;
  /** The metric on the whole validation split (`start` as for search). */
  validate(model: Model, start: number, opts: JobOptions): Promise<number>;
  /** The metric on held-out test data, when given. */
  test?(model: Model, opts: JobOptions): Promise<number>;
  /** Frees what prepare() kept (states in RAM, spill files). Called once when compress() ends. */
  dispose?(): Promise<void>;
}

export interface TaskKind extends Named {
  /** One of ffmerge's (TaskName), or a caller's own. */
  readonly name: TaskName | (string & {});
  /** Whether this task fits the model (by its stacks and family). */
  accepts(summary: ModelSummary): boolean;
  /**
   * Options only this task reads; setting one of another task's is OPTION_NOT_APPLICABLE. A caller's task may
   * list only options some task of ffmerge's reads (its data of its own it keeps itself).
   */
  readonly optionKeys: readonly (keyof CompressOptions)[];
  /** Checks the options that need no model (files exist, sources have the right shape) before loading. */
  check(options: CompressOptions): void | Promise<void>;
  create(ctx: { model: Model; dir: string; options: CompressOptions }, opts: JobOptions): Promise<Task>;
}
