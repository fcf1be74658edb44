/** `ffmerge compress [model] …`: one command for every task; the model's task decides what its data flags mean. */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { FfmergeError } from '../errors';
import { compress, type CompressOptions } from '../pipeline/compress';
import { BASELINES } from '../pipeline/baselines';
import { MERGE_METHODS } from '../pipeline/merge-methods';
import { RECOVER_METHODS } from '../pipeline/recover';
import { callTasks, taskFor } from '../pipeline/tasks';
import { inspectModel } from '../model/inspect';
import type { Anchor } from '../merge/windows';
import type { CompressFormat } from '../pipeline/options';
import { byteSize, decimal, defaultOut, dropUndefined, imageSourceFrom, int, oneOf, parallelSourceFrom, modelOrBundled, refuseFlags, type SplitFlags } from './flags';
import { formatReport } from './report';
import { holdingLoad, ProgressBar } from './progress';
import { printResult } from './format';
import { loadPlugins } from './plugins';
import type { Progress } from '../native/job';

/** The data flags each task reads (the others are refused for it). */
const TASK_FLAGS = {
  'language-modeling': ['data', 'sampleCalibration', 'draw', 'valid', 'test', 'calibrationTokens', 'validationTokens', 'searchTokens', 'testTokens', 'blockSize'],
  'image-classification': ['data', 'selectBy', 'images', 'labels', 'valid', 'validImages', 'validLabels', 'test', 'testImages', 'testLabels', 'calibrationSize', 'validationSize', 'validationStart', 'testSize'],
  translation: ['data', 'selectBy', 'source', 'target', 'valid', 'validSource', 'validTarget', 'test', 'testSource', 'testTarget', 'calibrationSize', 'validationSize', 'testSize'],
} as const;
type DataFlag = (typeof TASK_FLAGS)[keyof typeof TASK_FLAGS][number];

/** Commander's parsed flags (camelCase), all strings but the switches. */
export type CompressCliOptions = Partial<Record<Exclude<DataFlag, 'sampleCalibration'> | 'k' | 'fraction' | 'out' | 'baselines' | 'plugins' | 'stacks' | 'selectMemory' | 'maxShardSize' | 'seed', string>> & {
  sampleCalibration?: boolean;
  window: string;
  anchor?: string;
  method?: string;
  recover?: string;
  format: string;
  overwrite?: boolean;
  stream?: boolean;
  json?: boolean;
};

const split = (o: CompressCliOptions, s: 'valid' | 'test'): SplitFlags =>
  ({ data: o[s], images: o[`${s}Images`], labels: o[`${s}Labels`], source: o[`${s}Source`], target: o[`${s}Target`] });

