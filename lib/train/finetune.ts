/**
 * Recovery fine-tuning that keeps the ties (the paper's step 6): AdamW on every weight of a decoder-only
 * language model (next-token loss on token windows) or of a ViT image classifier (cross-entropy on labelled
 * images), natively (native/core/train), with each tied tensor — a merged window's FF shared by k layers, a
 * tied LM head — one parameter whose gradient is the sum over its uses. The result is a new Model with the
 * same tie structure, so it writes back in the same `tied` format at the same size.
 */
import { FfmergeError, fromNativeError, showValue } from '../errors';
import { checkCount, checkInt, checkOneOf } from '../arguments';
import { isInt32Array, joinArrays } from '../typed-arrays';
import { checkJobOptions, guardProgress, nativeCall, onAbort, throwIfAborted, type Progress } from '../native/job';
import { trainAddon, type NativeFinetuneArgs, type NativeImageFinetuneArgs, type NativeStepLog } from '../native/train';
import { checkModel, Model } from '../model/model';
import { recordedWindows } from '../checkpoint/earlier-merges';
import type { Config } from '../model/architectures';
import { expandedError, sharesOneFF } from './ties';

export interface FinetuneProgress extends Progress {
  phase: 'finetune';
  /** The last finished step (absent before the first). */
  step?: number;
  loss?: number;
  tokensPerSecond?: number;
  /** Image classifiers: training images per second so far. */
  imagesPerSecond?: number;
  /** Seconds left at the rate so far (0 in the last event, which reports the last step). */
  etaSeconds?: number;
  valLoss?: number;
  valAccuracy?: number;
}

/** Labelled images for an image classifier: pixels [count, C, H, W] preprocessed as Model.forward takes them. */
export interface LabelledImages {
  pixels: Float32Array;
  labels: Int32Array;
}

function isImages(v: unknown): v is LabelledImages {
  return typeof v === 'object' && v !== null && (v as LabelledImages).pixels instanceof Float32Array;
}

export interface FinetuneOptions {
  /**
   * Language models: training tokens, one stream or blocks (concatenated in order); windows of seq + 1 tokens
   * are drawn at random. Image classifiers: labelled images, `batch` of them drawn per step (a seeded shuffle,
   * each image once per epoch).
   */
  data: Int32Array | Int32Array[] | LabelledImages;
  steps: number;
  /** Peak learning rate (default 2e-4). */
  lr?: number | undefined;
  /** Sequences (or images) per step (default 8). */
  batch?: number | undefined;
  /** Positions per sequence (default 128, at most the model's positions; not used for images). */
  seq?: number | undefined;
  /**
   * Sequences (or images) per forward/backward inside a step (default, or 0: as many as ~1 GiB of activations
   * allow). Another value sums gradients in another order, so the weights differ at float rounding.
   */
  micro?: number | undefined;
  /** Linear warm-up steps (default 0). */
  warmup?: number | undefined;
  /** 'constant' (default) or 'cosine' to 10% of lr after the warm-up. */
  schedule?: 'constant' | 'cosine' | undefined;
  /** Decoupled weight decay on 2-D weights (default 0). */
  weightDecay?: number | undefined;
  /** Max global gradient norm (default 1; 0 = none). */
  clip?: number | undefined;
  seed?: number | undefined;
  /** 'all' (default) or 'ff': only the FF sublayers train (attention, norms and embeddings frozen). */
  trainable?: 'all' | 'ff' | undefined;
  /** Validation blocks (each scored on its own next tokens; all of one length, at most the model's positions), or labelled images (loss and top-1 accuracy). */
  validation?: Int32Array[] | LabelledImages | undefined;
  /** Validation loss (and accuracy) every this many steps (default: only after the last). */
  evalEvery?: number | undefined;
  signal?: AbortSignal | undefined;
  onProgress?: ((p: FinetuneProgress) => void) | undefined;
}

/** One step of the training log (the native trainer's record, as it reports it). */
export type FinetuneLogEntry = NativeStepLog;

export interface FinetuneResult {
  /** The trained model (ties kept); dispose it when done. */
  model: Model;
  /** One entry per step: the loss curve. */
  log: FinetuneLogEntry[];
  /** Mean validation NLL before and after training (with `validation`). */
  valBefore?: number;
  valAfter?: number;
  /** Top-1 validation accuracy before and after training (image classifiers with validation images). */
  accuracyBefore?: number;
  accuracyAfter?: number;
  seconds: number;
}

