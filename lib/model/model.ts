/**
 * A transformer whose weights live in native memory, with the forward pass, FF access and FF-override views
 * the merge search needs. Build one with loadModel() (load.ts).
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import * as os from 'node:os';
import { FfmergeError, fromNativeError, groupDigits, showValue } from '../errors';
import { checkJobOptions, runNativeJob, type JobOptions } from '../native/job';
import { isFloat32Array } from '../typed-arrays';
import { checkOptions, isArrayOf, isObject } from '../arguments';
import { isStagedFloats, stageLarge, withStaged } from '../native/staged';
import type { CorrelationAccumulator } from '../native/correlation';
import { modelAddon, type NativeFF, type NativeForwardArgs, type NativeModelHandle } from '../native/model';
import type { ModelSpec } from './spec';

/** One FF sublayer in canonical Linear layout (see architectures/types.ts): wIn/wGate [dFF, d], wOut [d, dFF]. */
export type FFWeights = NativeFF;
import type { FFWeights as CanonicalFFWeights } from './ff-weights';

export type StackName = 'decoder' | 'encoder';

export interface ForwardInput {
  /** Token ids, [batch, seq] row-major (token-input models; for encoder–decoder models, the decoder's input). */
  ids?: Int32Array;
  batch: number;
  /** Positions per sequence (patch-input models: 1 + patches). */
  seq: number;
  /** [batch, seq]: 1 = real token, 0 = padding (keys never attended; NLL targets skipped; not features). */
  attentionMask?: Uint8Array;
  /** Patch-input models (ViT): images [batch, channels, imageH, imageW], preprocessed. */
  pixels?: Float32Array;
  /** BERT token types [batch, seq] (default all 0). */
  tokenTypeIds?: Int32Array;
  /** Encoder–decoder models: the source token ids [batch, encoderSeq] and their padding mask. */
  encoderIds?: Int32Array;
  encoderSeq?: number;
  encoderMask?: Uint8Array;
  /** Encoder–decoder models: the encoder's output states [batch, encoderSeq, d] from an earlier call
   *  (ForwardResult.encoderHidden), so a pass that runs the decoder a few layers at a time runs the encoder once. */
  encoderHidden?: Float32Array;
}

/**
 * About the most bytes a generate job holds (native/core/model/generate.cc): for each row (sentence × beam) the
 * decoder's self-attention KV cache up to maxLength and its cross-attention cache, the encoder states, two rows
 * of logits and one step's activations; for beam search, one sentence's candidates (beams × vocab, 16 bytes each).
 */
export function generateBytes(enc: Readonly<ModelSpec>, dec: Readonly<ModelSpec>, batch: number, seq: number, maxLength: number, beams: number): number {
  const rows = batch * beams;
  const kv = dec.nKvHeads * dec.headDim;
  return 4 * rows * (2 * dec.layers * (maxLength + seq) * kv + seq * enc.dModel + 2 * dec.vocab + 4 * dec.dModel + dec.dFF) + (beams > 1 ? 16 * beams * dec.vocab : 0);
}

/**
 * The memory decoding's batches are sized against: the machine's, or a container's limit where that is less
 * (os.totalmem() is the host's). A function, so that tests can pretend.
 */
export function machineBytes(): number {
  const total = os.totalmem();
  const limit = typeof process.constrainedMemory === 'function' ? process.constrainedMemory() : undefined;
  return typeof limit === 'number' && limit > 0 && limit < total ? limit : total;
}

/** Decoding settings, as in generation_config.json (greedy when numBeams is 1). */
export interface GenerationConfig {
  decoderStartTokenId: number;
  eosTokenId?: number;
  padTokenId: number;
  forcedEosTokenId?: number;
  /**
   * Longest output including the start token. The decoder's positions (config.json max_position_embeddings)
   * bound it too: a larger maxLength stops there, as an output that reaches maxLength stops.
   */
  maxLength: number;
  /** Token sequences never to produce (each: its last token is banned after its prefix). */
  badWordsIds?: number[][];
  /** Beam search with this many beams (default 1 = greedy). */
  numBeams?: number;
  /** Beam hypotheses are ranked by sum log-prob / generated length ^ lengthPenalty (default 1). */
  lengthPenalty?: number;
  /** Beam search: log-softmax again after banning tokens (transformers' renormalize_logits; default false). */
  renormalizeLogits?: boolean;
  /** Beam search: a sentence ends once it has numBeams finished hypotheses (transformers' early_stopping true; default false). */
  earlyStopping?: boolean;
}

