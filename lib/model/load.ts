/**
 * loadModel(dir): config.json + safetensors → a native Model. Tensors are read one at a time, upcast to
 * float32 (F16/BF16/F64 by the reader), checked against the shapes the config implies, turned into canonical
 * Linear layout (GPT-2's Conv1D weights transposed), and copied into native memory.
 */
import { MAX_JSON_FILE_BYTES, readRegularFile } from '../files';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { FfmergeError, fromNativeError } from '../errors';
import { throwIfAborted } from '../native/job';
import { modelAddon } from '../native/model';
import { CheckpointReader } from '../checkpoint/ties';
import { architectureOf, type NormNames, type StackTensors } from './architectures';
import { Model } from './model';
import { checkConfigObject } from './inspect';
import type { ModelSpec } from './spec';
import { validateSpec } from './validate-spec';

export interface LoadModelOptions {
  signal?: AbortSignal;
}

export async function readConfig(dir: string): Promise<Record<string, unknown>> {
  const file = path.join(dir, 'config.json');
  let text: string;
  try {
    text = await readRegularFile(file, 'INVALID_CONFIG', MAX_JSON_FILE_BYTES);
  } catch (e) {
    if (e instanceof FfmergeError) throw e;
    throw new FfmergeError('IO_ERROR', `cannot read ${file}: ${(e as Error).message}`, { cause: e });
  }
  let c: unknown;
  try {
    c = JSON.parse(text) as unknown;
  } catch (e) {
    throw new FfmergeError('INVALID_CONFIG', `${file} is not a valid config: ${(e as Error).message}`, { cause: e });
  }
  return checkConfigObject(c, file);
}

function fmt(shape: readonly number[]): string {
  return `[${shape.join(', ')}]`;
}

/** Reads tensors by name, resolving an optional prefix, checking shapes, transposing Conv1D weights. */
class TensorSource {
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

  /** A 1-D or Linear-layout 2-D tensor of the given shape (as stored, for 1-D / linear-layout families). */
  async read(name: string, shape: number[], transposeConv1D = false, stored?: number[]): Promise<Float32Array> {
    const real = this.resolve(name);
    const info = this.reader.info(real);
    const conv = transposeConv1D && this.t.layout === 'conv1d' && shape.length === 2;
    // `stored`: the tensor is kept in another shape with the same element order (ViT's [1, n, d] tables,
    // conv kernels [d, c, p, p] read as [d, c·p·p])
    const want = stored ?? (conv ? [shape[1]!, shape[0]!] : shape);
    if (info.shape.length !== want.length || info.shape.some((v, i) => v !== want[i])) {
      throw new FfmergeError(
        'SHAPE_MISMATCH',
        `tensor "${name}" has shape ${fmt(info.shape)}, but the config implies ${fmt(want)}${conv ? ' (Conv1D [in, out])' : ''}`,
      );
    }
    const data = await this.reader.readF32(real);
    return conv ? transpose(data, want[0]!, want[1]!) : data;
  }
}

/** [rows, cols] → [cols, rows]. */
export function transpose(a: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(a.length);
  for (let r = 0; r < rows; r++) {
    const base = r * cols;
    for (let c = 0; c < cols; c++) out[c * rows + r] = a[base + c]!;
  }
  return out;
}

