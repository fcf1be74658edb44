/**
 * `ffmerge finetune <model> --data train.txt.gz --steps N …` (language models) or `ffmerge finetune <vit>
 * --images train-images.gz --labels train-labels.gz …` (image classifiers): recovery fine-tuning with the ties
 * kept (the paper's step 6), natively. Writes the trained weights through the checkpoint writer as replacements
 * of the source's tensors, so a `tied` compressed checkpoint stays tied and keeps its size.
 */
import * as path from 'node:path';
import { FfmergeError } from '../errors';
import { loadModel, readConfig } from '../model/load';
import { checkOutputDir } from '../checkpoint/write';
import { folderMerges } from '../checkpoint/earlier-merges';
import { checkSourceUnchanged, sourceStamp } from '../checkpoint/source-stamp';
import { blocksFrom, checkDataFile, fitBlockSize, shortBudgetNote, takeTokens, tokenCount } from '../pipeline/data';
import { cutBlocks } from '../data/blocks';
import { sameData, sameDataPhrase } from '../data/same-data';
import { checkEvalEvery, checkFinetunable, checkLearningRate, checkMicro, checkSchedule, finetune, joinTokens, type FinetuneOptions, type FinetuneResult } from '../train/finetune';
import { imageSources, trainingImages, type ImageFlags } from './finetune-images';
import { saveTrained } from '../train/save';
import { expandedError } from '../train/ties';
import { SafetensorsReader } from '../safetensors';
import { byteSize, decimal, defaultOut, dropUndefined, int, oneOf, refuseFlags } from './flags';
import { holdingLoad, ProgressBar } from './progress';
import { fmtBytes, fmtInt, printResult } from './format';
import { assertRegularFile } from '../files';

/** Commander's parsed flags, all strings but the switches; the image flags are ImageFlags. */
export interface FinetuneCliOptions extends ImageFlags {
  steps: string;
  lr: string;
  batch: string;
  seq?: string | undefined;
  warmup?: string | undefined;
  schedule: string;
  weightDecay: string;
  clip: string;
  seed: string;
  evalEvery?: string | undefined;
  tokens?: string | undefined;
  validTokens?: string | undefined;
  trainable: string;
  micro?: string | undefined;
  out?: string | undefined;
  maxShardSize?: string | undefined;
  overwrite?: boolean | undefined;
  json?: boolean | undefined;
}

/** The data flags of each kind of model (the other kind's are refused). */
const TASK_FLAGS = {
  'language modeling': ['seq', 'tokens', 'validTokens'],
  'image classification': ['images', 'labels', 'validImages', 'validLabels', 'validationStart', 'validationSize', 'trainSize'],
};

/**
 * The largest --batch. The library takes any, as memory is one micro-batch's whatever the batch, but a step runs
 * batch forward/backward passes: past 2^16 (more than a 55,000-image epoch) it is a typo or a step that never ends.
 */
export const MAX_BATCH = 65536;

function num(v: string, what: string): number {
  const n = decimal(v);
  if (!Number.isFinite(n) || n < 0) throw new FfmergeError('INVALID_ARGUMENT', `--${what} must be a non-negative number, got "${v}"`);
  if (Math.fround(n) === Infinity) throw new FfmergeError('INVALID_ARGUMENT', `--${what} ${v} is larger than float32, which the trainer computes in, holds (about 3.4e38)`);
  return n;
}

