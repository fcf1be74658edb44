/**
 * A checkpoint's headers against its architecture description: every tensor the config implies is present
 * (ties resolved) with the shape the config gives it, no layer past the config's count is stored, and the
 * spec is complete, every weight is floating point, and the tie map agrees with config.json's copy and ties only
 * names the model uses. Reads no tensor data. loadModel reads the plan this builds; inspect, the checkpoint
 * writer (compress, convert, save) and the ONNX exporter call the same check, so a checkpoint one of them
 * accepts, the others accept too, and no output is written from one the loader would refuse.
 */
import { FfmergeError } from '../errors';
import type { CheckpointReader } from '../checkpoint/ties';
import { checkWeightDType, type DType } from '../safetensors';
import { checkRecordTies, checkTiedNamesUsed } from '../checkpoint/record';
import { architectureOf, type Config, type LayerNames, type NormNames, type StackName, type StackTensors } from './architectures';
import type { ModelSpec } from './spec';
import { validateSpec } from './validate-spec';

function fmt(shape: readonly number[]): string {
  return `[${shape.join(', ')}]`;
}

/** Where one piece of a slot's data is: a byte range of a checkpoint file, optionally transposed (Conv1D). */
export interface LoadPiece {
  /** Index into LoadPlan.files. */
  file: number;
  offset: number;
  length: number;
  dtype: DType;
  /** Transposed while read: stored [rows, cols] becomes [cols, rows]. */
  rows?: number;
  cols?: number;
}

/**
 * What the native loader reads (native/core/model/load.h): per canonical slot ("tok_emb", "layers.3.qkv_w", …)
 * its pieces, concatenated in order (q, k, v → the fused qkv). Decided from the safetensors headers alone.
 */
export interface LoadPlan {
  files: string[];
  slots: Array<{ name: string; pieces: LoadPiece[] }>;
}

/** Finds tensors by name (resolving an optional prefix and ties), checks shapes, and records where they are. */
class PlanBuilder {
  readonly plan: LoadPlan = { files: [], slots: [] };
  /** The stored-namespace names the plan reads (tied names included): what the tie map may tie. */
  readonly used = new Set<string>();

  constructor(
    private readonly reader: CheckpointReader,
    private readonly t: StackTensors,
    private readonly where: string,
  ) {}

  private resolve(name: string): string {
    if (this.reader.has(name)) return name;
    const p = this.t.optionalPrefix;
    if (p && name.startsWith(p) && this.reader.has(name.slice(p.length))) return name.slice(p.length);
    throw new FfmergeError('TENSOR_NOT_FOUND', `the checkpoint in ${this.where} is missing tensor "${name}"`);
  }

  /**
   * A 1-D or Linear-layout 2-D tensor of the given shape (as stored, for 1-D / linear-layout families); `how`
   * says where a size of it comes from, for the message when it does not fit.
   */
  piece(name: string, shape: number[], transposeConv1D = false, stored?: number[], how?: string): LoadPiece {
    const real = this.resolve(name);
    this.used.add(real);
    const info = this.reader.info(real);
    const conv = transposeConv1D && this.t.layout === 'conv1d' && shape.length === 2;
    // `stored`: the tensor is kept in another shape with the same element order (ViT's [1, n, d] tables,
    // conv kernels [d, c, p, p] read as [d, c·p·p])
    const want = stored ?? (conv ? [shape[1]!, shape[0]!] : shape);
    const target = this.reader.resolve(real);
    if (info.shape.length !== want.length || info.shape.some((v, i) => v !== want[i])) {
      // a tied name has no shape of its own: the tensor it is tied to is the one that does not fit
      const tied = target !== real ? ` (it is tied to "${target}" by the checkpoint's ffmerge tie map)` : '';
      throw new FfmergeError(
        'SHAPE_MISMATCH',
        `tensor "${name}" has shape ${fmt(info.shape)}${tied}, but the config implies ${fmt(want)}${conv ? ' (Conv1D [in, out])' : ''}${how ? ` (${how})` : ''}`,
      );
    }
    // an integer dtype would be converted to float and computed with (the native loader converts as the JS
    // reader does): refused here, so every command refuses it before any work
    checkWeightDType(info.dtype, name, this.where, target !== real ? ` (tied to "${target}")` : '');
    if (!this.plan.files.includes(info.file)) this.plan.files.push(info.file);
    return {
      file: this.plan.files.indexOf(info.file),
      offset: info.byteOffset,
      length: info.byteLength,
      dtype: info.dtype,
      ...(conv ? { rows: want[0]!, cols: want[1]! } : {}),
    };
  }

