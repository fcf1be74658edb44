/**
 * compress() for image classifiers (ViT) and translation models (Marian): the same method as for language
 * models — features on calibration data, correlation, alignment to the anchor, averaging, a window search
 * scored on validation — with the task's own data and metric (top-1 accuracy / greedy BLEU, both higher is
 * better, so the search takes the argmax).
 *
 * Encoder–decoder models have two stacks. `stacks` says which are merged:
 *  - 'both-same' (default, as the paper): the same window index in the encoder and the decoder, each with its
 *    own anchor and its own features;
 *  - 'independent': each stack's window searched with the other stack unmerged, then the two best combined;
 *  - 'encoder' / 'decoder': one stack only.
 * Image models reuse the prefix like decoders: the base model's states entering each candidate start are kept
 * once, and a candidate starting at s runs layers s.. only. Translation candidates are scored by a full
 * greedy evaluation (the decoder's states depend on what it generated).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { FfmergeError, abortError } from '../errors';
import type { JobOptions, ProgressFn } from '../native/job';
import { CorrelationAccumulator } from '../native/correlation';
import { checkOutputDir, ffReplacements, ffTies, writeCheckpoint, type OutputFormat } from '../checkpoint/write';
import { loadTokenizer, type Tokenizer } from '../tokenizer';
import { loadModel } from '../model/load';
import type { Model, StackName } from '../model/model';
import { inspectModel } from '../model/inspect';
import { checkK, enumerateWindows, kFromFraction, parseWindow, windowLabel, windowLayers, type Anchor, type Window } from '../merge/windows';
import { classNamesFromConfig, conformImages, loadIdxImages, loadImageFolder, loadPreprocessor, type ImagePreprocessor, type ImageSet } from '../data/images';
import { readParallel, readParallelTsv, type SentencePair } from '../data/parallel';
import { imageBatches, translationBatches, type FeatureBatch } from '../data/feature-batches';
import { evaluateImageClassifier } from '../eval/accuracy';
import { argmaxRows } from '../metrics/accuracy';
import { evaluateTranslation, loadGenerationConfig } from '../eval/translate';
import type { GenerationConfig } from '../model/model';
import { PairCorrelations } from './features';
import { mergeWindow, pairsFor, stackSpecOf, type MergeMethod, type MergedWindow } from './align';

/** Images: an idx pair (Fashion-MNIST style) or a folder with one sub-folder per class. */
export type ImageSource = { images: string; labels: string } | { folder: string };
/** Sentence pairs: two line-aligned files (.gz read transparently) or one TSV "source<TAB>target". */
export type ParallelSource = { source: string; target: string } | { tsv: string };
export type StackMode = 'both-same' | 'independent' | 'encoder' | 'decoder';

interface CommonOptions {
  k?: number;
  fraction?: number;
  /** 'auto' (search every start) or one window "a-b" (applied to every merged stack). */
  window?: 'auto' | string;
  anchor?: Anchor;
  method?: MergeMethod;
  out?: string;
  format?: OutputFormat;
  overwrite?: boolean;
  signal?: AbortSignal;
  onProgress?: ProgressFn;
}

export interface ImageCompressOptions extends CommonOptions {
  /** Calibration and validation images (validation: a later range of the same set unless `validation` is given). */
  images: ImageSource;
  validation?: ImageSource;
  test?: ImageSource;
  /** Images whose every position (CLS + patches) is a feature (default 600 ≈ 10k tokens on 17-token images). */
  calibrationImages?: number;
  /** First validation image (default: 55000 when the set has 60000 images, as Fashion-MNIST's split; else right after calibration). */
  validationStart?: number;
  /** Validation images scored per candidate (default 1000). */
  validationImages?: number;
  testImages?: number;
}

export interface TranslationCompressOptions extends CommonOptions {
  /** Calibration pairs (teacher forcing on the reference; padding masked). */
  parallel: ParallelSource;
  /** Validation pairs scored by greedy BLEU (default: the pairs after the calibration ones). */
  validation?: ParallelSource;
  test?: ParallelSource;
  calibrationPairs?: number;
  /** Sentences translated per candidate (default 100: greedy decoding is the cost). */
  validationSentences?: number;
  testSentences?: number;
  stacks?: StackMode;
}