/** The task's data options from its flags. */
function dataOptions(task: string, o: CompressCliOptions, bundled: boolean, model: string): Partial<CompressOptions> {
  if (!Object.hasOwn(TASK_FLAGS, task)) return {}; // a --plugins task's data is its own
  if (task === 'language-modeling') {
    const data = o.data ?? (bundled ? path.join(model, 'calibration.txt') : undefined);
    if (o.sampleCalibration && !data && !o.valid) throw new FfmergeError('INVALID_ARGUMENT', '--sample-calibration needs --data or --valid: the text the window is chosen on');
    if (!data && !o.sampleCalibration) throw new FfmergeError('INVALID_ARGUMENT', 'compress needs --data <text or .jsonl file> (calibration data) when a model is given');
    return dropUndefined({
      // sampled calibration: the model's own text calibrates, the given text only validates
      calibration: o.sampleCalibration ? { sample: {} } : data,
      validation: o.sampleCalibration ? (o.valid ?? data) : o.valid,
      test: o.test,
      // the bundled calibration text is ~12k tokens: half calibrates, the rest validates (a --data of the
      // user's own gets the documented default)
      calibrationTokens: int(o.calibrationTokens, 'calibration-tokens') ?? (bundled && o.data === undefined && !o.sampleCalibration ? 6144 : undefined),
      validationTokens: int(o.validationTokens, 'validation-tokens'),
      searchTokens: int(o.searchTokens, 'search-tokens'),
      testTokens: int(o.testTokens, 'test-tokens'),
      draw: oneOf(o.draw, ['head', 'spread'] as const, 'draw'),
      blockSize: int(o.blockSize, 'block-size', 2),
    });
  }
  if (task === 'image-classification') {
    const images = imageSourceFrom(o, '');
    if (!images) throw new FfmergeError('INVALID_ARGUMENT', 'compress on an image model needs --images <idx images> --labels <idx labels>, or --data <image folder>');
    return dropUndefined({
      images,
      validation: imageSourceFrom(split(o, 'valid'), 'valid'),
      test: imageSourceFrom(split(o, 'test'), 'test'),
      calibrationImages: int(o.calibrationSize, 'calibration-size'),
      validationImages: int(o.validationSize, 'validation-size'),
      validationStart: int(o.validationStart, 'validation-start', 0),
      testImages: int(o.testSize, 'test-size'),
      selectBy: oneOf(o.selectBy, ['metric', 'loss'] as const, 'select-by'),
    });
  }
  const parallel = parallelSourceFrom(o, '');
  if (!parallel) throw new FfmergeError('INVALID_ARGUMENT', 'compress on a translation model needs --source <file> --target <file> (line-aligned), or --data <file.tsv>');
  return dropUndefined({
    parallel,
    validation: parallelSourceFrom(split(o, 'valid'), 'valid'),
    test: parallelSourceFrom(split(o, 'test'), 'test'),
    calibrationPairs: int(o.calibrationSize, 'calibration-size'),
    validationSentences: int(o.validationSize, 'validation-size'),
    testSentences: int(o.testSize, 'test-size'),
    selectBy: oneOf(o.selectBy, ['metric', 'loss'] as const, 'select-by'),
  });
}

/**
 * The bundled demo's scratch folder: one per user, made private; a name someone else holds (a folder of theirs,
 * a link, a file) is not used, and a fresh folder is made instead.
 */
function demoFolder(): string {
  const uid = process.getuid?.();
  const dir = path.join(os.tmpdir(), `ffmerge-demo-${uid ?? os.userInfo().username}`);
  try {
    fs.mkdirSync(dir, { mode: 0o700 });
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code !== 'EEXIST') throw new FfmergeError('IO_ERROR', `the demo writes into the temp folder ${os.tmpdir()}, which cannot be used (${code}): set TMPDIR to a folder that exists, or give --out`, { cause: e });
  }
  const st = fs.lstatSync(dir);
  const ours = st.isDirectory() && (uid === undefined || (st.uid === uid && (st.mode & 0o022) === 0));
  return ours ? dir : fs.mkdtempSync(path.join(os.tmpdir(), 'ffmerge-demo-'));
}

