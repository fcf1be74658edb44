/**
 * The inverse of the loader for a trained model: every canonical slot tensor (native slot names, Linear
 * layout) → the stored tensor(s) it came from, in their stored layout, as replacements for the checkpoint
 * writer (lib/checkpoint/write.ts). Fused q;k;v is split back for families that store q/k/v_proj; GPT-2's
 * Conv1D weights are transposed back. Tied slots give equal replacements, and the writer's tie map stores
 * each once, so a `tied` checkpoint keeps its size.
 */
import { FfmergeError } from '../errors';
import { architectureOf, stackOf, type NormNames } from '../model/architectures';
import type { ModelSpec } from '../model/spec';
import { transposeSliced } from '../model/ff-weights';

export async function slotReplacements(
  config: Record<string, unknown>,
  spec: ModelSpec,
  slots: Record<string, Float32Array>,
  /** Whether the source checkpoint stores a name (resolves a family's optional prefix, e.g. GPT-2's "transformer."). */
  has: (name: string) => boolean = () => true,
  signal?: AbortSignal,
): Promise<Map<string, Float32Array>> {
  const arch = architectureOf(config);
  const t = stackOf(arch, arch.mainStack).tensors(config, spec);
  const named = new Map<string, Float32Array>();
  const set = (name: string, data: Float32Array) => {
    const p = t.optionalPrefix;
    named.set(!has(name) && p && name.startsWith(p) && has(name.slice(p.length)) ? name.slice(p.length) : name, data);
  };
  const d = spec.dModel;
  const slot = (name: string) => {
    const v = slots[name];
    if (!v) throw new FfmergeError('TENSOR_NOT_FOUND', `the trained model has no "${name}" tensor`);
    return v;
  };
  // 2-D weights: canonical [out, in] → stored ([in, out] for conv1d layouts), transposed once all are named,
  // in slices (transposeSliced: all of GPT-2-small's in one go held the event loop for seconds)
  const transposed: [string, Float32Array, number, number][] = [];
  const matrix = (name: string, data: Float32Array, rows: number, cols: number) => {
    if (t.layout === 'conv1d') transposed.push([name, data, rows, cols]);
    else set(name, data);
  };
  const norm = (prefix: string, n: NormNames | undefined) => {
    if (!n) return;
    set(n.w, slot(`${prefix}_w`));
    if (n.b) set(n.b, slot(`${prefix}_b`));
  };
  if (t.typeEmb || t.embedNorm || t.pooler) {
    throw new FfmergeError('UNSUPPORTED_ARCHITECTURE', `writing a fine-tuned ${spec.family} model is not supported (decoder-only language models and ViT only)`);
  }
  if (t.tokEmb) set(t.tokEmb, slot('tok_emb'));
  if (t.posEmb) set(t.posEmb, slot('pos_emb'));
  // ViT: the conv weight [d, C, p, p] is stored in the order the slot [d, C·p·p] reads it; CLS [1, 1, d]
  if (t.patch) {
    set(t.patch.w, slot('patch_w'));
    if (t.patch.b) set(t.patch.b, slot('patch_b'));
    set(t.patch.cls, slot('cls_token'));
  }
  if (t.classifier) {
    matrix(t.classifier.w, slot('classifier_w'), spec.numLabels, d);
    if (t.classifier.b) set(t.classifier.b, slot('classifier_b'));
  }
  norm('final_norm', t.finalNorm);
  // an untied head is stored; a tied one is tok_emb itself (the slot is the same tensor)
  if (t.lmHead) set(t.lmHead, slot('lm_head_w')); // nn.Linear [vocab, d] in every family, GPT-2 included
  if (t.lmHeadBias) set(t.lmHeadBias, slot('lm_head_b'));
  const qw = spec.nHeads * spec.headDim;
  const kw = spec.nKvHeads * spec.headDim;
  for (let l = 0; l < spec.layers; l++) {
    const L = t.layer(l);
    const p = `layers.${l}.`;
    norm(`${p}norm1`, L.norm1);
    const qkv = slot(`${p}qkv_w`);
    const qkvB = slots[`${p}qkv_b`];
    if ('fused' in L.qkv) {
      matrix(L.qkv.fused, qkv, qw + 2 * kw, d);
      if (L.qkv.fusedBias && qkvB) set(L.qkv.fusedBias, qkvB);
    } else {
      // views of the fused slot (the writer reads them as they are; at 7B width copies were 64 MB each)
      matrix(L.qkv.q, qkv.subarray(0, qw * d), qw, d);
      matrix(L.qkv.k, qkv.subarray(qw * d, (qw + kw) * d), kw, d);
      matrix(L.qkv.v, qkv.subarray((qw + kw) * d), kw, d);
      if (L.qkv.qBias && L.qkv.kBias && L.qkv.vBias && qkvB) {
        set(L.qkv.qBias, qkvB.slice(0, qw));
        set(L.qkv.kBias, qkvB.slice(qw, qw + kw));
        set(L.qkv.vBias, qkvB.slice(qw + kw));
      }
    }
    if (L.qkNorm) {
      set(L.qkNorm.q, slot(`${p}q_norm_w`));
      set(L.qkNorm.k, slot(`${p}k_norm_w`));
    }
    matrix(L.o, slot(`${p}o_w`), d, qw);
    if (L.oBias) set(L.oBias, slot(`${p}o_b`));
    norm(`${p}norm2`, L.norm2);
    const f = L.ff;
    matrix(f.wIn, slot(`${p}ff.w_in`), spec.dFF, d);
    if (f.bIn) set(f.bIn, slot(`${p}ff.b_in`));
    if (f.wGate) matrix(f.wGate, slot(`${p}ff.w_gate`), spec.dFF, d);
    if (f.bGate) set(f.bGate, slot(`${p}ff.b_gate`));
    matrix(f.wOut, slot(`${p}ff.w_out`), d, spec.dFF);
    if (f.bOut) set(f.bOut, slot(`${p}ff.b_out`));
    if (L.xattn) throw new FfmergeError('UNSUPPORTED_ARCHITECTURE', 'writing a fine-tuned encoder–decoder model is not supported');
  }
  for (const [name, data, rows, cols] of transposed) set(name, await transposeSliced(data, rows, cols, signal));
  return named;
}
