/**
 * The position-wise pieces of a transformer block as standard ONNX ops (opset 17, no custom ops, so
 * onnxruntime and transformers.js run them): norms, linear layers, activations, the FF sublayer. Hidden
 * states are 2-D [tokens, d] between blocks, which lets every linear layer be one Gemm on the weight as
 * stored: transB=1 for Linear-layout [out, in] tensors, transB=0 for GPT-2's Conv1D [in, out]. No transposed
 * copy is ever made, so a tensor used twice (tied embeddings, a merged FF) stays one initializer.
 */
import { FfmergeError } from '../../errors';
import type { FFTensorNames, NormNames, StackTensors, WeightLayout } from '../../model/architectures';
import type { ActivationKind, ModelSpec } from '../../model/spec';
import type { Graph } from './graph';
import type { ExportWeights } from './weights';

/** What every builder function needs: the graph, the weights, the stack's spec and its optional name prefix. */
export interface StackContext {
  g: Graph;
  w: ExportWeights;
  spec: ModelSpec;
  /** How the stack stores 2-D weights ('conv1d' = GPT-2's [in, out]). */
  layout: WeightLayout;
  optionalPrefix?: string;
}

export function stackContext(g: Graph, w: ExportWeights, spec: ModelSpec, t: StackTensors): StackContext {
  return { g, w, spec, layout: t.layout, optionalPrefix: t.optionalPrefix };
}

/** A weight tensor's graph value (stored shape given). */
export function weight(c: StackContext, name: string, shape: number[]): string {
  return c.w.use(c.g, name, shape, c.optionalPrefix);
}

/** x [N, in] → [N, out] through a stored matrix (and optional bias). */
export function linear(c: StackContext, x: string, name: string, inDim: number, outDim: number, layout: WeightLayout, bias?: string): string {
  const w = weight(c, name, layout === 'linear' ? [outDim, inDim] : [inDim, outDim]);
  const inputs = [x, w];
  if (bias) inputs.push(weight(c, bias, [outDim]));
  return c.g.op('Gemm', inputs, { transB: layout === 'linear' ? 1 : 0 }, 'linear');
}

export function norm(c: StackContext, x: string, n: NormNames): string {
  const d = c.spec.dModel;
  const gamma = weight(c, n.w, [d]);
  if (c.spec.norm === 'layernorm') {
    const inputs = [x, gamma];
    if (n.b) inputs.push(weight(c, n.b, [d]));
    return c.g.op('LayerNormalization', inputs, { axis: -1, epsilon: { float: c.spec.normEps } }, 'ln');
  }
  return rmsNorm(c.g, x, gamma, c.spec.normEps);
}

/** RMSNorm over the last axis (LLaMA; Qwen3's per-head q/k norm): x · 1/sqrt(mean(x²) + eps) · γ, as transformers computes it in float32. */
export function rmsNorm(g: Graph, x: string, gamma: string, eps: number): string {
  const ms = g.op('ReduceMean', [g.op('Mul', [x, x])], { axes: [-1], keepdims: 1 });
  const inv = g.op('Reciprocal', [g.op('Sqrt', [g.op('Add', [ms, g.f32([eps], [])])])]);
  return g.op('Mul', [g.op('Mul', [x, inv]), gamma], undefined, 'rms');
}

export function activation(g: Graph, kind: ActivationKind, x: string): string {
  switch (kind) {
    case 'gelu_new': {
      // 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))): composed, as Gelu(approximate=tanh) needs opset 20
      const x3 = g.op('Mul', [g.op('Mul', [x, x]), x]);
      const inner = g.op('Mul', [g.op('Add', [x, g.op('Mul', [x3, g.f32([0.044715], [])])]), g.f32([Math.sqrt(2 / Math.PI)], [])]);
      const onePlus = g.op('Add', [g.op('Tanh', [inner]), g.f32([1], [])]);
      return g.op('Mul', [g.op('Mul', [x, g.f32([0.5], [])]), onePlus], undefined, 'gelu');
    }
    case 'gelu': {
      const erf = g.op('Erf', [g.op('Mul', [x, g.f32([Math.SQRT1_2], [])])]);
      return g.op('Mul', [g.op('Mul', [x, g.f32([0.5], [])]), g.op('Add', [erf, g.f32([1], [])])], undefined, 'gelu');
    }
    case 'silu':
      return g.op('Mul', [x, g.op('Sigmoid', [x])], undefined, 'silu');
    case 'relu':
      return g.op('Relu', [x]);
    default:
      throw new FfmergeError('UNSUPPORTED_ARCHITECTURE', `ONNX export: activation ${JSON.stringify(kind)} is not supported`);
  }
}

/** The FF sublayer on x [N, d]: w_out · act(x·w_inᵀ + b_in), or w_out · (act(gate) ⊙ up) for SwiGLU. */
export function feedForward(c: StackContext, x: string, f: FFTensorNames): string {
  const { dModel: d, dFF } = c.spec;
  const up = linear(c, x, f.wIn, d, dFF, f.layout, f.bIn);
  let h: string;
  if (c.spec.gatedFF) {
    if (!f.wGate) throw new FfmergeError('TENSOR_NOT_FOUND', `a gated FF needs a gate matrix (${f.wIn})`);
    h = c.g.op('Mul', [activation(c.g, c.spec.activation, linear(c, x, f.wGate, d, dFF, f.layout, f.bGate)), up]);
  } else {
    h = activation(c.g, c.spec.activation, up);
  }
  return linear(c, h, f.wOut, dFF, d, f.layout, f.bOut);
}
