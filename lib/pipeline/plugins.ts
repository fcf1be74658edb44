/**
 * The plug-in kinds of the pipeline. Each works on any task and any stack (a stack is 'decoder' or
 * 'encoder'; encoder–decoder models have both): a merge method turns a window of a stack into one FF, a
 * recover method improves that FF without training the rest, a baseline proposes other ways to remove the
 * same number of parameters. Candidates of all three are scored by the task the same way.
 */
import type { FeatureBatch } from '../data/feature-batches';
import type { JobOptions } from '../native/job';
import type { FFWeights } from '../model/ff-weights';
import type { Model, StackName } from '../model/model';
import type { ModelSummary } from '../model/inspect';
import type { Anchor, Window } from '../merge/windows';
import type { PairCorrelations } from './features';
import type { Named } from './registry';
import type { EntryStates } from './ff-inputs';
import type { TaskName } from './options';

export interface MergedWindow {
  stack: StackName;
  window: Window;
  /** The layer the others were aligned to; absent for a method that aligns none (vanilla, select). */
  anchor?: number;
  /** The one FF every layer of the window shares. */
  merged: FFWeights;
  /** layer → permutation applied (absent for the anchor and for unaligned methods). */
  perms: Map<number, Int32Array>;
  /**
   * Layers outside the window whose own FF a recover method rewrote to make up for the merge (layer → its
   * new FF, not shared: the parameter count is unchanged). Written and scored with the window.
   */
  adjusted?: Map<number, FFWeights>;
  /** The merge and recover methods that made it (set by compress). */
  method?: string;
  recover?: string;
  /** What the recover method found, in a sentence for the report's notes and the card. */
  note?: string;
}

export interface MergeContext {
  model: Model;
  anchor: Anchor;
  /** Per stack, the anchor–layer correlations of every candidate window (only when a method needs them).
   *  compress keeps only each pair's alignment permutation (PairCorrelations.permutation): the d_ff × d_ff
   *  matrices of every pair would not fit at LLM widths, so get() refuses with INVALID_STATE, at every width. */
  correlations: Map<StackName, PairCorrelations>;
  calibration: FeatureBatch[];
  /** CompressOptions.seed, for a method that draws at random (finetune's batches); absent: its own fixed seed. */
  seed?: number;
  /** Bytes select's normal equations may take (CompressOptions.selectMemory); its default when absent. */
  selectMemory?: number;
  /**
   * The base model's calibration states entering a window, shared by the methods fitted there: `get(layer)` gives
   * a BatchStore (one state per calibration batch, `await store.get(i)`; in RAM or on disk), valid until another
   * layer is asked.
   */
  entry?: EntryStates;
  /**
   * Per stack, the layers of each earlier merge (a source that is itself an ffmerge output): they share one FF.
   * A recover method that rewrites such layers must give all of a window's layers one FFWeights object, or
   * compress drops the rewrite (a shared FF cannot be written per layer).
   */
  earlier?: ReadonlyMap<StackName, readonly (readonly number[])[]>;
}

export interface MergeMethod extends Named {
  /** Whether merge() reads ctx.correlations (then compress collects them first). */
  readonly needsCorrelations: boolean;
  /**
   * false: merge() reads neither ctx.calibration nor ctx.entry (vanilla), so a run of only such methods reads no
   * calibration data (sampled calibration is refused there). Absent: it may.
   */
  readonly readsCalibration?: boolean;
  /** Draws at random with ctx.seed: compress accepts a `seed` for a run that uses it. */
  readonly seeded?: boolean;
  merge(ctx: MergeContext, stack: StackName, window: Window, opts: JobOptions): Promise<MergedWindow>;
}

