/**
 * compress(modelDir, options): load, calibrate, align and merge each candidate window, score the candidates on
 * validation and keep the best, recover, evaluate (base, merged, baselines at the same size), write. What differs
 * by task is the Task (tasks/); merge methods, recover methods and baselines come from registries.
 */
import * as path from 'node:path';
import { FfmergeError, abortError, groupDigits, showValue } from '../errors';
import { checkJobOptions, withJobScope, type JobOptions, type JobScope } from '../native/job';
import { checkMaxShardSize, checkOutputDir, ffReplacementsSliced, ffTies, writeCheckpoint } from '../checkpoint/write';
import { checkBoolean, checkOptions, checkPath } from '../arguments';
import { checkOnnxExportable, exportOnnx } from '../export/onnx/export';
import { loadModel, readConfig } from '../model/load';
import { DTYPE_SIZE } from '../safetensors';
import { CheckpointReader, type TieMap } from '../checkpoint/ties';
import { checkSourceUnchanged, sourceStamp } from '../checkpoint/source-stamp';
import { trainingRuns } from '../checkpoint/training-record';
import { asRecorded, earlierWindows, mergedLayers, recordedLabel, recordedTies, type RecordedWindow } from '../checkpoint/earlier-merges';
import type { Model, StackName } from '../model/model';
import type { FFWeights } from '../model/ff-weights';
import { inspectModel, type ModelSummary } from '../model/inspect';
import { anchorOffset, checkK, checkWindow, enumerateWindows, kFromFraction, parseWindow, windowLabel, windowLayers, type Anchor, type Window } from '../merge/windows';
import { pairsFor } from './align';
import { EntryStates } from './ff-inputs';
import { collectStackCorrelations } from './features';
import { BASELINES } from './baselines';
import { MERGE_METHODS } from './merge-methods';
import { RECOVER_METHODS } from './recover';
import { COMMON_KEYS, DEFAULT_FRACTION, type CompressFormat, type CompressOptions, type StackMode } from './options';
import { applyEdits, type BaselineCandidate, type Edit, type MergeContext, type MergedWindow, type MergeMethod, type RecoverMethod } from './plugins';
import { PERMUTATIONS_FILE, UNPICKED_NOTE, readPermutations, type BaselineResult, type CandidateScore, type CompressResult } from './result';
import type { Task, TaskKind } from './task';
import { callTasks, isOwnTask, taskFor } from './tasks';
import { isSampledSource } from './tasks/language-modeling';
import { frontMatter, modelCard } from './model-card';
import { guardBaseline, guardMerge, guardRecover } from './plugin-guard';

export type { CompressOptions } from './options';
export type { CompressResult } from './result';

/** Refuses options that belong to another task: a flag that does not apply is an error, never ignored. */
function checkApplicable(o: CompressOptions, kind: TaskKind, tasks: readonly TaskKind[], modelType: string): void {
  const own = new Set<string>([...COMMON_KEYS, ...kind.optionKeys]);
  for (const [key, v] of Object.entries(o)) {
    if (v === undefined || own.has(key)) continue;
    const owners = tasks.filter((t) => (t.optionKeys as readonly string[]).includes(key));
    if (!owners.length) throw new FfmergeError('INVALID_ARGUMENT', `compress: unknown option ${showValue(key)} (the options are ${[...own].join(', ')})`);
    throw new FfmergeError('OPTION_NOT_APPLICABLE', `${key} applies to ${owners.map((t) => t.name).join(' and ')} models; ${modelType} is compressed as ${kind.name} (${kind.optionKeys.length ? `its options: ${kind.optionKeys.join(', ')}` : 'it takes no data options: it reads its own data'})`);
  }
}

/** The stacks merged and how they are searched: one group = the same window in each of its stacks. */
function resolveStacks(summary: ModelSummary, mode: StackMode | undefined): { mode: StackMode; groups: StackName[][] } {
  const names = summary.stacks.map((s) => s.name);
  if (names.length === 1) {
    // even naming the one stack: an option a model does not read is refused, never ignored
    if (mode !== undefined) {
      throw new FfmergeError('OPTION_NOT_APPLICABLE', `stacks (--stacks) applies to encoder–decoder models; ${summary.modelType} has one stack (${names[0]}), which is merged: give no stacks`);
    }
    return { mode: names[0]!, groups: [[names[0]!]] };
  }
  const m = mode ?? 'both-same';
  if (m === 'both-same') return { mode: m, groups: [names] };
  if (m === 'independent') return { mode: m, groups: names.map((n) => [n]) };
  if (m === 'encoder' || m === 'decoder') return { mode: m, groups: [[m]] };
  throw new FfmergeError('INVALID_ARGUMENT', `stacks must be both-same, independent, encoder or decoder (got ${showValue(m)})`);
}

/** The windows to merge, or 'auto' (search): given windows are checked, refused where they overlap, and sorted. */
function resolveWindows(spec: CompressOptions['window'], layers: number, k: number | undefined, kSaid = String(k)): Window[] | 'auto' {
  if (spec === undefined || spec === 'auto') return 'auto';
  const list = typeof spec === 'string' ? spec.split(',').map((s) => parseWindow(s, layers, k, kSaid)) : Array.isArray(spec) ? [...spec] : [spec];
  if (list.length === 0) throw new FfmergeError('INVALID_WINDOW', "window is 'auto', \"a-b\" or a list of windows: an empty list merges nothing");
  for (const w of list) {
    checkWindow(w, layers);
    if (k !== undefined && w.k !== k) throw new FfmergeError('INVALID_WINDOW', `window ${windowLabel(w)} spans ${w.k} layers but k = ${kSaid}`);
  }
  // one run merges windows of one size k (the record, report and baselines describe one k)
  const sizes = [...new Set(list.map((w) => w.k))].sort((a, b) => a - b);
  if (sizes.length > 1) {
    throw new FfmergeError(
      'INVALID_WINDOW',
      `windows ${list.map(windowLabel).join(', ')} span different numbers of layers (${sizes.join(', ')}); one compress merges windows of one size k: merge one size, then compress its output with the other (the first merges are kept)`,
    );
  }
  const used = new Set<number>();
  for (const w of list) {
    for (const l of windowLayers(w)) {
      if (used.has(l)) throw new FfmergeError('INVALID_WINDOW', `windows ${list.map(windowLabel).join(', ')} overlap at layer ${l}`);
      used.add(l);
    }
  }
  // in layer order, so that what the report lists and what is written do not depend on how they were given
  return list.sort((a, b) => a.start - b.start);
}

/**
 * A layer of the window, in any stack of its group, that already shares its FF from an earlier merge.
 * Merging it again would break that tie: the output would be no smaller, only less accurate.
 */
function takenBy(done: ReadonlyMap<StackName, ReadonlySet<number>>, stacks: readonly StackName[], w: Window): { stack: StackName; layer: number } | undefined {
  for (const stack of stacks) {
    const layer = windowLayers(w).find((l) => done.get(stack)?.has(l));
    if (layer !== undefined) return { stack, layer };
  }
  return undefined;
}

