/**
 * Fine-tuning as a recover method (decoder-only language models): the merged model (the window's layers
 * sharing the merged FF) is trained a few AdamW steps on the calibration tokens with the tie kept, and only
 * the FF sublayers train — the interface returns FFs (the merged one, and every other layer's as `adjusted`,
 * whose count of parameters does not change), so attention, norms and embeddings stay as they are.
 *
 * The calibration set is small (10k tokens by default), so the steps and learning rate are kept small here; the
 * paper's full step 6 — every weight, on real training data — is `ffmerge finetune` (lib/cli/finetune.ts) on the
 * compressed checkpoint.
 */
import { FfmergeError } from '../../errors';
import type { FFWeights } from '../../model/ff-weights';
import { windowLayers } from '../../merge/windows';
import { finetune as train } from '../../train/finetune';
import type { RecoverMethod } from '../plugins';

/** ~4 passes over 10k calibration tokens: enough to move the merged FF, few enough not to memorise them. */
const STEPS = 40;
const LR = 1e-4;
const BATCH = 8;
const SEQ = 128;

export const finetuneRecover: RecoverMethod = {
  name: 'finetune',
  description: `trains the FF sublayers ${STEPS} AdamW steps on the calibration tokens with the tie kept (decoder LMs; the full step 6 is \`ffmerge finetune\`)`,
  async recover(ctx, m, opts) {
    const { model } = ctx;
    const spec = model.spec;
    if (m.stack !== model.mainStack || !spec.causal || spec.head !== 'lm' || model.encoderSpec) {
      throw new FfmergeError('UNSUPPORTED_ARCHITECTURE', `recover method 'finetune' trains decoder-only language models; ${spec.family} is not one`);
    }
    const blocks = ctx.calibration.map((b) => b.input.ids).filter((ids): ids is Int32Array => ids instanceof Int32Array);
    const layers = windowLayers(m.window);
    const view = model.withFF(layers.map((layer) => ({ stack: m.stack, layer, ff: m.merged })));
    try {
      const seq = Math.min(SEQ, ...ctx.calibration.map((b) => b.input.seq - 1));
      const r = await train(view, {
        data: blocks,
        steps: STEPS,
        lr: LR,
        batch: BATCH,
        seq,
        trainable: 'ff',
        seed: 0,
        ...(opts.signal ? { signal: opts.signal } : {}),
      });
      try {
        const merged: FFWeights = r.model.ffWeights(layers[0]!);
        const adjusted = new Map<number, FFWeights>();
        for (let l = 0; l < spec.layers; l++) if (!layers.includes(l)) adjusted.set(l, r.model.ffWeights(l));
        return { ...m, merged, adjusted };
      } finally {
        r.model.dispose();
      }
    } finally {
      view.dispose();
    }
  },
};
