/**
 * loadModel(dir): config.json + safetensors → a native Model. JS reads the config and the safetensors headers,
 * checks every tensor's shape against the config and plans where each canonical slot's bytes are (GPT-2's
 * Conv1D weights marked for transposing, q/k/v pieces for concatenating); a native job then reads the bytes
 * straight into native memory (native/core/model/load.h). No tensor data passes through JS.
 */
import { MAX_JSON_FILE_BYTES, readRegularFile } from '../files';
import * as path from 'node:path';
import { FfmergeError, fromNativeError } from '../errors';
import { checkJobOptions, runNativeJob, throwIfAborted, type JobOptions } from '../native/job';
import { modelAddon, type NativeModelHandle } from '../native/model';
import { CheckpointReader } from '../checkpoint/ties';
import type { DType } from '../safetensors';
import { architectureOf, type NormNames, type StackTensors } from './architectures';
import { Model } from './model';
import { checkConfigObject } from './inspect';
import type { ModelSpec } from './spec';
import { validateSpec } from './validate-spec';

export interface LoadModelOptions extends JobOptions {
  /**
   * Keep each layer's weights on disk and read them when a pass reaches the layer, freeing them after
   * (embeddings and head stay resident): memory is bounded by about one layer, at the cost of re-reading
   * the layer (from the page cache, usually) on every pass. 'auto' (default) streams checkpoints of at least
   * STREAM_AUTO_BYTES.
   */
  stream?: boolean | 'auto';
  /**
   * Map 16-bit (BF16/F16) weight matrices from the checkpoint files instead of reading them into fresh
   * memory (default true; env FFMERGE_NO_MMAP=1 turns it off). Loads then take about a plain read of the
   * files, and the pages stay in the OS page cache (shared, reclaimable). As with any mmap-based loader, a
   * checkpoint file truncated while its model is in use crashes the process (SIGBUS): turn this off if the
   * files may change under a running job. float32 weights are always read.
   */
  mmap?: boolean;
}

/** Checkpoints this large or larger are streamed by layer unless `stream: false`. */
export const STREAM_AUTO_BYTES = 2 * 2 ** 30;

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
  private readonly fileIndex = new Map<string, number>();

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
  piece(name: string, shape: number[], transposeConv1D = false, stored?: number[]): LoadPiece {
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
    let file = this.fileIndex.get(info.file);
    if (file === undefined) {
      file = this.plan.files.length;
      this.plan.files.push(info.file);
      this.fileIndex.set(info.file, file);
    }
    return {
      file,
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

/** [rows, cols] → [cols, rows]. */
export function transpose(a: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(a.length);
  for (let r = 0; r < rows; r++) {
    const base = r * cols;
    for (let c = 0; c < cols; c++) out[c * rows + r] = a[base + c]!;
  }
  return out;
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
  if (t.lmHead) one('lm_head_w', t.lmHead, [spec.vocab, d], true);
  if (t.lmHeadBias) one('lm_head_b', t.lmHeadBias, [spec.vocab], false, t.lmHeadBiasShape);
  const qw = spec.nHeads * spec.headDim;
  const kw = spec.nKvHeads * spec.headDim;
  for (let l = 0; l < spec.layers; l++) {
    const L = t.layer(l);
    const p = `layers.${l}.`;
    norm(`${p}norm1`, L.norm1);
    if ('fused' in L.qkv) {
      one(`${p}qkv_w`, L.qkv.fused, [qw + 2 * kw, d], true);
      if (L.qkv.fusedBias) one(`${p}qkv_b`, L.qkv.fusedBias, [qw + 2 * kw]);
    } else {
      const { q, k, v, qBias, kBias, vBias } = L.qkv;
      src.slot(`${p}qkv_w`, src.piece(q, [qw, d], true), src.piece(k, [kw, d], true), src.piece(v, [kw, d], true));
      if (qBias && kBias && vBias) src.slot(`${p}qkv_b`, src.piece(qBias, [qw]), src.piece(kBias, [kw]), src.piece(vBias, [kw]));
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

/**
 * Loads a Hugging Face checkpoint folder (config.json + model.safetensors or a sharded index) into native
 * memory. Only headers are read here; the tensor data goes from the files straight into native storage in a
 * native job (cancellable with opts.signal, progress as phase 'load' in bytes), matrices stored F16/BF16
 * staying 16-bit.
 */
export async function loadModel(dir: string, opts: LoadModelOptions = {}): Promise<Model> {
  checkJobOptions(opts);
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
  let plans: { name: string; spec: ModelSpec; plan: LoadPlan }[];
  try {
    plans = stacks.map((st) => ({ name: st.name, spec: st.spec, plan: planTensors(new PlanBuilder(reader, st.names, dir), st.spec, st.names) }));
  } finally {
    await reader.close(); // the native job opens the files itself; the reader's handles are not needed
  }
  for (const st of stacks) validateSpec(st.spec);
  const bytes = plans.reduce((n, st) => n + st.plan.slots.reduce((m, sl) => m + sl.pieces.reduce((k, p) => k + p.length, 0), 0), 0);
  const stream = opts.stream === 'auto' || opts.stream === undefined ? bytes >= STREAM_AUTO_BYTES : opts.stream;
  const map = opts.mmap ?? process.env.FFMERGE_NO_MMAP !== '1';
  const loaded: { name: string; spec: ModelSpec; handle: NativeModelHandle }[] = [];
  try {
    for (const st of plans) {
      const handle = await runNativeJob('load', (onProgress) => modelAddon().modelLoad(st.spec, { ...st.plan, stream, map }, onProgress), opts);
      loaded.push({ name: st.name, spec: st.spec, handle });
    }
  } catch (e) {
    for (const st of loaded) modelAddon().modelDispose(st.handle);
    throw e;
  }
  const main = loaded.find((st) => st.name === arch.mainStack)!;
  // Encoder–decoder: the encoder stack is a second native model; the two share nothing but the config.
  const encoder = loaded.find((st) => st.name !== arch.mainStack);
  return new Model(config, main.spec, main.handle, encoder ? { spec: encoder.spec, handle: encoder.handle } : undefined);
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
