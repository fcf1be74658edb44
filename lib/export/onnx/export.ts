/**
 * exportOnnx(model, {out}): a checkpoint folder (tied or not) → a folder laid out as Hugging Face Optimum's
 * exports are, which onnxruntime and transformers.js load as they load Optimum's:
 *   out/onnx/model.onnx (+ model.onnx_data above 2 GB), config.json, generation_config.json, tokenizer files;
 *   encoder–decoder models (Marian): onnx/encoder_model.onnx + onnx/decoder_model_merged.onnx instead.
 * Each stored tensor of the checkpoint is one initializer, so the FF a merged window shares is held once by
 * the runtime too. The folder is built under a temporary name beside `out` and renamed into place.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { FfmergeError, abortError } from '../../errors';
import { checkSourceUnchanged, sourceStamp } from '../../checkpoint/source-stamp';
import { checkEdits, checkExtraFiles, checkOutputDir, checkRecordInfo, copyWritable, failedOutput, isWeightOrReferenceFile, moveIntoPlace, regularFileNames, RUN_KEYS, tempName, type ExtraFile } from '../../checkpoint/write';
import { CheckpointReader, type TieMap } from '../../checkpoint/ties';
import { asRecorded, checkGivenTies, comparedPairs, earlierWindows, recordedTies, windowDifference, type RecordedWindow } from '../../checkpoint/earlier-merges';
import { ffTies } from '../../checkpoint/write';
import { readConfig } from '../../model/load';
import { MAX_JSON_FILE_BYTES, readRegularFileSync } from '../../files';
import { checkCheckpoint } from '../../model/plan';
import { architectureOf, type Architecture, type Config, type StackName } from '../../model/architectures';
import { validateSpec } from '../../model/validate-spec';
import { configText } from '../../checkpoint/config-text';
import { checkJobOptions, withJobScope, type JobOptions, type JobScope, type Progress } from '../../native/job';
import { holdTempOutput } from '../../native/temp-outputs';
import { buildDecoderLm } from './decoder-lm';
import { Graph } from './graph';
import { needsExternalData, writeOnnx, OPSET, type SerializeResult } from './serialize';
import { DECODER_MERGED_FILE, ENCODER_FILE, buildSeq2SeqDecoderMerged, buildSeq2SeqEncoder, seq2seqUnsupported } from './seq2seq';
import { ExportWeights, type WeightDType } from './weights';
import { buildVitClassifier } from './vit';
import { checkOneOf, checkPath, isObject } from '../../arguments';
import { outputCard, readReport } from '../../pipeline/model-card';
import { TRAINING_KEYS } from '../../checkpoint/training-record';

export interface ExportOnnxOptions extends JobOptions {
  out: string;
  /** Weight precision in the file (computation stays float32): fp32 (default) or fp16. */
  dtype?: WeightDType | undefined;
  /** External data file: 'auto' (default) = only when the weights pass 2 GB. */
  externalData?: boolean | 'auto' | undefined;
  /** Replacement tensors (stored layout) and extra ties, as compress gives writeCheckpoint. */
  replace?: Map<string, Float32Array> | undefined;
  ties?: TieMap | undefined;
  /** Recorded under config.json's `ffmerge` key. */
  info?: Record<string, unknown> | undefined;
  /** Extra files written into the output folder (e.g. report.json), name → contents (or a function of the .onnx and .onnx_data bytes written). */
  extraFiles?: Record<string, ExtraFile> | undefined;
  overwrite?: boolean | undefined;
}

export interface ExportOnnxResult {
  out: string;
  /** The .onnx files written (relative to out): onnx/model.onnx, or encoder_model.onnx + decoder_model_merged.onnx. */
  files: { file: string; onnxBytes: number; dataBytes: number }[];
  /** Bytes of the .onnx files and of their external data files (0 when inline), all files together. */
  onnxBytes: number;
  dataBytes: number;
  external: boolean;
  dtype: WeightDType;
  /** Weight initializers (each stored tensor once per file) and the bytes they take, all files together. */
  weightTensors: number;
  weightBytes: number;
  /** Logical checkpoint tensors the graphs read; minus weightTensors = uses served by a shared initializer. */
  tensorUses: number;
  /**
   * The merged windows of an expanded source exported unshared (each layer its own FF initializers), because
   * their copies no longer agree (changed after compressing, e.g. fine-tuned without the ties): sharing them
   * would have thrown the difference away. Empty when every merge is shared (always, for a tied source).
   */
  unshared: UnsharedWindow[];
}