export type ModalityCompressOptions = ImageCompressOptions | TranslationCompressOptions;

export interface MetricInfo {
  name: 'accuracy' | 'bleu';
  higherIsBetter: true;
}

export interface ModalityCandidate {
  /** Window per merged stack, e.g. { encoder: "2-3", decoder: "2-3" }. */
  windows: Partial<Record<StackName, string>>;
  score: number;
}

export interface ModalityCompressResult {
  model: string;
  modelType: string;
  layers: Partial<Record<StackName, number>>;
  k: number;
  method: MergeMethod;
  anchor: Anchor;
  stacks: StackMode;
  windows: { stack: StackName; window: string; layers: number[]; anchor: number }[];
  candidates: ModalityCandidate[];
  metric: MetricInfo;
  base: { validation: number; test?: number };
  merged: { validation: number; test?: number };
  params: { before: number; after: number; removed: number; fraction: number };
  bytes: { before: number; after: number; removed: number; fraction: number };
  data: { calibration: number; calibrationFeatures: Partial<Record<StackName, number>>; validation: number; test?: number; unit: 'images' | 'sentences' };
  timings: Record<string, number>;
  out?: { dir: string; format: OutputFormat; bytes: number };
}

export function isImageOptions(o: object): o is ImageCompressOptions {
  return 'images' in o;
}
export function isTranslationOptions(o: object): o is TranslationCompressOptions {
  return 'parallel' in o;
}

function checkFiles(files: (string | undefined)[]): void {
  for (const f of files) if (f !== undefined && !fs.existsSync(f)) throw new FfmergeError('DATA_NOT_FOUND', `data file ${f} does not exist`);
}

/**
 * An image set from a source. Folder classes map to the model's labels by name (config.json id2label) when
 * every sub-folder is one of them, else by sorted position (torchvision ImageFolder), and a
 * folder's images — read class by class — are put in a fixed pseudo-random order, so that leading and
 * trailing ranges (calibration, validation) hold every class.
 */
