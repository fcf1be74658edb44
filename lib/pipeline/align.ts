/**
 * Steps 3–4: align every layer of a window to its anchor (permutation maximising total correlation) and
 * average the aligned FFs into the one FF the window's layers will share. `vanilla` skips the alignment.
 */
import type { JobOptions } from '../native/job';
import { permutationFromCorrelation } from '../native/assignment';
import { averageFF } from '../merge/average';
import { permuteFF } from '../merge/permute';
import { anchorOffset, windowLayers, type Anchor, type Window } from '../merge/windows';
import type { FFWeights } from '../model/ff-weights';
import type { Model, StackName } from '../model/model';
import type { PairCorrelations } from './features';

export type MergeMethod = 'permute' | 'vanilla';

export interface MergedWindow {
  window: Window;
  anchor: number;
  merged: FFWeights;
  /** layer → permutation applied (absent for the anchor and for vanilla). */
  perms: Map<number, Int32Array>;
}

/** Spec of one stack of a model (encoder–decoder models keep the encoder's apart). */
export function stackSpecOf(model: Model, stack: StackName = model.mainStack) {
  return stack === model.mainStack ? model.spec : model.encoderSpec!;
}

export function modelFF(model: Model, layer: number, stack: StackName = model.mainStack): FFWeights {
  const spec = stackSpecOf(model, stack);
  return { d: spec.dModel, dFF: spec.dFF, ...model.ffWeights(layer, stack) };
}

/** The (anchor, layer) pairs whose correlation aligning these windows needs. */
export function pairsFor(windows: Window[], anchor: Anchor): [number, number][] {
  const seen = new Set<string>();
  const out: [number, number][] = [];
  for (const w of windows) {
    const a = w.start + anchorOffset(anchor, w.k);
    for (const l of windowLayers(w)) {
      if (l === a || seen.has(`${a},${l}`)) continue;
      seen.add(`${a},${l}`);
      out.push([a, l]);
    }
  }
  return out;
}

export async function mergeWindow(
  model: Model,
  window: Window,
  anchor: Anchor,
  method: MergeMethod,
  corr: PairCorrelations | undefined,
  opts: JobOptions = {},
  stack: StackName = model.mainStack,
): Promise<MergedWindow> {
  const a = window.start + anchorOffset(anchor, window.k);
  const perms = new Map<number, Int32Array>();
  const ffs: FFWeights[] = [];
  for (const l of windowLayers(window)) {
    const ff = modelFF(model, l, stack);
    if (l === a || method === 'vanilla') {
      ffs.push(ff);
      continue;
    }
    if (!corr) throw new Error('permute needs correlations');
    const c = await corr.get(a, l, opts);
    const perm = await permutationFromCorrelation(c, stackSpecOf(model, stack).dFF, { signal: opts.signal });
    perms.set(l, perm);
    ffs.push(permuteFF(ff, perm));
  }
  return { window, anchor: a, merged: averageFF(ffs), perms };
}
