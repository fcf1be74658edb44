/**
 * The fuzz harness's inputs: a tiny valid LLaMA checkpoint folder (single-file and sharded) with the bundled
 * model's tokenizer and a little data, and `buildCase(seed, index, dir)` which writes one mutated copy of it,
 * the same bytes for the same (seed, index) on every machine. Mutations: safetensors bytes and header JSON,
 * shard indexes, config.json, tokenizer.json, data files, special files (FIFOs, folders) in place of files,
 * non-finite weights, prototype-named tensors.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { writeSafetensors, type TensorToWrite } from '../../lib/safetensors';

export type Rng = () => number;

/** xorshift32 in [0, 1), seeded. */
export function rng(seed: number): Rng {
  let s = seed >>> 0 || 0x9e3779b9;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s / 4294967296;
  };
}

const int = (r: Rng, n: number) => Math.floor(r() * n);
const pick = <T>(r: Rng, xs: readonly T[]): T => xs[int(r, xs.length)]!;

const BUNDLED = path.join(__dirname, '..', '..', 'models', 'llama-stories260k');
const SIDE_FILES = ['tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json'];

export interface BaseFiles {
  /** Relative path → bytes of the valid single-file folder and of the sharded one. */
  single: Map<string, Buffer>;
  sharded: Map<string, Buffer>;
  text: Buffer;
  ids: Buffer;
}

/** The valid tiny model: 3 layers, d 16, d_ff 24, the bundled tokenizer's 512 tokens. */
export async function makeBase(tmp: string): Promise<BaseFiles> {
  const r = rng(1234);
  const L = 3;
  const d = 16;
  const F = 24;
  const V = 512;
  const H = 4;
  const KV = 2;
  const hd = d / H;
  const t = (shape: number[], scale = 0.3, offset = 0) =>
    Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => offset + (r() * 2 - 1) * scale);
  const tensors: TensorToWrite[] = [];
  const put = (name: string, shape: number[], data = t(shape)) => tensors.push({ name, dtype: 'F32', shape, data });
  put('model.embed_tokens.weight', [V, d]);
  for (let l = 0; l < L; l++) {
    const p = `model.layers.${l}`;
    put(`${p}.input_layernorm.weight`, [d], t([d], 0.1, 1));
    put(`${p}.post_attention_layernorm.weight`, [d], t([d], 0.1, 1));
    put(`${p}.self_attn.q_proj.weight`, [H * hd, d]);
    put(`${p}.self_attn.k_proj.weight`, [KV * hd, d]);
    put(`${p}.self_attn.v_proj.weight`, [KV * hd, d]);
    put(`${p}.self_attn.o_proj.weight`, [d, H * hd]);
    put(`${p}.mlp.gate_proj.weight`, [F, d]);
    put(`${p}.mlp.up_proj.weight`, [F, d]);
    put(`${p}.mlp.down_proj.weight`, [d, F]);
  }
  put('model.norm.weight', [d], t([d], 0.1, 1));
  const config = {
    architectures: ['LlamaForCausalLM'],
    model_type: 'llama',
    hidden_size: d,
    intermediate_size: F,
    num_hidden_layers: L,
    num_attention_heads: H,
    num_key_value_heads: KV,
    vocab_size: V,
    max_position_embeddings: 128,
    rms_norm_eps: 1e-5,
    rope_theta: 10000,
    hidden_act: 'silu',
    tie_word_embeddings: true,
    attention_bias: false,
    mlp_bias: false,
  };
  const single = new Map<string, Buffer>();
  const sharded = new Map<string, Buffer>();
  const cfg = Buffer.from(JSON.stringify(config, null, 1));
  const side = SIDE_FILES.map((n) => [n, fs.readFileSync(path.join(BUNDLED, n))] as const);
  const file = path.join(tmp, 'base.safetensors');
  await writeSafetensors(file, tensors);
  single.set('model.safetensors', fs.readFileSync(file));
  const half = Math.ceil(tensors.length / 2);
  const shards = [tensors.slice(0, half), tensors.slice(half)];
  const weightMap: Record<string, string> = {};
  for (const [i, part] of shards.entries()) {
    const name = `model-0000${i + 1}-of-00002.safetensors`;
    await writeSafetensors(file, part);
    sharded.set(name, fs.readFileSync(file));
    for (const x of part) weightMap[x.name] = name;
  }
  sharded.set('model.safetensors.index.json', Buffer.from(JSON.stringify({ metadata: { total_size: 0 }, weight_map: weightMap }, null, 1)));
  for (const m of [single, sharded]) {
    m.set('config.json', cfg);
    for (const [n, b] of side) m.set(n, b);
  }
  const text = fs.readFileSync(path.join(BUNDLED, 'calibration.txt')).subarray(0, 3000);
  const rows = Array.from({ length: 6 }, (_, i) => JSON.stringify({ input_ids: Array.from({ length: 40 }, (_, j) => (i * 37 + j * 11) % V) }));
  return { single, sharded, text, ids: Buffer.from(rows.join('\n') + '\n') };
}