export async function loadImageSource(src: ImageSource, pre: ImagePreprocessor, modelConfig: Record<string, unknown> = {}): Promise<ImageSet> {
  if ('folder' in src) {
    checkFiles([src.folder]);
    if (!fs.statSync(src.folder).isDirectory()) {
      throw new FfmergeError('INVALID_DATA', `${src.folder} is not an image folder (expected <class>/<image>.png|.jpg sub-folders)`);
    }
    // the model's names when the sub-folders use them; else sorted sub-folder names = label indices (ImageFolder)
    const named = classNamesFromConfig(modelConfig);
    const folders = fs.readdirSync(src.folder, { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => e.name);
    const classNames = named && folders.every((f) => named.includes(f)) ? named : undefined;
    return shuffledImages(await loadImageFolder(src.folder, pre, classNames ? { classNames } : {}));
  }
  checkFiles([src.images, src.labels]);
  return loadIdxImages(src.images, src.labels);
}

/** The images in a fixed order drawn by a seeded LCG (Fisher–Yates): the same folder gives the same order. */
function shuffledImages(set: ImageSet): ImageSet {
  let seed = 0x5eed;
  const rand = () => ((seed = (seed * 1664525 + 1013904223) >>> 0) / 2 ** 32);
  const order = Int32Array.from({ length: set.count }, (_, i) => i);
  for (let i = set.count - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [order[i], order[j]] = [order[j]!, order[i]!];
  }
  const per = set.height * set.width * set.channels;
  const pixels = new Uint8Array(set.pixels.length);
  order.forEach((from, to) => pixels.set(set.pixels.subarray(from * per, (from + 1) * per), to * per));
  return { ...set, pixels, ...(set.labels ? { labels: Int32Array.from(order, (from) => set.labels![from]!) } : {}) };
}

export async function loadParallelSource(src: ParallelSource): Promise<SentencePair[]> {
  if ('tsv' in src) {
    checkFiles([src.tsv]);
    return readParallelTsv(src.tsv);
  }
  checkFiles([src.source, src.target]);
  return readParallel(src.source, src.target);
}

function count(v: number | undefined, what: string, dflt: number): number {
  const n = v ?? dflt;
  if (!Number.isInteger(n) || n <= 0) throw new FfmergeError('INVALID_ARGUMENT', `${what} must be a positive integer (got ${v})`);
  return n;
}

/** What differs between the two tasks: features, scoring. */
interface Task {
  metric: MetricInfo;
  calibration: FeatureBatch[];
  calibrationUnits: number;
  validationUnits: number;
  testUnits?: number;
  score(model: Model, opts: JobOptions): Promise<number>;
  /**
   * Prefix reuse (encoder-only models): keeps the base model's states entering these layers on the validation
   * data, after which scoreFrom(view, s) runs only layers s.. for a candidate whose window starts at s.
   */
  prepare?(model: Model, starts: Set<number>, opts: JobOptions): Promise<void>;
  scoreFrom?(model: Model, start: number, opts: JobOptions): Promise<number>;
  test?(model: Model, opts: JobOptions): Promise<number>;
}

async function imageTask(model: Model, dir: string, o: ImageCompressOptions): Promise<Task> {
  const pre = await loadPreprocessor(dir);
  const config = model.config as Record<string, unknown>;
  const set = await conformImages(await loadImageSource(o.images, pre, config), pre);
  const calN = Math.min(count(o.calibrationImages, 'calibrationImages', 600), set.count);
  const valSet = o.validation ? await conformImages(await loadImageSource(o.validation, pre, config), pre) : set;
  const valStart = o.validationStart ?? (o.validation ? 0 : set.count === 60000 ? 55000 : calN);
  const valN = Math.min(count(o.validationImages, 'validationImages', 1000), valSet.count - valStart);
  if (valN <= 0) throw new FfmergeError('INVALID_DATA', `no validation images: the set has ${valSet.count} images and validation starts at ${valStart}`);
  const testSet = o.test ? await conformImages(await loadImageSource(o.test, pre, config), pre) : undefined;
  const testN = testSet ? Math.min(count(o.testImages, 'testImages', testSet.count), testSet.count) : undefined;
  const patch = model.spec.patch ?? 1;
  const valBatches = imageBatches(valSet, pre, patch, { start: valStart, count: valN, batchSize: 250 });
  const labels = valSet.labels!.subarray(valStart, valStart + valN);
  const classes = model.spec.numLabels ?? 0;
  // states[layer][batch]: the base model's hidden state entering `layer`
  const states = new Map<number, Float32Array[]>();
  return {
    prepare: async (m, starts, opts) => {
      const last = Math.max(...starts);
      for (const b of valBatches) {
        let h = (await m.forward(b.input, { output: 'hidden', toLayer: 0, ...(opts.signal ? { signal: opts.signal } : {}) })).hidden!;
        for (let l = 0; l <= last; l++) {
          if (starts.has(l)) states.set(l, [...(states.get(l) ?? []), h]);
          if (l < last) h = (await m.forward(b.input, { output: 'hidden', fromLayer: l, toLayer: l + 1, hidden: h, ...(opts.signal ? { signal: opts.signal } : {}) })).hidden!;
        }
      }
    },
    scoreFrom: async (m, start, opts) => {
      const kept = states.get(start);
      if (!kept) throw new Error(`validation states entering layer ${start} were not kept`);
      let correct = 0;
      let row = 0;
      for (const [i, b] of valBatches.entries()) {
        const r = await m.forward(b.input, { output: 'logits', fromLayer: start, hidden: kept[i]!, ...(opts.signal ? { signal: opts.signal } : {}) });
        const pred = argmaxRows(r.logits!, classes);
        for (let j = 0; j < b.input.batch; j++) if (pred[j] === labels[row++]) correct++;
      }
      return correct / valN;
    },
    metric: { name: 'accuracy', higherIsBetter: true },
    calibration: imageBatches(set, pre, patch, { start: 0, count: calN, batchSize: 100 }),
    calibrationUnits: calN,
    validationUnits: valN,
    ...(testN !== undefined ? { testUnits: testN } : {}),
    score: async (m, opts) => (await evaluateImageClassifier(m, valSet, pre, { ...opts, start: valStart, count: valN })).accuracy,
    ...(testSet ? { test: async (m: Model, opts: JobOptions) => (await evaluateImageClassifier(m, testSet, pre, { ...opts, count: testN! })).accuracy } : {}),
  };
}

async function translationTask(model: Model, dir: string, o: TranslationCompressOptions): Promise<Task> {
  const tokenizer: Tokenizer = await loadTokenizer(dir);
  const generation: GenerationConfig = await loadGenerationConfig(dir, model.config as Record<string, unknown>);
  const pairs = await loadParallelSource(o.parallel);
  const calN = Math.min(count(o.calibrationPairs, 'calibrationPairs', 600), pairs.length);
  const valAll = o.validation ? await loadParallelSource(o.validation) : pairs.slice(calN);
  const val = valAll.slice(0, count(o.validationSentences, 'validationSentences', 100));
  if (val.length === 0) throw new FfmergeError('INVALID_DATA', 'no validation pairs: give a validation corpus, or more pairs than the calibration budget');
  const testAll = o.test ? await loadParallelSource(o.test) : undefined;
  const test = testAll?.slice(0, count(o.testSentences, 'testSentences', testAll.length));
  const bleu = async (m: Model, ps: SentencePair[], opts: JobOptions) => (await evaluateTranslation(m, tokenizer, ps, { ...opts, generation })).bleu.score;
  return {
    metric: { name: 'bleu', higherIsBetter: true },
    calibration: translationBatches(pairs.slice(0, calN), tokenizer, { decoderStartTokenId: generation.decoderStartTokenId, padTokenId: generation.padTokenId }),
    calibrationUnits: calN,
    validationUnits: val.length,
    ...(test ? { testUnits: test.length, test: (m: Model, opts: JobOptions) => bleu(m, test, opts) } : {}),
    score: (m, opts) => bleu(m, val, opts),
  };
}

/** Correlations for the (anchor, layer) pairs of each stack, in one pass of the calibration batches. */
async function collectStackCorrelations(
  model: Model,
  batches: FeatureBatch[],
  pairs: Map<StackName, [number, number][]>,
  opts: JobOptions,
): Promise<{ corr: Map<StackName, PairCorrelations>; rows: Partial<Record<StackName, number>> }> {
  const accs = new Map<StackName, CorrelationAccumulator>();
  const needed = new Map<StackName, number[]>();
  for (const [stack, ps] of pairs) {
    if (ps.length === 0) continue;
    const spec = stackSpecOf(model, stack);
    accs.set(stack, new CorrelationAccumulator(Array(spec.layers).fill(spec.dFF) as number[], ps));
    needed.set(stack, [...new Set(ps.flat())].sort((a, b) => a - b));
  }
  const main = model.mainStack;
  const other: StackName | undefined = model.encoderSpec ? 'encoder' : undefined;
  const rows: Partial<Record<StackName, number>> = {};
  let done = 0;
  for (const b of batches) {
    const mainLayers = needed.get(main);
    const encLayers = other ? needed.get(other) : undefined;
    const toLayer = mainLayers ? mainLayers[mainLayers.length - 1]! + 1 : 0;
    const r = await model.forward(b.input, {
      output: 'hidden',
      toLayer,
      ...(mainLayers ? { captureFF: mainLayers } : {}),
      ...(encLayers ? { captureEncoderFF: encLayers } : {}),
      ...(b.featureMask ? { featureMask: b.featureMask } : {}),
      ...(opts.signal ? { signal: opts.signal } : {}),
    });
    for (const [stack, acc] of accs) {
      const captured = stack === main ? r.ff : r.encoderFF;
      const spec = stackSpecOf(model, stack);
      // plain views over the native buffers (keeps instanceof true across jest realms), no copy
      const feats = Array.from({ length: spec.layers }, (_, l) => {
        const x = captured?.get(l);
        return x ? new Float32Array(x.buffer, x.byteOffset, x.length) : null;
      });
      const n = feats[needed.get(stack)![0]!]!.length / spec.dFF;
      rows[stack] = (rows[stack] ?? 0) + n;
      await acc.add(feats, n, opts.signal ? { signal: opts.signal } : {});
    }
    opts.onProgress?.({ phase: 'features', done: ++done, total: batches.length });
  }
  const corr = new Map<StackName, PairCorrelations>();
  for (const [stack, acc] of accs) corr.set(stack, new PairCorrelations(acc, pairs.get(stack)!));
  return { corr, rows };
}

interface StackMerge {
  stack: StackName;
  m: MergedWindow;
}

function viewOf(model: Model, merges: StackMerge[]): Model {
  return model.withFF(merges.flatMap(({ stack, m }) => windowLayers(m.window).map((layer) => ({ stack, layer, ff: m.merged }))));
}

export async function compressModality(modelDir: string, options: ModalityCompressOptions): Promise<ModalityCompressResult> {
  const anchor: Anchor = options.anchor ?? 'first';
  const method: MergeMethod = options.method ?? 'permute';
  const format: OutputFormat = options.format ?? 'tied';
  const { signal, onProgress } = options;
  const job: JobOptions = { ...(signal ? { signal } : {}), ...(onProgress ? { onProgress } : {}) };
  const timings: Record<string, number> = {};
  let t0 = performance.now();
  const lap = (phase: string) => {
    const now = performance.now();
    timings[phase] = (timings[phase] ?? 0) + (now - t0) / 1000;
    t0 = now;
    if (signal?.aborted) throw abortError();
  };

  // refuse bad options before loading anything
  const summary = await inspectModel(modelDir);
  const image = isImageOptions(options);
  if (image && summary.modelType !== 'vit') {
    throw new FfmergeError('INVALID_ARGUMENT', `image data was given but ${summary.modelType} is not an image classifier (vit)`);
  }
  if (!image && summary.modelType !== 'marian') {
    throw new FfmergeError('INVALID_ARGUMENT', `parallel text was given but ${summary.modelType} is not a translation model (marian)`);
  }
  const mode: StackMode = image ? 'encoder' : ((options as TranslationCompressOptions).stacks ?? 'both-same');
  if (!['both-same', 'independent', 'encoder', 'decoder'].includes(mode)) {
    throw new FfmergeError('INVALID_ARGUMENT', `stacks must be both-same, independent, encoder or decoder, got ${JSON.stringify(mode)}`);
  }
  if (method !== 'permute' && method !== 'vanilla') throw new FfmergeError('INVALID_ARGUMENT', `method must be permute or vanilla, got ${JSON.stringify(method)}`);
  const stackNames: StackName[] = image ? ['encoder'] : mode === 'encoder' ? ['encoder'] : mode === 'decoder' ? ['decoder'] : ['encoder', 'decoder'];
  const layersOf = (s: StackName) => summary.stacks.find((x) => x.name === s)!.layers;
  // both-same needs the window to exist in both stacks: use the shorter one
  const L = Math.min(...stackNames.map(layersOf));
  if (options.k !== undefined && options.fraction !== undefined) throw new FfmergeError('INVALID_ARGUMENT', 'give k or fraction, not both');
  const spec = options.window === undefined || options.window === 'auto' ? 'auto' : parseWindow(options.window, L, options.k);
  const k = options.k ?? (options.fraction !== undefined ? kFromFraction(options.fraction, L) : spec !== 'auto' ? spec.k : kFromFraction(0.25, L));
  checkK(k, L);
  if (options.out) checkOutputDir(modelDir, options.out, options.overwrite);

  const model = await loadModel(modelDir, { ...(signal ? { signal } : {}) });
  const views: Model[] = [];
  try {
    const task = image ? await imageTask(model, modelDir, options) : await translationTask(model, modelDir, options as TranslationCompressOptions);
    lap('load');

    const candidates: Window[] = spec === 'auto' ? enumerateWindows(L, k) : [spec];
    const pairs = new Map<StackName, [number, number][]>(stackNames.map((s) => [s, method === 'permute' ? pairsFor(candidates, anchor) : []]));
    const { corr, rows } = method === 'permute' ? await collectStackCorrelations(model, task.calibration, pairs, job) : { corr: new Map<StackName, PairCorrelations>(), rows: {} };
    lap('features');

    const baseVal = await task.score(model, job);
    lap('validate');

    const mergeIn = async (stack: StackName, w: Window): Promise<StackMerge> => ({
      stack,
      m: await mergeWindow(model, w, anchor, method, corr.get(stack), job, stack),
    });
    const scores: ModalityCandidate[] = [];
    const scoreOf = async (merges: StackMerge[]): Promise<number> => {
      const v = viewOf(model, merges);
      try {
        const start = Math.min(...merges.map((x) => x.m.window.start));
        const s = task.scoreFrom ? await task.scoreFrom(v, start, job) : await task.score(v, job);
        scores.push({ windows: Object.fromEntries(merges.map((x) => [x.stack, windowLabel(x.m.window)])), score: s });
        onProgress?.({ phase: 'search', done: scores.length, total: searchTotal });
        return s;
      } finally {
        v.dispose();
      }
    };
    /** The best window for these stacks merged together (same index), by the metric (higher is better). */
    const search = async (stacks: StackName[]): Promise<{ merges: StackMerge[]; score: number }> => {
      let best: { merges: StackMerge[]; score: number } | undefined;
      for (const w of candidates) {
        const merges: StackMerge[] = [];
        for (const s of stacks) merges.push(await mergeIn(s, w));
        lap('align');
        const score = candidates.length > 1 ? await scoreOf(merges) : NaN;
        lap('search');
        if (!best || score > best.score) best = { merges, score };
      }
      return best!;
    };
    const groups: StackName[][] = mode === 'independent' ? stackNames.map((s) => [s]) : [stackNames];
    const searchTotal = candidates.length > 1 ? candidates.length * groups.length : 0;
    if (searchTotal > 0 && task.prepare) {
      await task.prepare(model, new Set(candidates.map((w) => w.start)), job);
      lap('prefix');
    }
    const chosen: StackMerge[] = [];
    for (const g of groups) chosen.push(...(await search(g)).merges);

    const mergedModel = viewOf(model, chosen);
    views.push(mergedModel);
    const mergedVal = await task.score(mergedModel, job);
    lap('validate');
    const base: ModalityCompressResult['base'] = { validation: baseVal };
    const merged: ModalityCompressResult['merged'] = { validation: mergedVal };
    if (task.test) {
      base.test = await task.test(model, job);
      merged.test = await task.test(mergedModel, job);
      lap('test');
    }

    const perLayer = (s: StackName) => summary.stacks.find((x) => x.name === s)!;
    const removedParams = chosen.reduce((n, c) => n + (c.m.window.k - 1) * perLayer(c.stack).ffParamsPerLayer, 0);
    const removedBytes = chosen.reduce((n, c) => n + (c.m.window.k - 1) * perLayer(c.stack).ffBytesPerLayer, 0);
    const result: ModalityCompressResult = {
      model: summary.dir,
      modelType: summary.modelType,
      layers: Object.fromEntries(summary.stacks.map((s) => [s.name, s.layers])),
      k,
      method,
      anchor,
      stacks: mode,
      windows: chosen.map((c) => ({ stack: c.stack, window: windowLabel(c.m.window), layers: windowLayers(c.m.window), anchor: c.m.anchor })),
      candidates: scores,
      metric: task.metric,
      base,
      merged,
      params: { before: summary.totalParams, after: summary.totalParams - removedParams, removed: removedParams, fraction: removedParams / summary.totalParams },
      bytes: { before: summary.totalBytes, after: summary.totalBytes - removedBytes, removed: removedBytes, fraction: removedBytes / summary.totalBytes },
      data: {
        calibration: task.calibrationUnits,
        calibrationFeatures: rows,
        validation: task.validationUnits,
        ...(task.testUnits !== undefined ? { test: task.testUnits } : {}),
        unit: image ? 'images' : 'sentences',
      },
      timings,
    };

    if (options.out) {
      const config = model.config as Record<string, unknown>;
      const replace = new Map<string, Float32Array>();
      let ties: Record<string, string> = {};
      for (const c of chosen) {
        const layers = windowLayers(c.m.window);
        for (const l of layers) for (const [name, t] of ffReplacements(config, c.stack, l, c.m.merged)) replace.set(name, t);
        ties = { ...ties, ...ffTies(config, c.stack, layers) };
      }
      const info = { version: 1, method, anchor, recover: 'none', k, stacks: mode, windows: result.windows };
      const written = await writeCheckpoint({ source: modelDir, out: options.out, format, replace, ties, info, overwrite: options.overwrite, ...(signal ? { signal } : {}) });
      lap('save');
      result.out = { dir: written.out, format, bytes: written.bytes };
      const tmp = path.join(written.out, `.report.json.ffmerge-tmp-${process.pid}`);
      fs.writeFileSync(tmp, JSON.stringify(result, null, 2) + '\n');
      fs.renameSync(tmp, path.join(written.out, 'report.json'));
    }
    return result;
  } finally {
    for (const v of views) v.dispose();
    model.dispose();
  }
}