/** GenerationConfig from a parsed generation_config.json ({} where there is none), with config.json's special ids as fallback. */
export function generationConfigFrom(gen: Record<string, unknown>, config: Record<string, unknown> = {}): GenerationConfig {
  // Special token ids fall back to config.json. How to decode (beams, length, banned words) comes from
  // generation_config.json when there is one, and from config.json only when there is none: transformers reads
  // a model's generation settings from config.json only without that file (num_beams: 4 left in config.json
  // beside a generation_config.json does not make it search with beams).
  const fromFile = Object.keys(gen).length > 0;
  const ids = new Set(['decoder_start_token_id', 'pad_token_id', 'eos_token_id', 'forced_eos_token_id']);
  const pick = (k: string) => (ids.has(k) || !fromFile ? (gen[k] ?? config[k]) : gen[k]);
  const int = (k: string, required: boolean): number | undefined => {
    const v = pick(k);
    if (v == null) {
      if (required) throw new FfmergeError('INVALID_CONFIG', `generation_config.json has no "${k}"`);
      return undefined;
    }
    // eos and forced eos may be lists (transformers takes any of their ids); the decoder here takes one id,
    // or the same one repeated
    if (Array.isArray(v) && new Set(v).size > 1) {
      throw new FfmergeError('UNSUPPORTED_ARCHITECTURE', `generation_config.json: "${k}" lists several ids (${showValue(v)}); ffmerge's decoding takes one`);
    }
    const n = Array.isArray(v) && v.length > 0 ? v[0] : v;
    if (typeof n !== 'number' || !Number.isInteger(n) || n < 0) {
      throw new FfmergeError('INVALID_CONFIG', `generation_config.json: "${k}" must be a token id (got ${showValue(v)})`);
    }
    return n;
  };
  const count = (k: string, min: number, why: string) => {
    const v = pick(k);
    if (v == null) return undefined;
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min) {
      throw new FfmergeError('INVALID_CONFIG', `generation_config.json: "${k}" must be a whole number of at least ${min}${why} (got ${showValue(v)})`);
    }
    return v;
  };
  // Settings that change what is decoded and that this decoder does not apply: refused by name, since the
  // metric would otherwise be another decoding's under this one's label. Off: null for a token id (0 is one);
  // min_length 1, which a decoder output has from its start token on; 1 for a penalty or group count; [].
  const applied = (k: string, v: unknown) =>
    v == null ||
    (k === 'forced_bos_token_id' ? false : v === false || v === 0) ||
    (k === 'min_length' && v === 1) ||
    ((k === 'repetition_penalty' || k === 'num_beam_groups') && v === 1) ||
    (Array.isArray(v) && v.length === 0);
  for (const k of ['do_sample', 'num_beam_groups', 'diversity_penalty', 'penalty_alpha', 'no_repeat_ngram_size', 'encoder_no_repeat_ngram_size', 'repetition_penalty', 'min_length', 'min_new_tokens', 'forced_bos_token_id', 'suppress_tokens', 'begin_suppress_tokens']) {
    const v = pick(k);
    if (!applied(k, v)) {
      throw new FfmergeError('UNSUPPORTED_ARCHITECTURE', `generation_config.json sets "${k}": ${showValue(v)}, which ffmerge's decoding does not apply (greedy or beam search, with bad_words_ids, forced_eos_token_id, length_penalty, renormalize_logits and early_stopping); remove it to score the plain decoding`);
    }
  }
  const bad = pick('bad_words_ids');
  if (bad != null && !(Array.isArray(bad) && bad.every((w) => Array.isArray(w) && w.every((t) => Number.isInteger(t))))) {
    throw new FfmergeError('INVALID_CONFIG', 'generation_config.json: "bad_words_ids" must be a list of token-id lists');
  }
  const eos = int('eos_token_id', false);
  const forced = int('forced_eos_token_id', false);
  const beams = count('num_beams', 1, '') ?? 1;
  // transformers: max_new_tokens, when set, decides the length (the start token comes before them)
  const newTokens = count('max_new_tokens', 1, '');
  const maxLength = newTokens !== undefined ? newTokens + 1 : (count('max_length', 2, ' (the start token and one more)') ?? 20);
  // beam search's switches, as transformers reads them; early_stopping "never" (search on while a running beam
  // could still win, by the longest length) is not what this decoder does, so it is refused by name
  const flag = (k: string) => {
    const v = pick(k) ?? false;
    const never = k === 'early_stopping' && v === 'never';
    if (never && beams > 1) {
      throw new FfmergeError('UNSUPPORTED_ARCHITECTURE', 'generation_config.json sets "early_stopping": "never", which ffmerge\'s beam search does not apply (false or true); remove it or set it to false to score the default search');
    }
    if (typeof v !== 'boolean' && !never) throw new FfmergeError('INVALID_CONFIG', `generation_config.json: "${k}" must be true or false (got ${showValue(v)})`);
    return v === true;
  };
  const lp = pick('length_penalty') ?? 1;
  if (typeof lp !== 'number' || !Number.isFinite(lp)) {
    throw new FfmergeError('INVALID_CONFIG', `generation_config.json: "length_penalty" must be a number (got ${showValue(lp)})`);
  }
  return {
    decoderStartTokenId: int('decoder_start_token_id', true)!,
    padTokenId: int('pad_token_id', true)!,
    maxLength,
    ...(eos !== undefined ? { eosTokenId: eos } : {}),
    ...(forced !== undefined ? { forcedEosTokenId: forced } : {}),
    ...(bad ? { badWordsIds: bad as number[][] } : {}),
    numBeams: beams,
    lengthPenalty: lp,
    ...(flag('renormalize_logits') ? { renormalizeLogits: true } : {}),
    ...(flag('early_stopping') ? { earlyStopping: true } : {}),
  };
}