  slot(slot: string, ...pieces: LoadPiece[]): void {
    this.plan.slots.push({ name: slot, pieces });
  }
}

/** The load plan of one stack: which bytes of which file fill each canonical slot. Reads no tensor data. */
function planTensors(src: PlanBuilder, spec: ModelSpec, t: StackTensors): LoadPlan {
  const d = spec.dModel;
  const one = (slot: string, name: string, shape: number[], conv = false, stored?: number[]) =>
    src.slot(slot, src.piece(name, shape, conv, stored));
  const norm = (slot: string, n: NormNames) => {
    one(`${slot}_w`, n.w, [d]);
    if (n.b) one(`${slot}_b`, n.b, [d]);
  };
  if (t.tokEmb) one('tok_emb', t.tokEmb, [spec.vocab, d]);
  if (t.posEmb) one('pos_emb', t.posEmb, [spec.maxPositions, d], false, t.posEmbShape);
  if (t.patch) {
    const c = spec.channels;
    const p = spec.patch;
    one('patch_w', t.patch.w, [d, c * p * p], false, [d, c, p, p]);
    if (t.patch.b) one('patch_b', t.patch.b, [d]);
    one('cls_token', t.patch.cls, [d], false, [1, 1, d]);
  }
  if (t.typeEmb) one('type_emb', t.typeEmb, [spec.typeVocab, d]);
  if (t.embedNorm) norm('embed_norm', t.embedNorm);
  if (t.pooler) {
    one('pooler_w', t.pooler.w, [d, d], true);
    if (t.pooler.b) one('pooler_b', t.pooler.b, [d]);
  }
  if (t.classifier) {
    one('classifier_w', t.classifier.w, [spec.numLabels, d], true);
    if (t.classifier.b) one('classifier_b', t.classifier.b, [spec.numLabels]);
  }
  if (t.finalNorm) norm('final_norm', t.finalNorm);
  if (t.lmHead) one('lm_head_w', t.lmHead, [spec.vocab, d]); // nn.Linear in every family, GPT-2's Conv1D layout included
  if (t.lmHeadBias) one('lm_head_b', t.lmHeadBias, [spec.vocab], false, t.lmHeadBiasShape);
  const qw = spec.nHeads * spec.headDim;
  const kw = spec.nKvHeads * spec.headDim;
  // a head width the config leaves to its class's default (Qwen3: 128) shows only as these shapes
  const qHow = `${qw} = ${spec.nHeads} heads × head_dim ${spec.headDim}`;
  const kvHow = `${kw} = ${spec.nKvHeads} key/value heads × head_dim ${spec.headDim}`;
  for (let l = 0; l < spec.layers; l++) {
    const L = t.layer(l);
    const p = `layers.${l}.`;
    norm(`${p}norm1`, L.norm1);
    if ('fused' in L.qkv) {
      one(`${p}qkv_w`, L.qkv.fused, [qw + 2 * kw, d], true);
      if (L.qkv.fusedBias) one(`${p}qkv_b`, L.qkv.fusedBias, [qw + 2 * kw]);
    } else {
      const { q, k, v, qBias, kBias, vBias } = L.qkv;
      src.slot(`${p}qkv_w`, src.piece(q, [qw, d], true, undefined, qHow), src.piece(k, [kw, d], true, undefined, kvHow), src.piece(v, [kw, d], true, undefined, kvHow));
      if (qBias && kBias && vBias) src.slot(`${p}qkv_b`, src.piece(qBias, [qw]), src.piece(kBias, [kw]), src.piece(vBias, [kw]));
    }
    if (spec.qkNorm) {
      if (!L.qkNorm) throw new FfmergeError('INVALID_CONFIG', `${spec.family}: the spec normalises q and k per head, but the architecture names no q/k norm weights`);
      one(`${p}q_norm_w`, L.qkNorm.q, [spec.headDim]);
      one(`${p}k_norm_w`, L.qkNorm.k, [spec.headDim]);
    }
    one(`${p}o_w`, L.o, [d, qw], true);
    if (L.oBias) one(`${p}o_b`, L.oBias, [d]);
    norm(`${p}norm2`, L.norm2);
    const f = L.ff;
    one(`${p}ff.w_in`, f.wIn, [spec.dFF, d], true);
    if (f.bIn) one(`${p}ff.b_in`, f.bIn, [spec.dFF]);
    if (f.wGate) one(`${p}ff.w_gate`, f.wGate, [spec.dFF, d], true);
    if (f.bGate) one(`${p}ff.b_gate`, f.bGate, [spec.dFF]);
    one(`${p}ff.w_out`, f.wOut, [d, spec.dFF], true);
    if (f.bOut) one(`${p}ff.b_out`, f.bOut, [d]);
    const x = L.xattn;
    if (x) {
      norm(`${p}xnorm`, x.norm);
      one(`${p}xq_w`, x.q, [qw, d], true);
      if (x.qBias) one(`${p}xq_b`, x.qBias, [qw]);
      src.slot(`${p}xkv_w`, src.piece(x.k, [kw, d], true), src.piece(x.v, [kw, d], true));
      if (x.kBias && x.vBias) src.slot(`${p}xkv_b`, src.piece(x.kBias, [kw]), src.piece(x.vBias, [kw]));
      one(`${p}xo_w`, x.o, [d, qw], true);
      if (x.oBias) one(`${p}xo_b`, x.oBias, [d]);
    }
  }
  return src.plan;
}

