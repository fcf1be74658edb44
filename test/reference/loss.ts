/**
 * The training loss in float64: mean next-token NLL of ids over the scored targets (targets[r] = −1: not
 * scored), from test/reference/forward.ts. The oracle the native gradients (native/core/train) are checked
 * against by central finite differences: pass Float64Array tensors and perturb them in place.
 */
import type { ModelSpec } from '../../lib/model/spec';
import { referenceForward, referenceImageLogits } from './forward';

export function referenceLoss(
  spec: ModelSpec,
  tensors: Record<string, Float32Array | Float64Array>,
  ids: Int32Array,
  targets: Int32Array,
  batch: number,
  seq: number,
): number {
  // referenceForward is typed for the fixtures' Float32Array tensors; it only indexes them
  const { logits } = referenceForward(spec, tensors as Record<string, Float32Array>, ids, batch, seq);
  const V = spec.vocab;
  let sum = 0;
  let n = 0;
  for (let r = 0; r < batch * seq; r++) {
    const t = targets[r]!;
    if (t < 0) continue;
    let mx = -Infinity;
    for (let j = 0; j < V; j++) mx = Math.max(mx, logits[r * V + j]!);
    let z = 0;
    for (let j = 0; j < V; j++) z += Math.exp(logits[r * V + j]! - mx);
    sum += mx + Math.log(z) - logits[r * V + t]!;
    n++;
  }
  return sum / n;
}

/** Mean softmax cross-entropy of an image classifier's logits on labels (test/reference/forward.ts). */
export function referenceImageLoss(
  spec: ModelSpec,
  tensors: Record<string, Float32Array | Float64Array>,
  pixels: Float32Array,
  labels: Int32Array,
): number {
  const batch = labels.length;
  const logits = referenceImageLogits(spec, tensors, pixels, batch);
  const K = spec.numLabels;
  let sum = 0;
  for (let b = 0; b < batch; b++) {
    let mx = -Infinity;
    for (let j = 0; j < K; j++) mx = Math.max(mx, logits[b * K + j]!);
    let z = 0;
    for (let j = 0; j < K; j++) z += Math.exp(logits[b * K + j]! - mx);
    sum += mx + Math.log(z) - logits[b * K + labels[b]!]!;
  }
  return sum / batch;
}

/** Float64 copies of tensors (what referenceLoss is perturbed on). */
export function toFloat64(t: Record<string, Float32Array>): Record<string, Float64Array> {
  return Object.fromEntries(Object.entries(t).map(([k, v]) => [k, Float64Array.from(v)]));
}
