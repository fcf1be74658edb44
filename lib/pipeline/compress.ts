/**
 * compress(modelDir, options): the whole method in one call — features, correlation, alignment, merge,
 * window search (every start, scored on validation before any fine-tuning, best wins), optional baselines
 * at matched size, evaluation, and the compressed checkpoint. Returns everything the report needs.
 *
 * Window search cost: the base model's states entering each candidate start are computed once (PrefixCache),
 * so a candidate starting at layer s runs only layers s..L-1 on the validation batches.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { FfmergeError, abortError } from '../errors';
import type { JobOptions, ProgressFn } from '../native/job';
import { checkOutputDir, ffReplacements, ffTies, writeCheckpoint, type OutputFormat } from '../checkpoint/write';
import { loadTokenizer } from '../tokenizer';
import { loadModel } from '../model/load';
import type { Model } from '../model/model';
import { inspectModel } from '../model/inspect';
import type { FFWeights } from '../model/ff-weights';
import { checkK, checkWindow, enumerateWindows, kFromFraction, parseWindow, windowLabel, windowLayers, type Anchor, type Window } from '../merge/windows';
import { blocksFrom, makeBatches, takeTokens, tokenCount, type DataSource } from './data';
import { collectCorrelations, type PairCorrelations } from './features';
import { mergeWindow, pairsFor, type MergeMethod, type MergedWindow } from './align';
import { nllOf, ppl, PrefixCache, type NllTotal } from './prefix';
import { refitWindow } from './refit';
import { compressModality, isImageOptions, isTranslationOptions, type ModalityCompressOptions, type ModalityCompressResult } from './modalities';

export type Baseline = 'drop-ff' | 'drop-layers';
export type RecoverMethod = 'none' | 'refit';

export interface CompressOptions {
  /** FF sublayers merged into one per window (≥ 2). Give k or fraction; default: fraction 0.25. */
  k?: number;
  /** Share of FF sublayers to remove (k = 1 + round(fraction × layers)). */
  fraction?: number;
  /** 'auto' (search every start), "a-b", "a-b,c-d", or Window objects. Default 'auto'. */
  window?: 'auto' | string | Window | Window[];
  anchor?: Anchor;
  method?: MergeMethod;
  recover?: RecoverMethod;
  /** Calibration text file or token blocks. */
  calibration: DataSource;
  /** Validation text file or blocks; default: the calibration source's blocks after the calibration budget. */
  validation?: DataSource;
  /** Optional held-out test data, evaluated on the base and the merged model. */
  test?: DataSource;
  calibrationTokens?: number;
  validationTokens?: number;
  /** Tokens each search candidate is scored on (the first validation blocks); default all validation tokens. */
  searchTokens?: number;
  testTokens?: number;
  blockSize?: number;
  /** Blocks per forward batch. */
  batchBlocks?: number;
  baselines?: Baseline[];
  /** Where to write the compressed checkpoint (omit to only evaluate). */
  out?: string;
  format?: OutputFormat;
  overwrite?: boolean;
  signal?: AbortSignal;
  onProgress?: ProgressFn;
}

export interface CandidateScore {
  window: string;
  start: number;
  layers: number[];
  /** Perplexity on the search tokens. */
  ppl: number;
  tokens: number;
}

export interface Metric {
  validation: number;
  test?: number;
}

export interface CompressResult {
  model: string;
  modelType: string;
  layers: number;
  k: number;
  method: MergeMethod;
  anchor: Anchor;
  recover: RecoverMethod;
  windows: { window: string; layers: number[]; anchor: number }[];
  candidates: CandidateScore[];
  metric: 'perplexity';
  base: Metric;
  merged: Metric;
  baselines: Partial<Record<Baseline, Metric>>;
  params: { before: number; after: number; removed: number; fraction: number };
  bytes: { before: number; after: number; removed: number; fraction: number };
  data: { calibrationTokens: number; validationTokens: number; searchTokens: number; testTokens?: number; blockSize: number };
  /** Seconds per phase. */
  timings: Record<string, number>;
  out?: { dir: string; format: OutputFormat; bytes: number };
}

/** Without k or fraction: remove about a quarter of the FF sublayers (k = 4 on 12 layers, 2 on 5). */
export const DEFAULT_FRACTION = 0.25;

export const DEFAULTS = {
  calibrationTokens: 10240,
  validationTokens: 10240,
  blockSize: 256,
  batchBlocks: 8,
  anchor: 'first' as Anchor,
  method: 'permute' as MergeMethod,
  recover: 'none' as RecoverMethod,
  format: 'tied' as OutputFormat,
};

