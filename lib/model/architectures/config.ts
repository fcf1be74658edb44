/**
 * Readers of config.json fields for the architecture descriptions: every problem is a typed error naming
 * the field, so a bad config never turns into a shape error three steps later.
 */
import { isFinitePositive } from '../../arguments';
import { FfmergeError, showValue } from '../../errors';
import { NO_ROPE_SCALING, type ActivationKind, type RopeScaling } from '../spec';
import type { Config, FFTensorNames } from './types';

export function bad(key: string, why: string, v: unknown): FfmergeError {
  return new FfmergeError('INVALID_CONFIG', v === undefined ? `config.json: "${key}" is missing; it ${why}` : `config.json: "${key}" ${why} (got ${showValue(v)})`);
}

/** A positive integer; `dflt` is the transformers config class default used when the key is absent or null. */
export function posInt(c: Config, key: string, dflt?: number): number {
  const v = c[key] ?? dflt;
  // past 2^53 a JSON number is no longer an exact integer (1e308 "is" one): refused here, naming the key,
  // rather than by the native spec check as a usage error
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v <= 0) throw bad(key, 'must be a positive integer below 2^53', c[key]);
  return v;
}

/** A [height, width] pair of one side as that side; any other value as it is (for its own check). */
export function oneSide(v: unknown): unknown {
  return Array.isArray(v) && v.length === 2 && v[0] === v[1] ? v[0] : v;
}

/**
 * A square's side in pixels: transformers' ViTConfig takes image_size and patch_size as one number or a
 * [height, width] pair. A pair of two sides is a non-square model, which ffmerge's ViT does not run.
 */
export function squareSide(c: Config, key: string, dflt: number): number {
  const v = oneSide(c[key]);
  if (!Array.isArray(v)) return posInt({ [key]: v }, key, dflt);
  if (v.length !== 2) throw bad(key, 'must be a number or a [height, width] pair', v);
  unsupportedIf(true, `${key} ${showValue(v)} (a rectangle: ffmerge's ViT takes square images and patches)`);
  return 0; // not reached
}

export function posNum(c: Config, key: string, dflt: number): number {
  const v = c[key] ?? dflt;
  if (!isFinitePositive(v)) throw bad(key, 'must be a finite positive number', c[key]);
  return v;
}

/**
 * Head width: the explicit key when the config has it, else the config class's default where it has one
 * (`absent`: Qwen3's 128), else width / heads (which must divide).
 */
export function headDim(c: Config, widthKey: string, headsKey: string, explicitKey?: string, absent?: number): number {
  const d = posInt(c, widthKey);
  const h = posInt(c, headsKey);
  if (explicitKey && c[explicitKey] != null) return posInt(c, explicitKey);
  if (absent !== undefined) return absent;
  if (d % h !== 0) {
    throw new FfmergeError(
      'INVALID_CONFIG',
      `config.json: "${headsKey}" (${h}) does not divide "${widthKey}" (${d}); the head width must be a whole number`,
    );
  }
  return d / h;
}

/** A head width RoPE turns in pairs of dimensions: an odd one is refused naming where it came from. */
export function rotaryHeadDim(hd: number, from: string): number {
  if (hd % 2 !== 0) throw new FfmergeError('INVALID_CONFIG', `config.json: the head width ${from} is ${hd}; rotary position embeddings need an even head width`);
  return hd;
}

/**
 * Grouped-query attention: the kv head count must divide the head count. A key left out takes the config
 * class's default (`absent`: Mistral 8, Qwen2/Qwen3 32), else the head count; null is the head count, as
 * every transformers config class reads it.
 */
