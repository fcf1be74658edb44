/** The baseline merge of the paper: average the window's FFs as they are, without aligning their units. */
import { averageFFAsync } from '../../merge/average';
import { windowLayers } from '../../merge/windows';
import { anchorOf, modelFFs } from '../align';
import type { MergeMethod } from '../plugins';

export const vanilla: MergeMethod = {
  name: 'vanilla',
  description: 'average the FFs unaligned',
  needsCorrelations: false,
  async merge(ctx, stack, window, opts) {
    const ffs = [...(await modelFFs(ctx.model, windowLayers(window), stack, opts)).values()];
    return { stack, window, anchor: anchorOf(window, ctx.anchor), merged: await averageFFAsync(ffs, opts), perms: new Map() };
  },
};
