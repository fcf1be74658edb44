/**
 * Plug-ins held to their contract: what a merge method, recover method, baseline or task returns is checked before
 * compress uses it, and a wrong result is INVALID_ARGUMENT naming the plug-in. A caller's own plug-in's result is
 * read once, into a copy that is checked and used, so what it changes afterwards (a timer, a getter, a Proxy)
 * reaches neither the score nor the output; its calls race the job's signal. (ffmerge's own are checked, not
 * copied, and end on the signal themselves.)
 */
import { FfmergeError, abortError, showValue } from '../errors';
import { raceAbort, type JobOptions } from '../native/job';
import { architectureOf, ffPieceMismatch, stackOf } from '../model/architectures';
import { checkFFWeights, type FFWeights } from '../model/ff-weights';
import { isFloat32Array, isInt32Array, isUint8Array } from '../typed-arrays';
import type { Model, StackName } from '../model/model';
import type { ModelSummary } from '../model/inspect';
import type { FeatureBatch } from '../data/feature-batches';
import { windowLabel, type Window } from '../merge/windows';
import type { CompressOptions, TaskName } from './options';
import type { Baseline, BaselineCandidate, BaselineContext, Edit, MergeContext, MergedWindow, MergeMethod, RecoverMethod } from './plugins';
import type { DataCounts, Task, TaskKind } from './task';

const wrong = (who: string, what: string, got: unknown) => new FfmergeError('INVALID_ARGUMENT', `${who} ${what} (got ${showValue(got)})`);
const isInt = (v: unknown, below: number): v is number => typeof v === 'number' && Number.isInteger(v) && v >= 0 && v < below;
const PIECES = ['bIn', 'wGate', 'bGate', 'bOut'] as const;

/** Each field read once; arrays copied where the plug-in is the caller's (it may change them later). */
function ffSnapshot(who: string, ff: unknown, copy: boolean): FFWeights {
  const x = ff as Record<string, unknown> | null;
  if (typeof x !== 'object' || x === null) throw wrong(who, 'must give an FF object', ff);
  // new Float32Array(typed array) reads the array's own slots: no slice() or species of the plug-in's runs
  const take = (v: unknown) => (copy && isFloat32Array(v) ? new Float32Array(v) : v);
  const out: Record<string, unknown> = { d: x.d, dFF: x.dFF, wIn: take(x.wIn), wOut: take(x.wOut) };
  for (const p of PIECES) {
    const v = x[p];
    if (v !== undefined) out[p] = take(v);
  }
  checkFFWeights(out as unknown as FFWeights, `${who}'s FF`);
  // the caller's values checked as they are copied: a NaN would otherwise be blamed on the checkpoint
  if (copy) {
    for (const p of ['wIn', 'wOut', ...PIECES] as const) {
      const v = out[p] as Float32Array | undefined;
      const at = v ? v.findIndex((x) => !Number.isFinite(x)) : -1;
      if (at >= 0) throw new FfmergeError('INVALID_ARGUMENT', `${who} gave an FF whose ${p} holds ${v![at]} (entry ${at}): its values must be finite`);
    }
  }
  return out as unknown as FFWeights;
}

/** Snapshots memoized by object: one FF object given to several layers is one tied FF, and so is its copy. */
function snapshots(who: string, copy: boolean): (ff: unknown) => FFWeights {
  const copies = new Map<unknown, FFWeights>();
  return (ff) => copies.get(ff) ?? copies.set(ff, ffSnapshot(who, ff, copy)).get(ff)!;
}

/** The pieces the model's FF has are the ones written: one it lacks would be scored, then dropped by the writer. */
function checkPieces(who: string, ff: FFWeights, model: Model, stack: StackName, layer: number): void {
  const config = model.config as Record<string, unknown>;
  const { dModel, dFF } = stackOf(architectureOf(config), stack).spec(config);
  if (ff.d !== dModel || ff.dFF !== dFF) throw wrong(who, `gave an FF of d ${ff.d} × d_ff ${ff.dFF}; the ${stack} stack's FF is ${dModel} × ${dFF}`, `${ff.d} × ${ff.dFF}`);
  const mismatch = ffPieceMismatch(config, stack, layer, ff);
  if (mismatch) throw new FfmergeError('INVALID_ARGUMENT', `${who} gave ${mismatch}`);
}

