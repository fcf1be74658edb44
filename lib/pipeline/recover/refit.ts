/**
 * Training-free refit (beyond the paper): after a window is merged, replace its shared W_out and b_out by the
 * ridge least-squares solution that makes every merged layer reproduce its own original FF output on the
 * calibration features, each layer's FF input taken from the original model. Works on any stack.
 *
 * Per layer and calibration batch (X recovered as in ff-inputs.ts):
 *   H = merged FF hidden activations on X (after the nonlinearity; SwiGLU: act(X·W_gateᵀ) ⊙ X·W_inᵀ)
 *   Y = original FF output on X
 * are streamed into a RidgeAccumulator ([H 1]ᵀ[H 1], [H 1]ᵀY in fp64), solved once by Cholesky with
 * λ = 1e-3 × mean diag.
 */
import { DEFAULT_RIDGE, RidgeAccumulator } from '../../native/ridge';
import type { Activation } from '../../model/activation';
import type { FFWeights } from '../../model/ff-weights';
import { windowLayers } from '../../merge/windows';
import { modelFF, stackSpecOf } from '../align';
import { forEachFFInput, hiddenOf, outputOf } from '../ff-inputs';
import type { RecoverMethod } from '../plugins';

export const refit: RecoverMethod = {
  name: 'refit',
  description: "training-free: least-squares W_out/b_out so each merged layer reproduces its original FF output",
  async recover(ctx, m, opts) {
    const { model } = ctx;
    const stack = m.stack;
    const spec = stackSpecOf(model, stack);
    const act = spec.activation as Activation;
    const layers = windowLayers(m.window);
    const originals = new Map(layers.map((l) => [l, modelFF(model, l, stack)]));
    const acc = new RidgeAccumulator(spec.dFF, spec.dModel);
    const signal = opts.signal ? { signal: opts.signal } : {};
    await forEachFFInput(model, stack, layers, (l) => originals.get(l)!, ctx.calibration, async (l, X, n) => {
      const H = await hiddenOf(m.merged, X, n, act, opts);
      await acc.add(H, await outputOf(originals.get(l)!, X, n, act, opts), n, signal);
    }, opts);
    // A model without b_out (LLaMA) has no slot for one: the fit then has no intercept.
    const sol = await acc.solve(DEFAULT_RIDGE, { ...signal, bias: Boolean(m.merged.bOut) });
    const merged: FFWeights = { ...m.merged, wOut: sol.w };
    if (m.merged.bOut) merged.bOut = sol.b;
    return { ...m, merged };
  },
};
