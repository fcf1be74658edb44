/**
 * The registry of architecture descriptions, by config.json model_type, and the lookups everything else
 * uses. Adding a family is one file in this folder plus one line in ARCHITECTURES.
 */
import { FfmergeError, showValue } from '../../errors';
import { isObject } from '../../arguments';
import { bert } from './bert';
import { posInt } from './config';
import { gpt2 } from './gpt2';
import { llama } from './llama';
import { marian } from './marian';
import { mistral } from './mistral';
import { qwen2 } from './qwen2';
import { qwen3 } from './qwen3';
import type { Architecture, Config, FFTensorNames, StackDescription, StackName } from './types';
import { vit } from './vit';

export type * from './types';

// A Map, not an object literal: a model_type of "constructor" or "__proto__" must be unknown, not a
// property of Object.prototype.
const ARCHITECTURES: ReadonlyMap<string, Architecture> = new Map(
  [gpt2, llama, qwen2, qwen3, mistral, vit, bert, marian].map((a) => [a.modelType, a]),
);

/** Every model_type ffmerge runs (forward, merge, write, inspect). */
export const MODEL_TYPES: readonly string[] = [...ARCHITECTURES.keys()];

/** The description of a config.json's model_type; an unknown one is a typed error listing the supported ones. */
export function architectureOf(config: Config): Architecture {
  if (!isObject(config)) {
    throw new FfmergeError('INVALID_ARGUMENT', `config must be an object, config.json's contents (got ${showValue(config)})`);
  }
  const type = config.model_type;
  const a = typeof type === 'string' ? ARCHITECTURES.get(type) : undefined;
  if (!a) {
    throw new FfmergeError(
      'UNSUPPORTED_ARCHITECTURE',
      type === undefined
        ? `config.json has no model_type, which says what the model is; ffmerge supports ${MODEL_TYPES.join(', ')}`
        : `model_type ${showValue(type)} is not supported; ffmerge supports ${MODEL_TYPES.join(', ')}`,
    );
  }
  // the head the checkpoint was saved with, where config.json names it (transformers picks the class by
  // model_type and would only warn of the weights it leaves unread)
  const listed = config.architectures;
  if (a.classes && Array.isArray(listed) && listed.length > 0 && listed.every((x) => typeof x === 'string') && !listed.some((x) => a.classes!.test(x as string))) {
    throw new FfmergeError(
      'UNSUPPORTED_ARCHITECTURE',
      `config.json's architectures is ${showValue(listed)}: ffmerge runs ${a.modelType} checkpoints as ${a.hfClass}, and this one was saved with another head, whose weights ffmerge would not read`,
    );
  }
  return a;
}

/** One stack of an architecture by name; a stack the model lacks is INVALID_ARGUMENT. */
export function stackOf(arch: Architecture, name: StackName): StackDescription {
  const s = arch.stacks.find((st) => st.name === name);
  if (!s) {
    throw new FfmergeError(
      'INVALID_ARGUMENT',
      `this ${arch.modelType} model has no ${name} stack (it has: ${arch.stacks.map((st) => st.name).join(', ')})`,
    );
  }
  return s;
}

/** The stacks with FF sublayers, in run order, as the merge / writer / inspect see them. */
export interface FFStack {
  name: StackName;
  layers: number;
  ff(layer: number): FFTensorNames;
}

/** The FF view of a config: each stack's name, layer count and FF tensor names (no spec is built). */
export function ffStacks(config: Config): FFStack[] {
  return architectureOf(config).stacks.map((s) => ({
    name: s.name,
    layers: posInt(config, s.sizes.layers),
    ff: (l: number) => s.ff(config, l),
  }));
}

/** The FF tensor names of one layer of one stack. */
export function ffTensorNames(config: Config, stack: StackName, layer: number): FFTensorNames {
  return stackOf(architectureOf(config), stack).ff(config, layer);
}

/**
 * Where an FF's optional pieces differ from the ones this layer stores, as "an FF with bOut, which the decoder
 * stack's FF of llama lacks (layer 0)"; undefined where they match. A piece the layer lacks would be used in the
 * forward pass and then dropped by the writer; one it has and the FF lacks would be kept from the source.
 */
export function ffPieceMismatch(config: Config, stack: StackName, layer: number, ff: Partial<Record<'wGate' | 'bIn' | 'bGate' | 'bOut', unknown>>): string | undefined {
  const names = ffTensorNames(config, stack, layer);
  for (const p of ['wGate', 'bIn', 'bGate', 'bOut'] as const) {
    if (Boolean(names[p]) !== (ff[p] !== undefined)) {
      return `an FF ${ff[p] !== undefined ? 'with' : 'without'} ${p}, which the ${stack} stack's FF of ${String(config.model_type)} ${names[p] ? 'has' : 'lacks'} (layer ${layer})`;
    }
  }
  return undefined;
}