export interface ForwardOptions extends JobOptions {
  /** 'logits' [batch, seq, vocab]; 'nll' [batch, seq-1] next-token NLL (no full logits kept); 'hidden' [batch, seq, d]. */
  output: 'logits' | 'nll' | 'hidden';
  /** First layer to run (default 0); > 0 needs `hidden`. */
  fromLayer?: number | undefined;
  /** Layer after the last one to run (exclusive, default all). 'logits'/'nll' apply the final norm and head after it. */
  toLayer?: number | undefined;
  /** The state entering fromLayer, [batch, seq, d] (as returned by output 'hidden'). */
  hidden?: Float32Array | undefined;
  /**
   * Copy a large `hidden` a slice at a time before the pass (native/staged.ts: 33 MB a batch at 7B width)
   * instead of in the call; it must then not change until the promise settles.
   */
  stage?: boolean | undefined;
  /**
   * Capture FF pre-activations, the paper's features: the output of the first FF matrix before the nonlinearity
   * (c_fc, fc1, intermediate.dense; in a gated FF, up_proj's output, not the gate's that SiLU is applied to).
   * true = every layer run, or a list.
   */
  captureFF?: boolean | number[] | undefined;
  /** Capture FF inputs (what the first FF matrix reads: after the norm in pre-norm stacks) of these layers. */
  captureFFInput?: number[] | undefined;
  /** Capture FF outputs (what the FF sublayer adds to the residual stream, before any post-norm) of these layers. */
  captureFFOutput?: number[] | undefined;
  /** Which positions are features (default: attentionMask). */
  featureMask?: Uint8Array | undefined;
  /** Encoder–decoder models: capture the encoder stack's FF pre-activations too (features = encoderMask). */
  captureEncoderFF?: boolean | number[] | undefined;
  /** Encoder–decoder models: capture the encoder stack's FF inputs of these layers. */
  captureEncoderFFInput?: number[] | undefined;
  /** Encoder–decoder models: capture the encoder stack's FF outputs of these layers. */
  captureEncoderFFOutput?: number[] | undefined;
  /** Stream FF pre-activations of the layers each accumulator uses straight into it, natively (no copy to JS).
   *  Keys are stacks: 'decoder'/'encoder' (encoder-only models use their main stack name, model.mainStack). */
  accumulate?: Partial<Record<StackName, CorrelationAccumulator>> | undefined;
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
  /** layer → [rows, d] FF inputs of the feature positions (captureFFInput), in (batch, position) order. */
  ffInput?: Map<number, Float32Array>;
  /** layer → [rows, d] FF outputs of the feature positions (captureFFOutput), in (batch, position) order. */
  ffOutput?: Map<number, Float32Array>;
  /** Encoder–decoder models: the encoder's captured pre-activations (rows = real source tokens). */
  encoderFF?: Map<number, Float32Array>;
  /** Encoder–decoder models: the encoder's captured FF inputs. */
  encoderFFInput?: Map<number, Float32Array>;
  /** Encoder–decoder models: the encoder's captured FF outputs. */
  encoderFFOutput?: Map<number, Float32Array>;
  /** Encoder–decoder models: the encoder's output states (pass them back as input.encoderHidden). */
  encoderHidden?: Float32Array;
}

/** What a forward pass asked for `output` returns: the array it asked for is always there. */
export type ForwardOutput<O extends ForwardOptions['output']> = ForwardResult &
  (O extends 'logits' ? { logits: Float32Array } : O extends 'nll' ? { nll: Float32Array; nllSum: number; nllCount: number } : { hidden: Float32Array });

/** The layers a capture option asks for: true is every layer from..to-1. */
function captureList(capture: boolean | number[] | undefined, from: number, to: number): number[] | undefined {
  if (capture === true) return Array.from({ length: to - from }, (_, i) => from + i);
  return Array.isArray(capture) ? [...capture] : undefined;
}

/** layer → the native result's array for it (arrays come back in the order the layers were asked). */
function byLayer(layers: number[] | undefined, arrays: Float32Array[] | undefined): Map<number, Float32Array> | undefined {
  return layers?.length && arrays ? new Map(layers.map((l, i) => [l, arrays[i]!])) : undefined;
}

export type FFOverrides = Map<number, FFWeights> | Array<{ stack?: StackName; layer: number; ff: FFWeights }>;

const FORWARD_INPUT_KEYS = ['ids', 'batch', 'seq', 'attentionMask', 'pixels', 'tokenTypeIds', 'encoderIds', 'encoderSeq', 'encoderMask', 'encoderHidden'] as const satisfies readonly (keyof ForwardInput)[];
const FORWARD_OPTION_KEYS = [
  'output', 'fromLayer', 'toLayer', 'hidden', 'stage', 'captureFF', 'captureFFInput', 'captureFFOutput', 'featureMask',
  'captureEncoderFF', 'captureEncoderFFInput', 'captureEncoderFFOutput', 'accumulate',
] as const satisfies readonly (keyof ForwardOptions)[];

/**
 * The option shapes forward() hands to the native side, checked first: a layer list that is not one (a string
 * was read as characters) or a negative index (read as unsigned there) would otherwise pass or be misreported.
 */
function checkForwardOptions(input: ForwardInput, opts: ForwardOptions): void {
  if (typeof input !== 'object' || input === null) throw new FfmergeError('INVALID_ARGUMENT', `forward(input, options): input must be an object such as { ids, batch, seq } (got ${showValue(input)})`);
  if (typeof opts !== 'object' || opts === null) {
    throw new FfmergeError('INVALID_ARGUMENT', `forward(input, options): options must be an object such as { output: 'logits' } (got ${showValue(opts)})`);
  }
  checkOptions(input, 'forward(input, options): input', FORWARD_INPUT_KEYS);
  checkJobOptions(opts, 'forward(input, options): options', FORWARD_OPTION_KEYS);
  for (const key of ['captureFF', 'captureEncoderFF', 'captureFFInput', 'captureEncoderFFInput', 'captureFFOutput', 'captureEncoderFFOutput'] as const) {
    const v: unknown = opts[key];
    const flag = key === 'captureFF' || key === 'captureEncoderFF';
    if (v === undefined || (flag && typeof v === 'boolean')) continue;
    // below 2³¹ here (the binding reads them as int32), each against the stack's layers natively
    if (!isArrayOf(v, (l) => Number.isInteger(l) && (l as number) >= 0 && (l as number) < 2 ** 31)) {
      throw new FfmergeError('INVALID_ARGUMENT', `${key} must be ${flag ? 'true or ' : ''}a list of layer indices (got ${showValue(v)})`);
    }
  }
  const acc: unknown = opts.accumulate;
  const isAccumulator = (a: unknown) => typeof a === 'object' && a !== null && Array.isArray((a as CorrelationAccumulator).dims) && 'nativeAccumulator' in a;
  if (acc !== undefined && (typeof acc !== 'object' || acc === null || Object.values(acc).some((a) => a !== undefined && !isAccumulator(a)))) {
    throw new FfmergeError('INVALID_ARGUMENT', `accumulate must map a stack name to a CorrelationAccumulator (got ${showValue(acc)})`);
  }
}

