/**
 * What merge methods share: a stack's FF in canonical layout, and the (anchor, layer) pairs whose
 * correlation aligning a set of windows needs.
 */
import { anchorOffset, windowLayers, type Anchor, type Window } from '../merge/windows';
import type { FFWeights } from '../model/ff-weights';
import type { Model, StackName } from '../model/model';
import type { ModelSpec } from '../model/spec';
import type { JobOptions } from '../native/job';

/** Spec of one stack of a model (encoder–decoder models keep the encoder's apart). */
export function stackSpecOf(model: Model, stack: StackName = model.mainStack): Readonly<ModelSpec> {
  return stack === model.mainStack ? model.spec : model.encoderSpec!;
}

/** One layer's FF as float32, read off the main thread (a streamed or 16-bit layer costs real work). */
export async function modelFF(model: Model, layer: number, stack: StackName = model.mainStack, opts: JobOptions = {}): Promise<FFWeights> {
  return model.readFFWeights(layer, { stack, signal: opts.signal });
}

/** modelFF of several layers, one after the other (a streamed model holds one layer's copy at a time in flight). */
export async function modelFFs(model: Model, layers: number[], stack: StackName = model.mainStack, opts: JobOptions = {}): Promise<Map<number, FFWeights>> {
  const out = new Map<number, FFWeights>();
  for (const l of layers) out.set(l, await modelFF(model, l, stack, opts));
  return out;
}

export function anchorOf(w: Window, anchor: Anchor): number {
  return w.start + anchorOffset(anchor, w.k);
}

/** The (anchor, layer) pairs whose correlation aligning these windows needs. */
export function pairsFor(windows: Window[], anchor: Anchor): [number, number][] {
  // keyed by pair: each pair once, in the order it first appears
  const out = new Map<string, [number, number]>();
  for (const w of windows) {
    const a = anchorOf(w, anchor);
    for (const l of windowLayers(w)) if (l !== a) out.set(`${a},${l}`, [a, l]);
  }
  return [...out.values()];
}
