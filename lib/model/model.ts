/**
 * A transformer whose weights live in native memory, with the forward pass, FF access and FF-override views
 * the merge search needs. Build one with loadModel() (load.ts).
 */
import { FfmergeError, fromNativeError } from '../errors';
import { runNativeJob, type JobOptions } from '../native/job';
import { modelAddon, type NativeFF, type NativeForwardArgs, type NativeModelHandle } from '../native/model';
import type { ModelSpec } from './spec';

/** One FF sublayer in canonical Linear layout (see ff-tensors.ts): wIn/wGate [dFF, d], wOut [d, dFF]. */
export type FFWeights = NativeFF;

export type StackName = 'decoder' | 'encoder';

export interface ForwardInput {
  /** Token ids, [batch, seq] row-major. */
  ids: Int32Array;
  batch: number;
  seq: number;
  /** [batch, seq]: 1 = real token, 0 = padding (keys never attended; NLL targets skipped; not features). */
  attentionMask?: Uint8Array;
}

export interface ForwardOptions extends JobOptions {
  /** 'logits' [batch, seq, vocab]; 'nll' [batch, seq-1] next-token NLL (no full logits kept); 'hidden' [batch, seq, d]. */
  output: 'logits' | 'nll' | 'hidden';
  /** First layer to run (default 0); > 0 needs `hidden`. */
  fromLayer?: number;
  /** Layer after the last one to run (exclusive, default all). 'logits'/'nll' apply the final norm and head after it. */
  toLayer?: number;
  /** The state entering fromLayer, [batch, seq, d] (as returned by output 'hidden'). */
  hidden?: Float32Array;
  /** Capture FF pre-activations (output of the first FF matrix, before the nonlinearity): true = every layer run, or a list. */
  captureFF?: boolean | number[];
  /** Which positions are features (default: attentionMask). */
  featureMask?: Uint8Array;
}

export interface ForwardResult {
  logits?: Float32Array;
  /** Per-position NLL in nats, [batch, seq-1]; entry (b,t) scores token t+1; 0 where that token is padding. */
  nll?: Float32Array;
  /** Sum and count of the scored NLL entries. */
  nllSum?: number;
  nllCount?: number;
  hidden?: Float32Array;
  /** layer → [rows, dFF] pre-activations of the feature positions, in (batch, position) order. */
  ff?: Map<number, Float32Array>;
}

export type FFOverrides = Map<number, FFWeights> | Array<{ stack?: StackName; layer: number; ff: FFWeights }>;

export class Model {
  private handle: NativeModelHandle | undefined;

  /** @internal use loadModel(). */
  constructor(
    readonly config: Readonly<Record<string, unknown>>,
    readonly spec: Readonly<ModelSpec>,
    handle: NativeModelHandle,
  ) {
    this.handle = handle;
  }

  private live(): NativeModelHandle {
    if (!this.handle) throw new FfmergeError('INVALID_ARGUMENT', 'this model was disposed');
    return this.handle;
  }

  private checkStackLayer(stack: StackName, layer: number): void {
    if (stack !== 'decoder') {
      throw new FfmergeError('INVALID_ARGUMENT', `this ${this.spec.family} model has no "${stack}" stack (it has: decoder)`);
    }
    if (!Number.isInteger(layer) || layer < 0 || layer >= this.spec.layers) {
      throw new FfmergeError('INVALID_ARGUMENT', `layer ${layer} is out of range (the model has ${this.spec.layers} layers)`);
    }
  }

  /** A copy of one layer's FF weights in canonical layout. */
  ffWeights(layer: number, stack: StackName = 'decoder'): FFWeights {
    this.checkStackLayer(stack, layer);
    try {
      return modelAddon().modelFFWeights(this.live(), layer);
    } catch (e) {
      throw fromNativeError(e);
    }
  }