/**
 * What a caller's plug-in sees of the merge context: its own frozen copy of the containers (correlations,
 * earlier merges), so that clearing one breaks nothing of ffmerge's; the calibration list itself is frozen.
 */
function ownView(ctx: MergeContext): MergeContext {
  const calibration = Object.freeze(ctx.calibration) as MergeContext['calibration'];
  return Object.freeze({ ...ctx, correlations: new Map(ctx.correlations), calibration, ...(ctx.earlier ? { earlier: new Map(ctx.earlier) } : {}) }) as MergeContext;
}

/**
 * A caller's permutations (layer → Int32Array), copied: each a layer of the window other than the anchor, each a
 * permutation of the d_ff units. They go into permutations.json; nothing else reads them.
 */
function ownPerms(who: string, perms: unknown, inWindow: (l: number) => boolean, anchor: number | undefined, dFF: number): Map<number, Int32Array> {
  const out = new Map<number, Int32Array>();
  if (perms === undefined) return out;
  let entries: [unknown, unknown][];
  try {
    entries = [...Map.prototype.entries.call(perms as Map<unknown, unknown>)];
  } catch {
    throw wrong(who, 'must give perms as a Map of layer → permutation', perms);
  }
  for (const [l, p] of entries) {
    if (!isInt(l, Infinity) || !inWindow(l) || l === anchor) throw wrong(who, 'gave a permutation of a layer that is not one of its window\'s, other than the anchor', l);
    const copy = isInt32Array(p) ? new Int32Array(p) : undefined;
    const seen = new Uint8Array(dFF);
    if (!copy || copy.length !== seen.length || !copy.every((u) => u >= 0 && u < seen.length && !seen[u] && (seen[u] = 1))) {
      throw wrong(who, `gave layer ${l} a permutation that is not an Int32Array of the ${seen.length} units, each once`, p);
    }
    out.set(l, copy);
  }
  return out;
}

/**
 * A merge or recover result: for the stack and window asked, an anchor inside it, layers adjusted outside it,
 * FFs of the model's pieces. `own`: the caller's plug-in, whose result is copied, and whose method and recover
 * names are not taken (compress records the ones that ran).
 */
function checkMerged(who: string, r: unknown, model: Model, stack: StackName, w: Window, own: boolean): MergedWindow {
  const m = r as Record<string, unknown> | null | undefined;
  if (typeof m !== 'object' || m === null) throw wrong(who, 'must give a MergedWindow object', m);
  const [rStack, window, anchor, merged, adjusted] = [m.stack, m.window as Window | undefined, m.anchor, m.merged, m.adjusted];
  if (rStack !== stack) throw wrong(who, `was asked for the ${stack} stack and answered another`, rStack);
  if (window?.start !== w.start || window?.k !== w.k) throw wrong(who, `was asked for window ${windowLabel(w)} (k = ${w.k}) and answered another`, window);
  const inWindow = (l: number) => l >= w.start && l < w.start + w.k;
  if (anchor !== undefined && !(isInt(anchor, Infinity) && inWindow(anchor))) throw wrong(who, 'gave an anchor outside its window', anchor);
  if (typeof merged !== 'object' || merged === null) throw wrong(who, 'must give the merged FF (merged)', merged);
  const snapshot = snapshots(who, own);
  const mergedFF = snapshot(merged);
  checkPieces(who, mergedFF, model, stack, w.start);
  const out: MergedWindow = { stack, window: { start: w.start, k: w.k }, merged: mergedFF, perms: own ? ownPerms(who, m.perms, inWindow, anchor as number | undefined, mergedFF.dFF) : (m.perms as MergedWindow['perms']) };
  if (anchor !== undefined) out.anchor = anchor as number;
  if (adjusted !== undefined) {
    let entries: [unknown, unknown][];
    try {
      // Map's own iterator, not one the plug-in's object brings (a Proxy of a Map has none: refused)
      entries = [...Map.prototype.entries.call(adjusted as Map<unknown, unknown>)];
    } catch {
      throw wrong(who, 'must give adjusted as a Map of layer → FF', adjusted);
    }
    const L = model.layers(stack);
    out.adjusted = new Map();
    for (const [l, ff] of entries) {
      if (!isInt(l, L) || inWindow(l)) throw wrong(who, `adjusted a layer that is not one of the ${L} layers outside the window`, l);
      const snap = snapshot(ff);
      checkPieces(who, snap, model, stack, l);
      out.adjusted.set(l, snap);
    }
  }
  // a note goes into the report's notes and the card, the caller's plug-in's too: a string or nothing
  if (m.note !== undefined) {
    if (typeof m.note !== 'string') throw wrong(who, 'gave a note that is not a string', m.note);
    out.note = m.note;
  }
  if (!own) {
    if (m.method !== undefined) out.method = m.method as string;
    if (m.recover !== undefined) out.recover = m.recover as string;
  }
  return out;
}