export async function runCompress(modelArg: string | undefined, o: CompressCliOptions, signal: AbortSignal): Promise<void> {
  const bundled = modelArg === undefined;
  const model = modelOrBundled(modelArg);
  const summary = await inspectModel(model, { compareCopies: false }); // the task only
  const plugins = await loadPlugins(o.plugins);
  // a task of the module's own reads its own data: every data flag is refused for it
  const task = taskFor(summary, callTasks(plugins, signal)).name;
  refuseFlags(o, TASK_FLAGS, task, summary.modelType);
  const fraction = o.fraction !== undefined ? decimal(o.fraction) : undefined;
  if (fraction !== undefined && !Number.isFinite(fraction)) throw new FfmergeError('INVALID_ARGUMENT', `--fraction must be a number, got "${o.fraction}"`);
  // The bundled demo writes to a scratch folder it owns and replaces on each run: running the demo inside a
  // clone (or in any project) must not leave a folder there. A user's own model goes to ./<model>-ffmerge.
  const demoOut = bundled && o.out === undefined ? path.join(demoFolder(), 'llama-stories260k-ffmerge') : undefined;
  const out = o.out ?? demoOut ?? defaultOut(model, '-ffmerge');
  // the bundled demo shows the merge next to dropping FF sublayers and the paper's plain merge, unless the merge
  // asked for is that very one
  const papers = o.method === 'permute' && (o.recover ?? 'none') === 'none' && (o.anchor ?? 'first') === 'first';
  // 'none' runs none (the demo's own included); an empty list ('', ',') is refused
  const listed = (o.baselines ?? (bundled ? (papers ? 'drop-ff' : 'drop-ff,paper') : '')).split(',').map((b) => b.trim());
  const named = listed.filter(Boolean);
  // a name twice, or an empty entry ("drop-ff,", "a,,b"), is a typo to point out
  const twice = named.find((b, i) => named.indexOf(b) !== i);
  if (twice !== undefined) throw new FfmergeError('INVALID_ARGUMENT', `--baselines "${o.baselines}" names ${twice} twice`);
  if (named.length > 0 && named.length < listed.length) throw new FfmergeError('INVALID_ARGUMENT', `--baselines "${o.baselines}" has an empty entry: name each baseline once, separated by commas`);
  if (o.baselines !== undefined && named.length === 0) throw new FfmergeError('INVALID_ARGUMENT', `--baselines "${o.baselines}" names none: name baselines (a comma list), or give --baselines none to run none`);
  if (named.includes('none') && named.length > 1) throw new FfmergeError('INVALID_ARGUMENT', `--baselines ${o.baselines}: none runs no baseline, so it stands alone`);
  const baselines = named.filter((b) => b !== 'none').map((b) => oneOf(b, BASELINES.with(plugins?.baselines).names(), 'baselines'));
  const format = oneOf<CompressFormat>(o.format, ['tied', 'expanded', 'onnx'], 'format');
  const maxShardSize = byteSize(o.maxShardSize, 'max-shard-size');
  const opts: CompressOptions = {
    ...dataOptions(task, o, bundled, model),
    ...dropUndefined({
      k: int(o.k, 'k', 2),
      fraction,
      selectMemory: o.selectMemory === undefined ? undefined : int(o.selectMemory, 'select-memory')! * 2 ** 20,
      anchor: oneOf<Anchor>(o.anchor, ['first', 'middle', 'last'], 'anchor'),
      // without --method/--recover, compress's default: the training-free combinations (auto), best on validation
      method: oneOf(o.method, [...MERGE_METHODS.with(plugins?.mergeMethods).names(), 'auto'], 'method'),
      recover: oneOf(o.recover, RECOVER_METHODS.with(plugins?.recoverMethods).names(), 'recover'),
      plugins,
      maxShardSize,
      stacks: oneOf(o.stacks, ['both-same', 'independent', 'encoder', 'decoder'] as const, 'stacks'),
      seed: int(o.seed, 'seed', 0),
    }),
    window: o.window,
    format,
    out,
    overwrite: Boolean(o.overwrite) || demoOut !== undefined,
    ...(o.stream ? { stream: true } : {}),
    baselines,
    signal,
  };
  const bar = new ProgressBar(!o.json);
  // said when the work starts, after compress has refused what it refuses: a refusal is the only line then
  let announced = Boolean(o.json);
  const show = (p: Progress) => {
    if (!announced) process.stderr.write(`ffmerge: compressing ${model}${bundled ? ' (bundled model)' : ''} → ${out}\n`);
    announced = true;
    bar.update(p);
  };
  // the weights' read comes before the data is checked: held back, so a refused data file is not announced
  const onProgress = holdingLoad(show);
  const onAbort = () => bar.interrupt();
  signal.addEventListener('abort', onAbort, { once: true });
  try {
    const r = await compress(model, { ...opts, onProgress });
    bar.done();
    printResult(o.json, r, () => formatReport(r));
  } catch (e) {
    bar.interrupt(); // the error line that follows starts on a line of its own
    throw e;
  } finally {
    signal.removeEventListener('abort', onAbort);
  }
}