/** A Model argument (from loadModel, buildModel or a view of one): anything else is INVALID_ARGUMENT, naming `what`. */
export function checkModel(m: unknown, what: string): asserts m is Model {
  if (!(m instanceof Model)) throw new FfmergeError('INVALID_ARGUMENT', `${what} must be a Model (from loadModel) (got ${showValue(m)})`);
}

/** A Model that reads token ids alone and predicts the next one (GPT-2, LLaMA, …), not an image or translation model. */
export function checkLanguageModel(m: unknown, what: string): asserts m is Model {
  checkModel(m, what);
  const s = m.spec;
  if (s.input !== 'tokens' || !s.causal || s.head !== 'lm' || m.encoderSpec) {
    const kind = s.input === 'patches' ? 'an image model' : m.encoderSpec ? 'a translation (encoder–decoder) model: use translate()' : `not a decoder language model (${s.causal ? 'no LM head' : 'bidirectional'})`;
    throw new FfmergeError('INVALID_ARGUMENT', `${what}: this ${s.family} model is ${kind}; it needs a language model that predicts the next token`);
  }
}

type Override = { stack?: StackName | undefined; layer: number; ff: FFWeights };

/** withFF's overrides, as a list of entries: a Map layer → FF, or a list of { stack?, layer, ff }. */
function overrideEntries(overrides: unknown): Override[] {
  const what = 'withFF(overrides): overrides';
  if (!(overrides instanceof Map) && !Array.isArray(overrides)) {
    throw new FfmergeError('INVALID_ARGUMENT', `${what} must be a Map layer → FF or a list of { stack?, layer, ff } (got ${showValue(overrides)})`);
  }
  const entries: unknown[] = overrides instanceof Map ? [...overrides].map(([layer, ff]) => ({ stack: undefined, layer, ff })) : overrides;
  for (const [i, e] of entries.entries()) {
    const x = e as { ff?: unknown } | null;
    const ff = x?.ff as { wIn?: unknown; wOut?: unknown } | null | undefined;
    // a staged handle stands for a Float32Array (the native call checks its state and length)
    const floats = (v: unknown) => isFloat32Array(v) || isStagedFloats(v);
    if (typeof x !== 'object' || x === null || typeof ff !== 'object' || ff === null || !floats(ff.wIn) || !floats(ff.wOut)) {
      throw new FfmergeError('INVALID_ARGUMENT', `${what}: entry ${i} must be { stack?, layer, ff } with ff holding Float32Arrays wIn and wOut (got ${showValue(e)})`);
    }
  }
  return entries as Override[];
}

/**
 * The models whose multi-step job (`Model.session`) the current async call chain runs inside. A dispose()
 * during such a job frees the weights when the job ends; its later steps still reach them, other calls do not.
 */
const sessionModels = new AsyncLocalStorage<ReadonlySet<Model>>();

/**
 * A loaded model (loadModel): native weights, the spec read from its config, and the calls that run it
 * (forward, generate, readFFWeights, withFF views). dispose() frees its native memory.
 */
export class Model {
  private handle: NativeModelHandle | undefined;
  private encoderHandle: NativeModelHandle | undefined;
  /** Multi-step jobs running on this model, and whether dispose() waits for them. */
  private sessions = 0;
  private disposed = false;
  /** Encoder–decoder models: the encoder stack's spec (the main `spec` is the decoder's). */
  readonly encoderSpec: Readonly<ModelSpec> | undefined;
  /** The stack `spec` describes: 'encoder' for encoder-only models (ViT, BERT), else 'decoder'. */
  readonly mainStack: StackName;

  /** Made by loadModel(), which validates what it is given; not for direct use. */
  constructor(
    readonly config: Readonly<Record<string, unknown>>,
    readonly spec: Readonly<ModelSpec>,
    handle: NativeModelHandle,
    encoder?: { spec: ModelSpec; handle: NativeModelHandle },
    /** Encoder–decoder models loaded from a folder: its generation_config.json (translate's default). */
    readonly generation?: GenerationConfig,
  ) {
    this.handle = handle;
    this.encoderHandle = encoder?.handle;
    this.encoderSpec = encoder?.spec;
    this.mainStack = encoder || spec.causal ? 'decoder' : 'encoder';
  }

  /** The stacks that have FF sublayers, e.g. ['decoder'], ['encoder'], ['encoder', 'decoder']. */
  stacks(): StackName[] {
    return this.encoderSpec ? ['encoder', 'decoder'] : [this.mainStack];
  }

  /** Layers of one stack. */
  layers(stack: StackName = this.mainStack): number {
    return this.stackSpec(stack).layers;
  }

  private stackSpec(stack: StackName): Readonly<ModelSpec> {
    if (stack === this.mainStack) return this.spec;
    if (stack === 'encoder' && this.encoderSpec) return this.encoderSpec;
    throw new FfmergeError('INVALID_ARGUMENT', `this ${this.spec.family} model has no "${stack}" stack (it has: ${this.stacks().join(', ')})`);
  }

