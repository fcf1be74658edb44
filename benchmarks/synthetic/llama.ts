/**
 * Synthetic LLaMA checkpoints with real shapes and random weights, for the large-model benchmarks: nothing
 * downloads, and the shapes are what matter for memory and time.
 *
 *   node -r ts-node/register/transpile-only benchmarks/synthetic/llama.ts <out-dir> [--preset 7b-8|7b] [--layers N]
 *        [--dtype BF16|F32] [--shard-gb 5] [--tokens 16384]
 *
 * Presets: 7b-8 = Llama-2-7B widths with 8 layers (hidden 4096, intermediate 11008, 32 heads / 8 kv heads,
 * vocab 32000; ~3.4 GB in BF16); 7b = the full Llama-2-7B shape (32 layers, ~13.5 GB in BF16).
 * Weights are uniform with the std of Hugging Face's init (0.02), norms 1: activations stay finite through
 * every layer. Files above --shard-gb are split as Hugging Face does (model-0000i-of-0000n.safetensors +
 * model.safetensors.index.json). Also writes calibration/validation token-id files (`{"input_ids": [...]}` per
 * line, random ids) so compress needs no tokenizer: calib.jsonl and valid.jsonl, --tokens each.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { writeSafetensors, type TensorToWrite } from '../../lib/safetensors';

export interface LlamaShape {
  layers: number;
  hidden: number;
  intermediate: number;
  heads: number;
  kvHeads: number;
  vocab: number;
}

export const PRESETS: Record<string, LlamaShape> = {
  '7b-8': { layers: 8, hidden: 4096, intermediate: 11008, heads: 32, kvHeads: 8, vocab: 32000 },
  '7b': { layers: 32, hidden: 4096, intermediate: 11008, heads: 32, kvHeads: 8, vocab: 32000 },
};

/** xorshift128+ as two uint32 lanes: fast, seeded, good enough for weights nobody trains. */
function rng(seed: number): () => number {
  let a = (seed * 2654435761) >>> 0 || 1;
  let b = (seed ^ 0x9e3779b9) >>> 0 || 2;
  return () => {
    let t = a;
    const s = b;
    a = s;
    t ^= t << 11;
    t ^= t >>> 8;
    b = (t ^ s ^ (s >>> 19)) >>> 0;
    return b;
  };
}

/** n values uniform in ±0.02·√3 (std 0.02) as BF16 bits, or F32. */
function randomTensor(n: number, dtype: 'BF16' | 'F32', seed: number): Uint16Array | Float32Array {
  const next = rng(seed);
  const scale = (0.02 * Math.sqrt(3) * 2) / 2 ** 32;
  const f = new Float32Array(n);
  for (let i = 0; i < n; i++) f[i] = next() * scale - 0.02 * Math.sqrt(3);
  if (dtype === 'F32') return f;
  const hi = new Uint16Array(f.buffer);
  const out = new Uint16Array(n);
  for (let i = 0; i < n; i++) out[i] = hi[2 * i + 1]!; // truncation: fine for random weights
  return out;
}

function ones(n: number, dtype: 'BF16' | 'F32'): Uint16Array | Float32Array {
  return dtype === 'F32' ? new Float32Array(n).fill(1) : new Uint16Array(n).fill(0x3f80);
}

export function configFor(s: LlamaShape): Record<string, unknown> {
  return {
    architectures: ['LlamaForCausalLM'],
    model_type: 'llama',
    hidden_size: s.hidden,
    intermediate_size: s.intermediate,
    num_hidden_layers: s.layers,
    num_attention_heads: s.heads,
    num_key_value_heads: s.kvHeads,
    vocab_size: s.vocab,
    max_position_embeddings: 4096,
    rms_norm_eps: 1e-5,
    rope_theta: 10000.0,
    hidden_act: 'silu',
    tie_word_embeddings: false,
    attention_bias: false,
    mlp_bias: false,
    torch_dtype: 'bfloat16',
    bos_token_id: 1,
    eos_token_id: 2,
  };
}

/** The tensors of a Llama checkpoint (names and shapes as transformers writes them), data produced lazily. */
export function tensorsFor(s: LlamaShape, dtype: 'BF16' | 'F32'): TensorToWrite[] {
  const head = s.hidden / s.heads;
  let seed = 1;
  const t = (name: string, shape: number[], init: 'random' | 'ones' = 'random'): TensorToWrite => {
    const n = shape.reduce((a, b) => a * b, 1);
    const mySeed = seed++;
    return { name, dtype, shape, data: () => (init === 'ones' ? ones(n, dtype) : randomTensor(n, dtype, mySeed)) };
  };
  const out: TensorToWrite[] = [t('model.embed_tokens.weight', [s.vocab, s.hidden])];
  for (let l = 0; l < s.layers; l++) {
    const p = `model.layers.${l}.`;
    out.push(
      t(`${p}input_layernorm.weight`, [s.hidden], 'ones'),
      t(`${p}self_attn.q_proj.weight`, [s.heads * head, s.hidden]),
      t(`${p}self_attn.k_proj.weight`, [s.kvHeads * head, s.hidden]),
      t(`${p}self_attn.v_proj.weight`, [s.kvHeads * head, s.hidden]),
      t(`${p}self_attn.o_proj.weight`, [s.hidden, s.heads * head]),
      t(`${p}post_attention_layernorm.weight`, [s.hidden], 'ones'),
      t(`${p}mlp.gate_proj.weight`, [s.intermediate, s.hidden]),
      t(`${p}mlp.up_proj.weight`, [s.intermediate, s.hidden]),
      t(`${p}mlp.down_proj.weight`, [s.hidden, s.intermediate]),
    );
  }
  out.push(t('model.norm.weight', [s.hidden], 'ones'), t('lm_head.weight', [s.vocab, s.hidden]));
  return out;
}

