/**
 * loadModel(dir): config.json + safetensors → a native Model. JS reads the config and the safetensors headers,
 * checks every tensor's shape against the config and plans where each canonical slot's bytes are (GPT-2's
 * Conv1D weights marked for transposing, q/k/v pieces for concatenating: plan.ts, the check the writer and
 * the exporter share); a native job then reads the bytes straight into native memory
 * (native/core/model/load.h). No tensor data passes through JS.
 */
import { MAX_JSON_FILE_BYTES, readRegularFile } from '../files';
import * as path from 'node:path';
import { FfmergeError, fromNativeError } from '../errors';
import { checkBoolean, checkOneOf, checkPath, isObject } from '../arguments';
import { checkJobOptions, runNativeJob, throwIfAborted, type JobOptions, type Progress } from '../native/job';
import { modelAddon, type NativeModelHandle } from '../native/model';
import { CheckpointReader } from '../checkpoint/ties';
import { architectureOf } from './architectures';
import { Model, generationConfigFrom, type GenerationConfig } from './model';
import { configOf } from './inspect';
import { checkCheckpoint, describeStacks, type CheckedStack } from './plan';
import type { ModelSpec } from './spec';
import { validateSpec } from './validate-spec';

export type { LoadPlan } from './plan';

export interface LoadModelOptions extends JobOptions {
  /**
   * Keep each layer's weights on disk and read them when a pass reaches the layer, freeing them after
   * (embeddings and head stay resident): memory is bounded by about one layer, at the cost of re-reading
   * the layer (from the page cache, usually) on every pass. 'auto' (default) streams checkpoints of at least
   * STREAM_AUTO_BYTES.
   */
  stream?: boolean | 'auto' | undefined;
  /**
   * Map 16-bit (BF16/F16) weight matrices from the checkpoint files instead of reading them into fresh
   * memory (default true; env FFMERGE_NO_MMAP=1 turns it off). Loads then take about a plain read of the
   * files, and the pages stay in the OS page cache (shared, reclaimable). As with any mmap-based loader, a
   * checkpoint file truncated while its model is in use crashes the process (SIGBUS): turn this off if the
   * files may change under a running job. float32 weights are always read.
   */
  mmap?: boolean | undefined;
}

/** Checkpoints this large or larger are streamed by layer unless `stream: false`. */
export const STREAM_AUTO_BYTES = 2 * 2 ** 30;

export function readConfig(dir: string): Promise<Record<string, unknown>> {
  return configOf(dir, (f) => readRegularFile(f, 'INVALID_CONFIG', MAX_JSON_FILE_BYTES));
}

/** The greedy settings of a model folder: generation_config.json, with config.json for missing ids. */
export async function loadGenerationConfig(dir: string, config: Record<string, unknown> = {}): Promise<GenerationConfig> {
  checkPath(dir, 'loadGenerationConfig(dir, config): dir');
  return generationConfigFrom(await readGenerationFile(dir), config);
}

/** A folder's generation_config.json as an object ({} where there is none); malformed is INVALID_CONFIG. */
async function readGenerationFile(dir: string): Promise<Record<string, unknown>> {
  const file = path.join(dir, 'generation_config.json');
  let g: unknown;
  try {
    g = JSON.parse(await readRegularFile(file, 'INVALID_CONFIG', MAX_JSON_FILE_BYTES));
  } catch (e) {
    if (e instanceof FfmergeError) throw e;
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return {};
    throw new FfmergeError('INVALID_CONFIG', `${file} is not valid JSON: ${(e as Error).message}`, { cause: e });
  }
  if (!isObject(g)) throw new FfmergeError('INVALID_CONFIG', `${file} is not a JSON object`);
  return g;
}

/**
 * Loads a Hugging Face checkpoint folder (config.json + model.safetensors or a sharded index) into native
 * memory. Only headers are read here; the tensor data goes from the files straight into native storage in a
 * native job (cancellable with opts.signal, progress as phase 'load' in bytes), matrices stored F16/BF16
 * staying 16-bit.
 */
export async function loadModel(dir: string, opts: LoadModelOptions = {}): Promise<Model> {
  checkPath(dir, 'loadModel(dir, options): dir');
  checkJobOptions(opts, 'loadModel(dir, options): options', ['stream', 'mmap']);
  checkOneOf(opts.stream, 'loadModel: stream', [true, false, 'auto'] as const);
  checkBoolean(opts.mmap, 'loadModel: mmap');
  throwIfAborted(opts.signal);
  const config = await readConfig(dir);
  const arch = architectureOf(config);
  // Specs first: a bad config fails before any tensor is read.
  const stacks = describeStacks(config);
  // CheckpointReader resolves ffmerge's tie map, so a `tied` output loads like any checkpoint.
  const reader = await CheckpointReader.open(dir);
  let plans: CheckedStack[];
  try {
    plans = checkCheckpoint(config, reader, dir, stacks);
  } finally {
    await reader.close(); // the native job opens the files itself; the reader's handles are not needed
  }
  const planBytes = (st: CheckedStack) => st.plan.slots.reduce((m, sl) => m + sl.pieces.reduce((k, p) => k + p.length, 0), 0);
  const bytes = plans.reduce((n, st) => n + planBytes(st), 0);
  const stream = opts.stream === 'auto' || opts.stream === undefined ? bytes >= STREAM_AUTO_BYTES : opts.stream;
  const map = opts.mmap ?? process.env.FFMERGE_NO_MMAP !== '1';
  const loaded: { name: string; spec: ModelSpec; handle: NativeModelHandle }[] = [];
  try {
    // One count over the stacks (an encoder–decoder model loads two): each stack's bytes go on from those before
    // it, the total counting the stacks still to load.
    let before = 0;
    for (const [i, st] of plans.entries()) {
      const rest = plans.slice(i + 1).reduce((n, x) => n + planBytes(x), 0);
      let own = 0;
      const report = opts.onProgress;
      const relay = (p: Progress) => {
        if (p.phase !== 'load') return report!(p);
        own = p.total;
        report!({ ...p, done: before + p.done, total: before + p.total + rest });
      };
      const job: LoadModelOptions = report ? { ...opts, onProgress: relay } : opts;
      const handle = await runNativeJob('load', (onProgress) => modelAddon().modelLoad(st.spec, { ...st.plan, stream, map }, onProgress), job);
      loaded.push({ name: st.name, spec: st.spec, handle });
      before += own;
    }
    const main = loaded.find((st) => st.name === arch.mainStack)!;
    // Encoder–decoder: the encoder stack is a second native model; the two share nothing but the config.
    const encoder = loaded.find((st) => st.name !== arch.mainStack);
    // An encoder–decoder model generates with its folder's generation_config.json, as transformers'
    // from_pretrained loads it (without it, translate() would fall back to max_length 20). One without the ids
    // generation needs (decoder start, pad) still loads for everything else; translate() then says which is
    // missing. Any other bad setting is refused here, as transformers refuses it.
    let generation: GenerationConfig | undefined;
    if (encoder) {
      const gen = await readGenerationFile(dir);
      const has = (k: string) => (gen[k] ?? config[k]) != null;
      if (has('decoder_start_token_id') && has('pad_token_id')) generation = generationConfigFrom(gen, config);
    }
    return new Model(config, main.spec, main.handle, encoder, generation);
  } catch (e) {
    for (const st of loaded) modelAddon().modelDispose(st.handle);
    throw e;
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