/** An evaluation interval past the last step would never evaluate during the run: refused, not ignored. */
export function checkEvalEvery(evalEvery: number, steps: number): void {
  if (evalEvery > steps) {
    throw new FfmergeError(
      'OPTION_NOT_APPLICABLE',
      `finetune: evalEvery (--eval-every) ${evalEvery} is more than the ${steps} steps, so no evaluation would run during the run (the validation data is scored before the first step and after the last anyway): give at most ${steps}, or leave it out`,
    );
  }
}

/** A micro-batch is a part of a batch: the trainer used the batch for a larger one, and the record said otherwise. */
export function checkMicro(micro: number | undefined, batch: number): void {
  if (micro !== undefined && micro > batch) {
    throw new FfmergeError('INVALID_ARGUMENT', `finetune: micro ${micro} (--micro) is larger than batch ${batch} (--batch): a micro-batch is the part of a batch run at once, so give micro ${batch} or less`);
  }
}

/** The schedule's settings against each other (exported so the CLI checks them before it reads the data). */
export function checkSchedule(steps: number, lr: number, warmup: number, weightDecay: number): void {
  if (lr * weightDecay >= 1) {
    // AdamW multiplies every matrix by (1 − lr·weight decay) each step: at ≥ 1 that zeroes or flips the weights
    throw new FfmergeError('INVALID_ARGUMENT', `finetune: lr × weightDecay (--lr × --weight-decay) is ${lr * weightDecay}: each step would scale the weights by 1 − lr × weight decay ≤ 0; give a product below 1 (AdamW's usual weight decay is 0.01–0.1)`);
  }
  if (warmup > steps) {
    // the ramp would end after the last step: the learning rate asked for would never be reached
    throw new FfmergeError('INVALID_ARGUMENT', `finetune: warmup (--warmup) ${warmup} is more than the ${steps} steps, so the learning rate would never reach ${lr}: give at most ${steps} warm-up steps`);
  }
}

/** Token blocks joined into one stream (the trainer draws its windows from one). */
export function joinTokens(parts: Int32Array[]): Int32Array {
  return joinArrays(parts, (n) => new Int32Array(n));
}

/** An integer option of at least `min`, or its default (arguments.ts's checkInt: safe integers only). */
function intOption(v: number | undefined, what: string, dflt: number, min = 1): number {
  checkInt(v, `finetune: ${what}`, min);
  return v ?? dflt;
}

function nonNegative(v: number | undefined, what: string, dflt: number): number {
  const n = v === undefined ? dflt : v;
  if (typeof n !== 'number' || !Number.isFinite(n) || n < 0) throw new FfmergeError('INVALID_ARGUMENT', `finetune: ${what} must be a non-negative number (got ${showValue(v)})`);
  // the trainer computes in float32: past its range a clip of 1e39 would become Infinity, silently no clip
  if (Math.fround(n) === Infinity) throw new FfmergeError('INVALID_ARGUMENT', `finetune: ${what} ${n} is larger than float32, which the trainer computes in, holds (about 3.4e38)`);
  return n;
}

/** The native arguments for image data: shapes checked against the model here, with typed errors. */
function imageArgs(model: Model, data: LabelledImages, validation: FinetuneOptions['validation']): Pick<NativeImageFinetuneArgs, 'images' | 'labels' | 'validationImages' | 'validationLabels'> {
  const spec = model.spec;
  if (spec.input !== 'patches' || spec.head !== 'classifier') {
    throw new FfmergeError('INVALID_ARGUMENT', `finetune: labelled images train an image classifier; this ${spec.family} model is not one (give token ids)`);
  }
  if (validation !== undefined && !isImages(validation)) throw new FfmergeError('INVALID_ARGUMENT', 'finetune: the validation data of an image classifier is labelled images too');
  const px = spec.channels * spec.imageH * spec.imageW;
  for (const [what, set] of [['training', data], ['validation', validation]] as const) {
    if (!set) continue;
    if (!(set.labels instanceof Int32Array) || set.pixels.length !== set.labels.length * px) {
      throw new FfmergeError('SHAPE_MISMATCH', `finetune: the ${what} images must be ${px} pixel values (channels·height·width) per label; got ${set.pixels.length} values for ${set.labels?.length} labels`);
    }
    if (what === 'validation' && set.labels.length === 0) throw new FfmergeError('INVALID_ARGUMENT', 'finetune: validation holds no images: give some, or leave validation out');
    const bad = set.labels.find((l) => l < 0 || l >= spec.numLabels);
    if (bad !== undefined) throw new FfmergeError('INVALID_DATA', `finetune: ${what} label ${bad} is outside the model's ${spec.numLabels} classes`);
    // checked here: the trainer would report a non-finite validation pixel as a non-finite training loss
    const i = set.pixels.findIndex((v) => !Number.isFinite(v));
    if (i >= 0) throw new FfmergeError('NON_FINITE_INPUT', `finetune: the ${what} images hold a non-finite pixel value (${set.pixels[i]} in image ${Math.floor(i / px)}): preprocessed pixels must be finite numbers`);
  }
  if (data.labels.length === 0) throw new FfmergeError('INVALID_DATA', 'finetune: no training images');
  return {
    images: data.pixels,
    labels: data.labels,
    ...(validation && isImages(validation) && validation.labels.length ? { validationImages: validation.pixels, validationLabels: validation.labels } : {}),
  };
}