const bytesOf = (t: TensorToWrite): number => t.shape.reduce((a, b) => a * b, 1) * (t.dtype === 'F32' ? 4 : 2);

/** Writes config.json, the weights (sharded above shardBytes) and two token-id files into `dir`. */
export async function writeSyntheticLlama(dir: string, s: LlamaShape, opts: { dtype?: 'BF16' | 'F32'; shardBytes?: number; tokens?: number; onTensor?: (name: string) => void } = {}): Promise<{ bytes: number; files: string[] }> {
  const dtype = opts.dtype ?? 'BF16';
  const shardBytes = opts.shardBytes ?? 5e9;
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ ...configFor(s), torch_dtype: dtype === 'F32' ? 'float32' : 'bfloat16' }, null, 2) + '\n');
  const tensors = tensorsFor(s, dtype).map((t) => ({ ...t, data: async () => (opts.onTensor?.(t.name), (t.data as () => ArrayBufferView)()) }));
  const shards: TensorToWrite[][] = [[]];
  let size = 0;
  for (const t of tensors) {
    if (size > 0 && size + bytesOf(t) > shardBytes) {
      shards.push([]);
      size = 0;
    }
    shards[shards.length - 1]!.push(t);
    size += bytesOf(t);
  }
  const total = tensors.reduce((n, t) => n + bytesOf(t), 0);
  const files: string[] = [];
  if (shards.length === 1) {
    files.push('model.safetensors');
    await writeSafetensors(path.join(dir, 'model.safetensors'), shards[0]!, { format: 'pt' });
  } else {
    const n = String(shards.length).padStart(5, '0');
    const weightMap: Record<string, string> = {};
    for (const [i, sh] of shards.entries()) {
      const name = `model-${String(i + 1).padStart(5, '0')}-of-${n}.safetensors`;
      files.push(name);
      await writeSafetensors(path.join(dir, name), sh, { format: 'pt' });
      for (const t of sh) weightMap[t.name] = name;
    }
    fs.writeFileSync(path.join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: { total_size: total }, weight_map: weightMap }, null, 2) + '\n');
  }
  const tokens = opts.tokens ?? 16384;
  const next = rng(7);
  for (const split of ['calib', 'valid']) {
    const lines: string[] = [];
    for (let done = 0; done < tokens; done += 256) {
      lines.push(JSON.stringify({ input_ids: Array.from({ length: Math.min(256, tokens - done) }, () => 3 + (next() % (s.vocab - 3))) }));
    }
    fs.writeFileSync(path.join(dir, `${split}.jsonl`), lines.join('\n') + '\n');
  }
  return { bytes: total, files };
}

/** The Llama-2-7B-width checkpoint of `layers` layers (BF16) under root, written when absent (the large-model benchmarks). */
export async function ensureSyntheticLlama(root: string, layers: number): Promise<{ dir: string; bytes: number }> {
  const dir = path.join(root, `llama-7b-width-${layers}l-bf16`);
  const shape = { ...PRESETS['7b']!, layers };
  if (!fs.existsSync(path.join(dir, 'config.json'))) {
    console.error(`writing ${dir} …`);
    await writeSyntheticLlama(dir, shape, { dtype: 'BF16', tokens: 16384 });
  }
  const bytes = fs.readdirSync(dir).filter((f) => f.endsWith('.safetensors')).reduce((n, f) => n + fs.statSync(path.join(dir, f)).size, 0);
  return { dir, bytes };
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const flag = (name: string): string | undefined => {
    const i = args.indexOf(`--${name}`);
    return i >= 0 ? args[i + 1] : undefined;
  };
  const dir = args.find((a, i) => !a.startsWith('--') && !(i > 0 && args[i - 1]!.startsWith('--')));
  if (!dir) {
    console.error('usage: benchmarks/synthetic/llama.ts <out-dir> [--preset 7b-8|7b] [--layers N] [--dtype BF16|F32] [--shard-gb 5] [--tokens N]');
    process.exit(2);
  }
  const preset = flag('preset') ?? '7b-8';
  const base = PRESETS[preset];
  if (!base) throw new Error(`unknown preset ${preset} (${Object.keys(PRESETS).join(', ')})`);
  const shape = { ...base, ...(flag('layers') ? { layers: Number(flag('layers')) } : {}) };
  const dtype = (flag('dtype') ?? 'BF16') as 'BF16' | 'F32';
  const t0 = performance.now();
  let n = 0;
  const count = 3 + 9 * shape.layers;
  const r = await writeSyntheticLlama(dir, shape, {
    dtype,
    shardBytes: Number(flag('shard-gb') ?? 5) * 1e9,
    tokens: Number(flag('tokens') ?? 16384),
    onTensor: () => process.stderr.write(`\rwriting tensor ${++n}/${count}`),
  });
  process.stderr.write('\n');
  console.log(`${dir}: ${JSON.stringify(shape)} ${dtype}, ${(r.bytes / 1e9).toFixed(2)} GB in ${r.files.length} file(s), ${((performance.now() - t0) / 1000).toFixed(1)} s`);
}

if (require.main === module) {
  main().catch((e) => {
    console.error(e);
    process.exit(1);
  });
}
