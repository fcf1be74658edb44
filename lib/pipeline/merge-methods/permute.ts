/**
 * The paper's merge: every layer of the window is aligned to the anchor by the permutation that maximises
 * total correlation of their hidden units (exact linear assignment), then the aligned FFs are averaged.
 */
import { FFMean } from '../../merge/average';
import { permuteFFAsync } from '../../merge/permute';
import { windowLayers } from '../../merge/windows';
import { anchorOf, modelFF } from '../align';
import type { MergeMethod } from '../plugins';

export const permute: MergeMethod = {
  name: 'permute',
  description: 'align each layer to the anchor by maximum correlation, then average (the paper)',
  needsCorrelations: true,
  async merge(ctx, stack, window, opts) {
    const a = anchorOf(window, ctx.anchor);
    const corr = ctx.correlations.get(stack);
    if (!corr) throw new Error(`permute: no correlations were collected for the ${stack}`);
    const perms = new Map<number, Int32Array>();
    // averaged as each layer is read and aligned: one FF held at a time besides the sums
    const mean = new FFMean();
    for (const l of windowLayers(window)) {
      const ff = await modelFF(ctx.model, l, stack, opts);
      if (l === a) {
        await mean.add(ff, opts.signal);
        continue;
      }
      // computed once per pair (when the features were collected, or here on first use)
      const perm = await corr.permutation(a, l, opts);
      perms.set(l, perm);
      await mean.add(await permuteFFAsync(ff, perm, opts), opts.signal);
    }
    return { stack, window, anchor: a, merged: await mean.result(opts.signal), perms };
  },
};