/**
 * A caller's plug-in's failure, named as its own (a TypeError from inside it, a thrown non-Error). Its
 * FfmergeErrors (and ABORTED) pass as they are.
 */
function pluginFailure(who: string, e: unknown, signal: AbortSignal | undefined): unknown {
  if (e instanceof FfmergeError) return e;
  // stopped by the call's own abort (signal.throwIfAborted() inside it): an abort, not a failure
  if (signal?.aborted) return abortError(signal);
  const what = e instanceof Error ? e.message : `threw ${showValue(e)}, not an Error`;
  return new FfmergeError('PLUGIN_FAILED', `${who} (a plug-in given to this call) failed: ${what}`, { cause: e });
}

/**
 * The call `f` makes. The caller's plug-ins' calls race the signal and their failures name them; ffmerge's own
 * end on the signal themselves (and are waited for).
 */
async function settle<T>(f: () => T | Promise<T>, own: boolean, signal: AbortSignal | undefined, who: string): Promise<T> {
  if (!own) return f();
  try {
    return await raceAbort(f(), signal);
  } catch (e) {
    throw pluginFailure(who, e, signal);
  }
}

/**
 * `name`: the one the registry holds it under (read once: a getter could answer another later); `own`: the
 * caller's plug-in (not one of ffmerge's), whose results are copied before they are checked. The wrapper's
 * name and flags are fixed values.
 */
export function guardMerge(method: MergeMethod, name: string, own: boolean, signal: AbortSignal | undefined): MergeMethod {
  const who = `merge method ${name}`;
  return Object.freeze({
    name,
    description: String(method.description),
    needsCorrelations: Boolean(method.needsCorrelations),
    readsCalibration: method.readsCalibration !== false,
    seeded: Boolean(method.seeded),
    merge: async (ctx: MergeContext, stack: StackName, w: Window, opts: JobOptions) => checkMerged(who, await settle(() => method.merge(own ? ownView(ctx) : ctx, stack, w, opts), own, signal, who), ctx.model, stack, w, own),
  });
}

export function guardRecover(method: RecoverMethod, name: string, own: boolean, signal: AbortSignal | undefined): RecoverMethod {
  const who = `recover method ${name}`;
  const { tasks } = method;
  // at least one; compress checks the names against its tasks
  if (tasks !== undefined && !(Array.isArray(tasks) && tasks.length > 0 && tasks.every((t) => typeof t === 'string'))) throw wrong(who, 'has tasks that are not a list of task names', tasks);
  return Object.freeze({
    name,
    description: String(method.description),
    rewritesEarlier: Boolean(method.rewritesEarlier),
    readsCalibration: method.readsCalibration !== false,
    trains: Boolean(method.trains),
    seeded: Boolean(method.seeded),
    ...(tasks === undefined ? {} : { tasks: Object.freeze([...tasks]) as readonly TaskName[] }),
    recover: async (ctx: MergeContext, m: MergedWindow, opts: JobOptions) => checkMerged(who, await settle(() => method.recover(own ? ownView(ctx) : ctx, m, opts), own, signal, who), ctx.model, m.stack, m.window, own),
  });
}

