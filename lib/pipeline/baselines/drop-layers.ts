/**
 * Drop whole layers: a run of adjacent layers removed outright (attention, norms and FF), as many as come
 * nearest to the parameters the merge removes (at least one), at every placement. Whole layers rarely match
 * the merge's size exactly; the report states the parameters each candidate removes.
 */
import type { StackName } from '../../model/model';
import { windowLayers } from '../../merge/windows';
import type { Baseline, BaselineCandidate } from '../plugins';

export const dropLayers: Baseline = {
  name: 'drop-layers',
  description: 'delete the whole layers nearest in size to what the merge removes, at the best placement',
  candidates({ model, summary, stacks, ffRemoved, merged }) {
    const plan = stacks.map((stack: StackName) => {
      const ff = summary.stacks.find((x) => x.name === stack)!.ffParamsPerLayer;
      const layer = model.layerParams(0, stack);
      const n = Math.min(model.layers(stack) - 1, Math.max(1, Math.round((ffRemoved * ff) / layer)));
      return { stack, n, layer, L: model.layers(stack) };
    });
    const out: BaselineCandidate[] = [];
    for (let start = 0; plan.every((p) => start + p.n <= p.L); start++) {
      // a layer whose FF is shared keeps that FF stored for its window: removing it frees less than stated
      if (plan.some((p) => windowLayers({ start, k: p.n }).some((l) => merged.get(p.stack)?.has(l)))) continue;
      out.push({
        windows: Object.fromEntries(plan.map((p) => [p.stack, p.n === 1 ? `${start}` : `${start}-${start + p.n - 1}`])),
        start,
        edits: async () => plan.map((p) => ({ kind: 'drop-layers', stack: p.stack, layers: windowLayers({ start, k: p.n }) })),
        paramsRemoved: plan.reduce((a, p) => a + p.n * p.layer, 0),
      });
    }
    return out;
  },
};