function resolveWindows(spec: CompressOptions['window'], layers: number, k: number | undefined): Window[] | 'auto' {
  if (spec === undefined || spec === 'auto') return 'auto';
  if (typeof spec === 'string') return spec.split(',').map((s) => parseWindow(s, layers, k));
  const list = Array.isArray(spec) ? spec : [spec];
  for (const w of list) checkWindow(w, layers);
  return list;
}

function checkDisjoint(windows: Window[]): void {
  const used = new Set<number>();
  for (const w of windows) {
    for (const l of windowLayers(w)) {
      if (used.has(l)) throw new FfmergeError('INVALID_WINDOW', `windows ${windows.map(windowLabel).join(', ')} overlap at layer ${l}`);
      used.add(l);
    }
  }
}

function zeroFF(ff: FFWeights): FFWeights {
  const z: FFWeights = { d: ff.d, dFF: ff.dFF, wIn: new Float32Array(ff.wIn.length), wOut: new Float32Array(ff.wOut.length) };
  if (ff.bIn) z.bIn = new Float32Array(ff.bIn.length);
  if (ff.wGate) z.wGate = new Float32Array(ff.wGate.length);
  if (ff.bGate) z.bGate = new Float32Array(ff.bGate.length);
  if (ff.bOut) z.bOut = new Float32Array(ff.bOut.length);
  return z;
}

/** A view of `model` with each window's layers sharing its merged FF (one object per window = a tie). */
function mergedView(model: Model, merged: MergedWindow[]): Model {
  const overrides = new Map<number, FFWeights>();
  for (const m of merged) for (const l of windowLayers(m.window)) overrides.set(l, m.merged);
  return model.withFF(overrides);
}

/**
 * Language models take text (`calibration`); image classifiers take `images`, translation models `parallel`
 * (see modalities.ts — same method, task metric instead of perplexity).
 */
export function compress(modelDir: string, options: CompressOptions): Promise<CompressResult>;
export function compress(modelDir: string, options: ModalityCompressOptions): Promise<ModalityCompressResult>;
export function compress(modelDir: string, options: CompressOptions | ModalityCompressOptions): Promise<CompressResult | ModalityCompressResult> {
  if (isImageOptions(options) || isTranslationOptions(options)) return compressModality(modelDir, options);
  return compressLM(modelDir, options);
}

