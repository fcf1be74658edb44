/**
 * What merge methods share: a stack's FF in canonical layout, and the (anchor, layer) pairs whose
 * correlation aligning a set of windows needs.
 */
import { anchorOffset, windowLayers, type Anchor, type Window } from '../merge/windows';
import type { FFWeights } from '../model/ff-weights';
import type { Model, StackName } from '../model/model';
import type { ModelSpec } from '../model/spec';

/** Spec of one stack of a model (encoder–decoder models keep the encoder's apart). */
export function stackSpecOf(model: Model, stack: StackName = model.mainStack): Readonly<ModelSpec> {
  return stack === model.mainStack ? model.spec : model.encoderSpec!;
}

export function modelFF(model: Model, layer: number, stack: StackName = model.mainStack): FFWeights {
  return model.ffWeights(layer, stack);
}

export function anchorOf(w: Window, anchor: Anchor): number {
  return w.start + anchorOffset(anchor, w.k);
}

/** The (anchor, layer) pairs whose correlation aligning these windows needs. */
export function pairsFor(windows: Window[], anchor: Anchor): [number, number][] {
  const seen = new Set<string>();
  const out: [number, number][] = [];
  for (const w of windows) {
    const a = anchorOf(w, anchor);
    for (const l of windowLayers(w)) {
      if (l === a || seen.has(`${a},${l}`)) continue;
      seen.add(`${a},${l}`);
      out.push([a, l]);
    }
  }
  return out;
}