const FINETUNE_KEYS: readonly (keyof FinetuneOptions)[] = [
  'data', 'steps', 'lr', 'batch', 'seq', 'micro', 'warmup', 'schedule', 'weightDecay', 'clip', 'seed', 'trainable', 'validation', 'evalEvery',
];

/**
 * A model loaded from an expanded output holds each merged window as separate copies, which would train apart
 * while its record still calls them merged: refused as `ffmerge finetune` refuses the folder. A view that ties
 * each recorded window (withFF, as the `finetune` recover method makes) trains them as one and is accepted.
 */
function checkNotExpanded(model: Model): void {
  const rec = model.config.ffmerge as { format?: unknown } | undefined;
  if (rec?.format !== 'expanded') return;
  const windows = recordedWindows(model.config as Config, 'finetune: the model\'s config.json');
  if (windows.some((w) => w.stack === model.mainStack && !sharesOneFF(model, w.layers))) throw expandedError('finetune: the model was loaded from');
}

/** Refuses a model the trainer cannot fine-tune (UNSUPPORTED_ARCHITECTURE, naming why), before data is read. */
export function checkFinetunable(model: Model): void {
  checkModel(model, 'checkFinetunable(model): model');
  nativeCall(() => trainAddon().modelCheckTrainable(model.nativeHandle()));
}

/** Token data: one Int32Array or a list of them (a string, a plain number list or a bare object is refused). */
const isTokenData = (v: unknown): boolean => isInt32Array(v) || (Array.isArray(v) && v.every(isInt32Array));

/** A learning rate the trainer can use: positive, and neither Infinity nor 0 in float32, which it computes in. */
export function checkLearningRate(v: unknown, what: string): number {
  if (typeof v !== 'number' || !(v > 0) || !Number.isFinite(v)) throw new FfmergeError('INVALID_ARGUMENT', `${what} must be a positive number (got ${showValue(v)})`);
  const f = Math.fround(v);
  if (f === Infinity) throw new FfmergeError('INVALID_ARGUMENT', `${what} ${v} is larger than float32, which the trainer computes in, holds (about 3.4e38)`);
  if (f === 0) throw new FfmergeError('INVALID_ARGUMENT', `${what} ${v} is smaller than float32, which the trainer computes in, holds (it would be 0; the smallest is about 1.4e-45)`);
  return v;
}