  private live(stack: StackName = this.mainStack): NativeModelHandle {
    this.stackSpec(stack); // a stack this model lacks is named as such, not reported as disposed
    const h = stack === this.mainStack ? this.handle : this.encoderHandle;
    if (!h || (this.disposed && !sessionModels.getStore()?.has(this))) throw new FfmergeError('INVALID_STATE', 'this model was disposed');
    return h;
  }

  /**
   * @internal Runs a job of several native calls (perplexity's batches, greedy's steps, a translation's
   * batches) as one: a dispose() while it runs lets it finish, as it lets a single native call finish, and
   * frees the weights after its last step. Refused, like any call, once the model is disposed.
   */
  async session<T>(job: () => Promise<T>): Promise<T> {
    this.live();
    const outer = sessionModels.getStore();
    this.sessions++;
    try {
      return await sessionModels.run(new Set([...(outer ?? []), this]), job);
    } finally {
      if (--this.sessions === 0 && this.disposed) this.release();
    }
  }

  private checkStackLayer(stack: StackName, layer: number): void {
    const spec = this.stackSpec(stack);
    if (!Number.isInteger(layer)) throw new FfmergeError('INVALID_ARGUMENT', `layer must be an integer index (got ${showValue(layer)})`);
    if (layer < 0 || layer >= spec.layers) {
      throw new FfmergeError('INVALID_ARGUMENT', `layer ${layer} is out of range (the ${stack} has ${spec.layers} layers)`);
    }
  }

  /** A copy of one layer's FF weights in canonical layout. */
  ffWeights(layer: number, stack: StackName = this.mainStack): CanonicalFFWeights {
    this.checkStackLayer(stack, layer);
    // with d and dFF, so it is what averageFF / permuteFF take
    const spec = this.stackSpec(stack);
    try {
      return { d: spec.dModel, dFF: spec.dFF, ...modelAddon().modelFFWeights(this.live(stack), layer) };
    } catch (e) {
      throw fromNativeError(e);
    }
  }

  /**
   * ffWeights, read off the main thread: a streamed layer is read from disk and a 16-bit one widened to
   * float32 on the addon's pool (hundreds of ms a layer at 7B widths, which ffWeights spends on the JS thread).
   */
  async readFFWeights(layer: number, opts: JobOptions & { stack?: StackName | undefined } = {}): Promise<CanonicalFFWeights> {
    checkJobOptions(opts, 'readFFWeights(layer, options): options', ['stack']);
    const stack = opts.stack ?? this.mainStack;
    this.checkStackLayer(stack, layer);
    const spec = this.stackSpec(stack);
    const handle = this.live(stack);
    const ff = await runNativeJob('ff', (onProgress) => modelAddon().modelFFWeightsAsync(handle, layer, onProgress), opts);
    return { d: spec.dModel, dFF: spec.dFF, ...ff };
  }

  /**
   * A view sharing every tensor with this model except the FFs of the given layers. One FFWeights object
   * given to several layers is stored once (a tie), which is how merged FFs are represented. The FFs are
   * copied (later changes to the arrays do not reach the view); large arrays are staged into native memory
   * first (native/staged.ts), so that the copy never holds the event loop for long: at Llama-2-7B width a
   * candidate's view copies two float32 FFs, 1.1 GB.
   */
  async withFF(overrides: FFOverrides, opts: JobOptions = {}): Promise<Model> {
    const entries = overrideEntries(overrides);
    checkJobOptions(opts, 'withFF(overrides, options): options', []);
    for (const e of entries) this.checkStackLayer(e.stack ?? this.mainStack, e.layer);
    // one session from here (entered before the first await): a dispose() while the FFs are staged lets the
    // view be made, as it lets every other call finish
    return this.session(async () => {
      const unique = [...new Set(entries.map((e) => e.ff))];
      const { staged, release } = await stageLarge(unique, opts);
      const stagedOf = new Map(unique.map((ff, i) => [ff, staged[i]!]));
      try {
        return this.withStagedFF(entries.map((e) => ({ ...e, ff: stagedOf.get(e.ff)! })));
      } finally {
        release(); // the view holds its own references
      }
    });
  }

  /** The view, from entries withFF has checked and staged. */
  private withStagedFF(entries: Override[]): Model {
    // per stack: each distinct FF once, and for each overridden layer the index of its FF
    const view = (stack: StackName) => {
      const mine = entries.filter((e) => (e.stack ?? this.mainStack) === stack);
      const unique = [...new Set(mine.map((e) => e.ff))];
      return modelAddon().modelWithFF(this.live(stack), unique, mine.map((e) => e.layer), mine.map((e) => unique.indexOf(e.ff)));
    };
    try {
      const main = view(this.mainStack);
      const enc = this.encoderSpec ? { spec: this.encoderSpec, handle: view('encoder') } : undefined;
      return new Model(this.config, this.spec, main, enc, this.generation);
    } catch (e) {
      throw fromNativeError(e);
    }
  }