  /**
   * A view sharing every tensor with this model except the FFs of the given layers. One FFWeights object
   * given to several layers is stored once (a tie), which is how merged FFs are represented.
   */
  withFF(overrides: FFOverrides): Model {
    const entries = overrides instanceof Map ? [...overrides].map(([layer, ff]) => ({ stack: undefined, layer, ff })) : overrides;
    const unique: FFWeights[] = [];
    const index = new Map<FFWeights, number>();
    const layers: number[] = [];
    const which: number[] = [];
    for (const { stack, layer, ff } of entries) {
      this.checkStackLayer(stack ?? 'decoder', layer);
      let i = index.get(ff);
      if (i === undefined) {
        i = unique.length;
        unique.push(ff);
        index.set(ff, i);
      }
      layers.push(layer);
      which.push(i);
    }
    try {
      return new Model(this.config, this.spec, modelAddon().modelWithFF(this.live(), unique, layers, which));
    } catch (e) {
      throw fromNativeError(e);
    }
  }

  /** Whether layer a of this model and layer b of `other` use one FF in native memory. */
  sharesFF(layer: number, other: Model, otherLayer: number): boolean {
    return modelAddon().modelSharesFF(this.live(), layer, other.live(), otherLayer);
  }

  async forward(input: ForwardInput, opts: ForwardOptions): Promise<ForwardResult> {
    const { batch, seq, ids, attentionMask } = input;
    if (!Number.isInteger(batch) || batch <= 0 || !Number.isInteger(seq) || seq <= 0) {
      throw new FfmergeError('INVALID_ARGUMENT', `batch and seq must be positive integers (got ${batch}, ${seq})`);
    }
    if (!(ids instanceof Int32Array) || ids.length !== batch * seq) {
      throw new FfmergeError('INVALID_ARGUMENT', `ids must be an Int32Array of batch·seq = ${batch * seq} entries`);
    }
    if (this.spec.positions === 'learned' && seq > this.spec.maxPositions) {
      throw new FfmergeError(
        'SEQUENCE_TOO_LONG',
        `sequence length ${seq} is longer than the model's ${this.spec.maxPositions} positions (config "max positions")`,
      );
    }
    const from = opts.fromLayer ?? 0;
    const to = opts.toLayer ?? this.spec.layers;
    if (!Number.isInteger(from) || !Number.isInteger(to) || from < 0 || to > this.spec.layers || from > to) {
      throw new FfmergeError('INVALID_ARGUMENT', `layer range ${from}..${to} is not within 0..${this.spec.layers}`);
    }
    let captureLayers: number[] | undefined;
    if (opts.captureFF === true) captureLayers = Array.from({ length: to - from }, (_, i) => from + i);
    else if (Array.isArray(opts.captureFF)) captureLayers = [...opts.captureFF];
    const args: NativeForwardArgs = {
      ids,
      batch,
      seq,
      output: opts.output,
      fromLayer: from,
      toLayer: to,
      ...(attentionMask ? { attentionMask } : {}),
      ...(opts.featureMask ? { featureMask: opts.featureMask } : {}),
      ...(opts.hidden ? { hidden: opts.hidden } : {}),
      ...(captureLayers?.length ? { captureLayers } : {}),
    };
    const handle = this.live();
    const r = await runNativeJob('forward', (onProgress) => modelAddon().modelForward(handle, args, onProgress), opts);
    const out: ForwardResult = {};
    if (r.logits) out.logits = r.logits;
    if (r.nll) {
      out.nll = r.nll;
      out.nllSum = r.nllSum ?? 0;
      out.nllCount = r.nllCount ?? 0;
    }
    if (r.hidden) out.hidden = r.hidden;
    if (captureLayers?.length && r.ff) out.ff = new Map(captureLayers.map((l, i) => [l, r.ff![i]!]));
    return out;
  }

  /** Frees the native weights now (views made by withFF keep what they share). Jobs already running finish. */
  dispose(): void {
    if (this.handle) modelAddon().modelDispose(this.handle);
    this.handle = undefined;
  }
}