/** Where a window's layers store their FF in different dtypes: the merged FF is one tensor, in one dtype. */
function mixedDtype(dtypeOf: ReadonlyMap<string, string>, config: Record<string, unknown>, stacks: readonly StackName[], w: Window): string | undefined {
  for (const stack of stacks) {
    for (const [name, stored] of Object.entries(ffTies(config, stack, windowLayers(w)))) {
      const a = dtypeOf.get(name);
      const b = dtypeOf.get(stored);
      if (a !== b) return `"${name}" is ${a ?? 'missing'} where "${stored}" is ${b ?? 'missing'}`;
    }
  }
  return undefined;
}

/** Seconds per phase, counted only for phases that ran; checks for abort at every boundary. */
class PhaseClock {
  readonly timings: Record<string, number> = {};
  private t0 = performance.now();
  constructor(private readonly signal: AbortSignal | undefined) {}
  /** `last`: the work is done and written, so an abort that comes now no longer undoes it. */
  lap(phase: string, last = false): void {
    const now = performance.now();
    this.timings[phase] = (this.timings[phase] ?? 0) + (now - this.t0) / 1000;
    this.t0 = now;
    if (!last && this.signal?.aborted) throw abortError(this.signal);
  }
}

/**
 * The task with every metric it returns checked: NaN or ±Infinity (NaN weights, overflowing activations)
 * would otherwise compare false against everything, pick a window at random and be written out.
 */
function finiteMetrics(task: Task, kind: TaskKind): Task {
  const check = (what: string) => (v: number): number => {
    if (!Number.isFinite(v)) {
      throw new FfmergeError('NON_FINITE_METRIC', `${what} ${task.metric.name} is ${v} (${kind.name}): the model or its data holds non-finite values`);
    }
    return v;
  };
  const { test } = task;
  const own = (value: unknown) => ({ value });
  // defined, not assigned: a caller's task is frozen (plugin-guard.ts), and its read-only fields would refuse an assignment
  return Object.create(task, {
    search: own((m: Model, start: number, o: JobOptions) => task.search(m, start, o).then(check('a search candidate\'s'))),
    validate: own((m: Model, start: number, o: JobOptions) => task.validate(m, start, o).then(check('the validation'))),
    ...(test ? { test: own((m: Model, o: JobOptions) => test.call(task, m, o).then(check('the test'))) } : {}),
  }) as Task;
}

/** A candidate of the search: what it changes (built when scored) and where its first change is. */
interface Candidate extends Omit<BaselineCandidate, 'paramsRemoved'> {
  /** "method+recover", when the search compares combinations. */
  method?: string;
  combo?: Combo;
}

interface Combo {
  method: MergeMethod;
  recover: RecoverMethod;
}

/**
 * What compress tries when no method is named, each at every window, the best on validation kept: the better
 * one differs by model (benchmarks/RESULTS.md). Not select + refit: select already solves W_out by the same
 * least squares, so the refit would change nothing.
 */
export const DEFAULT_COMBOS: readonly (readonly [string, string])[] = [
  ['select', 'refit-res'],
  ['select', 'none'],
  ['permute', 'refit'],
];

/**
 * Edits of several windows together: a later layer a recover method rewrote for one window (refit-res) is
 * dropped where it lies inside another window, whose merged FF takes that layer.
 */
function dropAdjustedIn(edits: Edit[], ws: Window[]): Edit[] {
  if (ws.length < 2) return edits;
  const covered = new Set(ws.flatMap(windowLayers));
  return edits
    .filter((e) => !(e.kind === 'ff' && !e.merged && e.layers.every((l) => covered.has(l))))
    .map((e) => {
      if (e.kind !== 'ff' || !e.merged?.adjusted) return e;
      const adjusted = new Map([...e.merged.adjusted].filter(([l]) => !covered.has(l)));
      return { ...e, merged: { ...e.merged, adjusted } };
    });
}

/**
 * A window's merge without rewrites that cannot be written: a layer of an earlier merge shares its FF, so it
 * can be rewritten only together with its window, to one FF. Refit-res fits each later layer on the states of
 * the ones before, so its rewrites stop at the first earlier-merge layer it rewrote alone.
 */
function keepEarlierMerges(m: MergedWindow, earlier: readonly (readonly number[])[] | undefined): MergedWindow {
  const adj = m.adjusted;
  if (!adj?.size || !earlier?.length) return m;
  const whole = (ls: readonly number[]) => ls.every((l) => adj.get(l) !== undefined && adj.get(l) === adj.get(ls[0]!));
  const stop = Math.min(...earlier.flatMap((ls) => (whole(ls) ? [] : ls.filter((l) => adj.has(l)))));
  if (!Number.isFinite(stop)) return m;
  const { adjusted: _all, ...rest } = m;
  const adjusted = new Map([...adj].filter(([l]) => l < stop));
  return adjusted.size ? { ...rest, adjusted } : rest;
}

/**
 * The first layer of the main stack that edits change, at most `start`: what a candidate is scored from. A
 * recover method may rewrite layers before the window (finetune trains every FF).
 */
function firstChanged(model: Model, edits: readonly Edit[], start: number): number {
  return Math.min(start, ...edits.filter((e) => e.stack === model.mainStack).flatMap((e) => e.layers));
}

const comboLabel = (c: Combo) => `${c.method.name}+${c.recover.name}`;

/** "decoder 3-4 select+refit-res": what a progress report says is being built and scored. */
const candidateLabel = (c: { windows: Partial<Record<StackName, string>>; method?: string }) =>
  Object.entries(c.windows).map(([s, w]) => `${s} ${w}`).join(', ') + (c.method ? ` ${c.method}` : '');

/**
 * The merges of one window's candidates: select + refit-res and select + refit start from the same select
 * merge (deterministic, and recover methods return new FFs), so it runs once per window and stack. Each is
 * dropped once the last combination using it has taken it, so at most one window's merges are held.
 */
function sharedMerges(ctx: MergeContext, combos: readonly Combo[], opts: JobOptions) {
  const uses = new Map<string, number>();
  for (const c of combos) uses.set(c.method.name, (uses.get(c.method.name) ?? 0) + 1);
  const held = new Map<string, { left: number; merged: Promise<MergedWindow> }>();
  return (method: MergeMethod, stack: StackName, w: Window): Promise<MergedWindow> => {
    const key = `${method.name} ${stack} ${windowLabel(w)}`;
    let e = held.get(key);
    if (!e) {
      e = { left: uses.get(method.name) ?? 1, merged: method.merge(ctx, stack, w, opts) };
      held.set(key, e);
    }
    if (--e.left <= 0) held.delete(key);
    return e.merged;
  };
}

/**
 * Compresses a Hugging Face checkpoint by merging k adjacent FF sublayers into one shared FF (Verma, Murray,
 * Duh 2025): load, calibrate, align, score every candidate window on validation data, keep the best, optionally
 * recover, evaluate (test, baselines) and write `out` atomically. The model's task decides the data options and
 * the metric. `signal` aborts (ABORTED), `onProgress` reports each phase; bad input is an FfmergeError with a
 * stable `code`. With `out`, the result's `out` says what was written.
 */
