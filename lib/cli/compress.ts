/** `ffmerge compress [model] --data …` and `ffmerge eval <model> --data …`. */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { FfmergeError } from '../errors';
import { compress, type Baseline, type CompressOptions } from '../pipeline/compress';
import { formatReport } from '../pipeline/report';
import { blocksFrom, makeBatches, takeTokens, tokenCount } from '../pipeline/data';
import { nllOf, ppl } from '../pipeline/prefix';
import { loadModel } from '../model/load';
import { loadTokenizer } from '../tokenizer';
import type { Anchor } from '../merge/windows';
import type { MergeMethod } from '../pipeline/align';
import type { OutputFormat } from '../checkpoint/write';
import { ProgressBar } from './progress';

/**
 * The small real model shipped in the package: what `ffmerge compress` runs on with no model given. From
 * lib/cli the package root is two levels up, from dist/lib/cli three.
 */
export function bundledModelDir(): string {
  const candidates = [2, 3].map((up) => path.resolve(__dirname, ...Array<string>(up).fill('..'), 'models', 'llama-stories260k'));
  return candidates.find((d) => fs.existsSync(d)) ?? candidates[0]!;
}

export interface CompressCliOptions {
  data?: string;
  valid?: string;
  test?: string;
  k?: string;
  fraction?: string;
  window: string;
  anchor: string;
  method: string;
  recover: string;
  format: string;
  out?: string;
  overwrite?: boolean;
  baselines?: string;
  calibrationTokens?: string;
  validationTokens?: string;
  searchTokens?: string;
  testTokens?: string;
  blockSize?: string;
  json?: boolean;
}

function int(v: string | undefined, what: string): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n <= 0) throw new FfmergeError('INVALID_ARGUMENT', `--${what} must be a positive integer, got "${v}"`);
  return n;
}

function oneOf<T extends string>(v: string, allowed: readonly T[], what: string): T {
  if (!(allowed as readonly string[]).includes(v)) {
    throw new FfmergeError('INVALID_ARGUMENT', `--${what} must be one of ${allowed.join(', ')}, got "${v}"`);
  }
  return v as T;
}

export async function runCompress(modelArg: string | undefined, o: CompressCliOptions, signal: AbortSignal): Promise<void> {
  const bundled = modelArg === undefined;
  const model = modelArg ?? bundledModelDir();
  const data = o.data ?? (bundled ? path.join(model, 'calibration.txt') : undefined);
  if (!data) throw new FfmergeError('INVALID_ARGUMENT', 'compress needs --data <text file> (calibration text) when a model is given');
  const fraction = o.fraction !== undefined ? Number(o.fraction) : undefined;
  if (fraction !== undefined && !Number.isFinite(fraction)) throw new FfmergeError('INVALID_ARGUMENT', `--fraction must be a number, got "${o.fraction}"`);
  const out = o.out ?? `${path.basename(path.resolve(model))}-ffmerge`;
  const baselines = (o.baselines ?? '')
    .split(',')
    .filter(Boolean)
    .map((b) => oneOf<Baseline>(b.trim(), ['drop-ff', 'drop-layers'], 'baselines'));
  const bar = new ProgressBar(!o.json);
  const opts: CompressOptions = {
    calibration: data,
    ...(o.valid ? { validation: o.valid } : {}),
    ...(o.test ? { test: o.test } : {}),
    ...(o.k !== undefined ? { k: int(o.k, 'k')! } : {}),
    ...(fraction !== undefined ? { fraction } : {}),
    window: o.window,
    anchor: oneOf<Anchor>(o.anchor, ['first', 'middle', 'last'], 'anchor'),
    method: oneOf<MergeMethod>(o.method, ['permute', 'vanilla'], 'method'),
    recover: oneOf(o.recover, ['none', 'refit'] as const, 'recover'),
    format: oneOf<OutputFormat>(o.format, ['tied', 'expanded'], 'format'),
    out,
    overwrite: Boolean(o.overwrite),
    baselines,
    // the bundled calibration text is ~12k tokens: half calibrates, the rest validates
    ...(bundled && o.calibrationTokens === undefined ? { calibrationTokens: 6144 } : {}),
    ...(o.calibrationTokens !== undefined ? { calibrationTokens: int(o.calibrationTokens, 'calibration-tokens')! } : {}),
    ...(o.validationTokens !== undefined ? { validationTokens: int(o.validationTokens, 'validation-tokens')! } : {}),
    ...(o.searchTokens !== undefined ? { searchTokens: int(o.searchTokens, 'search-tokens')! } : {}),
    ...(o.testTokens !== undefined ? { testTokens: int(o.testTokens, 'test-tokens')! } : {}),
    ...(o.blockSize !== undefined ? { blockSize: int(o.blockSize, 'block-size')! } : {}),
    signal,
    onProgress: bar.update,
  };
  if (!o.json) process.stderr.write(`ffmerge: compressing ${model}${bundled ? ' (bundled model)' : ''} → ${out}\n`);
  const r = await compress(model, opts);
  bar.done();
  process.stdout.write(o.json ? JSON.stringify({ ok: true, ...r }, null, 2) + '\n' : formatReport(r) + '\n');
}

export async function runEval(
  model: string,
  o: { data: string; tokens?: string; blockSize?: string; json?: boolean },
  signal: AbortSignal,
): Promise<void> {
  const m = await loadModel(model, { signal });
  try {
    const tok = await loadTokenizer(model);
    const blockSize = Math.min(int(o.blockSize, 'block-size') ?? 256, m.spec.maxPositions);
    const blocks = takeTokens(await blocksFrom(o.data, tok, blockSize, 'data'), int(o.tokens, 'tokens') ?? Infinity);
    const bar = new ProgressBar(!o.json);
    const t0 = performance.now();
    const total = await nllOf(m, makeBatches(blocks, 8), { signal, onProgress: bar.update });
    bar.done();
    const result = { model: path.resolve(model), data: path.resolve(o.data), tokens: tokenCount(blocks), predictions: total.count, perplexity: ppl(total), seconds: (performance.now() - t0) / 1000 };
    process.stdout.write(
      o.json ? JSON.stringify({ ok: true, ...result }, null, 2) + '\n' : `perplexity ${result.perplexity.toFixed(3)} on ${result.tokens} tokens of ${o.data} (${result.seconds.toFixed(1)} s)\n`,
    );
  } finally {
    m.dispose();
  }
}
