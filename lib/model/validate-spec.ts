/**
 * The one check of a ModelSpec before it reaches native code: every field present with the right type,
 * sizes positive, heads dividing, per-layer lists of the right length. The native parser
 * (native/binding/spec_binding.cc) then only converts; native/core/model/weights.cc re-checks the numeric
 * invariants for C++ callers.
 */
import { isFinitePositive, isObject } from '../arguments';
import { FfmergeError, showValue } from '../errors';
import { NO_ROPE_SCALING, type ModelSpec, type RopeScaling } from './spec';

const ENUMS: Partial<Record<keyof ModelSpec, readonly string[]>> = {
  norm: ['layernorm', 'rmsnorm'],
  normPlacement: ['pre', 'post'],
  positions: ['learned', 'rotary', 'sinusoidal', 'none'],
  activation: ['gelu_new', 'gelu', 'silu', 'relu'],
  input: ['tokens', 'patches'],
  head: ['lm', 'classifier', 'none'],
};
const POSITIVE = ['layers', 'dModel', 'nHeads', 'nKvHeads', 'headDim', 'dFF'] as const;
const COUNTS = ['vocab', 'maxPositions', 'ropeDim', 'channels', 'imageH', 'imageW', 'patch', 'typeVocab', 'numLabels'] as const;
const NUMBERS = ['normEps', 'embedScale'] as const;
const FLAGS = ['finalNorm', 'gatedFF', 'causal', 'tiedEmbeddings', 'embedNorm', 'pooler', 'crossAttention'] as const;
const STRINGS = ['family', 'maxPositionsField'] as const;

function fail(why: string): never {
  throw new FfmergeError('INVALID_CONFIG', `model spec: ${why}`);
}

const isCount = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v) && v >= 0;

/** Returns the spec unchanged when it is complete and consistent; else INVALID_CONFIG naming the field. */
export function validateSpec(spec: ModelSpec): ModelSpec {
  if (!isObject(spec)) {
    throw new FfmergeError('INVALID_ARGUMENT', `a model spec must be an object (got ${showValue(spec)})`);
  }
  const s = spec as unknown as Record<string, unknown>;
  for (const k of STRINGS) if (typeof s[k] !== 'string') fail(`"${k}" must be a string (got ${showValue(s[k])})`);
  for (const k of POSITIVE) if (!isCount(s[k]) || s[k] === 0) fail(`"${k}" must be a positive integer (got ${showValue(s[k])})`);
  for (const k of COUNTS) if (!isCount(s[k])) fail(`"${k}" must be a non-negative integer (got ${showValue(s[k])})`);
  for (const k of NUMBERS) if (!isFinitePositive(s[k])) fail(`"${k}" must be a positive number (got ${showValue(s[k])})`);
  for (const k of FLAGS) if (typeof s[k] !== 'boolean') fail(`"${k}" must be a boolean (got ${showValue(s[k])})`);
  for (const [k, allowed] of Object.entries(ENUMS)) {
    if (typeof s[k] !== 'string' || !allowed!.includes(s[k] as string)) fail(`"${k}" must be one of ${allowed!.join(', ')} (got ${showValue(s[k])})`);
  }
  const w = spec.slidingWindow;
  if (!Array.isArray(w) || w.length !== spec.layers || !w.every(isCount)) {
    fail(`"slidingWindow" must list one non-negative integer per layer (${spec.layers}) (got ${showValue(w)})`);
  }
  if (spec.nHeads % spec.nKvHeads !== 0) fail(`nKvHeads (${spec.nKvHeads}) must divide nHeads (${spec.nHeads})`);
  if (typeof spec.ropeTheta !== 'number' || !(spec.ropeTheta >= 0)) fail(`"ropeTheta" must be a non-negative number (got ${showValue(spec.ropeTheta)})`);
  if (spec.positions === 'rotary') {
    if (!(spec.ropeTheta > 0)) fail('"ropeTheta" must be positive with rotary positions');
    const rd = spec.ropeDim || spec.headDim;
    if (rd % 2 !== 0 || rd > spec.headDim) fail(`the rotary dimension (${rd}) must be even and at most headDim (${spec.headDim})`);
  }
  const r = (spec.ropeScaling ?? NO_ROPE_SCALING) as Partial<Record<keyof RopeScaling, unknown>> | null;
  if (typeof r !== 'object' || r === null || !['none', 'linear', 'llama3'].includes(r.type as string)) {
    fail(`"ropeScaling" must be { type: 'none' | 'linear' | 'llama3', factor, lowFreqFactor, highFreqFactor, originalMaxPositions } (got ${showValue(r)})`);
  }
  for (const k of ['factor', 'lowFreqFactor', 'highFreqFactor', 'originalMaxPositions'] as const) {
    if (!isFinitePositive(r[k])) fail(`"ropeScaling.${k}" must be a positive number (got ${showValue(r[k])})`);
  }
  if (r.type === 'llama3' && !((r.highFreqFactor as number) > (r.lowFreqFactor as number))) fail('"ropeScaling.highFreqFactor" must be larger than its lowFreqFactor');
  if (spec.qkNorm !== undefined && typeof spec.qkNorm !== 'boolean') fail(`"qkNorm" must be a boolean when given (got ${showValue(spec.qkNorm)})`);
  if (spec.qkNorm && spec.norm !== 'rmsnorm') fail('"qkNorm" (a per-head RMSNorm of q and k) needs norm "rmsnorm"');
  if (spec.positions === 'learned' && spec.maxPositions === 0) fail('"maxPositions" must be positive with learned positions');
  if ((spec.input === 'tokens' || spec.head === 'lm') && spec.vocab === 0) fail('"vocab" must be positive for token input or an LM head');
  if (spec.input === 'patches') {
    for (const k of ['channels', 'imageH', 'imageW', 'patch'] as const) if (spec[k] === 0) fail(`"${k}" must be positive for patch input`);
    if (spec.imageH % spec.patch !== 0 || spec.imageW % spec.patch !== 0) {
      fail(`image size ${spec.imageH}x${spec.imageW} is not a multiple of the patch size ${spec.patch}`);
    }
  }
  if (spec.head === 'classifier' && spec.numLabels === 0) fail('"numLabels" must be positive for a classifier head');
  if (!spec.causal && w.some((x) => x > 0)) fail('sliding-window attention needs causal attention');
  return spec;
}