/** Every tensor name the description gives one layer (biases and cross-attention included). */
function layerTensorNames(L: LayerNames): string[] {
  const out: string[] = [];
  const add = (...names: (string | undefined)[]) => {
    for (const n of names) if (n !== undefined) out.push(n);
  };
  const norm = (n: NormNames) => add(n.w, n.b);
  norm(L.norm1);
  if ('fused' in L.qkv) add(L.qkv.fused, L.qkv.fusedBias);
  else add(L.qkv.q, L.qkv.k, L.qkv.v, L.qkv.qBias, L.qkv.kBias, L.qkv.vBias);
  add(L.qkNorm?.q, L.qkNorm?.k);
  add(L.o, L.oBias);
  norm(L.norm2);
  add(L.ff.wIn, L.ff.bIn, L.ff.wGate, L.ff.bGate, L.ff.wOut, L.ff.bOut);
  if (L.xattn) {
    norm(L.xattn.norm);
    add(L.xattn.q, L.xattn.k, L.xattn.v, L.xattn.qBias, L.xattn.kBias, L.xattn.vBias, L.xattn.o, L.xattn.oBias);
  }
  return out;
}

/** Layer weights of other families, and which model_type reads them (said in the refusal below). */
const OTHER_FAMILY: readonly [RegExp, string][] = [[/\.(q|k)_norm\.weight$/, 'qwen3']];

/**
 * Tensors real checkpoints store that transformers keeps as buffers, not parameters: GPT-2's causal mask
 * (attn.bias, attn.masked_bias), a rotary table (rotary_emb.inv_freq), Marian's final_logits_bias, BERT's
 * position_ids. Inside a layer they are passed over (anything else there is read, or refused); everywhere they
 * count in bytes, never as parameters, as transformers' num_parameters() counts.
 */
export const BUFFERS = /(^|\.)attn\.(masked_)?bias$|(^|\.)rotary_emb\.inv_freq$|(^|\.)final_logits_bias$|(^|\.)position_ids$/;

/**
 * Every tensor inside a stack's layers is one the description reads, at a layer the config counts.
 * - A weight or bias it does not read (Qwen3's q_norm under model_type "llama", q/k/v biases of a Qwen2
 *   checkpoint labelled llama, a relative position table, unmerged adapter weights) is part of the computation
 *   the checkpoint was trained with: run without it, every number would be wrong without a word (transformers
 *   warns and runs). Refused, naming it. Every layer is looked at, biases included.
 * - A layer past the config's count (config.json gives fewer layers than the checkpoint holds) would run, write
 *   and export a truncated model without a word.
 * A layer's namespace is what its names share, cut after the layer index ("model.layers.0." → "model.layers.<n>.").
 */
