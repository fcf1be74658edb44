/** The baseline merge of the paper: average the window's FFs as they are, without aligning their units. */
import { FFMean } from '../../merge/average';
import { windowLayers } from '../../merge/windows';
import { modelFF } from '../align';
import type { MergeMethod } from '../plugins';

export const vanilla: MergeMethod = {
  name: 'vanilla',
  description: 'average the FFs unaligned',
  needsCorrelations: false,
  readsCalibration: false,
  async merge(ctx, stack, window, opts) {
    const mean = new FFMean();
    for (const l of windowLayers(window)) await mean.add(await modelFF(ctx.model, l, stack, opts), opts.signal);
    return { stack, window, merged: await mean.result(opts.signal), perms: new Map() };
  },
};
