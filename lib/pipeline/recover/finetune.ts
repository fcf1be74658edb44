/**
 * Fine-tuning as a recover method (decoder-only language models and ViT image classifiers): the merged model
 * (the window's layers sharing the merged FF) is trained a few AdamW steps on the calibration data with the
 * tie kept — next-token loss on the calibration tokens, or cross-entropy on the labelled calibration images —
 * and only the FF sublayers train: the interface returns FFs (the merged one, and every other layer's as
 * `adjusted`, whose count of parameters does not change), so attention, norms and embeddings stay as they are.
 *
 * The calibration set is small (10k tokens / 600 images by default), so the steps and learning rate are kept
 * small here; the paper's full step 6 — every weight, on real training data — is `ffmerge finetune`
 * (lib/cli/finetune.ts) on the compressed checkpoint.
 */
import { FfmergeError } from '../../errors';
import { joinArrays } from '../../typed-arrays';
import type { FeatureBatch } from '../../data/feature-batches';
import type { FFWeights } from '../../model/ff-weights';
import { windowLabel, windowLayers } from '../../merge/windows';
import { finetune as train, joinTokens, type FinetuneOptions, type LabelledImages } from '../../train/finetune';
import type { RecoverMethod } from '../plugins';
import { withView } from './refit-seq';

/** ~4 passes over 10k calibration tokens (or 600 images): enough to move the merged FF, few enough not to memorise them. */
const STEPS = 40;
const LR = 1e-4;
const BATCH = 8;
const SEQ = 128;
const IMAGE_BATCH = 64;

/** The labelled calibration images, joined (undefined when a batch has no labels). */
function calibrationImages(batches: FeatureBatch[]): LabelledImages | undefined {
  if (!batches.length || batches.some((b) => !b.labels || !b.input.pixels)) return undefined;
  const pixels = joinArrays(batches.map((b) => b.input.pixels!), (n) => new Float32Array(n));
  return { pixels, labels: joinTokens(batches.map((b) => b.labels!)) };
}

/** Of the calibration data, the share held out to check the training (the last sequences, or images). */
const HELD_OUT = 1 / 8;

/**
 * Calibration sequences split into training ones and held-out ones (the last eighth, at least one), the
 * held-out cut into windows of the `seq` + 1 tokens the trainer scores. Fewer than two sequences: all train.
 */
function heldOutRows(rows: Int32Array[], seq: number): Pick<FinetuneOptions, 'data' | 'validation'> {
  if (rows.length < 2) return { data: rows };
  const cut = rows.length - Math.ceil(rows.length * HELD_OUT);
  const windows = rows.slice(cut).flatMap((r) => Array.from({ length: Math.floor(r.length / (seq + 1)) }, (_, i) => r.subarray(i * (seq + 1), (i + 1) * (seq + 1))));
  return windows.length ? { data: rows.slice(0, cut), validation: windows } : { data: rows };
}

/** Labelled images split the same way (at least 16 images held out, so the check means something). */
function heldOutImages(images: LabelledImages): Pick<FinetuneOptions, 'data' | 'validation'> {
  const count = images.labels.length;
  const n = Math.ceil(count * HELD_OUT);
  if (n < 16 || count - n < 1) return { data: images };
  const size = images.pixels.length / count;
  const cut = count - n;
  return {
    data: { pixels: images.pixels.subarray(0, cut * size), labels: images.labels.subarray(0, cut) },
    validation: { pixels: images.pixels.subarray(cut * size), labels: images.labels.subarray(cut) },
  };
}

