/**
 * A GPT-2-small-shaped checkpoint with random float32 weights (12 layers, d 768, 12 heads, FF 3072, vocab
 * 50257, 1024 positions), for benchmarks that need the shape and not the training: benchmarks/compress.ts
 * (time per phase) and benchmarks/compress-rss.ts (peak RSS per phase).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { writeSafetensors, type TensorToWrite } from '../../lib/safetensors';

export const GPT2_SMALL = { d: 768, dFF: 3072, layers: 12, vocab: 50257, ctx: 1024, heads: 12 };

/**
 * Writes config.json and model.safetensors into `dir`. Returns `block()`, random 256-token id blocks that
 * continue the weights' seeded generator (so a run's data is reproducible with its weights).
 */
export async function writeSyntheticGpt2Small(dir: string): Promise<{ block: () => Int32Array }> {
  const { d, dFF, layers: L, vocab, ctx, heads } = GPT2_SMALL;
  const config = { model_type: 'gpt2', architectures: ['GPT2LMHeadModel'], n_embd: d, n_head: heads, n_inner: dFF, n_layer: L, n_positions: ctx, vocab_size: vocab, activation_function: 'gelu_new', layer_norm_epsilon: 1e-5, tie_word_embeddings: true };
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(config));
  let seed = 1;
  const next = () => (seed = (seed * 1664525 + 1013904223) >>> 0);
  const rand = (n: number, scale: number) => () => {
    const a = new Float32Array(n);
    for (let i = 0; i < n; i++) a[i] = (next() / 2 ** 32 - 0.5) * 2 * scale;
    return a;
  };
  const ones = (n: number) => () => new Float32Array(n).fill(1);
  const t = (name: string, shape: number[], data: () => Float32Array): TensorToWrite => ({ name, dtype: 'F32', shape, data });
  const tensors: TensorToWrite[] = [t('transformer.wte.weight', [vocab, d], rand(vocab * d, 0.02)), t('transformer.wpe.weight', [ctx, d], rand(ctx * d, 0.01))];
  for (let l = 0; l < L; l++) {
    const p = `transformer.h.${l}`;
    tensors.push(
      t(`${p}.ln_1.weight`, [d], ones(d)), t(`${p}.ln_1.bias`, [d], rand(d, 0)),
      t(`${p}.attn.c_attn.weight`, [d, 3 * d], rand(3 * d * d, 0.03)), t(`${p}.attn.c_attn.bias`, [3 * d], rand(3 * d, 0)),
      t(`${p}.attn.c_proj.weight`, [d, d], rand(d * d, 0.02)), t(`${p}.attn.c_proj.bias`, [d], rand(d, 0)),
      t(`${p}.ln_2.weight`, [d], ones(d)), t(`${p}.ln_2.bias`, [d], rand(d, 0)),
      t(`${p}.mlp.c_fc.weight`, [d, dFF], rand(d * dFF, 0.03)), t(`${p}.mlp.c_fc.bias`, [dFF], rand(dFF, 0.01)),
      t(`${p}.mlp.c_proj.weight`, [dFF, d], rand(d * dFF, 0.02)), t(`${p}.mlp.c_proj.bias`, [d], rand(d, 0)),
    );
  }
  tensors.push(t('transformer.ln_f.weight', [d], ones(d)), t('transformer.ln_f.bias', [d], rand(d, 0)));
  await writeSafetensors(path.join(dir, 'model.safetensors'), tensors, { format: 'pt' });
  return { block: () => Int32Array.from({ length: 256 }, () => next() % vocab) };
}