function checkLayerTensors(reader: CheckpointReader, t: StackTensors, layers: number, layersKey: string, family: string, where: string): void {
  const p = t.optionalPrefix ?? '';
  const read = Array.from({ length: layers }, (_, l) => layerTensorNames(t.layer(l)));
  const common = read[0]!.reduce((a, b) => {
    let i = 0;
    while (i < a.length && a[i] === b[i]) i++;
    return a.slice(0, i);
  });
  const namespace = /^(.*\.)0\.$/.exec(common.slice(0, common.lastIndexOf('.') + 1));
  if (!namespace) return; // no layer index in common: nothing to compare against
  const inLayer = new RegExp(`^${namespace[1]!.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}(\\d+)\\.`);
  const known = new Set(read.flat().flatMap((n) => (p && n.startsWith(p) ? [n, n.slice(p.length)] : [n])));
  for (const name of reader.names()) {
    const full = p && !name.startsWith(p) ? p + name : name; // stored without the optional prefix
    const layer = inLayer.exec(full)?.[1];
    // a tied name the tie map holds is the tie map's to check (checkRecordTies names the entry)
    if (layer === undefined || known.has(name) || BUFFERS.test(name) || Object.hasOwn(reader.ties, name)) continue;
    if (Number(layer) >= layers) {
      throw new FfmergeError(
        'INVALID_CONFIG',
        `the checkpoint in ${where} holds tensors of layer ${layer} ("${name}"), but config.json says ${layers} layers (${layersKey}); fix ${layersKey} to the checkpoint's layer count`,
      );
    }
    const other = OTHER_FAMILY.find(([re]) => re.test(name))?.[1];
    throw new FfmergeError(
      'UNSUPPORTED_ARCHITECTURE',
      `the checkpoint in ${where} holds "${name}", a ${/\.bias$/.test(name) ? 'bias' : /\.weight$/.test(name) ? 'weight' : 'tensor'} ${family} layers do not have (config.json model_type "${family}"): run without it, the model would compute something else${other ? `; it is a ${other} weight: is model_type "${other}"?` : ''}`,
    );
  }
}

/** One stack of a checked checkpoint: its spec, tensor names and where the loader finds each slot's bytes. */
export interface CheckedStack {
  name: StackName;
  spec: ModelSpec;
  names: StackTensors;
  plan: LoadPlan;
}

/** Each stack's spec and tensor names from the config alone (a bad config fails here, before any header). */
export function describeStacks(config: Config): { name: StackName; layersKey: string; spec: ModelSpec; names: StackTensors }[] {
  return architectureOf(config).stacks.map((st) => {
    const spec = st.spec(config);
    return { name: st.name, layersKey: st.sizes.layers, spec, names: st.tensors(config, spec) };
  });
}

/**
 * Checks a checkpoint against its architecture description (see the top of this file) and returns each
 * stack's load plan; `where` names the checkpoint in messages. Throws TENSOR_NOT_FOUND, SHAPE_MISMATCH,
 * SAFETENSORS_UNKNOWN_DTYPE (a weight stored as an integer type) or INVALID_CONFIG (also: config.json's ffmerge
 * record or its tie map at odds with the checkpoint's, lib/checkpoint/record.ts). `stacks` lets a caller that
 * already described them (to fail on the config first) pass them.
 */
export function checkCheckpoint(config: Config, reader: CheckpointReader, where: string, stacks = describeStacks(config)): CheckedStack[] {
  // config.json's copy of the tie map against the file's, first: a file that lost its map misses the tied
  // tensors, and saying so beats "missing tensor"
  checkRecordTies(config, reader, where);
  const used = new Set<string>();
  const checked = stacks.map((st) => {
    const builder = new PlanBuilder(reader, st.names, where);
    const plan = planTensors(builder, st.spec, st.names);
    for (const n of builder.used) used.add(n);
    checkLayerTensors(reader, st.names, st.spec.layers, st.layersKey, st.spec.family, where);
    return { name: st.name, spec: st.spec, names: st.names, plan };
  });
  checkTiedNamesUsed(reader, used, where);
  for (const st of checked) validateSpec(st.spec);
  return checked;
}
