/**
 * Where each architecture keeps its feed-forward sublayers: the one piece of the family table that the merge
 * pipeline, the checkpoint writer and the forward pass all need. The full family descriptions (attention,
 * norms, embeddings) build on this.
 *
 * Canonical FF layout used everywhere inside ffmerge ("Linear" layout, like torch.nn.Linear):
 *   wIn   [dFF, d]   first FF matrix (c_fc / fc1 / intermediate.dense / up_proj) — its output is the feature
 *   bIn   [dFF]
 *   wGate [dFF, d]   SwiGLU gate (LLaMA gate_proj), absent otherwise
 *   bGate [dFF]
 *   wOut  [d, dFF]   second FF matrix (c_proj / fc2 / output.dense / down_proj)
 *   bOut  [d]
 * GPT-2 stores its Conv1D weights transposed ([in, out]); `layout: 'conv1d'` says so and the loader/writer
 * transpose at the boundary.
 */
import { FfmergeError } from '../errors';

export type WeightLayout = 'linear' | 'conv1d';

export interface FFTensorNames {
  wIn: string;
  bIn?: string;
  wGate?: string;
  bGate?: string;
  wOut: string;
  bOut?: string;
  layout: WeightLayout;
}

/** One stack of layers that has FF sublayers (decoder-only models have one; Marian has encoder and decoder). */
export interface FFStack {
  name: 'decoder' | 'encoder';
  layers: number;
  ff(layer: number): FFTensorNames;
}

type Config = Record<string, unknown>;

function num(config: Config, key: string): number {
  const v = config[key];
  if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) {
    throw new FfmergeError('INVALID_CONFIG', `config.json: "${key}" must be a positive integer (got ${JSON.stringify(v)})`);
  }
  return v;
}

const FF_STACKS: Record<string, (c: Config) => FFStack[]> = {
  gpt2: (c) => [
    {
      name: 'decoder',
      layers: num(c, 'n_layer'),
      ff: (l) => ({
        wIn: `transformer.h.${l}.mlp.c_fc.weight`,
        bIn: `transformer.h.${l}.mlp.c_fc.bias`,
        wOut: `transformer.h.${l}.mlp.c_proj.weight`,
        bOut: `transformer.h.${l}.mlp.c_proj.bias`,
        layout: 'conv1d',
      }),
    },
  ],
  llama: (c) => [
    {
      name: 'decoder',
      layers: num(c, 'num_hidden_layers'),
      ff: (l) => {
        const bias = c.mlp_bias === true;
        const p = `model.layers.${l}.mlp`;
        return {
          wIn: `${p}.up_proj.weight`,
          wGate: `${p}.gate_proj.weight`,
          wOut: `${p}.down_proj.weight`,
          ...(bias ? { bIn: `${p}.up_proj.bias`, bGate: `${p}.gate_proj.bias`, bOut: `${p}.down_proj.bias` } : {}),
          layout: 'linear',
        };
      },
    },
  ],
  vit: (c) => [
    {
      name: 'encoder',
      layers: num(c, 'num_hidden_layers'),
      ff: (l) => ({
        wIn: `vit.encoder.layer.${l}.intermediate.dense.weight`,
        bIn: `vit.encoder.layer.${l}.intermediate.dense.bias`,
        wOut: `vit.encoder.layer.${l}.output.dense.weight`,
        bOut: `vit.encoder.layer.${l}.output.dense.bias`,
        layout: 'linear',
      }),
    },
  ],
  bert: (c) => [
    {
      name: 'encoder',
      layers: num(c, 'num_hidden_layers'),
      // BertModel checkpoints may or may not carry the "bert." prefix; the loader resolves which.
      ff: (l) => ({
        wIn: `bert.encoder.layer.${l}.intermediate.dense.weight`,
        bIn: `bert.encoder.layer.${l}.intermediate.dense.bias`,
        wOut: `bert.encoder.layer.${l}.output.dense.weight`,
        bOut: `bert.encoder.layer.${l}.output.dense.bias`,
        layout: 'linear',
      }),
    },
  ],
  marian: (c) =>
    (['encoder', 'decoder'] as const).map((stack) => ({
      name: stack,
      layers: num(c, `${stack}_layers`),
      ff: (l: number) => ({
        wIn: `model.${stack}.layers.${l}.fc1.weight`,
        bIn: `model.${stack}.layers.${l}.fc1.bias`,
        wOut: `model.${stack}.layers.${l}.fc2.weight`,
        bOut: `model.${stack}.layers.${l}.fc2.bias`,
        layout: 'linear' as const,
      }),
    })),
};

export const SUPPORTED_MODEL_TYPES = Object.keys(FF_STACKS);

/** The FF stacks of a model from its config.json; unknown model_type is a typed error listing what works. */
export function ffStacks(config: Config): FFStack[] {
  const type = config.model_type;
  const make = typeof type === 'string' ? FF_STACKS[type] : undefined;
  if (!make) {
    throw new FfmergeError(
      'UNSUPPORTED_ARCHITECTURE',
      `model_type ${JSON.stringify(type)} is not supported; ffmerge supports ${SUPPORTED_MODEL_TYPES.join(', ')}`,
    );
  }
  return make(config);
}