/** A merged window exported unshared: which one, the first tensor whose copies differ, and why. */
export interface UnsharedWindow {
  stack: StackName;
  /** As the record labels it ("2-3"). */
  window: string;
  layers: number[];
  /** The first copy that differs from the stored one it would share, and that stored one. */
  tensor: string;
  differsFrom: string;
  reason: string;
}

const ONNX_DIR = 'onnx';
const ONNX_FILE = 'model.onnx';
/** Most values of a sinusoidal position table written into a graph (64 MB as float32; Marian's: 262,144). */
const MAX_POSITION_TABLE = 2 ** 24;

/** One file of the export: its name under onnx/ and the function that builds its graph. */
interface OnnxFile {
  file: string;
  build: (g: Graph, w: ExportWeights) => void;
}

/** The ONNX files for a model's architecture; refuses the ones the exporter does not cover. */
function filesFor(arch: Architecture, config: Config): OnnxFile[] {
  const stacks = arch.stacks.map((s) => {
    const spec = s.spec(config);
    validateSpec(spec);
    return { name: s.name, spec, tensors: s.tensors(config, spec) };
  });
  const main = stacks.find((s) => s.name === arch.mainStack)!;
  const { spec, tensors } = main;
  if (stacks.length === 1 && spec.input === 'tokens' && spec.head === 'lm') return [{ file: ONNX_FILE, build: (g, w) => buildDecoderLm(g, w, spec, tensors) }];
  if (stacks.length === 1 && spec.input === 'patches' && spec.head === 'classifier') return [{ file: ONNX_FILE, build: (g, w) => buildVitClassifier(g, w, spec, tensors) }];
  const enc = stacks.find((s) => s.name === 'encoder');
  if (stacks.length === 2 && enc && main.name === 'decoder') {
    const why = seq2seqUnsupported(enc.spec, spec);
    if (why) throw new FfmergeError('UNSUPPORTED_ARCHITECTURE', `ONNX export of ${arch.modelType}: ${why}`);
    // The sinusoidal table is written into the graph as a constant, built on this thread: a max_position_embeddings
    // of 1e6 took 32 s and 2.7 GB, then failed untyped (tester GD). Real Marian tables are 512 rows.
    const rows = Math.max(enc.spec.maxPositions, spec.maxPositions);
    if (rows * spec.dModel > MAX_POSITION_TABLE) {
      throw new FfmergeError('INVALID_CONFIG', `ONNX export of ${arch.modelType}: max_position_embeddings ${rows} × d_model ${spec.dModel} makes a position table of ${rows * spec.dModel} values, more than an export writes into its graph (${MAX_POSITION_TABLE}); real models have 512 or 1024 positions`);
    }
    // Optimum's seq2seq layout, as transformers.js loads it: the encoder, and the merged decoder it runs every step
    return [
      { file: ENCODER_FILE, build: (g, w) => buildSeq2SeqEncoder(g, w, enc.spec, enc.tensors) },
      { file: DECODER_MERGED_FILE, build: (g, w) => buildSeq2SeqDecoderMerged(g, w, spec, tensors) },
    ];
  }
  throw new FfmergeError(
    'UNSUPPORTED_ARCHITECTURE',
    `ONNX export supports decoder-only language models (such as gpt2, llama, qwen2, qwen3, mistral), ViT classifiers and Marian translation models; ${arch.modelType} is not one yet`,
  );
}

/** Throws UNSUPPORTED_ARCHITECTURE (or a config error) unless exportOnnx can export this model; reads config.json only. */
export async function checkOnnxExportable(modelDir: string): Promise<void> {
  checkPath(modelDir, 'checkOnnxExportable(modelDir): modelDir');
  const config = await readConfig(modelDir);
  filesFor(architectureOf(config), config);
}

/**
 * generation_config.json for the folder: the source's, or the special ids config.json gives; none for a model
 * with neither (an image classifier generates nothing: an empty `{}` would only suggest it does).
 */
function generationConfig(source: string, config: Config): string | undefined {
  const file = path.join(source, 'generation_config.json');
  // a regular file only: a FIFO there would block the export forever (and the signal with it)
  if (fs.existsSync(file)) return readRegularFileSync(file, 'INVALID_CONFIG', MAX_JSON_FILE_BYTES);
  const gen: Record<string, unknown> = {};
  for (const k of ['bos_token_id', 'eos_token_id', 'pad_token_id', 'decoder_start_token_id']) if (config[k] != null) gen[k] = config[k];
  return Object.keys(gen).length ? JSON.stringify(gen, null, 2) + '\n' : undefined;
}

