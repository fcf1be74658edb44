/**
 * Step 1–2 of the method: one pass of the calibration data through the base model, every needed layer's FF
 * pre-activations streamed natively into a CorrelationAccumulator for exactly the (anchor, layer) pairs the
 * candidate windows need. Features are collected once for all windows; nothing per token is kept.
 */
import type { JobOptions } from '../native/job';
import { CorrelationAccumulator } from '../native/correlation';
import type { ForwardInput, Model, StackName } from '../model/model';
import { stackSpecOf } from './align';

export class PairCorrelations {
  private readonly index = new Map<string, number>();

  constructor(
    readonly acc: CorrelationAccumulator,
    pairs: [number, number][],
  ) {
    pairs.forEach(([a, b], i) => this.index.set(`${a},${b}`, i));
  }

  /** Pearson correlation [dFF, dFF]: unit i of the anchor vs unit j of `layer`. */
  get(anchor: number, layer: number, opts: JobOptions = {}): Promise<Float32Array> {
    const i = this.index.get(`${anchor},${layer}`);
    if (i === undefined) throw new Error(`correlation (${anchor}, ${layer}) was not collected`);
    return this.acc.finalize(i, opts);
  }

  get tokens(): number {
    return this.acc.count;
  }
}

/** One calibration forward batch: the model's input and, optionally, which main-stack positions are features. */
export interface CalibrationBatch {
  input: ForwardInput;
  /** Main-stack feature positions [batch, seq] (default: input.attentionMask; encoder features = encoderMask). */
  featureMask?: Uint8Array;
}

/**
 * Features of several stacks in one pass over the calibration batches: for each stack with pairs, an
 * accumulator of exactly those (anchor, layer) pairs, fed natively by the forward pass (Model.forward's
 * `accumulate`: the pre-activations never reach JS). The main stack runs only up to the last layer it needs
 * (encoder–decoder models: the encoder always runs whole, the decoder needs its states). Stacks whose pair
 * list is empty get no accumulator. rows = feature rows seen per stack (padding excluded).
 */
export async function collectStackCorrelations(
  model: Model,
  batches: CalibrationBatch[],
  pairs: Map<StackName, [number, number][]>,
  opts: JobOptions,
): Promise<{ corr: Map<StackName, PairCorrelations>; rows: Partial<Record<StackName, number>> }> {
  const accs = new Map<StackName, CorrelationAccumulator>();
  for (const [stack, ps] of pairs) {
    if (ps.length === 0) continue;
    const dFF = stackSpecOf(model, stack).dFF;
    accs.set(stack, new CorrelationAccumulator(Array(model.layers(stack)).fill(dFF) as number[], ps));
  }
  const mainAcc = accs.get(model.mainStack);
  const used = mainAcc?.usedLayers();
  // With no main-stack pairs the main pass runs no layer at all (encoder–decoder: only the encoder is needed).
  const toLayer = used ? used[used.length - 1]! + 1 : 0;
  const accumulate = Object.fromEntries(accs) as Partial<Record<StackName, CorrelationAccumulator>>;
  let done = 0;
  for (const b of batches) {
    await model.forward(b.input, {
      output: 'hidden',
      toLayer,
      accumulate,
      ...(b.featureMask ? { featureMask: b.featureMask } : {}),
      ...(opts.signal ? { signal: opts.signal } : {}),
    });
    opts.onProgress?.({ phase: 'features', done: ++done, total: batches.length });
  }
  const corr = new Map<StackName, PairCorrelations>();
  const rows: Partial<Record<StackName, number>> = {};
  for (const [stack, acc] of accs) {
    corr.set(stack, new PairCorrelations(acc, pairs.get(stack)!));
    rows[stack] = acc.count;
  }
  return { corr, rows };
}