/** With `validation`, the result holds its loss before and after training (`valBefore`, `valAfter` are present). */
export async function finetune(
  model: Model,
  opts: FinetuneOptions & { validation: NonNullable<FinetuneOptions['validation']> },
): Promise<FinetuneResult & { valBefore: number; valAfter: number }>;
export async function finetune(model: Model, opts: FinetuneOptions): Promise<FinetuneResult>;
export async function finetune(model: Model, opts: FinetuneOptions): Promise<FinetuneResult> {
  checkModel(model, 'finetune(model, options): model');
  if (opts === undefined || opts === null) throw new FfmergeError('INVALID_ARGUMENT', `finetune(model, options): options must be an object { data, steps, … } (got ${showValue(opts)})`);
  checkJobOptions(opts, 'finetune(model, options): options', FINETUNE_KEYS);
  if (!isImages(opts.data) && !isTokenData(opts.data)) {
    throw new FfmergeError('INVALID_ARGUMENT', `finetune: data must be token ids (an Int32Array or a list of them) or labelled images { pixels, labels } (got ${showValue(opts.data)})`);
  }
  if (opts.validation !== undefined && !isImages(opts.validation) && !(Array.isArray(opts.validation) && opts.validation.every(isInt32Array))) {
    throw new FfmergeError('INVALID_ARGUMENT', `finetune: validation must be token blocks (a list of Int32Arrays) or labelled images { pixels, labels } (got ${showValue(opts.validation)})`);
  }
  if (Array.isArray(opts.validation) && opts.validation.length === 0) {
    throw new FfmergeError('INVALID_ARGUMENT', 'finetune: validation is an empty list of token blocks: give at least one block, or leave validation out');
  }
  checkOneOf(opts.schedule, 'finetune: schedule', ['constant', 'cosine'] as const);
  checkOneOf(opts.trainable, 'finetune: trainable', ['all', 'ff'] as const);
  throwIfAborted(opts.signal);
  checkCount(opts.steps, 'finetune: steps', 1);
  const steps = opts.steps;
  const batch = intOption(opts.batch, 'batch', 8);
  const lr = opts.lr === undefined ? 2e-4 : checkLearningRate(opts.lr, 'finetune: lr');
  const common = {
    steps,
    batch,
    lr,
    micro: intOption(opts.micro, 'micro', 0, 0),
    warmup: intOption(opts.warmup, 'warmup', 0, 0),
    weightDecay: nonNegative(opts.weightDecay, 'weightDecay', 0),
    clip: nonNegative(opts.clip, 'clip', 1),
    seed: intOption(opts.seed, 'seed', 0, 0),
    evalEvery: intOption(opts.evalEvery, 'evalEvery', 0, 0),
    schedule: opts.schedule ?? 'constant',
    trainable: opts.trainable ?? 'all',
  } as const;
  checkSchedule(steps, lr, common.warmup, common.weightDecay);
  checkMicro(common.micro, batch);
  const hasValidation = isImages(opts.validation) ? opts.validation.labels.length > 0 : Boolean(opts.validation?.length);
  if (common.evalEvery > 0 && !hasValidation) throw new FfmergeError('OPTION_NOT_APPLICABLE', 'finetune: evalEvery (--eval-every) scores the validation data, and none is given: give validation data with it (validation, --valid)');
  checkEvalEvery(common.evalEvery, steps);
  checkNotExpanded(model);
  let args: NativeFinetuneArgs | NativeImageFinetuneArgs;
  if (isImages(opts.data)) {
    args = { ...common, ...imageArgs(model, opts.data, opts.validation) };
  } else {
    if (model.spec.input === 'patches') throw new FfmergeError('INVALID_ARGUMENT', `finetune: this ${model.spec.family} model takes images: give labelled images ({ pixels, labels })`);
    if (isImages(opts.validation)) throw new FfmergeError('INVALID_ARGUMENT', 'finetune: the validation data of a language model is token blocks');
    const { maxPositions, maxPositionsField, vocab } = model.spec;
    const seq = intOption(opts.seq, 'seq', maxPositions > 0 ? Math.min(128, maxPositions) : 128);
    // Checked for every kind of position, as Model.forward does: the trainer checks only a learned table, and a
    // rotary model trained past its context is not the model it was trained to be
    const tooLong = (what: string) =>
      new FfmergeError('SEQUENCE_TOO_LONG', `finetune: ${what} longer than the model's ${maxPositions} positions (config.json "${maxPositionsField ?? 'max positions'}")`);
    if (maxPositions > 0 && seq > maxPositions) throw tooLong(`seq ${seq} is`);
    const tokens = opts.data instanceof Int32Array ? opts.data : joinTokens(opts.data);
    const val = opts.validation?.length ? opts.validation : undefined;
    const valSeq = val?.[0]?.length ?? 0;
    if (val?.some((b) => b.length !== valSeq)) {
      throw new FfmergeError('INVALID_ARGUMENT', 'finetune: validation blocks must all have one length');
    }
    if (maxPositions > 0 && valSeq > maxPositions) throw tooLong(`the validation blocks are ${valSeq} tokens,`);
    // INVALID_DATA, as for a training token outside the vocabulary
    for (const b of val ?? []) {
      const outside = b.find((t) => t < 0 || t >= vocab);
      if (outside !== undefined) throw new FfmergeError('INVALID_DATA', `finetune: validation token id ${outside} is outside the vocabulary (size ${vocab})`);
    }
    args = { ...common, tokens, seq, ...(val ? { validation: joinTokens(val), validationSeq: valSeq } : {}) };
  }
  const t0 = performance.now();
  let handle: ReturnType<ReturnType<typeof trainAddon>['modelFinetune']>;
  let failure: { error: unknown } | undefined;
  const onProgress =
    opts.onProgress &&
    guardProgress(opts.onProgress, (error) => {
      failure = { error };
      handle?.cancel(); // (none yet for the event sent before the job starts)
    });
  /** A progress event; with `e`, the step it describes (and the time left after it). */
  const event = (done: number, total: number, e?: Omit<FinetuneLogEntry, 'lr' | 'gradNorm'>, etaSeconds = 0): FinetuneProgress => ({
    phase: 'finetune', done, total,
    ...(e ? { step: e.step, loss: e.loss, tokensPerSecond: e.tokensPerSecond, imagesPerSecond: e.imagesPerSecond, etaSeconds } : {}),
    ...(e?.valLoss !== undefined ? { valLoss: e.valLoss } : {}),
    ...(e?.valAccuracy !== undefined ? { valAccuracy: e.valAccuracy } : {}),
  });
  // the validation passes: before the first step (announced below), and after an --eval-every step and the
  // last one, before that step's log is written
  const scoredAfter = (step: number) => hasValidation && (step === steps || (common.evalEvery > 0 && step % common.evalEvery === 0));
  const scored = isImages(opts.validation) ? 'images' : 'sequences';
  const report = (done: number, total: number, partDone?: number, partTotal?: number) => {
    const last: NativeStepLog | undefined = handle?.latest();
    const logged = last?.step ?? 0;
    const eta = last && (last.seconds / last.step) * (steps - last.step);
    if (partTotal !== undefined && partDone !== undefined) {
      // a validation pass under way, counted. done 0: the pass before training; else the one after step
      // logged + 1, run before that step is logged
      const pass = done > 0 ? `validation loss after step ${logged + 1}` : 'validation loss before training';
      onProgress!({ ...event(logged, steps, last, eta), detail: `${pass}: ${partDone}/${partTotal} ${scored}` });
      return;
    }
    const validating = Number.isInteger(done) && done > logged && scoredAfter(done);
    // the final event is sent from the finished log below, so that it names the last step and no time left
    if (done >= total && !validating) return;
    // done is the last step the event describes, the one logged: the count can run ahead of the log (done 1, no
    // step 1 yet) or behind it (a report queued at step 1 read after step 2 was logged); the last step logged is
    // the final event's to say
    if (logged >= total) return;
    const e = event(logged, total, last, last && (last.seconds / last.step) * (total - last.step));
    onProgress!(validating ? { ...e, detail: `validation loss after step ${done}` } : e);
  };
  // said as the job starts, validation or not: the count then stands at 0 through the first step
  if (onProgress) {
    try {
      onProgress(hasValidation ? { ...event(0, steps), detail: 'validation loss before training' } : event(0, steps));
    } catch {
      // the callback's own error, kept in `failure`, is what the call rejects with
    }
    if (failure) throw failure.error;
  }
  // an abort from that first event: a listener added after it would never hear it
  throwIfAborted(opts.signal);
  handle = nativeCall(() => trainAddon().modelFinetune(model.nativeHandle(), args, onProgress ? report : undefined));
  const stopListening = onAbort(opts.signal, () => handle.cancel());
  let r;
  try {
    r = await handle.promise;
  } catch (e) {
    if (failure) throw failure.error;
    throw fromNativeError(e, opts.signal);
  } finally {
    stopListening();
  }
  const log: FinetuneLogEntry[] = Array.from(r.log.step, (step, i) => {
    const e: FinetuneLogEntry = {
      step,
      loss: r.log.loss[i]!,
      lr: r.log.lr[i]!,
      gradNorm: r.log.gradNorm[i]!,
      seconds: r.log.seconds[i]!,
      tokensPerSecond: r.log.tokensPerSecond[i]!,
      imagesPerSecond: r.log.imagesPerSecond[i]!,
    };
    if (Number.isFinite(r.log.valLoss[i]!)) e.valLoss = r.log.valLoss[i]!;
    if (Number.isFinite(r.log.valAccuracy[i]!)) e.valAccuracy = r.log.valAccuracy[i]!;
    return e;
  });
  const final = log[log.length - 1];
  if (onProgress && final && !failure) onProgress(event(steps, steps, final));
  if (failure) {
    new Model(model.config, model.spec, r.model).dispose(); // finished before the cancel reached it
    throw failure.error;
  }
  return {
    model: new Model(model.config, model.spec, r.model),
    log,
    ...(r.valBefore !== undefined ? { valBefore: r.valBefore } : {}),
    ...(r.valAfter !== undefined ? { valAfter: r.valAfter } : {}),
    ...(r.accuracyBefore !== undefined ? { accuracyBefore: r.accuracyBefore } : {}),
    ...(r.accuracyAfter !== undefined ? { accuracyAfter: r.accuracyAfter } : {}),
    seconds: (performance.now() - t0) / 1000,
  };
}
