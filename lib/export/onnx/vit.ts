/**
 * The graph of a ViT image classifier, named as Optimum names its image-classification exports:
 *   pixel_values [batch, channels, height, width] (already preprocessed) → logits [batch, num_labels].
 * Conv patch embedding, CLS token first, learned positions, the encoder blocks, final norm, classifier on CLS.
 */
import { FfmergeError } from '../../errors';
import type { StackTensors } from '../../model/architectures';
import type { ModelSpec } from '../../model/spec';
import { SeqShape } from './attention';
import { block } from './block';
import { DT, type Graph } from './graph';
import { linear, norm, stackContext, weight } from './ops';
import type { ExportWeights } from './weights';

export function buildVitClassifier(g: Graph, w: ExportWeights, spec: ModelSpec, t: StackTensors): void {
  if (!t.patch || !t.posEmb || !t.classifier || spec.positions !== 'learned' || spec.causal || spec.typeVocab > 0 || spec.embedNorm) {
    throw new FfmergeError('UNSUPPORTED_ARCHITECTURE', `ONNX export of ${spec.family}: only ViT-style patch classifiers (conv patches, CLS, learned positions) are supported`);
  }
  const c = stackContext(g, w, spec, t);
  const { dModel: d, channels: C, patch: p, numLabels } = spec;
  const pixels = g.input('pixel_values', DT.FLOAT, ['batch_size', C, spec.imageH, spec.imageW]);
  const inputs = [pixels, weight(c, t.patch.w, [d, C, p, p])];
  if (t.patch.b) inputs.push(weight(c, t.patch.b, [d]));
  const conv = g.op('Conv', inputs, { kernel_shape: [p, p], strides: [p, p] }, 'patches'); // [B, d, h/p, w/p]
  const patches = g.op('Transpose', [g.op('Reshape', [conv, g.i64([0, d, -1])])], { perm: [0, 2, 1] }); // [B, n, d]
  const batch = g.op('Slice', [g.op('Shape', [pixels]), g.i64([0]), g.i64([1])], undefined, 'batch');
  const cls = g.op('Expand', [weight(c, t.patch.cls, [1, 1, d]), g.op('Concat', [batch, g.i64([1, d])], { axis: 0 })], undefined, 'cls');
  const emb = g.op('Add', [g.op('Concat', [cls, patches], { axis: 1 }), weight(c, t.posEmb, t.posEmbShape ?? [spec.maxPositions, d])], undefined, 'emb');
  const shape = new SeqShape(g, g.op('Slice', [g.op('Shape', [emb]), g.i64([0]), g.i64([2])], undefined, 'bs'));
  let x = g.op('Reshape', [emb, g.i64([-1, d])], undefined, 'h');
  for (let l = 0; l < spec.layers; l++) x = block(c, x, t.layer(l), { shape }).x;
  if (spec.finalNorm && t.finalNorm) x = norm(c, x, t.finalNorm);
  // CLS state: [B·(1+n), d] → [B, 1+n, d] → position 0
  let h = g.op('Gather', [g.op('Reshape', [x, shape.with(d)]), g.i64([0], [])], { axis: 1 }, 'cls_state');
  if (spec.pooler && t.pooler) h = g.op('Tanh', [linear(c, h, t.pooler.w, d, d, t.layout, t.pooler.b)]);
  g.output('logits', linear(c, h, t.classifier.w, d, numLabels, t.layout, t.classifier.b), DT.FLOAT, ['batch_size', numLabels]);
}