// ------------------------------------------------------------------------------------------- value mutators

const WEIRD_NUMBERS = [0, -1, 1, 2, 3, 7, 1e9, 2 ** 31, 2 ** 32, 2 ** 53 - 1, 1e6, -0, 0.5, 1e308, 65536, 4096];
const PROTO_NAMES = ['constructor', 'toString', '__proto__', 'hasOwnProperty', 'valueOf', '__metadata__'];

function deepNest(depth: number, arr: boolean): string {
  return (arr ? '['.repeat(depth) + ']'.repeat(depth) : '{"a":'.repeat(depth) + '1' + '}'.repeat(depth));
}

function weirdValue(r: Rng): unknown {
  switch (int(r, 9)) {
    case 0:
      return pick(r, WEIRD_NUMBERS);
    case 1:
      return null;
    case 2:
      return pick(r, ['', 'x', 'constructor', '__proto__', 'toString', 'NaN', '1e9', 'silu', 'gelu']);
    case 3:
      return [pick(r, WEIRD_NUMBERS)];
    case 4:
      return { a: 1 };
    case 5:
      return true;
    case 6:
      return -pick(r, WEIRD_NUMBERS);
    case 7:
      return pick(r, WEIRD_NUMBERS) + 0.5;
    default:
      return { __deep__: 1 };
  }
}

/** JSON text with `{"__deep__":1}` replaced by deep nesting (JSON.stringify cannot build it without overflowing). */
function stringifyWithDeep(v: unknown, r: Rng): string {
  return JSON.stringify(v).replace(/\{"__deep__":1\}/g, () => deepNest(5000 + int(r, 100000), r() < 0.5));
}

function flipBytes(b: Buffer, r: Rng, count: number, from = 0): Buffer {
  const out = Buffer.from(b);
  for (let i = 0; i < count && out.length > from; i++) {
    const at = from + int(r, out.length - from);
    switch (int(r, 4)) {
      case 0:
        out[at] = int(r, 256);
        break;
      case 1:
        out[at] = out[at]! ^ (1 << int(r, 8));
        break;
      case 2:
        out[at] = pick(r, [0, 0xff, 0x7f, 0x80, 0x22, 0x5c, 0x7b, 0x7d, 0x5b, 0x5d, 0x2c, 0x3a]);
        break;
      default:
        out.fill(int(r, 256), at, Math.min(out.length, at + 1 + int(r, 16)));
    }
  }
  return out;
}

function resize(b: Buffer, r: Rng): Buffer {
  if (r() < 0.6) return b.subarray(0, int(r, b.length + 1));
  return Buffer.concat([b, Buffer.alloc(1 + int(r, 64), int(r, 256))]);
}

/** A safetensors file with its header JSON rewritten by `f` (the length prefix fixed up unless told not to). */
function withHeader(file: Buffer, r: Rng, f: (h: Record<string, unknown>) => unknown): Buffer {
  const n = Number(file.readBigUInt64LE(0));
  const header = JSON.parse(file.subarray(8, 8 + n).toString('utf8')) as Record<string, unknown>;
  const text = stringifyWithDeep(f(header) ?? header, r);
  const json = Buffer.from(text);
  const prefix = Buffer.alloc(8);
  const len = r() < 0.9 ? json.length : pick(r, [0, json.length + 1, json.length - 1, 2 ** 32, 100_000_001]);
  prefix.writeBigUInt64LE(BigInt(Math.max(0, len)));
  return Buffer.concat([prefix, json, file.subarray(8 + n)]);
}