/** A candidate's edits, each read once: changes of the model's own stacks and layers. */
function checkEdits(who: string, r: unknown, model: Model, own: boolean): Edit[] {
  if (!Array.isArray(r)) throw wrong(who, "candidate's edits() must give a list of edits", r);
  // each layer is changed by one edit at most: longer lists are refused before they are read (2^32 − 1 entries)
  const total = model.stacks().reduce((n, s) => n + model.layers(s), 0);
  if (r.length === 0 || r.length > total) throw wrong(who, `gave a candidate whose edits() gives ${r.length === 0 ? 'no edit: that is the model as it is' : 'more edits than the model has layers'}`, r.length);
  const snapshot = snapshots(who, true);
  const edited = new Map<StackName, Set<number>>();
  return Array.from(r as unknown[], (e): Edit => {
    const x = (typeof e === 'object' && e !== null ? e : {}) as Record<string, unknown>;
    const [kind, stack, layers, ff] = [x.kind, x.stack, x.layers, x.ff];
    if (kind !== 'ff' && kind !== 'drop-layers') throw wrong(who, "gave an edit whose kind is not 'ff' or 'drop-layers'", kind ?? e);
    if (!model.stacks().includes(stack as StackName)) throw wrong(who, `gave an edit of a stack this model lacks (it has ${model.stacks().join(', ')})`, stack);
    const s = stack as StackName;
    const L = model.layers(s);
    const list = Array.isArray(layers) && layers.length <= L ? Array.from(layers as unknown[]) : undefined;
    if (!list || list.length === 0 || !list.every((l) => isInt(l, L))) throw wrong(who, `gave an edit whose layers are not a list of the ${s} stack's layers 0…${L - 1}`, Array.isArray(layers) ? `${layers.length} entries` : layers);
    const seen = edited.get(s) ?? edited.set(s, new Set()).get(s)!;
    for (const l of list as number[]) {
      // two edits of one layer: one would silently win (an FF and a removal, two FFs)
      if (seen.has(l)) throw wrong(who, `gave two edits of ${s} layer ${l}`, l);
      seen.add(l);
    }
    if (kind === 'drop-layers') return { kind, stack: s, layers: list as number[] };
    if (typeof ff !== 'object' || ff === null) throw wrong(who, "gave an 'ff' edit without its FF", ff);
    const snap = own ? snapshot(ff) : (ff as FFWeights);
    // held to the architecture as a merge's FF is
    for (const l of list as number[]) checkPieces(who, snap, model, s, l);
    return { kind, stack: s, layers: list as number[], ff: snap, ...(!own && x.merged ? { merged: x.merged as MergedWindow } : {}) };
  });
}

export function guardBaseline(baseline: Baseline, name: string, own: boolean, signal: AbortSignal | undefined): Baseline {
  const who = `baseline ${name}`;
  return Object.freeze({
    name,
    description: String(baseline.description),
    needsCorrelations: Boolean(baseline.needsCorrelations),
    seeded: Boolean(baseline.seeded),
    candidates: (ctx: BaselineContext) => {
      let list: unknown;
      try {
        list = baseline.candidates(own ? { ...ctx, merge: ownView(ctx.merge) } : ctx);
      } catch (e) {
        throw own ? pluginFailure(who, e, signal) : e;
      }
      // an async candidates() is an easy slip: the list is needed before any is built
      if (!Array.isArray(list)) throw wrong(who, `candidates() must return a list${list instanceof Promise ? ', not a Promise' : ''}`, list);
      // a start is a layer of the stacks searched (an encoder may be deeper than the decoder)
      const L = Math.max(...ctx.stacks.map((s) => ctx.model.layers(s)));
      return Array.from(list as unknown[], (c): BaselineCandidate => {
        const x = (typeof c === 'object' && c !== null ? c : {}) as Record<string, unknown>;
        const [windows, start, paramsRemoved, edits] = [x.windows, x.start, x.paramsRemoved, x.edits];
        if (typeof edits !== 'function' || typeof windows !== 'object' || windows === null) throw wrong(who, 'gave a candidate that is not an object with windows and edits()', c);
        const labels = Object.entries(windows);
        if (!labels.every(([s, v]) => ctx.stacks.includes(s as StackName) && typeof v === 'string')) throw wrong(who, `gave a candidate whose windows are not labels of its stacks (${ctx.stacks.join(', ')})`, windows);
        if (!isInt(start, L)) throw wrong(who, `gave a candidate whose start is not a layer 0…${L - 1}`, start);
        if (!(typeof paramsRemoved === 'number' && Number.isFinite(paramsRemoved) && paramsRemoved >= 0)) throw wrong(who, 'gave a candidate whose paramsRemoved is not a count', paramsRemoved);
        const build = edits as BaselineCandidate['edits'];
        return {
          windows: Object.fromEntries(labels) as BaselineCandidate['windows'],
          start,
          paramsRemoved,
          edits: async (opts?: JobOptions) => checkEdits(who, await settle(() => build.call(c, opts), own, signal, who), ctx.model, own),
        };
      });
    },
  });
}