export async function compress(modelDir: string, options: CompressOptions & { out: string }): Promise<CompressResult & { out: NonNullable<CompressResult['out']> }>;
export async function compress(modelDir: string, options: CompressOptions): Promise<CompressResult>;
export async function compress(modelDir: string, options: CompressOptions): Promise<CompressResult> {
  checkPath(modelDir, 'compress(modelDir, options): modelDir');
  if (typeof options !== 'object' || options === null || Array.isArray(options)) {
    throw new FfmergeError('INVALID_ARGUMENT', `compress(modelDir, options): options must be an object (got ${showValue(options)})`);
  }
  // null read as "the default" would hide a caller's bug
  for (const [key, v] of Object.entries(options)) {
    if (v === null) throw new FfmergeError('INVALID_ARGUMENT', `compress: option ${showValue(key)} is null; give a value, or leave it out for the default`);
  }
  checkJobOptions(options);
  // the job's own signal and a progress callback made safe for async callbacks (their rejection fails the call)
  return withJobScope(options, (o, scope) => compressChecked(modelDir, o, scope));
}

async function compressChecked(modelDir: string, options: CompressOptions, scope: JobScope): Promise<CompressResult> {
  checkBoolean(options.overwrite, 'compress: overwrite');
  checkMaxShardSize(options.maxShardSize);
  if (options.k !== undefined && (typeof options.k !== 'number' || !Number.isInteger(options.k))) {
    throw new FfmergeError('INVALID_ARGUMENT', `k must be an integer ≥ 2 (the number of FF sublayers merged into one), got ${showValue(options.k)}`);
  }
  if (options.out !== undefined && (typeof options.out !== 'string' || options.out === '')) throw new FfmergeError('INVALID_ARGUMENT', `out must be a folder path (got ${showValue(options.out)})`);
  const { signal, onProgress } = options;
  // progress reads as the pipeline's phases: a step's reports are renamed to the phase it serves
  const quiet: JobOptions = signal ? { signal } : {};
  const job: JobOptions = { ...quiet, ...(onProgress ? { onProgress } : {}) };
  const as = (phase: string): JobOptions => ({ ...quiet, ...(onProgress ? { onProgress: (p) => onProgress({ ...p, phase }) } : {}) });
  const clock = new PhaseClock(signal);

  // ---- everything that can be refused is refused before any long work ----
  const summary = await inspectModel(modelDir, { compareCopies: false }); // checked below, by recordedTies
  // the output is written from the same files as were loaded, or not at all
  const stamp = sourceStamp(modelDir);
  // this call's registries: ffmerge's own and the caller's plug-ins
  checkOptions(options.plugins, 'compress: plugins', ['mergeMethods', 'recoverMethods', 'baselines', 'tasks']);
  const tasks = callTasks(options.plugins, options.signal);
  const kind = taskFor(summary, tasks);
  checkApplicable(options, kind, tasks, summary.modelType);
  await kind.check(options);
  // method 'auto' (the default when neither method nor recover is named) tries every DEFAULT_COMBOS; otherwise
  // one combination, permute and none by default.
  if (options.method === 'auto' && options.recover !== undefined) {
    throw new FfmergeError('INVALID_ARGUMENT', "method 'auto' chooses the recover method itself: give no recover with it");
  }
  const auto = options.method === 'auto' || (options.method === undefined && options.recover === undefined);
  const methods = MERGE_METHODS.with(options.plugins?.mergeMethods);
  const recovers = RECOVER_METHODS.with(options.plugins?.recoverMethods);
  const baselineKinds = BASELINES.with(options.plugins?.baselines);
  // each held to its contract under the name it was picked by (plugin-guard.ts)
  const own = { merge: (n: string) => !MERGE_METHODS.names().includes(n), recover: (n: string) => !RECOVER_METHODS.names().includes(n), baseline: (n: string) => !BASELINES.names().includes(n) };
  const combos: Combo[] = (auto ? DEFAULT_COMBOS : [[options.method ?? 'permute', options.recover ?? 'none'] as const]).map(([m, r]) => ({
    method: guardMerge(methods.get(m), m, own.merge(m), options.signal),
    recover: guardRecover(recovers.get(r), r, own.recover(r), options.signal),
  }));
  if (options.baselines !== undefined && !Array.isArray(options.baselines)) throw new FfmergeError('INVALID_ARGUMENT', 'baselines must be a list of names');
  // a name twice is a caller's typo, refused as the CLI refuses it
  const twice = (options.baselines ?? []).find((b, i, all) => all.indexOf(b) !== i);
  if (twice !== undefined) throw new FfmergeError('INVALID_ARGUMENT', `baselines names ${showValue(twice)} twice`);
  const baselines = (options.baselines ?? []).map((b) => guardBaseline(baselineKinds.get(b), b, own.baseline(b), options.signal));
  // a caller's plug-in that no name picks runs nowhere: the report says so
  const unpicked = [
    ...methods.names().filter((n) => own.merge(n) && !combos.some((c) => c.method.name === n)).map((n) => `merge method ${n}`),
    ...recovers.names().filter((n) => own.recover(n) && !combos.some((c) => c.recover.name === n)).map((n) => `recover method ${n}`),
    ...baselineKinds.names().filter((n) => own.baseline(n) && !baselines.some((b) => b.name === n)).map((n) => `baseline ${n}`),
    ...tasks.filter((t) => isOwnTask(t) && t !== kind).map((t) => `task ${t.name}`),
  ];
  // what reads calibration: every combination but vanilla + none (a method's readsCalibration), and a baseline that aligns
  const readers = [...combos.filter((c) => c.method.readsCalibration || c.recover.readsCalibration).map(comboLabel), ...baselines.filter((b) => b.needsCorrelations).map((b) => `baseline ${b.name}`)];
  const readsCalibration = readers.length > 0;
  const sampled = isSampledSource(options.calibration);
  if (sampled && !readsCalibration) {
    throw new FfmergeError('OPTION_NOT_APPLICABLE', 'sampled calibration (--sample-calibration) is read by no part of this run (a vanilla merge with recover none, and no baseline that aligns): leave it out, and give the validation text as --data');
  }
  // a run that makes no random draws would ignore a seed; those it seeds are noted
  const seedDraws: string[] = [];
  if (options.seed !== undefined) {
    if (!(typeof options.seed === 'number' && Number.isInteger(options.seed) && options.seed >= 0 && options.seed < 2 ** 32)) {
      throw new FfmergeError('INVALID_ARGUMENT', `seed must be an integer in [0, 2^32) (got ${showValue(options.seed)})`);
    }
    const seededBy = [...new Set([...combos.flatMap((c) => [c.method, c.recover]), ...baselines].filter((m) => m.seeded).map((m) => m.name))];
    seedDraws.push(...(options.draw === 'spread' ? ["draw spread's order"] : []), ...(sampled ? ['sampled calibration'] : []), ...seededBy.map((n) => `${n}'s draws`));
    if (seedDraws.length === 0) {
      throw new FfmergeError('OPTION_NOT_APPLICABLE', 'seed (--seed) seeds the random draws of draw spread (--draw spread), sampled calibration (--sample-calibration) and recover finetune (or a plug-in that draws: its `seeded`); this run makes none of them');
    }
  }
  // a recover method for other tasks is refused here, not after calibration
  for (const { recover: r } of combos) {
    // a name no task has is the plug-in's mistake, not this model's
    const unknown = r.tasks?.filter((t) => !tasks.some((k) => k.name === t)) ?? [];
    if (unknown.length) throw new FfmergeError('INVALID_ARGUMENT', `recover method '${r.name}' names tasks there are none of: ${unknown.join(', ')} (the tasks: ${tasks.map((k) => k.name).join(', ')})`);
    if (r.tasks && !(r.tasks as readonly string[]).includes(kind.name)) {
      throw new FfmergeError('UNSUPPORTED_ARCHITECTURE', `recover method '${r.name}' recovers ${r.tasks.join(' and ')} models; ${summary.modelType} is compressed as ${kind.name}`);
    }
  }
  const how = [
    ...(unpicked.some((u) => !u.startsWith('task ')) ? ["pick them with method, recover or baselines; method 'auto' tries ffmerge's own combinations only"] : []),
    ...(unpicked.some((u) => u.startsWith('task ')) ? [`a task runs where its accepts() takes the model (${summary.modelType}), and the first that does is picked`] : []),
  ];
  const unpickedNote = unpicked.length ? [`${UNPICKED_NOTE}, so not run: ${unpicked.join(', ')} (${how.join('; ')})`] : [];
  const anchor: Anchor = options.anchor ?? 'first';
  anchorOffset(anchor, 2);
  const { selectMemory } = options;
  if (selectMemory !== undefined && !(typeof selectMemory === 'number' && Number.isFinite(selectMemory) && selectMemory > 0)) {
    throw new FfmergeError('INVALID_ARGUMENT', `selectMemory must be a positive number of bytes (got ${showValue(selectMemory)})`);
  }
  // options only some methods read are refused where none of this run's reads them
  const ran = `method ${combos.map(comboLabel).join(', ')}${baselines.length ? `, baselines ${baselines.map((b) => b.name).join(', ')}` : ''}`;
  if (options.anchor !== undefined && !combos.some((c) => c.method.needsCorrelations) && !baselines.some((b) => b.needsCorrelations)) {
    throw new FfmergeError('OPTION_NOT_APPLICABLE', `anchor (--anchor) applies where units are aligned to an anchor layer (method permute, baseline paper); this run aligns none (${ran})`);
  }
  if (selectMemory !== undefined && !combos.some((c) => c.method.name === 'select')) {
    throw new FfmergeError('OPTION_NOT_APPLICABLE', `selectMemory (--select-memory) applies to method select; this run does not run it (${ran})`);
  }
  const format: CompressFormat = options.format ?? 'tied';
  if (format !== 'tied' && format !== 'expanded' && format !== 'onnx') throw new FfmergeError('INVALID_ARGUMENT', `format must be tied, expanded or onnx (got ${showValue(format)})`);
  if (options.maxShardSize !== undefined && format === 'onnx') {
    throw new FfmergeError('OPTION_NOT_APPLICABLE', 'maxShardSize (--max-shard-size) sizes safetensors files and does not apply to format onnx (each .onnx file holds its weights, or one .onnx_data file beside it above 2 GB)');
  }
  if (options.maxShardSize !== undefined && !options.out) throw new FfmergeError('OPTION_NOT_APPLICABLE', 'maxShardSize (--max-shard-size) sizes the files written to out; without out nothing is written');
  const { mode, groups } = resolveStacks(summary, options.stacks);
  const stackInfo = (s: StackName) => summary.stacks.find((x) => x.name === s)!;
  const merged = groups.flat();
  const L = Math.min(...merged.map((s) => stackInfo(s).layers));
  if (options.k !== undefined && options.fraction !== undefined) throw new FfmergeError('INVALID_ARGUMENT', 'give k or fraction, not both');
  // k or fraction, when given, is the size every given window must have
  const asked = options.k ?? (options.fraction !== undefined ? kFromFraction(options.fraction, L) : undefined);
  // a k from fraction says so
  const spec = resolveWindows(options.window, L, asked, options.k === undefined && asked !== undefined ? `${asked} (from fraction ${options.fraction} of ${L} layers)` : String(asked));
  // a fraction that rounds says what it became
  const fractionNote =
    options.k === undefined && options.fraction !== undefined && asked !== undefined && asked - 1 !== options.fraction * L
      ? [`fraction ${options.fraction} of ${L} layers is ${+(options.fraction * L).toFixed(2)} FF sublayers, rounded to ${asked - 1} (k = ${asked}): ${+((100 * (asked - 1)) / L).toFixed(1)}% of the FF sublayers go`]
      : [];
  // given windows are merged in both stacks alike: that is both-same, not independent
  if (mode === 'independent' && spec !== 'auto') {
    throw new FfmergeError(
      'OPTION_NOT_APPLICABLE',
      'stacks (--stacks) independent searches each stack for its own window; with given windows (--window) both stacks merge the same windows: give stacks both-same, or leave --stacks out',
    );
  }
  // what ranks candidates is refused where none is ranked (a baseline still searches its placements)
  for (const [key, flag] of [['searchTokens', 'search-tokens'], ['selectBy', 'select-by']] as const) {
    if (spec !== 'auto' && baselines.length === 0 && options[key] !== undefined) {
      throw new FfmergeError('OPTION_NOT_APPLICABLE', `${key} (--${flag}) applies to a search of candidates; given windows (--window) are merged, not searched, and no baseline searches its placements: leave it out`);
    }
  }
  const k = asked ?? (spec !== 'auto' ? spec[0]!.k : kFromFraction(DEFAULT_FRACTION, L));
  checkK(k, L);
  // refused before any reading: checking an expanded source's earlier merges below compares tensors
  if (options.out) checkOutputDir(modelDir, options.out, options.overwrite, [options.calibration, options.validation, options.test, options.images]);
  // A source that is itself an ffmerge output: its merges are kept and recorded, and no new window may take in
  // their layers. Headers and config only.
  const sourceConfig = await readConfig(modelDir);
  const reader = await CheckpointReader.open(modelDir);
  let earlier: RecordedWindow[];
  let done: Map<StackName, Set<number>>;
  let earlierTies: TieMap;
  let dtypeOf: Map<string, string>; // every tensor's dtype, read while the headers are open
  // The report counts parameters and bytes in the tied form: an expanded source's copies of its earlier merges
  // are not counted.
  const copies = { params: 0, bytes: 0 };
  try {
    earlier = earlierWindows(sourceConfig, reader, modelDir);
    done = mergedLayers(sourceConfig, earlier, reader.ties);
    // an expanded source holds its earlier merges as equal copies: a tied output stores each once again
    earlierTies = await recordedTies(sourceConfig, earlier, reader, signal ? { signal } : {});
    dtypeOf = new Map(reader.names().map((n) => [n, reader.info(n).dtype] as const));
    for (const name of Object.keys(earlierTies)) {
      if (Object.hasOwn(reader.ties, name)) continue; // stored once already
      const t = reader.info(name);
      const n = t.shape.reduce((a, b) => a * b, 1);
      copies.params += n;
      copies.bytes += n * DTYPE_SIZE[t.dtype];
    }
  } finally {
    await reader.close();
  }
  const alreadyMerged = () => {
    const shared = [...done].filter(([, set]) => set.size).map(([st, set]) => `${st} ${[...set].sort((a, b) => a - b).join(', ')}`).join('; ');
    return `the source is already an ffmerge output: layers ${shared} share their FF with others (${earlier.length ? recordedLabel(earlier) : 'tied in the checkpoint'})`;
  };
  const oneDtype = 'a merged FF is stored once, in one dtype; choose layers stored alike, or cast the checkpoint to one dtype first';
  const why = 'merging such a layer again would give it an FF of its own and break that tie, so the model would get no smaller; choose windows of layers not merged yet, or compress the original model with a larger k';
  // the windows each group may merge: the given ones (refused if they take in a merged layer), or every free one
  const dtypeMix = (stacks: readonly StackName[], w: Window) => mixedDtype(dtypeOf, sourceConfig, stacks, w);
  const mixedNotes: string[] = [];
  const groupWindows: Window[][] = groups.map((stacks) => {
    if (spec !== 'auto') {
      for (const w of spec) {
        const hit = takenBy(done, stacks, w);
        if (hit) throw new FfmergeError('INVALID_WINDOW', `window ${windowLabel(w)} takes in ${hit.stack} layer ${hit.layer}, but ${alreadyMerged()}: ${why}`);
        const mix = dtypeMix(stacks, w);
        if (mix) throw new FfmergeError('INVALID_WINDOW', `window ${windowLabel(w)} merges FF tensors stored in different dtypes (${mix}): ${oneDtype}`);
      }
      return spec;
    }
    const free = enumerateWindows(L, k).filter((w) => !takenBy(done, stacks, w));
    const alike = free.filter((w) => !dtypeMix(stacks, w));
    const mixed = free.filter((w) => !alike.includes(w));
    if (mixed.length) mixedNotes.push(`windows ${mixed.map(windowLabel).join(', ')} not searched: their layers store the FF in different dtypes (${dtypeMix(stacks, mixed[0]!)})`);
    if (free.length > 0 && alike.length === 0) {
      throw new FfmergeError('INVALID_WINDOW', `every window of k = ${k} adjacent layers merges FF tensors stored in different dtypes (${dtypeMix(stacks, free[0]!)}): ${oneDtype}`);
    }
    if (free.length === 0) {
      // the largest k that still has a window here, if any: a smaller k is the likelier fix than a new compress
      let fits = 0;
      for (let j = 2; j < k; j++) if (enumerateWindows(L, j).some((w) => !takenBy(done, stacks, w))) fits = j;
      const smaller = fits ? `; a smaller k fits the layers not merged yet (up to --k ${fits})` : '';
      throw new FfmergeError('INVALID_WINDOW', `every window of k = ${k} adjacent layers takes in a merged layer: ${alreadyMerged()}; ${why}${smaller}`);
    }
    return alike;
  });
  if (options.out && format === 'onnx') await checkOnnxExportable(modelDir);

  const model = await loadModel(modelDir, { ...as('load'), ...(options.stream !== undefined ? { stream: options.stream } : {}) });
  const views: Model[] = [];
  let disposeTask: (() => Promise<void>) | undefined;
  // the fits' shared entry states (on disk past their budget: the file is closed with them)
  let entry: EntryStates | undefined;
  let succeeded = false;
  try {
    const task = finiteMetrics(await kind.create({ model, dir: modelDir, options }, job), kind);
    disposeTask = async () => task.dispose?.();
    const noFeatures = (why: string) =>
      new FfmergeError('INVALID_DATA', `task ${kind.name} ${why}, and this run reads calibration features (${readers.join(', ')}): give calibration data, or run only methods that read none (method vanilla with recover none) and no baseline that aligns`);
    if (readsCalibration && task.calibration.length === 0) throw noFeatures('gave no calibration batches');
    if (readsCalibration) {
      // every position masked out (padding only): no stack merged has a feature to correlate or fit
      for (const s of merged) {
        const rows = task.calibration.reduce((n, b) => n + ((s === model.mainStack ? b.featureRows : b.encoderFeatureRows) ?? 0), 0);
        if (rows === 0) throw noFeatures(`gave calibration batches with no feature position of the ${s} stack (every position masked out)`);
      }
    }
    clock.lap('load');

    // every window some group may merge
    const windows: Window[] = spec === 'auto' ? enumerateWindows(L, k).filter((w) => groupWindows.some((ws) => ws.some((x) => x.start === w.start))) : spec;
    const searching = spec === 'auto' && windows.length > 1;
    // the default (no method named) with k > 2 also tries k − 1 pairs in place of one window of k
    const pairing = searching && k > 2 && combos.length > 1;
    const pairWindows = pairing ? enumerateWindows(L, 2) : [];
    const pairsOf = (stacks: StackName[]) => pairWindows.filter((w) => !takenBy(done, stacks, w) && !dtypeMix(stacks, w));
    const pairsScored = groups.flatMap(pairsOf);
    const earlierByStack = new Map<StackName, number[][]>();
    for (const w of earlier) earlierByStack.set(w.stack, [...(earlierByStack.get(w.stack) ?? []), [...w.layers]]);
    const ctx: MergeContext = {
      model,
      anchor,
      correlations: new Map(),
      calibration: task.calibration,
      entry: (entry = new EntryStates(model, task.calibration)),
      ...(selectMemory !== undefined ? { selectMemory } : {}),
      ...(options.seed !== undefined ? { seed: options.seed } : {}),
      ...(earlier.length ? { earlier: earlierByStack } : {}),
    };
    let calibrationFeatures: Partial<Record<StackName, number>> = {};
    if (combos.some((c) => c.method.needsCorrelations) || baselines.some((b) => b.needsCorrelations)) {
      const pairs = new Map(merged.map((s) => [s, pairsFor([...windows, ...pairsScored], anchor)]));
      // Merge methods read the alignment permutations only: keeping d_ff ints per pair instead of the d_ff²
      // correlation matrix is what lets every candidate window's pairs stay resident through the search.
      const { corr, rows } = await collectStackCorrelations(model, task.calibration, pairs, { ...job, keep: 'permutation' });
      ctx.correlations = corr;
      calibrationFeatures = rows;
      clock.lap('features');
    }
    // shared by every candidate and baseline: a plug-in that reassigned a field would break the others' merges
    Object.freeze(ctx);

    // Every candidate is known before scoring, so the task can keep the base model's states entering each first
    // changed layer once.
    const ffRemoved = spec === 'auto' ? k - 1 : spec.reduce((n, w) => n + w.k - 1, 0);
    // per group: every window alone (search), or the given windows together
    const candidateWindows = (g: number) => (searching ? groupWindows[g]!.map((w) => [w]) : [groupWindows[g]!]);
    const baselinePlans = baselines.map((b) => ({
      baseline: b,
      // copies of what compress goes on using (the merge's windows, the merged layers, the scoring options)
      groups: groups.map((stacks, g) =>
        b.candidates({
          model,
          summary: structuredClone(summary),
          stacks: [...stacks],
          ffRemoved,
          windows: candidateWindows(g).map((ws) => ws.map((w) => ({ ...w }))),
          merged: new Map([...done].map(([s, set]) => [s, new Set(set)])),
          merge: ctx,
          job: Object.freeze({ ...quiet }),
        }),
      ),
    }));
    const planFor = (stacks: StackName[], ws: Window[], combo: Combo, merges = sharedMerges(ctx, [combo], quiet)): Candidate => ({
      windows: Object.fromEntries(stacks.map((s) => [s, ws.map(windowLabel).join(',')])),
      start: combo.recover.rewritesEarlier ? 0 : Math.min(...ws.map((w) => w.start)),
      ...(combos.length > 1 ? { method: comboLabel(combo) } : {}),
      combo,
      edits: async (opts: JobOptions = quiet) => {
        const edits: Edit[] = [];
        for (const w of ws) for (const stack of stacks) {
          const r = await combo.recover.recover(ctx, await merges(combo.method, stack, w), opts);
          // a recover method may hand the window to another (refit-res to refit-seq): what ran is recorded
          const m = keepEarlierMerges({ ...r, method: combo.method.name, recover: r.recover ?? combo.recover.name }, ctx.earlier?.get(stack));
          edits.push({ kind: 'ff', stack, layers: windowLayers(w), ff: m.merged, merged: m });
          for (const [layer, ff] of m.adjusted ?? []) edits.push({ kind: 'ff', stack, layers: [layer], ff });
        }
        return dropAdjustedIn(edits, ws);
      },
    });
    const mergePlans: Candidate[][] = groups.map((stacks, g) =>
      candidateWindows(g).flatMap((ws) => {
        const merges = sharedMerges(ctx, combos, quiet);
        return combos.map((combo) => planFor(stacks, ws, combo, merges));
      }),
    );
    // one start per candidate scored (a large model's search budget counts each); the pair scan starts at w.start
    // since it runs with an auto combination, none of which rewrites earlier layers
    const starts = [...mergePlans.flat(), ...pairsScored, ...baselinePlans.flatMap((p) => p.groups.flat())].map((c) => c.start);
    await task.prepare(starts, job);
    // a phase only where states were kept: candidates that all start at layer 0 reuse none
    if (starts.some((s) => s > 0)) clock.lap('prefix');
    const baseVal = await task.validate(model, 0, as('validate'));
    clock.lap('validate');

    // ---- search: each group's candidates scored on the search split, the best by the metric kept ----
    const higher = (task.selection ?? task.metric).higherIsBetter;
    const isBetter = (a: number, b: number) => (higher ? a > b : a < b);
    // the pair scan, when it runs, scores every pair and then the chosen pairs together, per group
    const pairScan = pairing ? groups.reduce((n, stacks) => n + pairsOf(stacks).length + 1, 0) : 0;
    // a group of one candidate is built, not scored: not counted
    const scoredIn = (perGroup: unknown[][]) => perGroup.reduce((n, g) => n + (g.length > 1 ? g.length : 0), 0);
    const total = (phase: string) => (phase === 'search' ? scoredIn(mergePlans) + pairScan : baselinePlans.reduce((n, p) => n + scoredIn(p.groups), 0));
    // candidates scored per phase (every baseline's count towards one 'baselines' bar)
    const scored: Record<string, number> = {};
    /** A score of a model holding a caller's plug-in's FF: a non-finite one names the plug-in, its code kept. */
    const blaming = async <T>(edits: Edit[], baseline: string | undefined, p: Promise<T>): Promise<T> => {
      try {
        return await p;
      } catch (e) {
        if (!(e instanceof FfmergeError && e.code.startsWith('NON_FINITE'))) throw e;
        const who = new Set<string>(baseline !== undefined && own.baseline(baseline) ? [`baseline ${baseline}`] : []);
        for (const ed of edits) {
          if (ed.kind !== 'ff' || !ed.merged) continue;
          if (ed.merged.method && own.merge(ed.merged.method)) who.add(`merge method ${ed.merged.method}`);
          if (ed.merged.recover && own.recover(ed.merged.recover)) who.add(`recover method ${ed.merged.recover}`);
        }
        if (who.size === 0) throw e;
        throw new FfmergeError(e.code, `${e.message} (the model scored holds FFs of ${[...who].join(' and ')}, a plug-in given to this call)`, { cause: e });
      }
    };
    /** Builds a candidate, scores it on the search split and records its score. */
    const scoreOne = async (phase: string, c: Candidate, scores: CandidateScore[], baseline?: string): Promise<{ edits: Edit[]; score: number }> => {
      onProgress?.({ phase, done: scored[phase] ?? 0, total: total(phase), detail: candidateLabel(c) });
      const edits = await c.edits();
      const start = firstChanged(model, edits, c.start);
      const view = await applyEdits(model, edits, quiet);
      const score = await blaming(edits, baseline, task.search(view, start, quiet)).finally(() => view.dispose());
      // the combination that ran, as the chosen windows record it
      const ran = edits.flatMap((e) => (e.kind === 'ff' && e.merged ? [e.merged] : []))[0];
      const method = c.method && ran ? `${ran.method}+${ran.recover}` : c.method;
      scores.push({ windows: c.windows, start, ...(method ? { method } : {}), score });
      onProgress?.({ phase, done: (scored[phase] = (scored[phase] ?? 0) + 1), total: total(phase) });
      return { edits, score };
    };
    // A lone candidate's recover may train for minutes: its steps are shown ('finetune'), nothing else of it.
    const training: JobOptions = { ...quiet, ...(onProgress ? { onProgress: (p) => (p.phase === 'finetune' ? onProgress(p) : undefined) } : {}) };
    /**
     * A group's only candidate (windows given): built, not scored. The merge's is shown while it is built, except
     * where its recover trains, whose steps are the phase shown.
     */
    const buildOne = async (phase: string, c: Candidate): Promise<{ edits: Edit[]; score: number }> => {
      const shown = phase === 'search' && !c.combo?.recover.trains ? onProgress : undefined;
      shown?.({ phase: 'merge', done: 0, total: 1, detail: candidateLabel(c) });
      const edits = await c.edits(training);
      shown?.({ phase: 'merge', done: 1, total: 1 });
      return { edits, score: NaN };
    };
    /** Each group's best candidate; a group with one candidate (windows given) is built, not scored. */
    const search = async <C extends Candidate>(phase: string, perGroup: C[][], scores: CandidateScore[], baseline?: string): Promise<{ c: C; edits: Edit[]; score: number }[]> => {
      const bests: { c: C; edits: Edit[]; score: number }[] = [];
      for (const cands of perGroup) {
        let best: { c: C; edits: Edit[]; score: number } | undefined;
        for (const c of cands) {
          const r = cands.length > 1 ? await scoreOne(phase, c, scores, baseline) : await buildOne(phase, c);
          if (!best || isBetter(r.score, best.score)) best = { c, ...r };
        }
        if (best) bests.push(best);
      }
      return bests;
    };

    const candidates: CandidateScore[] = [];
    const found = await search('search', mergePlans, candidates);
    let mergeEdits = found.flatMap((b) => b.edits);
    if (pairing) {
      // The k − 1 best disjoint pairs (each scored with the combination the window search preferred), kept if
      // better together than the best window. The scan keeps scores, not FFs: the chosen pairs are merged again
      // (deterministically), so memory holds k − 1 pairs' FFs, not every pair's.
      mergeEdits = [];
      for (const [g, stacks] of groups.entries()) {
        const best = found[g]!;
        const combo = best.c.combo!;
        const pairs: { w: Window; score: number }[] = [];
        for (const w of pairsOf(stacks)) pairs.push({ w, score: (await scoreOne('search', planFor(stacks, [w], combo), candidates)).score });
        pairs.sort((a, b) => (isBetter(a.score, b.score) ? -1 : isBetter(b.score, a.score) ? 1 : 0));
        // the best pairs in order, each kept unless it shares a layer with one kept before it
        const pick: Window[] = [];
        for (const { w } of pairs) if (pick.length < k - 1 && pick.every((p) => Math.abs(p.start - w.start) > 1)) pick.push(w);
        let keep = best.edits;
        if (pick.length === k - 1) {
          const together = await scoreOne('search', planFor(stacks, pick.sort((a, b) => a.start - b.start), combo), candidates);
          if (isBetter(together.score, best.score)) keep = together.edits;
        }
        mergeEdits.push(...keep);
      }
    }
    clock.lap(searching ? 'search' : 'merge'); // given windows are merged, not searched
    const chosen = mergeEdits.map((e) => (e.kind === 'ff' ? e.merged! : undefined)).filter((m): m is MergedWindow => m !== undefined);
    const mergedModel = await applyEdits(model, mergeEdits, quiet);
    views.push(mergedModel);
    const mergedVal = await blaming(mergeEdits, undefined, task.validate(mergedModel, firstChanged(model, mergeEdits, Math.min(...chosen.map((m) => m.window.start))), as('validate-merged')));
    clock.lap('validate');

    const baselineResults: Record<string, BaselineResult> = {};
    const baselineModels = new Map<string, Model>();
    const baselineNotes: string[] = [];
    for (const { baseline, groups: perGroup } of baselinePlans) {
      // one with no placement at this size somewhere is left out, and the report says so
      const none = groups.filter((_, g) => perGroup[g]!.length === 0);
      if (none.length) {
        baselineNotes.push(`baseline ${baseline.name} has no placement at this size in ${none.map((s) => s.join(' and ')).join(', ')}: not evaluated`);
        continue;
      }
      const scores: CandidateScore[] = [];
      const found = await search('baselines', perGroup, scores, baseline.name);
      const picks = found.map((b) => b.c);
      const edits = found.flatMap((b) => b.edits);
      const view = await applyEdits(model, edits, quiet);
      views.push(view);
      baselineModels.set(baseline.name, view);
      baselineResults[baseline.name] = {
        validation: await blaming(edits, baseline.name, task.validate(view, firstChanged(model, edits, Math.min(...picks.map((c) => c.start))), quiet)),
        windows: Object.assign({}, ...picks.map((c) => c.windows)) as Partial<Record<StackName, string>>,
        paramsRemoved: picks.reduce((n, c) => n + c.paramsRemoved, 0),
        candidates: scores,
      };
    }
    if (baselines.length) clock.lap('baselines');

    const base: CompressResult['base'] = { validation: baseVal };
    const mergedMetric: CompressResult['merged'] = { validation: mergedVal };
    if (task.test) {
      // one 'test' phase over every model tested (base, merged, each baseline): its count never goes back
      const tested = 2 + baselineModels.size;
      const names = ['base model', 'merged model', ...baselineModels.keys()];
      const testJob = (i: number): JobOptions => ({
        ...quiet,
        // the count is over every model, and the detail names the model its batch belongs to
        ...(onProgress
          ? { onProgress: (p) => onProgress({ ...p, phase: 'test', done: i * p.total + p.done, total: tested * p.total, unit: `${p.unit ?? 'batches'} (${tested} models × ${p.total})`, detail: `${names[i]}${p.detail ? `: ${p.detail}` : ''}` }) }
          : {}),
      });
      base.test = await task.test(model, testJob(0));
      mergedMetric.test = await blaming(mergeEdits, undefined, task.test(mergedModel, testJob(1)));
      for (const [i, [name, v]] of [...baselineModels].entries()) baselineResults[name]!.test = await task.test(v, testJob(2 + i));
      clock.lap('test');
    }

    // a baseline that scores better on validation than the merge kept is said
    const show = (v: number) => String(Number(v.toPrecision(5)));
    const beaten = Object.entries(baselineResults)
      .filter(([, b]) => (task.metric.higherIsBetter ? b.validation > mergedVal : b.validation < mergedVal))
      .map(([name, b]) => `baseline ${name} (${groupDigits(b.paramsRemoved)} params removed) scores better on validation than the merge kept: ${task.metric.name} ${show(b.validation)} against ${show(mergedVal)}`);
    const paramsBefore = summary.totalParams - copies.params;
    const bytesBefore = summary.totalBytes - copies.bytes;
    const removedParams = chosen.reduce((n, m) => n + (m.window.k - 1) * stackInfo(m.stack).ffParamsPerLayer, 0);
    // a window's layers are stored alike (mixedDtype), in bytes that may differ from another window's
    const removedBytes = chosen.reduce((n, m) => n + (m.window.k - 1) * (stackInfo(m.stack).ffBytesByLayer?.[m.window.start] ?? stackInfo(m.stack).ffBytesPerLayer), 0);
    const trainedBy = (m: MergedWindow) => combos.some((c) => c.recover.name === m.recover && c.recover.trains);
    const result: CompressResult = {
      model: summary.dir,
      modelType: summary.modelType,
      task: kind.name,
      metric: task.metric,
      ...(task.selection ? { selection: task.selection } : {}),
      layers: Object.fromEntries(summary.stacks.map((s) => [s.name, s.layers])),
      k,
      method: [...new Set(chosen.map((m) => m.method!))].join(','),
      // recorded only where a chosen window was aligned (vanilla and select align none)
      ...(chosen.some((m) => m.anchor !== undefined) ? { anchor } : {}),
      recover: [...new Set(chosen.map((m) => m.recover!))].join(','),
      stacks: mode,
      windows: chosen.map((m) => ({
        stack: m.stack,
        window: windowLabel(m.window),
        layers: windowLayers(m.window),
        ...(m.anchor !== undefined ? { anchor: m.anchor } : {}),
        method: m.method!,
        recover: m.recover!,
        // by the method's own word, not its name
        ...(trainedBy(m) ? { trained: true } : {}),
        ...(m.adjusted?.size ? { adjusted: [...m.adjusted.keys()] } : {}),
      })),
      candidates,
      windowsGiven: spec !== 'auto',
      base,
      merged: mergedMetric,
      baselines: baselineResults,
      params: { before: paramsBefore, after: paramsBefore - removedParams, removed: removedParams, fraction: removedParams / paramsBefore },
      bytes: { before: bytesBefore, after: bytesBefore - removedBytes, removed: removedBytes, fraction: removedBytes / bytesBefore },
      data: { ...task.data, notes: [...task.data.notes, ...fractionNote, ...(seedDraws.length ? [`seed ${options.seed} (--seed): ${seedDraws.join(', ')}`] : []), ...windowNotes(chosen), ...mixedNotes, ...baselineNotes, ...beaten, ...unpickedNote, ...anchorNote(options.anchor, chosen, combos.some((c) => c.method.needsCorrelations), baselines.filter((b) => b.needsCorrelations).map((b) => b.name)), ...(format === 'onnx' ? [] : halfNote(dtypeOf))], calibrationFeatures, calibrationRead: readsCalibration },
      timings: clock.timings,
    };
    if (earlier.length) result.earlierWindows = earlier;
    // the task is done with: freed before the output is written, so a failure there writes nothing
    const free = disposeTask;
    disposeTask = undefined;
    await free?.();
    const named = [...new Set([...(isOwnTask(kind) ? [kind.name] : []), ...chosen.flatMap((m) => [m.method!, m.recover!].filter((n, i) => (i ? own.recover(n) : own.merge(n)))), ...Object.keys(baselineResults).filter(own.baseline)])];
    if (named.length) result.plugins = named;
    if (options.out) {
      // the writer's last report comes before the rename: a callback that throws there leaves no output
      checkSourceUnchanged(modelDir, stamp, 'it was compressed');
      result.out = await writeOutput(modelDir, { ...options, out: options.out }, format, model, chosen, result, earlierTies, as('save'));
      scope.commit();
      clock.lap('save', true); // written and renamed into place: the result stands
    }
    succeeded = true;
    return result;
  } finally {
    // every step runs whatever another does: a task's failing dispose() never leaves the model unfreed, nor
    // hides the error that ended the run (the first cleanup error is thrown only where the run itself succeeded)
    let failed: { e: unknown } | undefined;
    for (const step of [() => entry?.close(), () => disposeTask?.(), ...views.map((v) => () => v.dispose()), () => model.dispose()]) {
      try {
        await step();
      } catch (e) {
        failed ??= { e };
      }
    }
    if (failed && succeeded) throw failed.e;
  }
}