/**
 * An ffmerge output's merges for a standalone export: the ties an expanded one needs ({} for a tied one, which
 * has them, or a plain model), and the windows shared (with those only an older tied output's tie map holds).
 * In an expanded output each window is checked on its own: one whose copies no longer agree (fine-tuned or
 * edited after compressing) is exported as it is, unshared, and listed in `unshared` with the first tensor that
 * differs, while every window whose copies still agree is shared. A tied one that disagrees with its record is
 * refused (recordedTies).
 */
async function outputMerges(modelDir: string, config: Config, job: JobOptions): Promise<{ ties: TieMap; windows: RecordedWindow[]; unshared: UnsharedWindow[] }> {
  const reader = await CheckpointReader.open(modelDir);
  try {
    const windows = earlierWindows(config, reader, modelDir);
    if (Object.keys(reader.ties).length > 0) return { ties: await recordedTies(config, windows, reader, job), windows, unshared: [] };
    const ties: TieMap = {};
    const shared: RecordedWindow[] = [];
    const unshared: UnsharedWindow[] = [];
    // each window's copies compared, counted by the pair (an expanded output of a large model reads gigabytes)
    const pairs = windows.map((w) => comparedPairs(config, w, reader).length);
    const total = pairs.reduce((a, b) => a + b, 0);
    let done = 0;
    const report = () => job.onProgress?.({ phase: 'inspect', done, total, unit: 'tensors' });
    if (total) report();
    for (const [i, w] of windows.entries()) {
      const before = done;
      const differs = await windowDifference(config, w, reader, job.signal, () => {
        done++;
        report();
      });
      // a window found to differ is left at its first difference: its other pairs are not read
      if (done !== before + pairs[i]!) {
        done = before + pairs[i]!;
        report();
      }
      if (differs === undefined) {
        Object.assign(ties, ffTies(config, w.stack, w.layers));
        shared.push(w);
        continue;
      }
      unshared.push({
        stack: w.stack,
        window: typeof w.window === 'string' ? w.window : w.layers.join('+'),
        layers: [...w.layers],
        tensor: differs[0],
        differsFrom: differs[1],
        reason: `${differs[0]} differs from ${differs[1]}, the copy it would share (was the expanded output changed after compressing, e.g. fine-tuned without its ties?); sharing one copy would discard that difference`,
      });
    }
    return { ties, windows: shared, unshared };
  } finally {
    await reader.close();
  }
}

/**
 * Writes a model folder (original or compressed, tied or not) as ONNX (opset 17, Optimum's layout and names:
 * onnx/model.onnx, or encoder_model.onnx + decoder_model_merged.onnx for Marian) with its config and tokenizer
 * files. A tensor shared by several layers stays one initializer. Atomic; `signal` and `onProgress` as usual.
 */
export async function exportOnnx(modelDir: string, opts: ExportOnnxOptions): Promise<ExportOnnxResult> {
  checkPath(modelDir, 'exportOnnx(modelDir, options): modelDir');
  if (typeof opts !== 'object' || opts === null || typeof opts.out !== 'string') {
    throw new FfmergeError('INVALID_ARGUMENT', 'exportOnnx(modelDir, options): options.out must be the output folder');
  }
  checkJobOptions(opts, 'exportOnnx(modelDir, options): options', ['out', 'dtype', 'externalData', 'replace', 'ties', 'info', 'extraFiles', 'overwrite']);
  checkExtraFiles(opts.extraFiles, 'exportOnnx', (n) => n === 'config.json' || n === ONNX_DIR);
  checkRecordInfo(opts.info, 'exportOnnx', ['format', 'ties', 'onnx']);
  checkEdits(opts, 'exportOnnx');
  checkOneOf(opts.dtype, 'exportOnnx: dtype', ['fp32', 'fp16'] as const);
  checkOneOf(opts.externalData, 'exportOnnx: externalData', [true, false, 'auto'] as const);
  if (opts.signal?.aborted) throw abortError(opts.signal);
  checkOutputDir(modelDir, opts.out, opts.overwrite);
  return withJobScope(opts, (o, scope) => exportChecked(modelDir, o, scope));
}