const isCount = (v: unknown): v is number => isInt(v, Infinity);

/** A caller's text shown in the report and the card: on one line, at most 200 characters. */
const oneLine = (s: string) => s.replace(/\s+/g, ' ').trim().slice(0, 200);

/** Each field of a caller's object, read once (a getter answers once; a Proxy's get trap runs once per field). */
function fields(o: unknown, keys: readonly string[]): Record<string, unknown> {
  const x = (typeof o === 'object' && o !== null ? o : {}) as Record<string, unknown>;
  return Object.fromEntries(keys.map((k) => [k, x[k]]));
}

/** positions set in a 0/1 mask (absent: all `n`). */
const ones = (mask: Uint8Array | undefined, n: number) => (mask ? mask.reduce((s, v) => s + (v ? 1 : 0), 0) : n);

/**
 * A calibration batch of a caller's task, read once and copied one level down: the arrays' kinds and lengths are
 * checked here, naming the task and the batch (the forward pass checks them against the model). featureRows
 * and encoderFeatureRows are counted from the masks; a featureRows given must agree.
 */
function checkBatch(who: string, b: unknown, i: number): FeatureBatch {
  const at = `${who} gave calibration batch ${i}`;
  const x = fields(b, ['input', 'featureRows', 'featureMask', 'labels']);
  const inp = fields(x.input, ['ids', 'batch', 'seq', 'attentionMask', 'pixels', 'tokenTypeIds', 'encoderIds', 'encoderSeq', 'encoderMask']);
  const [batch, seq] = [inp.batch, inp.seq];
  if (typeof x.input !== 'object' || x.input === null || !isInt(batch, Infinity) || !isInt(seq, Infinity) || batch === 0 || seq === 0) {
    throw wrong(who, `gave calibration batch ${i} without an input { batch, seq, … } of at least one position`, b);
  }
  const input: Record<string, unknown> = { batch, seq };
  const array = (key: string, kind: 'Int32Array' | 'Uint8Array' | 'Float32Array', length?: number) => {
    const v = (key === 'featureMask' || key === 'labels' ? x[key] : inp[key]) as ArrayLike<number> | undefined;
    if (v === undefined) return undefined;
    const ok = kind === 'Int32Array' ? isInt32Array(v) : kind === 'Uint8Array' ? isUint8Array(v) : isFloat32Array(v);
    if (!ok) throw wrong(at, `whose ${key} is not an ${kind}`, v);
    if (length !== undefined && v.length !== length) throw wrong(at, `whose ${key} has ${v.length} entries, not ${length}`, v.length);
    return v;
  };
  const R = batch * seq;
  for (const [key, kind] of [['ids', 'Int32Array'], ['attentionMask', 'Uint8Array'], ['tokenTypeIds', 'Int32Array'], ['pixels', 'Float32Array']] as const) {
    const v = array(key, kind, key === 'pixels' ? undefined : R);
    if (v !== undefined) input[key] = v;
  }
  if (inp.encoderIds !== undefined || inp.encoderSeq !== undefined || inp.encoderMask !== undefined) {
    const es = inp.encoderSeq;
    if (!isInt(es, Infinity) || es === 0) throw wrong(at, 'whose encoderSeq is not a positive count', es);
    input.encoderSeq = es;
    for (const [key, kind] of [['encoderIds', 'Int32Array'], ['encoderMask', 'Uint8Array']] as const) {
      const v = array(key, kind, batch * es);
      if (v !== undefined) input[key] = v;
    }
  }
  const featureMask = array('featureMask', 'Uint8Array', R) as Uint8Array | undefined;
  const labels = array('labels', 'Int32Array', batch) as Int32Array | undefined;
  const rows = ones(featureMask ?? (input.attentionMask as Uint8Array | undefined), R);
  if (x.featureRows !== undefined && x.featureRows !== rows) throw wrong(at, `whose featureRows is not its ${rows} feature positions (featureMask, else attentionMask, else every position)`, x.featureRows);
  const out: FeatureBatch = { input: input as unknown as FeatureBatch['input'], featureRows: rows };
  if (featureMask) out.featureMask = featureMask;
  if (labels) out.labels = labels;
  if (input.encoderIds !== undefined) out.encoderFeatureRows = ones(input.encoderMask as Uint8Array | undefined, batch * (input.encoderSeq as number));
  return out;
}

