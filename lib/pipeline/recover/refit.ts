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
import type { Activation } from '../../model/activation';
import { windowLayers } from '../../merge/windows';
import { stackSpecOf } from '../align';
import { refitOutput } from '../ff-inputs';
import type { RecoverMethod } from '../plugins';

export const refit: RecoverMethod = {
  name: 'refit',
  description: "training-free: least-squares W_out/b_out so each merged layer reproduces its original FF output",
  async recover(ctx, m, opts) {
    const { model } = ctx;
    const spec = stackSpecOf(model, m.stack);
    const layers = windowLayers(m.window);
    // inputs and target outputs from the original model's own pass
    const merged = await refitOutput(model, m.stack, layers, m.merged, undefined, ctx.calibration, spec.activation as Activation, opts, ctx.entry);
    return { ...m, merged };
  },
};