function concat(parts: Float32Array[]): Float32Array {
  const out = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

async function loadTensors(src: TensorSource, spec: ModelSpec, t: StackTensors, signal?: AbortSignal) {
  const d = spec.dModel;
  const out: Record<string, Float32Array> = {};
  const norm = async (slot: string, n: NormNames) => {
    out[`${slot}_w`] = await src.read(n.w, [d]);
    if (n.b) out[`${slot}_b`] = await src.read(n.b, [d]);
  };
  if (t.tokEmb) out.tok_emb = await src.read(t.tokEmb, [spec.vocab, d]);
  if (t.posEmb) out.pos_emb = await src.read(t.posEmb, [spec.maxPositions, d], false, t.posEmbShape);
  if (t.patch) {
    const c = spec.channels;
    const p = spec.patch;
    out.patch_w = await src.read(t.patch.w, [d, c * p * p], false, [d, c, p, p]);
    if (t.patch.b) out.patch_b = await src.read(t.patch.b, [d]);
    out.cls_token = await src.read(t.patch.cls, [d], false, [1, 1, d]);
  }
  if (t.typeEmb) out.type_emb = await src.read(t.typeEmb, [spec.typeVocab, d]);
  if (t.embedNorm) await norm('embed_norm', t.embedNorm);
  if (t.pooler) {
    out.pooler_w = await src.read(t.pooler.w, [d, d], true);
    if (t.pooler.b) out.pooler_b = await src.read(t.pooler.b, [d]);
  }
  if (t.classifier) {
    out.classifier_w = await src.read(t.classifier.w, [spec.numLabels, d], true);
    if (t.classifier.b) out.classifier_b = await src.read(t.classifier.b, [spec.numLabels]);
  }
  if (t.finalNorm) await norm('final_norm', t.finalNorm);
  if (t.lmHead) out.lm_head_w = await src.read(t.lmHead, [spec.vocab, d], true);
  if (t.lmHeadBias) out.lm_head_b = await src.read(t.lmHeadBias, [spec.vocab], false, t.lmHeadBiasShape);
  const qw = spec.nHeads * spec.headDim;
  const kw = spec.nKvHeads * spec.headDim;
  for (let l = 0; l < spec.layers; l++) {
    throwIfAborted(signal);
    const L = t.layer(l);
    const p = `layers.${l}.`;
    await norm(`${p}norm1`, L.norm1);
    if ('fused' in L.qkv) {
      out[`${p}qkv_w`] = await src.read(L.qkv.fused, [qw + 2 * kw, d], true);
      if (L.qkv.fusedBias) out[`${p}qkv_b`] = await src.read(L.qkv.fusedBias, [qw + 2 * kw]);
    } else {
      const { q, k, v, qBias, kBias, vBias } = L.qkv;
      out[`${p}qkv_w`] = concat([await src.read(q, [qw, d], true), await src.read(k, [kw, d], true), await src.read(v, [kw, d], true)]);
      if (qBias && kBias && vBias) {
        out[`${p}qkv_b`] = concat([await src.read(qBias, [qw]), await src.read(kBias, [kw]), await src.read(vBias, [kw])]);
      }
    }
    out[`${p}o_w`] = await src.read(L.o, [d, qw], true);
    if (L.oBias) out[`${p}o_b`] = await src.read(L.oBias, [d]);
    await norm(`${p}norm2`, L.norm2);
    const f = L.ff;
    out[`${p}ff.w_in`] = await src.read(f.wIn, [spec.dFF, d], true);
    if (f.bIn) out[`${p}ff.b_in`] = await src.read(f.bIn, [spec.dFF]);
    if (f.wGate) out[`${p}ff.w_gate`] = await src.read(f.wGate, [spec.dFF, d], true);
    if (f.bGate) out[`${p}ff.b_gate`] = await src.read(f.bGate, [spec.dFF]);
    out[`${p}ff.w_out`] = await src.read(f.wOut, [d, spec.dFF], true);
    if (f.bOut) out[`${p}ff.b_out`] = await src.read(f.bOut, [d]);
    const x = L.xattn;
    if (x) {
      await norm(`${p}xnorm`, x.norm);
      out[`${p}xq_w`] = await src.read(x.q, [qw, d], true);
      if (x.qBias) out[`${p}xq_b`] = await src.read(x.qBias, [qw]);
      out[`${p}xkv_w`] = concat([await src.read(x.k, [kw, d], true), await src.read(x.v, [kw, d], true)]);
      if (x.kBias && x.vBias) out[`${p}xkv_b`] = concat([await src.read(x.kBias, [kw]), await src.read(x.vBias, [kw])]);
      out[`${p}xo_w`] = await src.read(x.o, [d, qw], true);
      if (x.oBias) out[`${p}xo_b`] = await src.read(x.oBias, [d]);
    }
  }
  return out;
}

/** Loads a Hugging Face checkpoint folder (config.json + model.safetensors) into native memory. */
export async function loadModel(dir: string, opts: LoadModelOptions = {}): Promise<Model> {
  throwIfAborted(opts.signal);
  const config = await readConfig(dir);
  const arch = architectureOf(config);
  // Specs first: a bad config fails before any tensor is read.
  const stacks = arch.stacks.map((st) => {
    const spec = st.spec(config);
    return { name: st.name, spec, names: st.tensors(config, spec) };
  });
  // CheckpointReader resolves ffmerge's tie map, so a `tied` output loads like any checkpoint.
  const reader = await CheckpointReader.open(dir);
  try {
    const loaded = [];
    for (const st of stacks) {
      const tensors = await loadTensors(new TensorSource(reader, st.names, dir), st.spec, st.names, opts.signal);
      throwIfAborted(opts.signal);
      loaded.push({ name: st.name, spec: st.spec, tensors });
    }
    const main = loaded.find((st) => st.name === arch.mainStack)!;
    // Encoder–decoder: the encoder stack is a second native model; the two share nothing but the config.
    const encoder = loaded.find((st) => st.name !== arch.mainStack);
    return buildModel(config, main.spec, main.tensors, encoder);
  } finally {
    await reader.close(); // the reader holds a file handle per shard
  }
}

/**
 * A Model from canonical tensors already in memory (slot names as native/core/model/weights.h; an absent
 * lm_head_w ties the head to tok_emb). Used by loadModel and by benchmarks/tests with generated weights.
 */
export function buildModel(
  config: Record<string, unknown>,
  spec: ModelSpec,
  tensors: Record<string, Float32Array>,
  encoder?: { spec: ModelSpec; tensors: Record<string, Float32Array> },
): Model {
  validateSpec(spec);
  if (encoder) validateSpec(encoder.spec);
  try {
    const main = modelAddon().modelCreate(spec, tensors);
    const enc = encoder ? { spec: encoder.spec, handle: modelAddon().modelCreate(encoder.spec, encoder.tensors) } : undefined;
    return new Model(config, spec, main, enc);
  } catch (e) {
    throw fromNativeError(e);
  }
}