/** What a caller's task says of its data: a unit, counts and notes (blockSize and textScored are the LM task's). */
function checkData(who: string, d: unknown): DataCounts {
  const x = fields(d, ['unit', 'calibration', 'validation', 'search', 'test', 'notes']);
  const unit = x.unit;
  if (typeof unit !== 'string' || oneLine(unit) === '') throw wrong(who, 'gave data without its unit ("sentences", "images", …)', d);
  for (const k of ['calibration', 'validation', 'search'] as const) if (!isCount(x[k])) throw wrong(who, `gave data whose ${k} is not a count of ${oneLine(unit)}`, x[k]);
  if (x.test !== undefined && !isCount(x.test)) throw wrong(who, `gave data whose test is not a count of ${oneLine(unit)}`, x.test);
  const notes = x.notes === undefined ? [] : Array.isArray(x.notes) ? Array.from(x.notes as unknown[]) : undefined;
  if (!notes || !notes.every((n) => typeof n === 'string')) throw wrong(who, 'gave data whose notes are not a list of strings', x.notes);
  return {
    unit: oneLine(unit),
    calibration: x.calibration as number,
    validation: x.validation as number,
    search: x.search as number,
    ...(x.test !== undefined ? { test: x.test as number } : {}),
    notes: (notes as string[]).map(oneLine),
  };
}

/**
 * The Task a caller's task created: each field read once into a frozen copy, functions checked and called on it,
 * each call racing the signal and naming the task when it fails; a score that is not a number is refused (one
 * that is not finite, compress refuses as for every task).
 */
function checkTask(who: string, t: unknown, signal: AbortSignal | undefined): Task {
  if (typeof t !== 'object' || t === null) throw wrong(who, 'create() must give a Task object', t);
  const x = fields(t, ['metric', 'selection', 'calibration', 'data', 'prepare', 'search', 'validate', 'test', 'dispose']);
  const m = fields(x.metric, ['name', 'higherIsBetter', 'decoding']);
  const [name, higherIsBetter, decoding] = [m.name, m.higherIsBetter, m.decoding];
  if (typeof x.metric !== 'object' || x.metric === null || typeof name !== 'string' || oneLine(name) === '' || typeof higherIsBetter !== 'boolean' || (decoding !== undefined && typeof decoding !== 'string')) {
    throw wrong(who, 'gave a metric that is not { name, higherIsBetter }', x.metric);
  }
  const sel = x.selection === undefined ? undefined : fields(x.selection, ['name', 'higherIsBetter']);
  if (sel !== undefined && !(typeof x.selection === 'object' && x.selection !== null && sel.name === 'loss' && sel.higherIsBetter === false)) {
    throw wrong(who, "gave a selection that is not { name: 'loss', higherIsBetter: false }", x.selection);
  }
  if (!Array.isArray(x.calibration)) throw wrong(who, 'gave calibration that is not a list of feature batches', x.calibration);
  const calibration = Object.freeze(Array.from(x.calibration as unknown[], (b, i) => checkBatch(who, b, i)));
  const data = checkData(who, x.data);
  const { prepare, search, validate, test, dispose } = x;
  for (const [k, f] of Object.entries({ prepare, search, validate })) if (typeof f !== 'function') throw wrong(who, `gave a Task without ${k}()`, f);
  for (const [k, f] of Object.entries({ test, dispose })) if (f !== undefined && typeof f !== 'function') throw wrong(who, `gave a Task whose ${k} is not a function`, f);
  const call = <R>(f: unknown, ...a: unknown[]) => settle(() => (f as (...b: unknown[]) => R | Promise<R>).apply(t, a), true, signal, who);
  const score = (what: string) => (v: unknown) => {
    if (typeof v !== 'number') throw wrong(who, `${what} must give a number`, v);
    return v;
  };
  return Object.freeze({
    metric: Object.freeze({ name: oneLine(name), higherIsBetter, ...(decoding !== undefined ? { decoding: oneLine(decoding as string) } : {}) }),
    ...(sel ? { selection: Object.freeze({ name: 'loss', higherIsBetter: false } as const) } : {}),
    calibration: calibration as FeatureBatch[],
    data,
    prepare: async (starts: number[], opts) => void (await call(prepare, [...starts], opts)),
    search: async (model: Model, start: number, opts) => score('search()')(await call(search, model, start, opts)),
    validate: async (model: Model, start: number, opts) => score('validate()')(await call(validate, model, start, opts)),
    ...(test ? { test: async (model: Model, opts: JobOptions) => score('test()')(await call(test, model, opts)) } : {}),
    // raced like every call: after an abort the call ends at once, while the task's own cleanup still runs
    ...(dispose ? { dispose: async () => void (await call(dispose)) } : {}),
  } satisfies Task);
}