  /**
   * A view without whole layers (the drop-layers baseline): per stack, the listed layers are removed and the
   * ones after them move down, so the view is an ordinary shallower model sharing every remaining tensor.
   */
  withoutLayers(drop: Partial<Record<StackName, number[]>>): Model {
    if (!isObject(drop)) {
      throw new FfmergeError('INVALID_ARGUMENT', `withoutLayers(drop): drop must be an object { stack: [layers] }, e.g. { decoder: [3] } (got ${showValue(drop)})`);
    }
    for (const [s, layers] of Object.entries(drop)) {
      if (layers !== undefined && !Array.isArray(layers)) throw new FfmergeError('INVALID_ARGUMENT', `withoutLayers(drop): drop.${s} must be a list of layer indices (got ${showValue(layers)})`);
    }
    const make = (stack: StackName) => {
      const spec = this.stackSpec(stack);
      const layers = drop[stack] ?? [];
      for (const l of layers) this.checkStackLayer(stack, l);
      if (new Set(layers).size !== layers.length) throw new FfmergeError('INVALID_ARGUMENT', `a layer of the ${stack} is listed twice`);
      if (layers.length >= spec.layers) throw new FfmergeError('INVALID_ARGUMENT', `removing all ${spec.layers} layers of the ${stack} leaves no model`);
      // each kept layer keeps its own attention window (native drop_layers.cc does the same)
      const slidingWindow = spec.slidingWindow.filter((_, l) => !layers.includes(l));
      return { spec: { ...spec, layers: spec.layers - layers.length, slidingWindow }, handle: modelAddon().modelWithoutLayers(this.live(stack), layers) };
    };
    for (const s of Object.keys(drop)) this.stackSpec(s as StackName);
    try {
      const main = make(this.mainStack);
      return new Model(this.config, main.spec, main.handle, this.encoderSpec ? make('encoder') : undefined, this.generation);
    } catch (e) {
      throw fromNativeError(e);
    }
  }

  /** Parameters one layer of a stack stores (attention, norms, FF; a tensor shared within the layer once). */
  layerParams(layer: number, stack: StackName = this.mainStack): number {
    this.checkStackLayer(stack, layer);
    return modelAddon().modelLayerParams(this.live(stack), layer);
  }

  /**
   * The dtype the top-level and layer-0 matrices (and a norm) are resident in, by slot: 'BF16'/'F16' where the
   * checkpoint stored them so (matrices stay 16-bit), 'F32' otherwise. Merged FFs given to withFF are float32.
   * A model loaded with `stream` reports `layers: 'streamed'` instead of layer 0's slots (nothing resident).
   */
  weightDtypes(stack: StackName = this.mainStack): Record<string, 'F32' | 'F16' | 'BF16' | 'streamed'> {
    return modelAddon().modelWeightDtypes(this.live(stack));
  }

  /** @internal The main stack's native handle, for native features in other files (lib/train). Throws if disposed. */
  nativeHandle(): NativeModelHandle {
    return this.live();
  }

  /** Whether layer a of this model and layer b of `other` use one FF in native memory. */
  sharesFF(layer: number, other: Model, otherLayer: number): boolean {
    checkModel(other, 'sharesFF(layer, other, otherLayer): other');
    this.checkStackLayer(this.mainStack, layer);
    other.checkStackLayer(other.mainStack, otherLayer);
    return modelAddon().modelSharesFF(this.live(), layer, other.live(), otherLayer);
  }

  /**
   * Checks opts.accumulate before anything runs (an encoder pass must not feed its accumulator when the main
   * stack's one is unusable): every key a stack of this model, each accumulator's dims that stack's layers ×
   * dFF, and the main pass's layer range covering the layers the main accumulator uses.
   */
  private checkAccumulate(accumulate: ForwardOptions['accumulate'], from: number, to: number): void {
    for (const [stack, acc] of Object.entries(accumulate ?? {}) as [StackName, CorrelationAccumulator | undefined][]) {
      if (acc === undefined) continue;
      const spec = this.stackSpec(stack);
      if (acc.dims.length !== spec.layers || acc.dims.some((d) => d !== spec.dFF)) {
        throw new FfmergeError(
          'SHAPE_MISMATCH',
          `the ${stack} accumulator has layer widths [${acc.dims.join(', ')}] but the ${stack} stack has ${spec.layers} layers of FF width ${spec.dFF}`,
        );
      }
      if (stack !== this.mainStack) continue;
      const used = acc.usedLayers();
      const [lo, hi] = [used[0]!, used.at(-1)!];
      if (lo < from || hi >= to) {
        throw new FfmergeError(
          'INVALID_ARGUMENT',
          `the ${stack} accumulator uses layers ${lo}..${hi} but this forward pass runs layers ${from}..${to - 1}` +
            (hi >= to ? ` (toLayer must be at least ${hi + 1})` : ''),
        );
      }
    }
  }