/** The compressed checkpoint, with report.json inside before the folder is renamed into place. */
async function writeOutput(
  source: string,
  { out, overwrite, maxShardSize }: CompressOptions & { out: string },
  format: CompressFormat,
  model: Model,
  chosen: MergedWindow[],
  result: CompressResult,
  earlierTies: TieMap,
  job: JobOptions,
): Promise<NonNullable<CompressResult['out']>> {
  const t0 = performance.now();
  const config = model.config as Record<string, unknown>;
  const replace = new Map<string, Float32Array>();
  let ties: Record<string, string> = { ...earlierTies };
  const add = async (stack: StackName, layer: number, ff: FFWeights) => {
    for (const [name, t] of await ffReplacementsSliced(config, stack, layer, ff, job.signal)) replace.set(name, t);
  };
  for (const m of chosen) {
    const layers = windowLayers(m.window);
    // stored once, under the window's first layer: the writers read the other layers' through the ties
    await add(m.stack, layers[0]!, m.merged);
    for (const [l, ff] of m.adjusted ?? []) await add(m.stack, l, ff);
    ties = { ...ties, ...ffTies(config, m.stack, layers) };
  }
  // windows: every merge the output carries, the source's first (convert re-ties from this list). A source
  // ffmerge had fine-tuned keeps its training record: the last run as sourceFinetune, the rest before it.
  const runs = trainingRuns(config.ffmerge);
  const info = {
    version: 1, method: result.method, ...(result.anchor ? { anchor: result.anchor } : {}), recover: result.recover, k: result.k, stacks: result.stacks, windows: [...asRecorded(result.earlierWindows ?? []), ...result.windows],
    ...(runs.length ? { sourceFinetune: runs[runs.length - 1] } : {}),
    ...(runs.length > 1 ? { sourceEarlierFinetunes: runs.slice(0, -1) } : {}),
  };
  // report.json: the result as returned, with out.bytes (known once the weights are written) and the save
  // phase so far
  const perms = permutationsFile(chosen, source);
  const report = ({ bytes }: { bytes: number }) =>
    JSON.stringify({ ...result, timings: { ...result.timings, save: (performance.now() - t0) / 1000 }, out: { dir: path.resolve(out), format, bytes } }, null, 2) + '\n';
  const common = {
    out,
    replace,
    ties,
    info,
    extraFiles: {
      'report.json': report,
      'README.md': frontMatter(source, true, format) + modelCard(result, format, { dir: out, config, permutations: Object.keys(perms).length > 0 || readPermutations(source) !== undefined }),
      ...perms,
    },
    ...(overwrite ? { overwrite } : {}),
    ...job,
  };
  if (format === 'onnx') {
    // the same replacements and ties, written as an ONNX folder whose shared FFs are one initializer each
    const e = await exportOnnx(source, common);
    return { dir: e.out, format, bytes: e.onnxBytes + e.dataBytes };
  }
  const written = await writeCheckpoint({ source, format, ...common, ...(maxShardSize !== undefined ? { maxShardSize } : {}) });
  return { dir: written.out, format, bytes: written.bytes };
}