function mutateHeader(h: Record<string, unknown>, r: Rng): unknown {
  const names = Object.keys(h).filter((k) => k !== '__metadata__');
  const name = pick(r, names);
  const e = h[name] as { dtype: unknown; shape: unknown; data_offsets: unknown };
  switch (int(r, 12)) {
    case 0:
      e.dtype = pick(r, ['F16', 'BF16', 'F64', 'I64', 'I32', 'U8', 'BOOL', 'F8_E4M3', 'X', 7, null]);
      break;
    case 1:
      e.shape = pick(r, [[], [0], [1e9, 1e9], [-1], [1.5], ['a'], [2 ** 53], null, [{ __deep__: 1 }], Array(100).fill(2)]);
      break;
    case 2: {
      const o = e.data_offsets as number[];
      e.data_offsets = pick(r, [[o[1], o[0]], [0, 0], [o[0], (o[1] ?? 0) + 4], [-4, o[1]], [o[0]], null, [o[0], 2 ** 60], ['0', '4']]);
      break;
    }
    case 3:
      delete h[name];
      break;
    case 4: {
      // the same entry under a prototype name (valid bytes, odd name), or a second name for the same bytes
      const proto = pick(r, PROTO_NAMES);
      const out: Record<string, unknown> = {};
      for (const [k, v] of Object.entries(h)) Object.defineProperty(out, k === name ? proto : k, { value: v, enumerable: true, writable: true, configurable: true });
      return out;
    }
    case 5:
      h.__metadata__ = pick(r, [null, 7, [], { format: 'pt', ffmerge_ties: '{"model.norm.weight":"constructor"}' }, { ffmerge_ties: '{"constructor":"model.norm.weight"}' }, { ffmerge_ties: '[' }, { x: { __deep__: 1 } }, { __deep__: 1 }]);
      break;
    case 6:
      h[name] = weirdValue(r);
      break;
    case 7:
      return pick(r, [null, [], 5, '"x"', { __deep__: 1 }]);
    case 8:
      (e as Record<string, unknown>).extra = { __deep__: 1 };
      break;
    case 9: {
      const other = h[pick(r, names)] as { shape: unknown };
      const s = e.shape;
      e.shape = other.shape;
      other.shape = s;
      break;
    }
    case 10:
      h[`model.layers.${int(r, 5)}.mlp.up_proj.weight`] = { dtype: 'F32', shape: [1], data_offsets: [0, 4] };
      break;
    default:
      e.shape = Array.isArray(e.shape) ? [...(e.shape as number[])].reverse() : e.shape;
  }
  return h;
}

function mutateConfig(text: Buffer, r: Rng): Buffer {
  const c = JSON.parse(text.toString('utf8')) as Record<string, unknown>;
  const keys = Object.keys(c);
  switch (int(r, 8)) {
    case 0:
    case 1:
    case 2:
      c[pick(r, keys)] = weirdValue(r);
      break;
    case 3:
      delete c[pick(r, keys)];
      break;
    case 4:
      c.model_type = pick(r, ['constructor', 'toString', '__proto__', 'gpt2', 'bert', 'vit', 'marian', 'llama2', 'qwen2', 'mistral', 7, null]);
      break;
    case 5:
      c[pick(r, ['num_hidden_layers', 'n_layer'])] = pick(r, [1e9, 2 ** 31, 2 ** 53 - 1, 1e6, 0, 4, 2, 100]);
      break;
    case 6:
      return Buffer.from(pick(r, ['null', '[]', '7', '"x"', '', '{', 'true', deepNest(100000, true), deepNest(50000, false)]));
    default:
      return flipBytes(text, r, 1 + int(r, 6));
  }
  return Buffer.from(stringifyWithDeep(c, r));
}

function mutateJsonText(b: Buffer, r: Rng): Buffer {
  if (r() < 0.5) return flipBytes(b, r, 1 + int(r, 8));
  let v: unknown;
  try {
    v = JSON.parse(b.toString('utf8'));
  } catch {
    return resize(b, r);
  }
  const o = v as Record<string, unknown>;
  const model = o.model as Record<string, unknown> | undefined;
  switch (int(r, 6)) {
    case 0:
      return Buffer.from(pick(r, ['null', '[]', '{}', '7', deepNest(80000, true)]));
    case 1:
      if (model) model.type = pick(r, ['BPE', 'WordPiece', 'Unigram', 'WordLevel', 'X', null]);
      break;
    case 2:
      if (model && typeof model.vocab === 'object' && model.vocab) {
        const vocab = model.vocab as Record<string, unknown>;
        const k = pick(r, Object.keys(vocab));
        vocab[k] = weirdValue(r);
      }
      break;
    case 3:
      o[pick(r, Object.keys(o))] = weirdValue(r);
      break;
    case 4:
      return resize(b, r);
    default:
      if (model) model.merges = pick(r, [null, [], ['a'], [7], { __deep__: 1 }]);
  }
  return Buffer.from(stringifyWithDeep(o, r));
}

function mutateIndex(b: Buffer, r: Rng): Buffer {
  const o = JSON.parse(b.toString('utf8')) as { weight_map: Record<string, unknown> };
  const names = Object.keys(o.weight_map);
  const name = pick(r, names);
  switch (int(r, 7)) {
    case 0:
      o.weight_map[name] = pick(r, ['../config.json', '/etc/passwd', 'missing.safetensors', '', 7, null, 'config.json', '.']);
      break;
    case 1:
      delete o.weight_map[name];
      break;
    case 2:
      o.weight_map[pick(r, PROTO_NAMES)] = o.weight_map[name];
      break;
    case 3:
      o.weight_map = pick(r, [null, [], 'x', { __deep__: 1 }]) as Record<string, unknown>;
      break;
    case 4:
      o.weight_map[name] = o.weight_map[pick(r, names)];
      break;
    case 5:
      return Buffer.from(pick(r, ['null', '[]', '{', deepNest(60000, false)]));
    default:
      return flipBytes(b, r, 1 + int(r, 5));
  }
  return Buffer.from(stringifyWithDeep(o, r));
}

