/**
 * `ffmerge compress` and `ffmerge eval` for image classifiers (vit: --images/--labels idx files or --data
 * <image folder>) and translation models (marian: --source/--target line-aligned files or --data <file.tsv>).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { FfmergeError } from '../errors';
import { compress } from '../pipeline/compress';
import { loadImageSource, loadParallelSource, type ImageSource, type ModalityCompressOptions, type ParallelSource, type StackMode } from '../pipeline/modalities';
import { formatModalityReport } from '../pipeline/report';
import { loadModel } from '../model/load';
import { loadTokenizer } from '../tokenizer';
import { loadPreprocessor } from '../data/images';
import { evaluateImageClassifier } from '../eval/accuracy';
import { evaluateTranslation, loadGenerationConfig } from '../eval/translate';
import type { Anchor } from '../merge/windows';
import type { MergeMethod } from '../pipeline/align';
import type { OutputFormat } from '../checkpoint/write';
import { ProgressBar } from './progress';

/** Data flags shared by compress and eval (each names one split; the split prefix picks valid/test). */
export interface ModalityDataFlags {
  data?: string;
  images?: string;
  labels?: string;
  source?: string;
  target?: string;
}

export interface ModalityCliOptions extends ModalityDataFlags {
  valid?: string;
  validImages?: string;
  validLabels?: string;
  validSource?: string;
  validTarget?: string;
  test?: string;
  testImages?: string;
  testLabels?: string;
  testSource?: string;
  testTarget?: string;
  k?: string;
  fraction?: string;
  window: string;
  anchor: string;
  method: string;
  format: string;
  out?: string;
  overwrite?: boolean;
  stacks?: string;
  calibrationSize?: string;
  validationSize?: string;
  validationStart?: string;
  testSize?: string;
  json?: boolean;
}

/** model_type of a model folder (undefined when config.json is unreadable: the loader reports that). */
export function modelTypeOf(dir: string): string | undefined {
  try {
    const c = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8')) as { model_type?: unknown };
    return typeof c.model_type === 'string' ? c.model_type : undefined;
  } catch {
    return undefined;
  }
}

export const MODALITY_TYPES = ['vit', 'marian'];

function int(v: string | undefined, what: string, zeroOk = false): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < (zeroOk ? 0 : 1)) throw new FfmergeError('INVALID_ARGUMENT', `--${what} must be a ${zeroOk ? 'non-negative' : 'positive'} integer, got "${v}"`);
  return n;
}

function oneOf<T extends string>(v: string, allowed: readonly T[], what: string): T {
  if (!(allowed as readonly string[]).includes(v)) throw new FfmergeError('INVALID_ARGUMENT', `--${what} must be one of ${allowed.join(', ')}, got "${v}"`);
  return v as T;
}

/** The image source named by one split's flags, or undefined when none is given. */
export function imageSourceFrom(f: ModalityDataFlags, prefix: string): ImageSource | undefined {
  const flag = (s: string) => (prefix ? `--${prefix}-${s}` : `--${s}`);
  if (f.data !== undefined) {
    if (f.images !== undefined || f.labels !== undefined) throw new FfmergeError('INVALID_ARGUMENT', `give ${flag('images')}/${flag('labels')} or ${prefix ? `--${prefix}` : '--data'} <folder>, not both`);
    if (fs.existsSync(f.data) && !fs.statSync(f.data).isDirectory()) {
      throw new FfmergeError('INVALID_ARGUMENT', `${f.data} is a file: for an image model ${prefix ? `--${prefix}` : '--data'} names an image folder (one sub-folder per class); idx files go in ${flag('images')} and ${flag('labels')}`);
    }
    return { folder: f.data };
  }
  if (f.images === undefined && f.labels === undefined) return undefined;
  if (f.images === undefined || f.labels === undefined) throw new FfmergeError('INVALID_ARGUMENT', `${flag('images')} and ${flag('labels')} go together (idx files of the same images)`);
  return { images: f.images, labels: f.labels };
}

export function parallelSourceFrom(f: ModalityDataFlags, prefix: string): ParallelSource | undefined {
  const flag = (s: string) => (prefix ? `--${prefix}-${s}` : `--${s}`);
  if (f.data !== undefined) {
    if (f.source !== undefined || f.target !== undefined) throw new FfmergeError('INVALID_ARGUMENT', `give ${flag('source')}/${flag('target')} or ${prefix ? `--${prefix}` : '--data'} <file.tsv>, not both`);
    return { tsv: f.data };
  }
  if (f.source === undefined && f.target === undefined) return undefined;
  if (f.source === undefined || f.target === undefined) throw new FfmergeError('INVALID_ARGUMENT', `${flag('source')} and ${flag('target')} go together (line-aligned translations)`);
  return { source: f.source, target: f.target };
}

const split = (o: ModalityCliOptions, which: 'valid' | 'test'): ModalityDataFlags => {
  const pick = <T>(v: T | undefined) => v;
  return which === 'valid'
    ? { data: pick(o.valid), images: o.validImages, labels: o.validLabels, source: o.validSource, target: o.validTarget }
    : { data: pick(o.test), images: o.testImages, labels: o.testLabels, source: o.testSource, target: o.testTarget };
};

function dropUndefined<T extends object>(x: T): T {
  return Object.fromEntries(Object.entries(x).filter(([, v]) => v !== undefined)) as T;
}