/**
 * permutations.json, where a chosen window was aligned: what the merge did to each layer's units, which the
 * merged weights alone cannot tell (to audit the alignment, or to align an adapter trained on the base model).
 */
function permutationsFile(chosen: readonly MergedWindow[], source: string): Record<string, string> {
  const fresh = chosen
    .filter((m) => m.perms.size > 0)
    .map((m) => ({
      stack: m.stack,
      window: windowLabel(m.window),
      ...(m.anchor !== undefined ? { anchor: m.anchor } : {}),
      method: m.method,
      recover: m.recover,
      permutations: Object.fromEntries([...m.perms].sort(([a], [b]) => a - b).map(([l, p]) => [String(l), Array.from(p)])),
    }));
  // none: the source's own file (an earlier merge's), if any, is copied as it is
  if (fresh.length === 0) return {};
  // a source that is itself an ffmerge output: its windows' permutations are kept before this run's
  const windows = [...(readPermutations(source) ?? []), ...fresh];
  const about =
    "Per merged window, each aligned layer's permutation of its FF hidden units: unit j of the window's merged FF was made from unit j of the anchor and unit perm[j] of each other layer " +
    '(with recover none, their average; a recover method then refits or trains it). Applied to a layer\'s own FF (rows of W_in, b_in and the gate, columns of W_out), it leaves that layer\'s output unchanged.';
  return { [PERMUTATIONS_FILE]: JSON.stringify({ about, windows }) + '\n' };
}