/** Writes non-finite values over some floats of one tensor (the data block of a valid file). */
function nonFinite(file: Buffer, r: Rng): Buffer {
  const n = Number(file.readBigUInt64LE(0));
  const out = Buffer.from(file);
  const start = 8 + n;
  const floats = (out.length - start) >> 2;
  for (let i = 0, k = 1 + int(r, 40); i < k; i++) out.writeFloatLE(pick(r, [NaN, Infinity, -Infinity, 3e38]), start + 4 * int(r, floats));
  return out;
}

export interface FuzzCase {
  /** What was mutated, for the report. */
  kind: string;
  model: string;
  data: string;
}

/** Writes case `index` of `seed` under `dir` (created empty by the caller). */
export function buildCase(base: BaseFiles, seed: number, index: number, dir: string): FuzzCase {
  const r = rng((seed * 0x9e3779b1) ^ (index * 0x85ebca6b) ^ 0x27d4eb2f);
  const sharded = r() < 0.3;
  const files = new Map(sharded ? base.sharded : base.single);
  const model = path.join(dir, 'model');
  fs.mkdirSync(model);
  const tensorFiles = [...files.keys()].filter((k) => k.endsWith('.safetensors'));
  const useIds = r() < 0.3;
  let data = useIds ? base.ids : base.text;
  const dataName = useIds ? 'data.jsonl' : 'data.txt';
  let special: { file: string; what: 'fifo' | 'dir' | 'devnull' } | undefined;
  let kind: string;
  const mutations = 1 + (r() < 0.2 ? 1 : 0);
  const kinds: string[] = [];
  for (let m = 0; m < mutations; m++) {
    const roll = int(r, 100);
    const tf = pick(r, tensorFiles);
    try {
      mutateOnce(roll, tf);
    } catch {
      // a second mutation on bytes the first one left unparseable: flip bytes instead
      files.set(tf, flipBytes(files.get(tf)!, r, 1 + int(r, 4)));
      kinds.push('safetensors-bytes');
    }
  }
  function mutateOnce(roll: number, tf: string): void {
    if (roll < 18) {
      files.set(tf, flipBytes(files.get(tf)!, r, 1 + int(r, 12), r() < 0.7 ? 8 : 0));
      kinds.push('safetensors-bytes');
    } else if (roll < 40) {
      files.set(tf, withHeader(files.get(tf)!, r, (h) => mutateHeader(h, r)));
      kinds.push('safetensors-header');
    } else if (roll < 45) {
      files.set(tf, resize(files.get(tf)!, r));
      kinds.push('safetensors-size');
    } else if (roll < 52) {
      if (sharded) {
        files.set('model.safetensors.index.json', mutateIndex(files.get('model.safetensors.index.json')!, r));
        kinds.push('shard-index');
      } else {
        files.set(tf, nonFinite(files.get(tf)!, r));
        kinds.push('non-finite');
      }
    } else if (roll < 72) {
      files.set('config.json', mutateConfig(files.get('config.json')!, r));
      kinds.push('config');
    } else if (roll < 84) {
      files.set('tokenizer.json', mutateJsonText(files.get('tokenizer.json')!, r));
      kinds.push('tokenizer');
    } else if (roll < 88) {
      files.set('tokenizer_config.json', mutateJsonText(files.get('tokenizer_config.json')!, r));
      kinds.push('tokenizer-config');
    } else if (roll < 93) {
      data = r() < 0.5 ? flipBytes(data, r, 1 + int(r, 10)) : resize(data, r);
      kinds.push('data');
    } else if (roll < 97) {
      special = { file: pick(r, ['config.json', tf, 'tokenizer.json', '@data']), what: pick(r, ['fifo', 'dir', 'devnull'] as const) };
      kinds.push(`special-${special.what}`);
    } else {
      files.set(tf, nonFinite(files.get(tf)!, r));
      kinds.push('non-finite');
    }
  }
  kind = kinds.join('+');
  for (const [name, bytes] of files) fs.writeFileSync(path.join(model, name), bytes);
  const dataFile = path.join(dir, dataName);
  fs.writeFileSync(dataFile, data);
  if (special) {
    const target = special.file === '@data' ? dataFile : path.join(model, special.file);
    fs.rmSync(target, { force: true });
    if (special.what === 'fifo') execFileSync('mkfifo', [target]);
    else if (special.what === 'dir') fs.mkdirSync(target);
    else fs.symlinkSync('/dev/null', target);
  }
  return { kind, model, data: dataFile };
}
