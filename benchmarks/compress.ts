/**
 * Wall time per phase of compress() and the cost of the window search relative to full validation passes.
 *
 *   npx ts-node --transpile-only benchmarks/compress.ts [gpt2|small|both] [--cal N] [--val N] [--search N]
 *
 * gpt2:  gpt2-sotu (../shared), k = 4, auto window, calibration = first 40×256 tokens of valid.txt,
 *        validation = the following tokens of valid.txt.
 * small: a GPT-2-small-shaped random model (12 layers, d 768, 12 heads, FF 3072, vocab 50257) written to a
 *        temp checkpoint, 10k calibration tokens and auto window over 10k validation tokens (random ids).
 * Peer: one full validation pass of the base model (embeddings → NLL) on the same tokens, measured in the
 * same run; the search's cost is printed in units of that pass (prefix reuse should keep it below 6 for the
 * 9 candidates of k = 4 on 12 layers).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { compress, type CompressResult } from '../lib/pipeline/compress';
import { writeSafetensors, type TensorToWrite } from '../lib/safetensors';
import { loadModel } from '../lib/model/load';
import { makeBatches, takeTokens } from '../lib/pipeline/data';
import { nllOf } from '../lib/pipeline/prefix';
import { loadTokenizer } from '../lib/tokenizer';
import { loadSplitBlocks } from '../lib/data/blocks';

const args = process.argv.slice(2);
const which = args.find((a) => !a.startsWith('--') && !/^\d+$/.test(a)) ?? 'gpt2';
const flag = (name: string, dflt: number) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : dflt;
};
const SHARED = path.resolve(process.env.FFMERGE_SHARED ?? path.join(__dirname, '..', '..', 'shared'));

async function fullPassSeconds(dir: string, blocks: Int32Array[]): Promise<number> {
  const m = await loadModel(dir);
  const t0 = performance.now();
  await nllOf(m, makeBatches(blocks, 8));
  const s = (performance.now() - t0) / 1000;
  m.dispose();
  return s;
}

function print(name: string, r: CompressResult, pass: number): void {
  const total = Object.values(r.timings).reduce((a, b) => a + b, 0);
  console.log(`\n== ${name}: k=${r.k}, window ${r.windows[0]!.window}, ppl ${r.base.validation.toFixed(2)} → ${r.merged.validation.toFixed(2)}`);
  console.log(`tokens: calibration ${r.data.calibration}, validation ${r.data.validation}, search ${r.data.search} per candidate`);
  for (const [p, s] of Object.entries(r.timings)) console.log(`  ${p.padEnd(10)} ${s.toFixed(2)} s`);
  console.log(`  total      ${total.toFixed(2)} s`);
  const search = (r.timings.search ?? 0) + (r.timings.align ?? 0);
  console.log(`one full validation pass (peer, same tokens): ${pass.toFixed(2)} s`);
  console.log(`search of ${r.candidates.length} candidates = ${(search / pass).toFixed(2)} full validation passes (without prefix reuse: ${r.candidates.length} × (search/validation tokens) = ${((r.candidates.length * r.data.search) / r.data.validation).toFixed(2)})`);
}

async function gpt2(): Promise<void> {
  const dir = path.join(SHARED, 'fixtures', 'gpt2-sotu');
  const valid = path.join(SHARED, 'data', 'lm', 'valid.txt');
  const cal = flag('cal', 40 * 256);
  const val = flag('val', 10240);
  const r = await compress(dir, { k: 4, calibration: valid, calibrationTokens: cal, validationTokens: val, searchTokens: flag('search', val) });
  const tok = await loadTokenizer(dir);
  const blocks = (await loadSplitBlocks(tok, valid, 256)).blocks;
  const valBlocks = takeTokens(blocks.slice(Math.ceil(cal / 256)), val);
  print('gpt2-sotu', r, await fullPassSeconds(dir, valBlocks));
}

async function small(): Promise<void> {
  const d = 768;
  const dFF = 3072;
  const L = 12;
  const vocab = 50257;
  const ctx = 1024;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ffmerge-bench-small-'));
  try {
    const config = { model_type: 'gpt2', architectures: ['GPT2LMHeadModel'], n_embd: d, n_head: 12, n_inner: dFF, n_layer: L, n_positions: ctx, vocab_size: vocab, activation_function: 'gelu_new', layer_norm_epsilon: 1e-5, tie_word_embeddings: true };
    fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(config));
    let seed = 1;
    const rand = (n: number, scale: number) => () => {
      const a = new Float32Array(n);
      for (let i = 0; i < n; i++) a[i] = (((seed = (seed * 1664525 + 1013904223) >>> 0) / 2 ** 32) - 0.5) * 2 * scale;
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
    const block = () => Int32Array.from({ length: 256 }, () => (seed = (seed * 1664525 + 1013904223) >>> 0) % vocab);
    const cal = Array.from({ length: Math.ceil(flag('cal', 10240) / 256) }, block);
    const val = Array.from({ length: Math.ceil(flag('val', 10240) / 256) }, block);
    const r = await compress(dir, { k: 4, calibration: cal, validation: val, validationTokens: 1e9, calibrationTokens: 1e9, searchTokens: flag('search', 1e9) });
    print('GPT-2-small-shaped random model', r, await fullPassSeconds(dir, val));
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

(async () => {
  console.log(`ffmerge compress benchmark, ${new Date().toISOString()}, ${os.cpus().length} CPUs (timings depend on machine load)`);
  if (which === 'gpt2' || which === 'both') await gpt2();
  if (which === 'small' || which === 'both') await small();
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