export const finetuneRecover: RecoverMethod = {
  name: 'finetune',
  rewritesEarlier: true,
  trains: true,
  seeded: true,
  tasks: ['language-modeling', 'image-classification'],
  description: `trains the FF sublayers ${STEPS} AdamW steps on the calibration data with the tie kept, an eighth held out: where their loss does not fall, the untrained merge is kept (decoder LMs: tokens; vit: labelled images; the full step 6 is \`ffmerge finetune\`)`,
  async recover(ctx, m, opts) {
    const { model } = ctx;
    const spec = model.spec;
    const lm = spec.causal && spec.head === 'lm' && spec.input === 'tokens';
    const vit = spec.input === 'patches' && spec.head === 'classifier';
    if (m.stack !== model.mainStack || !(lm || vit) || model.encoderSpec) {
      throw new FfmergeError('UNSUPPORTED_ARCHITECTURE', `recover method 'finetune' trains decoder-only language models and ViT image classifiers; ${spec.family} is not one`);
    }
    let data: Pick<FinetuneOptions, 'data' | 'seq' | 'batch' | 'validation'>;
    if (vit) {
      const images = calibrationImages(ctx.calibration);
      if (!images) throw new FfmergeError('INVALID_DATA', "recover method 'finetune' needs labelled calibration images (idx labels or an image folder)");
      data = { ...heldOutImages(images), batch: Math.min(IMAGE_BATCH, images.labels.length) };
    } else {
      const seq = Math.min(SEQ, ...ctx.calibration.map((b) => b.input.seq - 1));
      // each batch's sequences (batch × seq ids), so that whole sequences are held out
      const rows = ctx.calibration.flatMap(({ input: { ids, seq: len } }) =>
        ids instanceof Int32Array ? Array.from({ length: ids.length / len }, (_, i) => ids.subarray(i * len, (i + 1) * len)) : [],
      );
      data = { ...heldOutRows(rows, seq), batch: BATCH, seq };
    }
    const layers = windowLayers(m.window);
    // An earlier merge's layers train tied, as one FF (an expanded source holds them as equal copies: tied here).
    const earlier = ctx.earlier?.get(m.stack) ?? [];
    // read off the main thread (ffWeights would widen a streamed 16-bit layer on the JS thread)
    const tied = [];
    for (const ls of earlier) {
      const ff = await model.readFFWeights(ls[0]!, { signal: opts.signal, stack: m.stack });
      tied.push(...ls.map((layer) => ({ stack: m.stack, layer, ff })));
    }
    return withView(model, [...tied, ...layers.map((layer) => ({ stack: m.stack, layer, ff: m.merged }))], opts, async (view) => {
      const r = await train(view, {
        ...data,
        steps: STEPS,
        lr: LR,
        trainable: 'ff',
        seed: ctx.seed ?? 0,
        signal: opts.signal,
        // named by its window: two windows train one after another
        ...(opts.onProgress ? { onProgress: (p) => opts.onProgress!({ ...p, detail: `${m.stack} ${windowLabel(m.window)}${p.detail ? `: ${p.detail}` : ''}` }) } : {}),
      });
      try {
        const held = r.valBefore !== undefined && r.valAfter !== undefined ? `${r.valBefore.toFixed(4)} → ${r.valAfter.toFixed(4)}` : undefined;
        const where = `${m.stack} ${windowLabel(m.window)}`;
        // Training that raised the held-out loss made the merge worse on data it did not see: the untrained merge
        // is kept, and the report says so.
        if (held && !(r.valAfter! < r.valBefore!)) {
          return { ...m, recover: 'none', note: `recover finetune at ${where}: training did not lower the loss on held-out calibration data (${held}), so the untrained merge was kept` };
        }
        const note = held ? `recover finetune at ${where}: loss on held-out calibration data ${held}` : `recover finetune at ${where}: too little calibration data to hold some out, so the training was not checked`;
        const merged: FFWeights = await r.model.readFFWeights(layers[0]!, { signal: opts.signal });
        const adjusted = new Map<number, FFWeights>();
        for (let l = 0; l < spec.layers; l++) if (!layers.includes(l)) adjusted.set(l, await r.model.readFFWeights(l, { signal: opts.signal }));
        // one object per earlier merge: compress writes such a window's rewrite only when its layers share one
        for (const ls of earlier) for (const l of ls) adjusted.set(l, adjusted.get(ls[0]!)!);
        return { ...m, merged, adjusted, note };
      } finally {
        r.model.dispose();
      }
    });
  },
};
