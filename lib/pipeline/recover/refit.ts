/**
 * Training-free refit (beyond the paper): after a window is merged, replace its shared W_out and b_out by the
 * ridge least-squares solution that makes every merged layer reproduce its own original FF output on the
 * calibration features, each layer's FF input taken from the original model. Works on any stack.
 *
 * The forward pass exposes each layer's original FF pre-activations U = X·W_inᵀ + b_in, not the FF input X
 * itself; since W_in [dFF, d] has full column rank (dFF > d), X is recovered exactly (to float rounding) as
 * X = (U − b_in)·W_in·(W_inᵀW_in)⁻¹. Then, per layer and calibration batch:
 *   H = merged FF hidden activations on X (after the nonlinearity; SwiGLU: act(X·W_gateᵀ) ⊙ X·W_inᵀ)
 *   Y = original FF output on X
 * are streamed into a RidgeAccumulator ([H 1]ᵀ[H 1], [H 1]ᵀY in fp64), solved once by Cholesky with
 * λ = 1e-3 × mean diag.
 */
import { FfmergeError } from '../../errors';
import type { JobOptions } from '../../native/job';
import { throwIfAborted } from '../../native/job';
import { DEFAULT_RIDGE, matmulABt, RidgeAccumulator } from '../../native/ridge';
import { activate, type Activation } from '../../model/activation';
import { transpose, type FFWeights } from '../../model/ff-weights';
import { windowLayers } from '../../merge/windows';
import { modelFF, stackSpecOf } from '../align';
import type { RecoverMethod } from '../plugins';

/**
 * P [d, dFF] with X = (U − b)·Pᵀ: P = (W_inᵀW_in)⁻¹ W_inᵀ, computed by the
 * native Cholesky solver with no ridge: rows of W_in as features, the identity as targets.
 */
async function inputRecovery(ff: FFWeights, opts: JobOptions): Promise<Float32Array> {
  const { d, dFF } = ff;
  const identity = new Float32Array(dFF * dFF);
  for (let i = 0; i < dFF; i++) identity[i * dFF + i] = 1;
  const acc = new RidgeAccumulator(d, dFF);
  await acc.add(ff.wIn, identity, dFF, opts);
  try {
    const { w } = await acc.solve(0, { ...opts, bias: false }); // w = Pᵀ [dFF, d]
    return transpose(w, dFF, d);
  } catch (e) {
    if (e instanceof FfmergeError && e.code === 'SINGULAR_MATRIX') {
      throw new FfmergeError('SINGULAR_MATRIX', "refit: a layer's first FF matrix is rank-deficient, its FF input cannot be recovered");
    }
    throw e;
  }
}

function addBias(m: Float32Array, b: Float32Array | undefined, cols: number): void {
  if (!b) return;
  for (let i = 0; i < m.length; i++) m[i]! += b[i % cols]!;
}

/** FF hidden activations (after the nonlinearity) on inputs X [n, d]. */
async function hiddenOf(ff: FFWeights, X: Float32Array, n: number, act: Activation, opts: JobOptions): Promise<Float32Array> {
  const up = await matmulABt(X, ff.wIn, n, ff.dFF, ff.d, opts);
  addBias(up, ff.bIn, ff.dFF);
  if (ff.wGate) {
    const gate = await matmulABt(X, ff.wGate, n, ff.dFF, ff.d, opts);
    addBias(gate, ff.bGate, ff.dFF);
    for (let i = 0; i < up.length; i++) up[i] = activate(act, gate[i]!) * up[i]!;
  } else {
    for (let i = 0; i < up.length; i++) up[i] = activate(act, up[i]!);
  }
  return up;
}

export const refit: RecoverMethod = {
  name: 'refit',
  description: "training-free: least-squares W_out/b_out so each merged layer reproduces its original FF output",
  async recover(ctx, m, opts) {
    const { model } = ctx;
    const stack = m.stack;
    const spec = stackSpecOf(model, stack);
    const { dModel: d, dFF } = spec;
    const act = spec.activation as Activation;
    const layers = windowLayers(m.window);
    const originals = new Map(layers.map((l) => [l, modelFF(model, l, stack)]));
    const recover = new Map<number, Float32Array>();
    for (const l of layers) recover.set(l, await inputRecovery(originals.get(l)!, opts));
    const acc = new RidgeAccumulator(dFF, d);
    const main = stack === model.mainStack;
    const signal = opts.signal ? { signal: opts.signal } : {};
    for (const b of ctx.calibration) {
      throwIfAborted(opts.signal);
      // the encoder of an encoder–decoder model runs before the decoder: toLayer 0 skips the decoder's layers
      const r = await model.forward(b.input, {
        output: 'hidden',
        toLayer: main ? layers[layers.length - 1]! + 1 : 0,
        ...(main ? { captureFF: layers } : { captureEncoderFF: layers }),
        ...(b.featureMask ? { featureMask: b.featureMask } : {}),
        ...signal,
      });
      const captured = main ? r.ff : r.encoderFF;
      for (const l of layers) {
        const U = captured!.get(l)!;
        const n = U.length / dFF;
        if (n === 0) continue;
        const orig = originals.get(l)!;
        const centred = new Float32Array(U);
        if (orig.bIn) for (let i = 0; i < centred.length; i++) centred[i]! -= orig.bIn[i % dFF]!;
        const X = await matmulABt(centred, recover.get(l)!, n, d, dFF, opts);
        const H = await hiddenOf(m.merged, X, n, act, opts);
        const Horig = await hiddenOf(orig, X, n, act, opts);
        const Y = await matmulABt(Horig, orig.wOut, n, d, dFF, opts);
        addBias(Y, orig.bOut, d);
        await acc.add(H, Y, n, signal);
      }
    }
    // A model without b_out (LLaMA) has no slot for one: the fit then has no intercept.
    const sol = await acc.solve(DEFAULT_RIDGE, { ...signal, bias: Boolean(m.merged.bOut) });
    const merged: FFWeights = { ...m.merged, wOut: sol.w };
    if (m.merged.bOut) merged.bOut = sol.b;
    return { ...m, merged };
  },
};