/**
 * A task under the name it was registered by. `own`: the caller's, whose accepts(), check() and create() are
 * guarded (each given its own copy of what it reads: a change there reaches neither the report nor the output)
 * and whose Task is checked (checkTask); ffmerge's own are returned as they are.
 */
export function guardTask(kind: TaskKind, own: boolean, signal: AbortSignal | undefined, optionKeys: ReadonlySet<string>): TaskKind {
  if (!own) return kind;
  const who = `task ${kind.name}`;
  const guarded = <R>(f: () => R): R => {
    try {
      return f();
    } catch (e) {
      throw pluginFailure(who, e, signal);
    }
  };
  const { description, optionKeys: keys, accepts, check, create } = guarded(() => fields(kind, ['description', 'optionKeys', 'accepts', 'check', 'create'])) as Record<string, unknown>;
  // an option only the caller's task knew would pass compress's check of unknown options, with no type to say so
  const list = Array.isArray(keys) ? Array.from(keys as unknown[]) : undefined;
  if (!list || !list.every((k) => typeof k === 'string' && optionKeys.has(k))) {
    throw wrong(who, `has optionKeys that are not a list of options ffmerge's tasks read (${[...optionKeys].join(', ')}); data of its own it keeps itself`, keys);
  }
  if (typeof accepts !== 'function' || typeof check !== 'function') throw wrong(who, 'must have accepts() and check()', typeof accepts !== 'function' ? accepts : check);
  const call = <R>(f: unknown, ...a: unknown[]) => (f as (...b: unknown[]) => R).apply(kind, a);
  return Object.freeze({
    name: kind.name,
    description: String(description),
    optionKeys: Object.freeze(list) as readonly (keyof CompressOptions)[],
    accepts: (summary: ModelSummary) => {
      const yes = guarded(() => call<unknown>(accepts, structuredClone(summary)));
      // an async accepts() is an easy slip: its Promise would take every model
      if (typeof yes !== 'boolean') throw wrong(who, `accepts() must return true or false${yes instanceof Promise ? ', not a Promise' : ''}`, yes);
      return yes;
    },
    check: (o: CompressOptions) => settle(() => call<void | Promise<void>>(check, Object.freeze({ ...o })), true, signal, who),
    create: async (ctx: Parameters<TaskKind['create']>[0], opts: JobOptions) => {
      if (signal?.aborted) throw abortError(signal);
      // a Task compress never uses (refused, or created after the abort won the race) is disposed here: not
      // awaited, and a failure there (its getter's too) is the task's own, never the host's
      const drop = (t: unknown) =>
        void Promise.resolve()
          .then(() => {
            const d = typeof t === 'object' && t !== null ? (t as { dispose?: unknown }).dispose : undefined;
            return typeof d === 'function' ? d.call(t) : undefined;
          })
          .catch(() => {});
      const made = Promise.resolve().then(() => call<Task | Promise<Task>>(create, Object.freeze({ ...ctx, options: Object.freeze({ ...ctx.options }) }), opts));
      let t: unknown;
      try {
        t = await settle(() => made, true, signal, who);
      } catch (e) {
        made.then(drop, () => {});
        throw e;
      }
      try {
        return guarded(() => checkTask(who, t, signal));
      } catch (e) {
        drop(t);
        throw e;
      }
    },
  });
}
