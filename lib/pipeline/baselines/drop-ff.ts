/**
 * Drop FF sublayers: the same number of FF sublayers the merge removes, as a run of adjacent layers whose FF
 * is deleted (its output is zero; attention and norms stay), at every placement. The FF's own parameters
 * are exactly the ones the merge removes, so the sizes match to the parameter.
 */
import { FF_KEYS } from '../../checkpoint/write';
import type { FFWeights } from '../../model/ff-weights';
import type { Baseline, BaselineCandidate, Edit } from '../plugins';

/** An FF whose output is zero for every input (every tensor zero; act(0)·0 = 0). */
function zeroFF(ff: FFWeights): FFWeights {
  const z = { d: ff.d, dFF: ff.dFF } as FFWeights;
  for (const k of FF_KEYS) if (ff[k]) z[k] = new Float32Array(ff[k].length);
  return z;
}

export const dropFF: Baseline = {
  name: 'drop-ff',
  description: 'delete as many FF sublayers as the merge removes (adjacent), at the best placement',
  candidates({ model, summary, stacks, ffRemoved: n, merged }) {
    const L = Math.min(...stacks.map((s) => model.layers(s)));
    const zeros = new Map(stacks.map((s) => [s, zeroFF(model.ffWeights(0, s))]));
    const perLayer = (s: string) => summary.stacks.find((x) => x.name === s)!.ffParamsPerLayer;
    const out: BaselineCandidate[] = [];
    for (let start = 0; start + n <= L; start++) {
      const layers = Array.from({ length: n }, (_, i) => start + i);
      if (stacks.some((s) => layers.some((l) => merged.get(s)?.has(l)))) continue; // its FF is shared: nothing freed
      out.push({
        windows: Object.fromEntries(stacks.map((s) => [s, n === 1 ? `${start}` : `${start}-${start + n - 1}`])),
        start,
        edits: async () => stacks.map((stack): Edit => ({ kind: 'ff', stack, layers, ff: zeros.get(stack)! })),
        paramsRemoved: stacks.reduce((a, s) => a + n * perLayer(s), 0),
      });
    }
    return out;
  },
};