export interface RecoverMethod extends Named {
  /** As MergeMethod's: false where recover() reads neither ctx.calibration nor ctx.entry (none). */
  readonly readsCalibration?: boolean;
  /**
   * Rewrites layers before the window too (finetune trains every FF): its candidates change the model from
   * layer 0, so they are scored from there, and a large model's search budget counts them so.
   */
  readonly rewritesEarlier?: boolean;
  /**
   * Trains for minutes and reports its steps as phase 'finetune': a lone candidate (window given) then shows
   * those steps, not a 'merge' line of its own.
   */
  readonly trains?: boolean;
  /** Draws at random with ctx.seed (finetune: its batches): compress accepts a `seed` for a run that uses it. */
  readonly seeded?: boolean;
  /** The tasks (TaskKind names) it can recover; absent: every task. compress refuses any other before any work. */
  readonly tasks?: readonly TaskName[];
  /** Returns new arrays: `merged` may be handed to another recover method too, so it is never written into. */
  recover(ctx: MergeContext, merged: MergedWindow, opts: JobOptions): Promise<MergedWindow>;
}

/**
 * One change to the base model a candidate makes: layers of a stack share (or get) an FF, or layers are
 * removed. A candidate is a list of them (one per merged stack); applyEdits makes the model view.
 */
export type Edit =
  | { kind: 'ff'; stack: StackName; layers: number[]; ff: FFWeights; merged?: MergedWindow }
  | { kind: 'drop-layers'; stack: StackName; layers: number[] };

export interface BaselineCandidate {
  /** Layers removed or changed, per stack, as "a-b". */
  windows: Partial<Record<StackName, string>>;
  /** First layer changed (prefix reuse). */
  start: number;
  /**
   * The edits, made only when the candidate is scored. `opts`: the signal, and for a lone candidate (windows
   * given: built, not scored) the steps of a recover method that trains, as phase 'finetune'.
   */
  edits(opts?: JobOptions): Promise<Edit[]>;
  /** Parameters this candidate removes. */
  paramsRemoved: number;
}

export interface BaselineContext {
  model: Model;
  summary: ModelSummary;
  /** Stacks searched together (one group: the same placement in each). */
  stacks: StackName[];
  /** FF sublayers the merge removes per stack (Σ (k − 1) over its windows). */
  ffRemoved: number;
  /** The merge's own candidate windows (each a list: several windows merged together) and its context. */
  windows: Window[][];
  /**
   * Layers that already share their FF (a source that is itself an ffmerge output), per stack: a placement that
   * takes one in frees nothing there, so it is no candidate at the merge's size (the merge's windows skip them too).
   */
  merged: ReadonlyMap<StackName, ReadonlySet<number>>;
  merge: MergeContext;
  /** The signal for a candidate's edits, no progress: they are built inside the 'baselines' phase, which counts candidates. */
  job: JobOptions;
}

export interface Baseline extends Named {
  /** Whether its candidates read the merge context's correlations (then compress collects them). */
  readonly needsCorrelations?: boolean;
  /** Draws at random with ctx.merge.seed: compress accepts a `seed` for a run that uses it. */
  readonly seeded?: boolean;
  /** Every placement this baseline tries for these stacks, at (as near as it can) the merge's parameter count. */
  candidates(ctx: BaselineContext): BaselineCandidate[];
}

/** The model a candidate describes: FF overrides first (one FF object = one tied copy), then removed layers. */
export async function applyEdits(model: Model, edits: Edit[], opts: JobOptions = {}): Promise<Model> {
  const ff = edits.filter((e) => e.kind === 'ff');
  const drops = edits.filter((e) => e.kind === 'drop-layers');
  const withFF = ff.length ? await model.withFF(ff.flatMap((e) => e.layers.map((layer) => ({ stack: e.stack, layer, ff: e.ff }))), opts) : model;
  if (drops.length === 0) return withFF;
  const drop: Partial<Record<StackName, number[]>> = {};
  for (const e of drops) drop[e.stack] = [...(drop[e.stack] ?? []), ...e.layers];
  const view = withFF.withoutLayers(drop);
  if (withFF !== model) withFF.dispose(); // the view keeps what it shares
  return view;
}