/**
 * A checkpoint stored in 16 bits: the numbers are measured on float32 weights that the writer then rounds to
 * the checkpoint's dtype (not for ONNX, whose float32 weights are the ones measured).
 */
function halfNote(dtypeOf: ReadonlyMap<string, string>): string[] {
  const half = [...new Set(dtypeOf.values())].filter((d) => d === 'BF16' || d === 'F16');
  if (half.length === 0) return [];
  return [`weights stored in ${half.join(' and ')}: the numbers were measured in float32 before the merged weights were rounded to it, so \`ffmerge eval\` of the written model can differ in the fourth or fifth digit`];
}

/** The chosen windows' notes, each once, named by its window where there are several and it does not name it. */
function windowNotes(chosen: readonly MergedWindow[]): string[] {
  const notes = chosen.flatMap((m) => {
    if (!m.note) return [];
    const where = `${m.stack} ${windowLabel(m.window)}`;
    return [chosen.length > 1 && !m.note.includes(where) ? `${where}: ${m.note}` : m.note];
  });
  return [...new Set(notes)];
}

/** An anchor the caller named, where no chosen window was aligned: what used it. */
function anchorNote(given: Anchor | undefined, chosen: readonly { anchor?: number | undefined }[], candidates: boolean, baselines: readonly string[]): string[] {
  if (given === undefined || chosen.some((m) => m.anchor !== undefined)) return [];
  const users = [candidates ? 'the aligned candidates' : '', baselines.length ? `baseline ${baselines.join(', ')}` : ''].filter(Boolean).join(' and ');
  return [`anchor '${given}': ${users} used it; the chosen windows align none`];
}
