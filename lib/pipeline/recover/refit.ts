/**
 * Training-free refit (beyond the paper): after a window is merged, replace its shared W_out and b_out by the
 * ridge least-squares solution that makes every merged layer reproduce its own original FF output on the
 * calibration features, each layer's FF input taken from the original model. Works on any stack.
 *
 * Per layer and calibration batch (X: the layer's FF input, captured by the forward pass):
 *   H = merged FF hidden activations on X (after the nonlinearity; SwiGLU: act(X·W_gateᵀ) ⊙ X·W_inᵀ)
 *   Y = original FF output on X
 * are streamed into a RidgeAccumulator ([H 1]ᵀ[H 1], [H 1]ᵀY in fp64), solved once by Cholesky with
 * λ = 1e-3 × mean diag.
 */
import { windowLayers } from '../../merge/windows';
import { refitOutput } from '../ff-inputs';
import type { RecoverMethod } from '../plugins';

export const refit: RecoverMethod = {
  name: 'refit',
  description: "training-free: least-squares W_out/b_out so each merged layer reproduces its original FF output",
  async recover(ctx, m, opts) {
    // inputs and target outputs from the original model's own pass
    return { ...m, merged: await refitOutput(ctx, ctx.model, m.stack, windowLayers(m.window), m.merged, undefined, opts) };
  },
};
