/**
 * Sequential training-free refit (beyond the paper): as `refit`, but each merged position's FF input is the
 * one the merged model itself produces (after the earlier merged positions of the window), not the original
 * model's — the inputs the shared FF will actually see. Each position's target stays its own original FF
 * applied to that input. Changing W_out changes those inputs again, so the fit is repeated (PASSES times);
 * the first pass of a window whose first position sees original inputs only differs from `refit` past it.
 */
import type { FFWeights } from '../../model/ff-weights';
import type { FFOverrides, Model } from '../../model/model';
import type { JobOptions } from '../../native/job';
import { windowLayers } from '../../merge/windows';
import { modelFFs } from '../align';
import { refitOutput } from '../ff-inputs';
import type { RecoverMethod } from '../plugins';

/** Refits on the merged model's own inputs; a second pass gained on the llama probe, a third little. */
const PASSES = 2;

/** `run` on a view of `model` with these FFs in place; the view is freed when it ends. */
export async function withView<T>(model: Model, overrides: FFOverrides, opts: JobOptions, run: (view: Model) => Promise<T>): Promise<T> {
  const view = await model.withFF(overrides, { signal: opts.signal });
  try {
    return await run(view);
  } finally {
    view.dispose();
  }
}

export const refitSeq: RecoverMethod = {
  name: 'refit-seq',
  description: "training-free: as refit, on the FF inputs the merged model itself produces (sequential, twice)",
  async recover(ctx, m, opts) {
    const { model } = ctx;
    const stack = m.stack;
    const layers = windowLayers(m.window);
    const originals = await modelFFs(model, layers, stack, opts);
    let merged: FFWeights = m.merged;
    for (let pass = 0; pass < PASSES; pass++) {
      merged = await withView(model, layers.map((layer) => ({ stack, layer, ff: merged })), opts, (view) => refitOutput(ctx, view, stack, layers, merged, originals, opts));
    }
    return { ...m, merged };
  },
};