async function compressLM(modelDir: string, options: CompressOptions): Promise<CompressResult> {
  const opts = { ...DEFAULTS, ...options };
  const { signal, onProgress } = opts;
  const job: JobOptions = { signal, ...(onProgress ? { onProgress } : {}) };
  const timings: Record<string, number> = {};
  let t0 = performance.now();
  const lap = (phase: string) => {
    const now = performance.now();
    timings[phase] = (timings[phase] ?? 0) + (now - t0) / 1000;
    t0 = now;
    if (signal?.aborted) throw abortError();
  };
  const phase = (name: string, done: number, total: number) => onProgress?.({ phase: name, done, total });

  // Everything that can be refused is refused before any long work.
  const summary = await inspectModel(modelDir);
  const stack = summary.stacks[0]!;
  if (summary.stacks.length !== 1 || stack.name !== 'decoder') {
    const hint = summary.modelType === 'vit' ? ' (give images: an idx pair or an image folder)' : summary.modelType === 'marian' ? ' (give parallel: sentence pairs)' : '';
    throw new FfmergeError('UNSUPPORTED_ARCHITECTURE', `text calibration works for decoder-only language models; this is ${summary.modelType}${hint}`);
  }
  const L = stack.layers;
  if (opts.k !== undefined && opts.fraction !== undefined) throw new FfmergeError('INVALID_ARGUMENT', 'give k or fraction, not both');
  let windowsSpec = resolveWindows(opts.window, L, opts.k);
  const k = opts.k ?? (opts.fraction !== undefined ? kFromFraction(opts.fraction, L) : windowsSpec !== 'auto' ? windowsSpec[0]!.k : kFromFraction(DEFAULT_FRACTION, L));
  checkK(k, L);
  if (windowsSpec !== 'auto') checkDisjoint(windowsSpec);
  if (opts.out) checkOutputDir(modelDir, opts.out, opts.overwrite);
  for (const [what, src] of [['calibration', opts.calibration], ['validation', opts.validation], ['test', opts.test]] as const) {
    if (typeof src === 'string' && !fs.existsSync(src)) {
      throw new FfmergeError('DATA_NOT_FOUND', `${what} file ${src} does not exist`);
    }
  }
  if (opts.recover !== 'none' && opts.recover !== 'refit') {
    throw new FfmergeError('INVALID_ARGUMENT', `recover must be none or refit, got ${JSON.stringify(opts.recover)}`);
  }
  if (opts.method !== 'permute' && opts.method !== 'vanilla') {
    throw new FfmergeError('INVALID_ARGUMENT', `method must be permute or vanilla, got ${JSON.stringify(opts.method)}`);
  }

  const model = await loadModel(modelDir, { signal });
  const views: Model[] = [];
  try {
    const blockSize = Math.min(opts.blockSize, model.spec.maxPositions);
    // only text sources need the tokenizer (callers may pass token blocks for models without one)
    const needsTokenizer = [opts.calibration, opts.validation, opts.test].some((x) => typeof x === 'string');
    const tokenizer = needsTokenizer ? await loadTokenizer(modelDir) : (undefined as never);
    const calAll = await blocksFrom(opts.calibration, tokenizer, blockSize, 'calibration');
    const calBlocks = takeTokens(calAll, opts.calibrationTokens);
    let valBlocks: Int32Array[];
    if (opts.validation !== undefined) {
      valBlocks = takeTokens(await blocksFrom(opts.validation, tokenizer, blockSize, 'validation'), opts.validationTokens);
    } else {
      const rest = calAll.slice(calBlocks.length);
      if (rest.length === 0) {
        throw new FfmergeError('INVALID_DATA', 'no validation data: give a validation file, or more calibration text than the calibration budget');
      }
      valBlocks = takeTokens(rest, opts.validationTokens);
    }
    const searchBlocks = takeTokens(valBlocks, opts.searchTokens ?? tokenCount(valBlocks));
    const testBlocks = opts.test !== undefined ? takeTokens(await blocksFrom(opts.test, tokenizer, blockSize, 'test'), opts.testTokens ?? Infinity) : undefined;
    const calBatches = makeBatches(calBlocks, opts.batchBlocks);
    const valBatches = makeBatches(valBlocks, opts.batchBlocks);
    const searchBatchCount = makeBatches(searchBlocks, opts.batchBlocks).length;
    lap('load');

    const candidates: Window[] = windowsSpec === 'auto' ? enumerateWindows(L, k) : windowsSpec;
    let corr: PairCorrelations | undefined;
    if (opts.method === 'permute') {
      corr = await collectCorrelations(model, calBatches, pairsFor(candidates, opts.anchor), job);
    }
    lap('features');

    const starts = new Set(candidates.map((w) => w.start));
    const cache = await PrefixCache.build(model, valBatches, new Set([0, ...starts]), job);
    const baseVal = await cache.nll(model, L, valBatches.length, job);
    lap('validate');

    const mergeOne = async (w: Window): Promise<MergedWindow> => {
      const m = await mergeWindow(model, w, opts.anchor, opts.method, corr, job);
      return opts.recover === 'refit' ? refitWindow(model, m, calBatches, job) : m;
    };

    // Search (auto) or the given windows merged together.
    const scores: CandidateScore[] = [];
    let chosen: MergedWindow[];
    let mergedVal: NllTotal;
    if (windowsSpec === 'auto') {
      let best: { m: MergedWindow; score: number } | undefined;
      for (const [i, w] of candidates.entries()) {
        const m = await mergeOne(w);
        lap('align');
        const view = mergedView(model, [m]);
        const t = await cache.nll(view, w.start, searchBatchCount, job);
        view.dispose();
        const score = ppl(t);
        scores.push({ window: windowLabel(w), start: w.start, layers: windowLayers(w), ppl: score, tokens: tokenCount(searchBlocks) });
        if (!best || score < best.score) best = { m, score };
        phase('search', i + 1, candidates.length);
        lap('search');
      }
      chosen = [best!.m];
    } else {
      chosen = [];
      for (const w of candidates) chosen.push(await mergeOne(w));
      lap('align');
    }
    const mergedModel = mergedView(model, chosen);
    views.push(mergedModel);
    const firstStart = Math.min(...chosen.map((m) => m.window.start));
    mergedVal = await cache.nll(mergedModel, firstStart, valBatches.length, job);
    if (windowsSpec !== 'auto') {
      for (const m of chosen) {
        scores.push({ window: windowLabel(m.window), start: m.window.start, layers: windowLayers(m.window), ppl: ppl(mergedVal), tokens: tokenCount(valBlocks) });
      }
    }
    lap('validate');

    // Baselines at matched size: the same layers lose their FF (drop-ff) or their whole layer (drop-layers).
    const baselines: CompressResult['baselines'] = {};
    const baselineModels: Partial<Record<Baseline, Model>> = {};
    for (const b of opts.baselines ?? []) {
      if (b === 'drop-ff') {
        const overrides = new Map<number, FFWeights>();
        for (const m of chosen) {
          const zero = zeroFF(m.merged);
          for (const l of windowLayers(m.window)) if (l !== m.anchor) overrides.set(l, zero);
        }
        const v = model.withFF(overrides);
        views.push(v);
        baselineModels['drop-ff'] = v;
        baselines['drop-ff'] = { validation: ppl(await cache.nll(v, firstStart, valBatches.length, job)) };
      } else if (b === 'drop-layers') {
        if (chosen.length !== 1) throw new FfmergeError('INVALID_ARGUMENT', 'the drop-layers baseline supports one window');
        const m = chosen[0]!;
        const end = m.window.start + m.window.k;
        baselines['drop-layers'] = { validation: ppl(await cache.nllSkipping(model, m.window.start, m.anchor, m.anchor + 1, end, valBatches.length, job)) };
      } else {
        throw new FfmergeError('INVALID_ARGUMENT', `unknown baseline ${JSON.stringify(b)} (drop-ff or drop-layers)`);
      }
    }
    lap('baselines');

    const base: Metric = { validation: ppl(baseVal) };
    const merged: Metric = { validation: ppl(mergedVal) };
    if (testBlocks) {
      const testBatches = makeBatches(testBlocks, opts.batchBlocks);
      base.test = ppl(await nllOf(model, testBatches, job));
      merged.test = ppl(await nllOf(mergedModel, testBatches, job));
      for (const [name, v] of Object.entries(baselineModels)) baselines[name as Baseline]!.test = ppl(await nllOf(v, testBatches, job));
      if (baselines['drop-layers'] && chosen.length === 1) {
        // drop-layers runs from the embeddings with the skipped layers left out
        const m = chosen[0]!;
        const tCache = await PrefixCache.build(model, testBatches, new Set([m.window.start]), { signal });
        baselines['drop-layers'].test = ppl(await tCache.nllSkipping(model, m.window.start, m.anchor, m.anchor + 1, m.window.start + m.window.k));
      }
      lap('test');
    }

    const removedParams = chosen.reduce((s, m) => s + (m.window.k - 1) * stack.ffParamsPerLayer, 0);
    const removedBytes = chosen.reduce((s, m) => s + (m.window.k - 1) * stack.ffBytesPerLayer, 0);
    const result: CompressResult = {
      model: summary.dir,
      modelType: summary.modelType,
      layers: L,
      k,
      method: opts.method,
      anchor: opts.anchor,
      recover: opts.recover,
      windows: chosen.map((m) => ({ window: windowLabel(m.window), layers: windowLayers(m.window), anchor: m.anchor })),
      candidates: scores,
      metric: 'perplexity',
      base,
      merged,
      baselines,
      params: { before: summary.totalParams, after: summary.totalParams - removedParams, removed: removedParams, fraction: removedParams / summary.totalParams },
      bytes: { before: summary.totalBytes, after: summary.totalBytes - removedBytes, removed: removedBytes, fraction: removedBytes / summary.totalBytes },
      data: {
        calibrationTokens: tokenCount(calBlocks),
        validationTokens: tokenCount(valBlocks),
        searchTokens: tokenCount(searchBlocks),
        ...(testBlocks ? { testTokens: tokenCount(testBlocks) } : {}),
        blockSize,
      },
      timings,
    };

    if (opts.out) {
      const replace = new Map<string, Float32Array>();
      let ties: Record<string, string> = {};
      for (const m of chosen) {
        const layers = windowLayers(m.window);
        for (const l of layers) for (const [name, t] of ffReplacements(model.config as Record<string, unknown>, 'decoder', l, m.merged)) replace.set(name, t);
        ties = { ...ties, ...ffTies(model.config as Record<string, unknown>, 'decoder', layers) };
      }
      const info = { version: 1, method: opts.method, anchor: opts.anchor, recover: opts.recover, k, windows: result.windows };
      const written = await writeCheckpoint({
        source: modelDir,
        out: opts.out,
        format: opts.format,
        replace,
        ties,
        info,
        overwrite: opts.overwrite,
        signal,
      });
      lap('save');
      result.out = { dir: written.out, format: opts.format, bytes: written.bytes };
      // report.json beside the weights, written to a temp name and renamed like every ffmerge file
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