async function exportChecked(modelDir: string, opts: ExportOnnxOptions, scope: JobScope): Promise<ExportOnnxResult> {
  // the source as it is now: one replaced while the output is written is refused before the rename
  const stamp = sourceStamp(modelDir);
  const config = await readConfig(modelDir);
  const files = filesFor(architectureOf(config), config);
  const dtype = opts.dtype ?? 'fp32';
  // An ffmerge output exported on its own: its merges are shared here as in a tied checkpoint, so an expanded
  // one (equal copies, checked) gets one initializer per merge too, as its record and card say. compress hands
  // its ties over instead.
  checkGivenTies(config, opts.ties, 'exportOnnx');
  const merges = opts.ties ? undefined : await outputMerges(modelDir, config, opts);
  const ties = opts.ties ?? merges!.ties;
  const weights = await ExportWeights.open(modelDir, { dtype, replace: opts.replace, ties });
  const target = path.resolve(opts.out);
  const tmp = tempName(target);
  let madeParent: string | undefined;
  const release = holdTempOutput(tmp);
  try {
    // the loader's check of the checkpoint (headers only): nothing is written from a checkpoint eval refuses,
    // and stored layers the config leaves out (which the graphs would silently not read) are refused too
    checkCheckpoint(config, weights.reader, modelDir);
    madeParent = fs.mkdirSync(path.dirname(target), { recursive: true });
    fs.mkdirSync(path.join(tmp, ONNX_DIR), { recursive: true });
    // Every file has its own initializers (a tensor read by several layers of one file is one of them).
    // Graphs hold no weight data until written, so all are planned first: with 'auto', either every file
    // keeps its weights in an external data file or none does, as transformers.js's use_external_data_format
    // flag is read for all of a model's files.
    const graphs = files.map((f) => {
      const g = new Graph(`${String(config.model_type)}-ffmerge`);
      const w = weights.forGraph();
      f.build(g, w);
      return { file: f.file, g, w };
    });
    const mode = opts.externalData ?? 'auto';
    const needed = graphs.some((x) => needsExternalData(x.g));
    if (mode === false && needed) {
      throw new FfmergeError('INVALID_ARGUMENT', 'exportOnnx: externalData false, but the weights pass the 2 GB that one ONNX file can hold inline: leave externalData at auto (or true)');
    }
    const externalData = mode === 'auto' ? needed : mode;
    const written: (SerializeResult & { file: string; weightTensors: number; tensorUses: number })[] = [];
    // one 'onnx' count over every file's weights
    const weightsOf = (g: Graph) => g.initializers.filter((i) => i.kind === 'weight').length;
    const allWeights = graphs.reduce((n, x) => n + weightsOf(x.g), 0);
    let before = 0;
    const onProgress = opts.onProgress;
    for (const { file, g, w } of graphs) {
      const r = await writeOnnx(g, path.join(tmp, ONNX_DIR, file), {
        externalData,
        signal: opts.signal,
        onProgress: onProgress && ((p: Progress) => onProgress({ ...p, done: before + p.done, total: allWeights })),
      });
      before += weightsOf(g);
      written.push({ ...r, file, weightTensors: weightsOf(g), tensorUses: w.uses.size });
    }
    const external = written.some((r) => r.external);
    const source = (config.ffmerge ?? {}) as Record<string, unknown>;
    // what the record says was merged: the windows shared here (those only the tie map held included); a
    // window whose expanded copies differ is left out of them and named under `unshared`, with why
    const { windows: _listed, ...unmerged } = source;
    const unshared = merges?.unshared ?? [];
    const prev: Record<string, unknown> =
      unshared.length > 0
        ? {
            ...unmerged,
            ...(merges!.windows.length ? { windows: asRecorded(merges!.windows) } : {}),
            unshared: unshared.map((u) => `${u.stack} window ${u.window} is not shared: its expanded copies differ, so they are exported as they are: ${u.reason}`).join('; '),
          }
        : merges?.windows.length && !Object.hasOwn(source, 'windows')
          ? { ...source, windows: asRecorded(merges.windows) }
          : source;
    const outConfig: Config = {
      ...config,
      // format: what this folder holds. The source's "tied" would tell a reader of the record (and of its
      // ties) that model.safetensors lacks the tied tensors, and there is no model.safetensors here.
      ffmerge: { ...(recordsRun(opts.info) ? withoutRunKeys(prev) : prev), ...opts.info, format: 'onnx', ...(Object.keys(ties).length ? { ties: { ...(prev.ties as TieMap), ...ties } } : {}), onnx: { opset: OPSET, dtype, external, files: files.map((f) => `${ONNX_DIR}/${f.file}`) } },
      // transformers.js reads this to fetch model.onnx_data beside model.onnx
      ...(external ? { 'transformers.js_config': { ...(config['transformers.js_config'] as object), use_external_data_format: true } } : {}),
    };
    fs.writeFileSync(path.join(tmp, 'config.json'), configText(path.join(modelDir, 'config.json'), outConfig));
    const generation = generationConfig(modelDir, config);
    if (generation !== undefined) fs.writeFileSync(path.join(tmp, 'generation_config.json'), generation);
    for (const name of regularFileNames(modelDir)) {
      if (isWeightOrReferenceFile(name) || name === 'generation_config.json') continue;
      // an ffmerge output's card names its checkpoint format and files: rebuilt below for this folder, or left out
      if (name === 'README.md' && config.ffmerge !== undefined) continue;
      if (name === 'preprocessor_config.json' && config.num_channels === 1) {
        fs.writeFileSync(path.join(tmp, name), oneChannelPreprocessor(path.join(modelDir, name)));
        continue;
      }
      copyWritable(path.join(modelDir, name), path.join(tmp, name));
    }
    const sum = (k: 'onnxBytes' | 'dataBytes' | 'weightBytes' | 'weightTensors' | 'tensorUses') => written.reduce((s, r) => s + r[k], 0);
    const bytes = sum('onnxBytes') + sum('dataBytes');
    const extra = { ...opts.extraFiles };
    // An ffmerge model's report (the same weights: it still describes them) and card come along, rewritten for
    // this folder; the source's card is never copied through (it names the checkpoint's format and files).
    // (not when a merge was exported unshared: its savings are not this folder's)
    const report = Object.hasOwn(extra, 'report.json') || !Object.hasOwn(prev, 'windows') || unshared.length > 0 ? undefined : readReport(modelDir);
    if (report) {
      report.out = { dir: target, format: 'onnx', bytes };
      extra['report.json'] = JSON.stringify(report, null, 2) + '\n';
    }
    const card = Object.hasOwn(extra, 'README.md') ? undefined : outputCard(outConfig, 'onnx', target, report, modelDir);
    if (card !== undefined) extra['README.md'] = card;
    for (const [name, text] of Object.entries(extra)) fs.writeFileSync(path.join(tmp, name), typeof text === 'function' ? text({ bytes }) : text);
    if (opts.signal?.aborted) throw abortError(opts.signal);
    checkSourceUnchanged(modelDir, stamp, 'it was exported');
    moveIntoPlace(tmp, target, opts.out, opts.overwrite === true);
    scope.commit();
    return {
      out: target,
      files: written.map((r) => ({ file: `${ONNX_DIR}/${r.file}`, onnxBytes: r.onnxBytes, dataBytes: r.dataBytes })),
      onnxBytes: sum('onnxBytes'),
      dataBytes: sum('dataBytes'),
      external,
      dtype,
      weightTensors: sum('weightTensors'),
      weightBytes: sum('weightBytes'),
      tensorUses: sum('tensorUses'),
      unshared,
    };
  } catch (e) {
    throw failedOutput(e, tmp, target, madeParent, opts.out);
  } finally {
    release();
    await weights.close();
  }
}