export async function runFinetune(model: string, o: FinetuneCliOptions, signal: AbortSignal): Promise<void> {
  // a folder that is no model says so first
  const config = await readConfig(model);
  const out = o.out ?? defaultOut(model, '-finetuned');
  checkOutputDir(model, out, o.overwrite, [o.data, o.valid, o.images, o.labels, o.validImages, o.validLabels]); // before any long work
  const maxShardSize = byteSize(o.maxShardSize, 'max-shard-size'); // a bad size is refused before training
  // a flag of the other kind of model is refused (exit 2), not silently ignored
  const modelType = typeof config.model_type === 'string' ? config.model_type : 'unknown';
  refuseFlags(o, TASK_FLAGS, modelType === 'vit' ? 'image classification' : 'language modeling', modelType);
  // the record is carried into the output: checked as compress, convert and export check it
  await folderMerges(model, config);
  // An expanded output's merged FFs are separate copies: trained, they would drift apart (expandedError)
  const prev = config.ffmerge as { format?: unknown } | undefined;
  if (prev?.format === 'expanded') throw expandedError(`${model} is`, model);
  // every training flag is checked before the data is read
  const steps = int(o.steps, 'steps')!;
  const evalEvery = int(o.evalEvery, 'eval-every');
  if (evalEvery !== undefined) checkEvalEvery(evalEvery, steps);
  const lr = decimal(o.lr);
  if (!(lr > 0) || !Number.isFinite(lr)) throw new FfmergeError('INVALID_ARGUMENT', `--lr must be a positive number, got "${o.lr}"`);
  checkLearningRate(lr, '--lr');
  const batch = int(o.batch, 'batch')!;
  if (batch > MAX_BATCH) throw new FfmergeError('INVALID_ARGUMENT', `--batch must be at most ${MAX_BATCH} (sequences or images per step), got ${batch}`);
  const warmup = int(o.warmup, 'warmup', 0) ?? 0;
  const schedule = oneOf(o.schedule, ['constant', 'cosine'] as const, 'schedule');
  const weightDecay = num(o.weightDecay, 'weight-decay');
  const clip = num(o.clip, 'clip');
  const seed = int(o.seed, 'seed', 0)!;
  const trainable = oneOf(o.trainable, ['all', 'ff'] as const, 'trainable');
  const micro = int(o.micro, 'micro');
  checkMicro(micro, batch);
  checkSchedule(steps, lr, warmup, weightDecay);
  const seqAsked = int(o.seq, 'seq'); // its bound, the model's positions, once the model is loaded
  const bar = new ProgressBar(!o.json);
  const t0 = performance.now();
  // the output is written from the source folder again (config, tokenizer, what did not train): the same files
  const stamp = sourceStamp(model);
  // Training copies every weight to fp32, so nothing is gained by streaming layers; a resident load also
  // makes a tied checkpoint's window one native FF (the loader shares FFs whose tensors are one buffer).
  const m = await loadModel(model, { signal, stream: false, onProgress: holdingLoad(bar.update) });
  let r: FinetuneResult | undefined;
  try {
    checkFinetunable(m); // before the data is read: tokenizing it can take minutes
    const images = m.spec.input === 'patches';
    // the flags that need the model, checked before the run says it starts: a usage error is its one line
    if (images) imageSources(o);
    else {
      if (o.data === undefined) throw new FfmergeError('INVALID_ARGUMENT', 'finetune needs --data <text or .jsonl file> (training data)');
      if (o.valid === undefined && o.validTokens !== undefined) throw new FfmergeError('OPTION_NOT_APPLICABLE', '--valid-tokens needs --valid <file> (validation text)');
      if (o.valid === undefined && evalEvery !== undefined) throw new FfmergeError('OPTION_NOT_APPLICABLE', '--eval-every scores the validation data, and none is given: give --valid <file> with it');
      if (o.valid !== undefined) int(o.validTokens, 'valid-tokens');
      for (const [file, what] of [[o.data, 'training'], [o.valid, 'validation']] as const) {
        if (file === undefined) continue;
        checkDataFile(file, what);
        await assertRegularFile(file, 'INVALID_DATA');
      }
      // read from its start as training is: the training file again would validate on text just trained on
      const same = o.valid !== undefined ? await sameData(o.data, o.valid, { text: true }) : undefined;
      if (same) throw new FfmergeError('INVALID_ARGUMENT', `--valid ${o.valid} ${sameDataPhrase(same, 'training (--data)')}, so validation would score text the model was just trained on: give a different --valid file, or none`);
    }
    const seq = images ? 0 : fitBlockSize(seqAsked, 256, m.spec.maxPositions, '--seq');
    if (!o.json) process.stderr.write(`ffmerge: fine-tuning ${model} → ${out}\n`);
    let input: Pick<FinetuneOptions, 'data' | 'validation' | 'seq'>;
    let dataInfo: Record<string, unknown>;
    /** For the summary line: validation tokens left out of the scored blocks. */
    let validationNote = '';
    // budgets past what the data holds, said as eval and compress say them
    const budgetNotes: string[] = [];
    const [from, valid] = images ? [o.data ?? o.images, o.valid ?? o.validImages] : [o.data, o.valid];
    if (images) {
      const d = await trainingImages(model, o, { signal, onProgress: bar.update });
      input = { data: d.train, ...(d.validation ? { validation: d.validation } : {}) };
      // allowed (steps draw images at random), but rarely meant
      const count = d.train.labels.length;
      if (batch > count && !o.json) {
        bar.done();
        process.stderr.write(`ffmerge: note: --batch ${batch} is more than the ${count} training images, so each step draws every image about ${Math.round(batch / count)} times; a smaller --batch trains as much per image for less time\n`);
      }
      dataInfo = {
        ...dropUndefined({ data: from && path.basename(from), valid: valid && path.basename(valid) }),
        images: d.train.labels.length,
        ...(d.validation ? { validationImages: d.validation.labels.length } : {}),
        split: d.note,
      };
    } else {
      const trainFile = o.data!; // checked above
      const budget = int(o.tokens, 'tokens') ?? Infinity;
      // Text is cut into blocks of seq tokens and joined back into one stream; windows are drawn from it.
      // (token-id rows are joined into that stream too, so a row may be a single token)
      const read = await blocksFrom(trainFile, { blockSize: seq, what: 'training', tokenizerDir: model, maxTokens: budget, vocab: m.spec.vocab, minLength: 1, signal, onProgress: bar.update });
      // a budget counts whole --seq blocks of that one stream, token-id rows' as text's
      const data = Number.isFinite(budget) ? takeTokens(cutBlocks(joinTokens(read), seq), budget) : read;
      // a training window is seq + 1 tokens (inputs and their next tokens): one block of budget is not one window
      // (full blocks only: the budget cut them; a shorter last block means the file itself ran out)
      const shortTraining = shortBudgetNote(tokenCount(read), budget, '--tokens');
      if (shortTraining) budgetNotes.push(`training: ${shortTraining}`);
      const kept = tokenCount(data);
      if (Number.isFinite(budget) && kept < seq + 1 && kept === data.length * seq) {
        throw new FfmergeError('INVALID_ARGUMENT', `--tokens ${budget} keeps ${kept} tokens (whole --seq ${seq} blocks), fewer than one training window of seq + 1 = ${seq + 1}: give --tokens ${2 * seq} or more`);
      }
      let validation: Int32Array[] | undefined;
      let validationLeftOut = 0;
      if (o.valid !== undefined) {
        const vb = int(o.validTokens ?? '32768', 'valid-tokens')!;
        const rows = await blocksFrom(o.valid, { blockSize: seq, what: 'validation', tokenizerDir: model, maxTokens: vb, vocab: m.spec.vocab, minLength: 1, signal, onProgress: bar.update });
        // scored in whole blocks of seq tokens: token-id rows of any length are joined and cut like text
        const joined = joinTokens(rows);
        const shortValidation = o.validTokens !== undefined ? shortBudgetNote(joined.length, vb, '--valid-tokens') : undefined;
        if (shortValidation) budgetNotes.push(`validation: ${shortValidation}`);
        validation = takeTokens(cutBlocks(joined, seq), vb).filter((b) => b.length === seq);
        if (validation.length === 0) throw new FfmergeError('INVALID_DATA', `${o.valid} holds fewer than --seq ${seq} tokens of validation data`);
        // the tokens after the last whole block, when the file ran out before --valid-tokens: said, not dropped silently
        if (joined.length <= vb) validationLeftOut = joined.length - tokenCount(validation);
      }
      input = { data, seq, ...(validation ? { validation } : {}) };
      if (validation && validationLeftOut > 0) validationNote = ` (${tokenCount(validation)} validation tokens in blocks of --seq ${seq}; the last ${validationLeftOut}, short of a block, not scored)`;
      // file names (not paths: the record and card travel with the folder) for the model card's fine-tuning section
      dataInfo = {
        seq,
        data: path.basename(trainFile),
        trainingTokens: tokenCount(data), // the stream windows were drawn from, after any --tokens budget
        ...(o.valid !== undefined && validation ? { valid: path.basename(o.valid), validationTokens: tokenCount(validation), validationTokensLeftOut: validationLeftOut } : {}),
      };
    }
    let lastVal = '';
    const rate = (x: { imagesPerSecond?: number; tokensPerSecond?: number }) => (images ? `${fmtInt(x.imagesPerSecond ?? 0)} img/s` : `${fmtInt(x.tokensPerSecond ?? 0)} tok/s`);
    r = await finetune(m, {
      ...input,
      steps, lr, batch, warmup, schedule, weightDecay, clip, seed, trainable,
      ...dropUndefined({ micro, evalEvery }),
      signal,
      onProgress: (p) => {
        // the last --eval-every score stays on the line until the next
        if (p.valLoss !== undefined) lastVal = `  validation ${p.valLoss.toFixed(3)} at step ${p.step}`;
        // a validation pass running is said (the library names it in `detail`), else the step's loss and rate
        bar.update({ ...p, detail: p.detail ?? (p.step === undefined ? '' : `loss ${p.loss!.toFixed(3)}${lastVal}  ${rate(p)}`) });
      },
    });
    bar.done();
    const last = r.log.at(-1)!;
    const summary = {
      steps, lr, batch, ...dataInfo, seed, schedule, warmup, weightDecay, clip, trainable,
      // micro sets the order gradients are summed in, so it is part of what the weights came from
      ...dropUndefined({ micro }),
      firstLoss: r.log[0]!.loss, lastLoss: last.loss,
      ...(r.valBefore !== undefined ? { valBefore: r.valBefore, valAfter: r.valAfter } : {}),
      ...dropUndefined({ accuracyBefore: r.accuracyBefore, accuracyAfter: r.accuracyAfter }),
    };
    // Speed goes to finetune.json and stdout, not into the model's config.json record: two identical runs then
    // write identical model folders (convert and export copy the record on).
    const timing = { ...(images ? { imagesPerSecond: last.imagesPerSecond } : { tokensPerSecond: last.tokensPerSecond }), seconds: r.seconds };
    checkSourceUnchanged(model, stamp, 'it was fine-tuned');
    const w = await saveTrained(r.model, {
      source: model,
      out,
      info: { finetune: summary },
      extraFiles: { 'finetune.json': JSON.stringify({ ...summary, ...timing, log: r.log }, null, 1) + '\n' },
      overwrite: Boolean(o.overwrite),
      ...(maxShardSize !== undefined ? { maxShardSize } : {}),
      signal,
      onProgress: bar.update,
    });
    bar.done();
    // the source's weight files, one or every shard (the same measure as `bytes`)
    const reader = await SafetensorsReader.open(model);
    const sourceBytes = reader.fileBytes;
    await reader.close();
    const evaluations = evalEvery === undefined ? [] : r.log.flatMap((e) => (e.valLoss === undefined ? [] : [{ step: e.step, valLoss: e.valLoss, ...dropUndefined({ valAccuracy: e.valAccuracy }) }]));
    // the data as paths that work from where the command ran (the record keeps file names: it travels)
    const paths = dropUndefined({ data: from && path.resolve(from), valid: valid && 'valid' in summary ? path.resolve(valid) : undefined });
    // a run that made the model worse on held-out data says so, in digits enough to show the rise
    const digits = r.valBefore !== undefined && r.valAfter!.toFixed(3) === r.valBefore.toFixed(3) ? 6 : 3;
    const rose = r.valBefore !== undefined && r.valAfter! > r.valBefore
      ? `the validation loss rose over this run (${r.valBefore.toFixed(digits)} → ${r.valAfter!.toFixed(digits)}); the weights saved are the last step's: more steps, or a lower --lr, may lower it`
      : undefined;
    const notes = rose ? [...budgetNotes, rose] : budgetNotes;
    const result = {
      model: path.resolve(model), out: w.out, bytes: w.bytes, sourceBytes, ...summary, ...paths, ...(evaluations.length ? { evaluations } : {}),
      ...(notes.length ? { notes } : {}), ...timing, totalSeconds: (performance.now() - t0) / 1000,
    };
    const line =
      `fine-tuned ${steps} step${steps === 1 ? "" : "s"}: loss ${summary.firstLoss.toFixed(3)} → ${summary.lastLoss.toFixed(3)}` +
      (r.valBefore !== undefined ? `, validation ${r.valBefore.toFixed(3)} → ${r.valAfter!.toFixed(3)}` : '') +
      validationNote +
      (evaluations.length ? ` (at steps ${evaluations.map((e) => `${e.step}: ${e.valLoss.toFixed(3)}`).join(', ')})` : '') +
      (r.accuracyBefore !== undefined ? ` (accuracy ${(100 * r.accuracyBefore).toFixed(2)}% → ${(100 * r.accuracyAfter!).toFixed(2)}%)` : '') +
      `, ${rate(last)}, ${r.seconds.toFixed(1)} s → ${w.out} (${fmtBytes(w.bytes)})` +
      notes.map((n) => `\nnote: ${n}`).join('');
    printResult(o.json, result, () => line);
  } catch (e) {
    bar.interrupt();
    throw e;
  } finally {
    r?.model.dispose();
    m.dispose();
  }
}