export function kvHeads(c: Config, key: string, headsKey: string, absent?: number): number {
  const nHeads = posInt(c, headsKey);
  const defaulted = c[key] === undefined && absent !== undefined;
  const nKv = defaulted ? absent : posInt(c, key, nHeads);
  if (nHeads % nKv !== 0) {
    const given = defaulted ? `${nKv}, the config class's default: config.json does not give it` : String(nKv);
    throw new FfmergeError('INVALID_CONFIG', `config.json: "${key}" (${given}) must divide "${headsKey}" (${nHeads})`);
  }
  return nKv;
}

const ACTIVATIONS = new Map<string, ActivationKind>([
  ['gelu_new', 'gelu_new'],
  ['gelu_pytorch_tanh', 'gelu_new'],
  // transformers' FastGELUActivation: 0.5x(1 + tanh(0.7978845608·x(1 + 0.044715x²))), gelu_new's formula
  ['gelu_fast', 'gelu_new'],
  ['gelu', 'gelu'],
  ['gelu_python', 'gelu'], // the same erf formula, computed in Python
  ['silu', 'silu'],
  ['swish', 'silu'],
  ['relu', 'relu'],
]);

/** transformers' ACT2FN names ffmerge's forward pass does not compute: a model that is valid, not an invalid config. */
const OTHER_HF_ACTIVATIONS = new Set(['quick_gelu', 'tanh', 'sigmoid', 'relu6', 'relu2', 'leaky_relu', 'mish', 'linear', 'gelu_10', 'gelu_accurate', 'laplace', 'prelu', 'xielu']);

export function activation(c: Config, key: string, dflt?: string): ActivationKind {
  const v = c[key] ?? dflt;
  const a = typeof v === 'string' ? ACTIVATIONS.get(v) : undefined;
  if (!a && typeof v === 'string' && OTHER_HF_ACTIVATIONS.has(v)) {
    throw new FfmergeError('UNSUPPORTED_ARCHITECTURE', `config.json: "${key}" is ${showValue(v)}, an activation transformers has and ffmerge's forward pass does not compute (it computes ${[...ACTIVATIONS.keys()].join(', ')})`);
  }
  if (!a) throw bad(key, `must be one of ${[...ACTIVATIONS.keys()].join(', ')}`, v);
  return a;
}

export function unsupportedIf(cond: boolean, what: string): void {
  if (cond) throw new FfmergeError('UNSUPPORTED_ARCHITECTURE', `config.json: ${what} is not supported by ffmerge's forward pass`);
}

/**
 * tie_word_embeddings: a boolean when given ("yes", read as false, told only of a missing lm_head.weight); when
 * left out, the config class's default (transformers writes the key only where it differs from that).
 */
export function tiedEmbeddings(c: Config, dflt = false): boolean {
  return flag(c, 'tie_word_embeddings', dflt);
}

/**
 * A true/false config key (attention_bias, use_sliding_window, …); left out or null, `dflt`. Anything else is
 * INVALID_CONFIG: transformers reads "true", "false" and 1 as Python truth values, so a string would turn a
 * checkpoint's biases or windows on where ffmerge, reading only true, left them off.
 */
export function flag(c: Config, key: string, dflt = false): boolean {
  const v = c[key];
  if (v === undefined || v === null) return dflt;
  if (typeof v !== 'boolean') throw bad(key, 'must be true or false', v);
  return v;
}

/** Classes with a language-model head (Architecture.classes): *ForCausalLM, *LMHeadModel, or a bare *Model. */
export const LM_CLASSES = /(ForCausalLM|LMHeadModel|^[A-Za-z0-9]+Model)$/;

/**
 * Where a config keeps its RoPE settings. Given both, rope_scaling wins, as in transformers (4.x reads only it;
 * 5.x's config takes `rope_scaling or rope_parameters`, so an empty one does not).
 */
function ropeKey(c: Config): 'rope_scaling' | 'rope_parameters' {
  const s = c.rope_scaling;
  const empty = s == null || s === false || (typeof s === 'object' && !Array.isArray(s) && Object.keys(s).length === 0);
  return !empty || c.rope_parameters == null ? 'rope_scaling' : 'rope_parameters';
}