  async forward<O extends ForwardOptions['output']>(input: ForwardInput, opts: ForwardOptions & { output: O }): Promise<ForwardOutput<O>> {
    checkForwardOptions(input, opts);
    const { batch, seq, ids, attentionMask } = input;
    if (!Number.isInteger(batch) || batch <= 0 || !Number.isInteger(seq) || seq <= 0) {
      throw new FfmergeError('INVALID_ARGUMENT', `batch and seq must be positive integers (got ${showValue(batch)}, ${showValue(seq)})`);
    }
    const from = opts.fromLayer ?? 0;
    if (this.spec.input === 'patches') {
      const { channels = 0, imageH = 0, imageW = 0, patch = 1 } = this.spec;
      const want = batch * channels * imageH * imageW;
      if (from === 0 && !opts.hidden && (!(input.pixels instanceof Float32Array) || input.pixels.length !== want)) {
        throw new FfmergeError(
          'SHAPE_MISMATCH',
          `pixels must be a Float32Array of batch·${channels}·${imageH}·${imageW} = ${want} values (preprocessed images, NCHW)`,
        );
      }
      const tokens = 1 + (imageH / patch) * (imageW / patch);
      if (seq !== tokens) throw new FfmergeError('SHAPE_MISMATCH', `a ${imageH}x${imageW} image gives ${tokens} positions, not ${seq}`);
    } else if (!(ids instanceof Int32Array) || ids.length !== batch * seq) {
      throw new FfmergeError('INVALID_ARGUMENT', `ids must be an Int32Array of batch·seq = ${batch * seq} entries`);
    }
    // Rotary positions have no table to run out of, but past the trained context the model is not what it was
    // trained to be, and attention's memory grows with seq²: refused for every kind of position
    if (this.spec.maxPositions > 0 && seq > this.spec.maxPositions) {
      throw new FfmergeError(
        'SEQUENCE_TOO_LONG',
        `sequence length ${seq} is longer than the model's ${this.spec.maxPositions} positions (config.json "${this.spec.maxPositionsField ?? 'max positions'}")`,
      );
    }
    const to = opts.toLayer ?? this.spec.layers;
    if (!Number.isInteger(from) || !Number.isInteger(to) || from < 0 || to > this.spec.layers || from > to) {
      throw new FfmergeError('INVALID_ARGUMENT', `layer range ${from}..${to} is not within 0..${this.spec.layers}`);
    }
    this.checkAccumulate(opts.accumulate, from, to);
    const mainAcc = opts.accumulate?.[this.mainStack];
    const enc = this.encoderSpec ? (input.encoderHidden ? this.givenEncoder(input, opts) : await this.runEncoder(input, opts)) : undefined;
    const captureLayers = captureList(opts.captureFF, from, to);
    const args: NativeForwardArgs = {
      ...(ids ? { ids } : {}),
      ...(input.pixels ? { pixels: input.pixels } : {}),
      ...(input.tokenTypeIds ? { tokenTypeIds: input.tokenTypeIds } : {}),
      ...(enc ? { encoderHidden: enc.hidden, encoderSeq: enc.seq, ...(input.encoderMask ? { encoderMask: input.encoderMask } : {}) } : {}),
      batch,
      seq,
      output: opts.output,
      fromLayer: from,
      toLayer: to,
      ...(attentionMask ? { attentionMask } : {}),
      ...(opts.featureMask ? { featureMask: opts.featureMask } : {}),
      ...(opts.hidden ? { hidden: opts.hidden } : {}),
      ...(captureLayers?.length ? { captureLayers } : {}),
      ...(opts.captureFFInput?.length ? { inputLayers: [...opts.captureFFInput] } : {}),
      ...(opts.captureFFOutput?.length ? { outputLayers: [...opts.captureFFOutput] } : {}),
      ...(mainAcc ? { accumulator: mainAcc.nativeAccumulator } : {}),
    };
    const handle = this.live();
    const r = await withStaged([{ hidden: opts.hidden }], opts, ([s]) =>
      runNativeJob('forward', (onProgress) => modelAddon().modelForward(handle, { ...args, ...(s!.hidden ? { hidden: s!.hidden } : {}) }, onProgress), opts),
    );
    const out: ForwardResult = {};
    const put = <K extends keyof ForwardResult>(key: K, v: ForwardResult[K] | undefined) => {
      if (v) out[key] = v;
    };
    put('logits', r.logits);
    if (r.nll) Object.assign(out, { nll: r.nll, nllSum: r.nllSum ?? 0, nllCount: r.nllCount ?? 0 });
    put('hidden', r.hidden);
    put('ff', byLayer(captureLayers, r.ff));
    put('ffInput', byLayer(opts.captureFFInput, r.ffInputs));
    put('ffOutput', byLayer(opts.captureFFOutput, r.ffOutputs));
    put('encoderFF', enc?.ff);
    put('encoderFFInput', enc?.inputs);
    put('encoderFFOutput', enc?.outputs);
    put('encoderHidden', enc?.hidden);
    return out as ForwardOutput<O>; // the native side returns the output asked for (model_binding.cc)
  }

  /** input.encoderHidden in place of an encoder run: checked against encoderSeq and d; nothing to capture. */
  private givenEncoder(input: ForwardInput, opts: ForwardOptions) {
    const { batch, encoderIds } = input;
    const seq = input.encoderSeq ?? (encoderIds ? encoderIds.length / batch : 0);
    const hidden = input.encoderHidden!;
    if (!Number.isInteger(seq) || seq <= 0 || hidden.length !== batch * seq * this.encoderSpec!.dModel) {
      throw new FfmergeError('SHAPE_MISMATCH', `encoderHidden must hold batch·encoderSeq·d = ${batch}·${seq}·${this.encoderSpec!.dModel} values`);
    }
    if (opts.captureEncoderFF || opts.captureEncoderFFInput || opts.captureEncoderFFOutput || opts.accumulate?.encoder) {
      throw new FfmergeError('INVALID_ARGUMENT', 'with encoderHidden the encoder does not run, so its FF cannot be captured or accumulated');
    }
    return { hidden, seq, ff: undefined, inputs: undefined, outputs: undefined };
  }

