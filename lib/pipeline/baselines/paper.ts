/**
 * The paper's merge as a baseline: `permute` with no recovery, at its own best window among the merge's
 * candidate windows (the same size as the merge, by construction). It lets a run whose merge uses another
 * method show what the paper's plain merge would have given, on the same data, in the same report.
 */
import { windowLabel, windowLayers } from '../../merge/windows';
import { permute } from '../merge-methods/permute';
import type { Baseline, BaselineCandidate, Edit } from '../plugins';

export const paper: Baseline = {
  name: 'paper',
  description: "the paper's merge (permute, no recovery) at its best window among the merge's",
  needsCorrelations: true,
  candidates({ summary, stacks, windows, merge, job }) {
    const perLayer = (s: string) => summary.stacks.find((x) => x.name === s)!.ffParamsPerLayer;
    return windows.map(
      (ws): BaselineCandidate => ({
        windows: Object.fromEntries(stacks.map((s) => [s, ws.map(windowLabel).join(',')])),
        start: Math.min(...ws.map((w) => w.start)),
        paramsRemoved: ws.reduce((n, w) => n + stacks.reduce((a, s) => a + (w.k - 1) * perLayer(s), 0), 0),
        edits: async () => {
          const edits: Edit[] = [];
          for (const w of ws) for (const stack of stacks) {
            const m = await permute.merge(merge, stack, w, job);
            edits.push({ kind: 'ff', stack, layers: windowLayers(w), ff: m.merged });
          }
          return edits;
        },
      }),
    );
  },
};
