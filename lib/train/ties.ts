/**
 * A `tied` checkpoint's shared FFs as ONE native FF again. The loader reads every tied name as its own copy
 * (forward passes do not care), but training must see a merged window as one parameter set: otherwise each
 * position would train its own copy and the writer would keep only the stored one. The groups come from the
 * checkpoint's tie map: layers whose FF tensors resolve to the same stored tensors share one FF.
 */
import { ffTensorNames } from '../model/architectures';
import type { Model } from '../model/model';
import type { TieMap } from '../checkpoint/ties';

/** Layer groups (≥ 2 layers) of the main stack that share their FF in the tie map. */
export function tiedFFGroups(config: Record<string, unknown>, model: Model, ties: TieMap): number[][] {
  const stored = (n: string) => (Object.hasOwn(ties, n) ? ties[n]! : n);
  const groups = new Map<string, number[]>();
  for (let l = 0; l < model.layers(); l++) {
    const key = stored(ffTensorNames(config, model.mainStack, l).wIn);
    groups.set(key, [...(groups.get(key) ?? []), l]);
  }
  return [...groups.values()].filter((g) => g.length > 1);
}

/** A view of `model` whose tied FF groups share one native FF (the model itself when there are none). */
export function retiedModel(config: Record<string, unknown>, model: Model, ties: TieMap): Model {
  const groups = tiedFFGroups(config, model, ties);
  if (groups.length === 0) return model;
  return model.withFF(groups.flatMap((g) => {
    const ff = model.ffWeights(g[0]!);
    return g.map((layer) => ({ layer, ff }));
  }));
}