  /** Encoder–decoder models: runs the encoder stack on input.encoderIds → its output states (+ FF captures). */
  private async runEncoder(input: ForwardInput, opts: ForwardOptions) {
    const { batch, encoderIds, encoderMask } = input;
    const seq = input.encoderSeq ?? (encoderIds ? encoderIds.length / batch : 0);
    if (!(encoderIds instanceof Int32Array) || !Number.isInteger(seq) || seq <= 0 || encoderIds.length !== batch * seq) {
      throw new FfmergeError('INVALID_ARGUMENT', 'an encoder–decoder model needs encoderIds, an Int32Array of batch·encoderSeq source token ids');
    }
    if (encoderMask && encoderMask.length !== batch * seq) {
      throw new FfmergeError('INVALID_ARGUMENT', `encoderMask must have batch·encoderSeq = ${batch * seq} entries`);
    }
    // the encoder runs every layer, so any layer its accumulator uses is covered
    const encAcc = opts.accumulate?.encoder;
    const captureLayers = captureList(opts.captureEncoderFF, 0, this.encoderSpec!.layers);
    const args: NativeForwardArgs = {
      ids: encoderIds,
      batch,
      seq,
      output: 'hidden',
      ...(encoderMask ? { attentionMask: encoderMask } : {}),
      ...(captureLayers?.length ? { captureLayers } : {}),
      ...(opts.captureEncoderFFInput?.length ? { inputLayers: [...opts.captureEncoderFFInput] } : {}),
      ...(opts.captureEncoderFFOutput?.length ? { outputLayers: [...opts.captureEncoderFFOutput] } : {}),
      ...(encAcc ? { accumulator: encAcc.nativeAccumulator } : {}),
    };
    const handle = this.live('encoder');
    const r = await runNativeJob('encoder', (onProgress) => modelAddon().modelForward(handle, args, onProgress), opts);
    return {
      hidden: r.hidden!,
      seq,
      ff: byLayer(captureLayers, r.ff),
      inputs: byLayer(opts.captureEncoderFFInput, r.ffInputs),
      outputs: byLayer(opts.captureEncoderFFOutput, r.ffOutputs),
    };
  }

  /**
   * Greedy or beam-search decoding (encoder–decoder models): source ids [batch, seq] (+ padding mask) →
   * output ids [batch, length] starting with the decoder start token, padded after eos. One native job on a
   * KV cache. config.numBeams > 1 runs beam search (native/core/model/generate.h describes the rules).
   */
  async generate(
    src: { ids: Int32Array; batch: number; seq: number; attentionMask?: Uint8Array },
    config: GenerationConfig,
    opts: JobOptions = {},
  ): Promise<{ ids: Int32Array; length: number }> {
    if (!this.encoderSpec) {
      throw new FfmergeError('INVALID_ARGUMENT', `translation needs an encoder–decoder model; ${this.spec.family} is not one`);
    }
    if (typeof src !== 'object' || src === null) throw new FfmergeError('INVALID_ARGUMENT', `generate(src, config): src must be { ids, batch, seq } (got ${showValue(src)})`);
    if (typeof config !== 'object' || config === null) throw new FfmergeError('INVALID_ARGUMENT', `generate(src, config): config must be a GenerationConfig (from loadGenerationConfig) (got ${showValue(config)})`);
    checkJobOptions(opts, 'generate(src, config, options): options', []);
    const { ids, batch, seq, attentionMask } = src;
    if (!(ids instanceof Int32Array) || !Number.isInteger(batch) || !Number.isInteger(seq) || batch <= 0 || seq <= 0 || ids.length !== batch * seq) {
      throw new FfmergeError('INVALID_ARGUMENT', `source ids must be an Int32Array of batch·seq = ${batch * seq} entries`);
    }
    if (seq > this.encoderSpec.maxPositions) {
      throw new FfmergeError('SEQUENCE_TOO_LONG', `source length ${seq} is longer than the model's ${this.encoderSpec.maxPositions} positions`);
    }
    const maxLength = Math.min(config.maxLength, this.spec.maxPositions);
    // refused before the native side allocates it (num_beams 100000 would swap for minutes)
    const beams = config.numBeams ?? 1;
    const need = generateBytes(this.encoderSpec, this.spec, batch, seq, maxLength, beams);
    const memory = machineBytes();
    if (need > memory / 2) {
      throw new FfmergeError(
        'INVALID_CONFIG',
        `decoding ${batch === 1 ? 'a sentence' : `${groupDigits(batch)} sentences`} with num_beams ${groupDigits(beams)} up to max_length ${maxLength} needs about ${(need / 2 ** 30).toFixed(1)} GiB, more than half of this machine's ${(memory / 2 ** 30).toFixed(1)} GiB: lower num_beams or max_length (generation_config.json)${batch > 1 ? ', or decode fewer sentences at once' : ''}`,
      );
    }
    const enc = this.live('encoder');
    const dec = this.live();
    const args = {
      ids,
      batch,
      seq,
      ...(attentionMask ? { attentionMask } : {}),
      decoderStart: config.decoderStartTokenId,
      eos: config.eosTokenId ?? -1,
      pad: config.padTokenId,
      forcedEos: config.forcedEosTokenId ?? -1,
      maxLength,
      badWords: config.badWordsIds ?? [],
      numBeams: beams,
      lengthPenalty: config.lengthPenalty ?? 1,
      renormalize: config.renormalizeLogits === true,
      earlyStopping: config.earlyStopping === true,
    };
    return runNativeJob('generate', (onProgress) => modelAddon().modelGenerate(enc, dec, args, onProgress), opts);
  }

  /**
   * Frees the native weights (views made by withFF keep what they share). Jobs already running finish, a
   * multi-step one (perplexity, greedy, translate, …) included: its weights are freed when it ends. Any later
   * call is refused.
   */
  dispose(): void {
    this.disposed = true;
    if (this.sessions === 0) this.release();
  }

  private release(): void {
    if (this.handle) modelAddon().modelDispose(this.handle);
    if (this.encoderHandle) modelAddon().modelDispose(this.encoderHandle);
    this.handle = undefined;
    this.encoderHandle = undefined;
  }
}