/**
 * The record's keys that describe one run (README: the latest only). A caller's info that records a run
 * (compress: it has any of them) replaces them all: one it leaves out (vanilla and select leave out the
 * anchor) must not survive from the source's run. Other info (a note of the caller's) leaves the run as it was.
 */
const recordsRun = (info: Record<string, unknown> | undefined): boolean => info !== undefined && Object.keys(info).some((k) => RUN_KEYS.includes(k));
function withoutRunKeys(record: Record<string, unknown>): Record<string, unknown> {
  // the training runs too: compress's info carries the source's runs as sourceFinetune (…)
  return Object.fromEntries(Object.entries(record).filter(([k]) => !RUN_KEYS.includes(k) && !(TRAINING_KEYS as readonly string[]).includes(k)));
}

/**
 * A one-channel image model's preprocessor config, as transformers.js must read it: without `do_convert_rgb:
 * false` it converts every image to RGB, and a mean and std of one value for three channels fail its check.
 * A config that says otherwise, or that is not JSON, is copied as it is.
 */
function oneChannelPreprocessor(file: string): string {
  const text = fs.readFileSync(file, 'utf8');
  let pre: unknown;
  try {
    pre = JSON.parse(text);
  } catch {
    return text;
  }
  if (!isObject(pre) || Object.hasOwn(pre, 'do_convert_rgb')) return text;
  return JSON.stringify({ ...pre, do_convert_rgb: false }, null, 2) + '\n';
}