export async function runCompressModality(model: string, modelType: string, o: ModalityCliOptions, signal: AbortSignal): Promise<void> {
  const fraction = o.fraction !== undefined ? Number(o.fraction) : undefined;
  if (fraction !== undefined && !Number.isFinite(fraction)) throw new FfmergeError('INVALID_ARGUMENT', `--fraction must be a number, got "${o.fraction}"`);
  const out = o.out ?? `${path.basename(path.resolve(model))}-ffmerge`;
  const common = dropUndefined({
    k: int(o.k, 'k'),
    fraction,
    window: o.window,
    anchor: oneOf<Anchor>(o.anchor, ['first', 'middle', 'last'], 'anchor'),
    method: oneOf<MergeMethod>(o.method, ['permute', 'vanilla'], 'method'),
    format: oneOf<OutputFormat>(o.format, ['tied', 'expanded'], 'format'),
    out,
    overwrite: Boolean(o.overwrite),
  });
  const bar = new ProgressBar(!o.json);
  let opts: ModalityCompressOptions;
  if (modelType === 'vit') {
    const images = imageSourceFrom(o, '');
    if (!images) throw new FfmergeError('INVALID_ARGUMENT', 'compress on an image model needs --images <idx images> --labels <idx labels>, or --data <image folder>');
    const valid = imageSourceFrom(split(o, 'valid'), 'valid');
    const test = imageSourceFrom(split(o, 'test'), 'test');
    opts = dropUndefined({
      ...common,
      images,
      validation: valid,
      test,
      calibrationImages: int(o.calibrationSize, 'calibration-size'),
      validationImages: int(o.validationSize, 'validation-size'),
      validationStart: int(o.validationStart, 'validation-start', true),
      testImages: int(o.testSize, 'test-size'),
    });
  } else {
    const parallel = parallelSourceFrom(o, '');
    if (!parallel) throw new FfmergeError('INVALID_ARGUMENT', 'compress on a translation model needs --source <file> --target <file> (line-aligned), or --data <file.tsv>');
    opts = dropUndefined({
      ...common,
      parallel,
      validation: parallelSourceFrom(split(o, 'valid'), 'valid'),
      test: parallelSourceFrom(split(o, 'test'), 'test'),
      calibrationPairs: int(o.calibrationSize, 'calibration-size'),
      validationSentences: int(o.validationSize, 'validation-size'),
      testSentences: int(o.testSize, 'test-size'),
      ...(o.stacks !== undefined ? { stacks: oneOf<StackMode>(o.stacks, ['both-same', 'independent', 'encoder', 'decoder'], 'stacks') } : {}),
    });
  }
  if (!o.json) process.stderr.write(`ffmerge: compressing ${model} → ${out}\n`);
  const r = await compress(model, { ...opts, signal, onProgress: bar.update });
  bar.done();
  process.stdout.write(o.json ? JSON.stringify({ ok: true, ...r }, null, 2) + '\n' : formatModalityReport(r) + '\n');
}

export interface ModalityEvalOptions extends ModalityDataFlags {
  /** Images or sentences evaluated (default all). */
  count?: string;
  json?: boolean;
}

/** Top-1 accuracy (vit) or greedy BLEU (marian) of a model folder. */
export async function runEvalModality(model: string, modelType: string, o: ModalityEvalOptions, signal: AbortSignal): Promise<void> {
  const limit = int(o.count, 'count');
  const bar = new ProgressBar(!o.json);
  const t0 = performance.now();
  let line: string;
  let result: Record<string, unknown>;
  if (modelType === 'vit') {
    const src = imageSourceFrom(o, '');
    if (!src) throw new FfmergeError('INVALID_ARGUMENT', 'eval on an image model needs --images <idx images> --labels <idx labels>, or --data <image folder>');
    const pre = await loadPreprocessor(model);
    const m = await loadModel(model, { signal });
    const set = await loadImageSource(src, pre, m.config as Record<string, unknown>).catch((e: unknown) => {
      m.dispose();
      throw e;
    });
    try {
      const r = await evaluateImageClassifier(m, set, pre, { signal, onProgress: bar.update, count: Math.min(limit ?? set.count, set.count) });
      bar.done();
      result = { model: path.resolve(model), metric: 'accuracy', accuracy: r.accuracy, correct: r.correct, images: r.total, seconds: (performance.now() - t0) / 1000 };
      line = `top-1 accuracy ${(100 * r.accuracy).toFixed(2)}% (${r.correct}/${r.total} images, ${((performance.now() - t0) / 1000).toFixed(1)} s)`;
    } finally {
      m.dispose();
    }
  } else {
    const src = parallelSourceFrom(o, '');
    if (!src) throw new FfmergeError('INVALID_ARGUMENT', 'eval on a translation model needs --source <file> --target <file> (line-aligned), or --data <file.tsv>');
    const pairs = (await loadParallelSource(src)).slice(0, limit ?? Infinity);
    const m = await loadModel(model, { signal });
    try {
      const tok = await loadTokenizer(model);
      const generation = await loadGenerationConfig(model, m.config as Record<string, unknown>);
      const r = await evaluateTranslation(m, tok, pairs, { signal, onProgress: bar.update, generation });
      bar.done();
      result = { model: path.resolve(model), metric: 'bleu', bleu: r.bleu.score, chrf: r.chrf.score, sentences: pairs.length, seconds: (performance.now() - t0) / 1000 };
      line = `BLEU ${r.bleu.score.toFixed(2)}, chrF ${r.chrf.score.toFixed(2)} (greedy, ${pairs.length} sentences, ${((performance.now() - t0) / 1000).toFixed(1)} s)`;
    } finally {
      m.dispose();
    }
  }
  process.stdout.write(o.json ? JSON.stringify({ ok: true, ...result }, null, 2) + '\n' : line + '\n');
}