/**
 * RoPE scaling from rope_scaling (rope_parameters in transformers ≥ 5), with the keys and checks of transformers'
 * rope validation: 'linear' and 'llama3' are computed (their attention factor is 1); any other type (dynamic,
 * yarn, longrope…) changes more than the frequencies and is refused, never run as unscaled RoPE.
 */
export function ropeScaling(c: Config): RopeScaling {
  const key = ropeKey(c);
  const params = c[key] as unknown;
  if (params == null) return NO_ROPE_SCALING;
  if (typeof params !== 'object' || Array.isArray(params)) throw bad(key, 'must be an object', params);
  const p = params as Record<string, unknown>;
  const type = p.type ?? p.rope_type; // transformers 4.x copies a legacy "type" over "rope_type"
  if (type == null || type === 'default') return NO_ROPE_SCALING;
  const num = (k: string): number => {
    const v = p[k];
    if (!isFinitePositive(v)) throw bad(`${key}.${k}`, `must be a finite positive number for rope type ${showValue(type)}`, v);
    return v;
  };
  if (type === 'linear') return { ...NO_ROPE_SCALING, type: 'linear', factor: num('factor') };
  if (type === 'llama3') {
    const [lowFreqFactor, highFreqFactor] = [num('low_freq_factor'), num('high_freq_factor')];
    if (!(highFreqFactor > lowFreqFactor)) throw bad(`${key}.high_freq_factor`, `must be larger than low_freq_factor (${lowFreqFactor})`, highFreqFactor);
    return { type: 'llama3', factor: num('factor'), lowFreqFactor, highFreqFactor, originalMaxPositions: num('original_max_position_embeddings') };
  }
  unsupportedIf(true, `rope type ${showValue(type)}`);
  return NO_ROPE_SCALING; // not reached
}

/**
 * RoPE over part of each head (Phi's partial_rotary_factor, top level or in the RoPE settings that win): the
 * LLaMA families rotate the whole head, and transformers fails on such a config.
 */
export function checkWholeHeadRope(c: Config): void {
  const params = c[ropeKey(c)];
  const partial = c.partial_rotary_factor ?? (typeof params === 'object' && params !== null ? (params as Record<string, unknown>).partial_rotary_factor : undefined);
  unsupportedIf(partial != null && partial !== 1, `partial_rotary_factor ${showValue(partial)} (RoPE over part of each head)`);
}

export function ropeTheta(c: Config): number {
  // transformers ≥ 5 nests RoPE settings in rope_parameters; older configs have rope_theta / rope_scaling.
  const params = c[ropeKey(c)] as Record<string, unknown> | null | undefined;
  const theta = params?.rope_theta ?? c.rope_theta ?? 10000;
  // JSON's 1e999 reads as Infinity, which "> 0" lets through to the native spec check (a usage error, unnamed)
  if (!isFinitePositive(theta)) throw bad('rope_theta', 'must be a finite positive number', theta);
  return theta;
}

export function numLabels(c: Config): number {
  if (c.num_labels != null) return posInt(c, 'num_labels');
  const id2label = c.id2label;
  if (id2label && typeof id2label === 'object' && Object.keys(id2label).length > 0) return Object.keys(id2label).length;
  return 2; // transformers' PretrainedConfig default
}

/** The FF of a BERT-style layer (`<layer>.intermediate.dense` then `<layer>.output.dense`), as ViT and BERT name it. */
export function intermediateOutputFF(layerPrefix: (l: number) => string) {
  return (_c: unknown, l: number): FFTensorNames => ({
    wIn: `${layerPrefix(l)}.intermediate.dense.weight`,
    bIn: `${layerPrefix(l)}.intermediate.dense.bias`,
    wOut: `${layerPrefix(l)}.output.dense.weight`,
    bOut: `${layerPrefix(l)}.output.dense.bias`,
    layout: 'linear',
  });
}
