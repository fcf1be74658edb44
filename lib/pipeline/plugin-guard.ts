/**
 * Plug-ins held to their contract (tester BD). What a merge method, recover method or baseline returns is
 * checked before compress uses it: a wrong result is INVALID_ARGUMENT naming the plug-in, not a TypeError deep
 * inside, nor (a merge answering another window than the one asked) a checkpoint of another model than the one
 * scored. Every call races the job's signal, so an abort ends compress even while a plug-in never settles.
 */
import { FfmergeError, abortError, showValue } from '../errors';
import { onAbort, type JobOptions } from '../native/job';
import type { Model, StackName } from '../model/model';
import type { Window } from '../merge/windows';
import type { Baseline, BaselineCandidate, BaselineContext, Edit, MergeContext, MergedWindow, MergeMethod, RecoverMethod } from './plugins';

/** `p`, or ABORTED as soon as `signal` fires, whether or not `p` ever settles. */
export function raceAbort<T>(p: T | Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (signal?.aborted) return Promise.reject(abortError());
  return new Promise<T>((resolve, reject) => {
    const stop = onAbort(signal, () => reject(abortError()));
    Promise.resolve(p).then(resolve, reject).finally(stop);
  });
}

const wrong = (who: string, what: string, got: unknown) => new FfmergeError('INVALID_ARGUMENT', `${who} ${what} (got ${showValue(got)})`);
const isInt = (v: unknown, below: number): v is number => typeof v === 'number' && Number.isInteger(v) && v >= 0 && v < below;

/** A merge or recover result: for the stack and window asked, an anchor inside it, layers adjusted outside it. */
function checkMerged(who: string, r: unknown, model: Model, stack: StackName, w: Window): MergedWindow {
  const m = r as MergedWindow | null | undefined;
  if (typeof m !== 'object' || m === null) throw wrong(who, 'must give a MergedWindow object', m);
  if (m.stack !== stack) throw wrong(who, `was asked for the ${stack} stack and answered another`, m.stack);
  if (m.window?.start !== w.start || m.window?.k !== w.k) throw wrong(who, `was asked for window ${w.start}-${w.start + w.k - 1} (k = ${w.k}) and answered another`, m.window);
  const inWindow = (l: number) => l >= w.start && l < w.start + w.k;
  if (m.anchor !== undefined && !(isInt(m.anchor, Infinity) && inWindow(m.anchor))) throw wrong(who, 'gave an anchor outside its window', m.anchor);
  if (typeof m.merged !== 'object' || m.merged === null) throw wrong(who, 'must give the merged FF (merged)', m.merged);
  if (m.adjusted !== undefined) {
    if (!(m.adjusted instanceof Map)) throw wrong(who, 'must give adjusted as a Map of layer → FF', m.adjusted);
    const L = model.layers(stack);
    for (const l of m.adjusted.keys()) if (!isInt(l, L) || inWindow(l)) throw wrong(who, `adjusted a layer that is not one of the ${L} layers outside the window`, l);
  }
  return m;
}

export function guardMerge(method: MergeMethod, signal: AbortSignal | undefined): MergeMethod {
  const who = `merge method ${method.name}`;
  return Object.assign(Object.create(method) as MergeMethod, { merge: async (ctx: MergeContext, stack: StackName, w: Window, opts: JobOptions) => checkMerged(who, await raceAbort(method.merge(ctx, stack, w, opts), signal), ctx.model, stack, w) });
}

export function guardRecover(method: RecoverMethod, signal: AbortSignal | undefined): RecoverMethod {
  const who = `recover method ${method.name}`;
  return Object.assign(Object.create(method) as RecoverMethod, { recover: async (ctx: MergeContext, m: MergedWindow, opts: JobOptions) => checkMerged(who, await raceAbort(method.recover(ctx, m, opts), signal), ctx.model, m.stack, m.window) });
}

/** A candidate's edits: changes of the model's own stacks and layers. */
function checkEdits(who: string, r: unknown, model: Model): Edit[] {
  if (!Array.isArray(r)) throw wrong(who, "candidate's edits() must give a list of edits", r);
  for (const e of r as Edit[]) {
    const kind: unknown = (e as { kind?: unknown } | null)?.kind;
    if (kind !== 'ff' && kind !== 'drop-layers') throw wrong(who, "gave an edit whose kind is not 'ff' or 'drop-layers'", kind ?? e);
    if (!model.stacks().includes(e.stack)) throw wrong(who, `gave an edit of a stack this model lacks (it has ${model.stacks().join(', ')})`, e.stack);
    const L = model.layers(e.stack);
    if (!Array.isArray(e.layers) || e.layers.length === 0 || !e.layers.every((l) => isInt(l, L))) throw wrong(who, `gave an edit whose layers are not a list of the ${e.stack} stack's layers 0…${L - 1}`, e.layers);
    if (e.kind === 'ff' && (typeof e.ff !== 'object' || e.ff === null)) throw wrong(who, "gave an 'ff' edit without its FF", e.ff);
  }
  return r as Edit[];
}

export function guardBaseline(baseline: Baseline, signal: AbortSignal | undefined): Baseline {
  const who = `baseline ${baseline.name}`;
  return Object.assign(Object.create(baseline) as Baseline, {
    candidates: (ctx: BaselineContext) => {
      const list: unknown = baseline.candidates(ctx);
      // an async candidates() is an easy slip: the list is needed before any is built
      if (!Array.isArray(list)) throw wrong(who, `candidates() must return a list${list instanceof Promise ? ', not a Promise' : ''}`, list);
      const L = ctx.model.layers(ctx.model.mainStack);
      return (list as BaselineCandidate[]).map((c) => {
        if (typeof c !== 'object' || c === null || typeof c.edits !== 'function' || typeof c.windows !== 'object' || c.windows === null) {
          throw wrong(who, 'gave a candidate that is not an object with windows and edits()', c);
        }
        if (!isInt(c.start, L)) throw wrong(who, `gave a candidate whose start is not a layer 0…${L - 1}`, c.start);
        if (!(typeof c.paramsRemoved === 'number' && Number.isFinite(c.paramsRemoved) && c.paramsRemoved >= 0)) throw wrong(who, 'gave a candidate whose paramsRemoved is not a count', c.paramsRemoved);
        return { ...c, edits: async (opts?: JobOptions) => checkEdits(who, await raceAbort(c.edits(opts), signal), ctx.model) };
      });
    },
  });
}
