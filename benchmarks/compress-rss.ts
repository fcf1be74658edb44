/**
 * Peak memory of `compress --k 4` on a GPT-2-small-shaped checkpoint with random weights (12 layers, d 768,
 * d_ff 3072, vocab 50257; the same generator as benchmarks/compress.ts small), per phase.
 *
 *   npx ts-node --transpile-only benchmarks/compress-rss.ts [--cal 10240] [--val 1024] [--search 256]
 *   FFMERGE_ROOT=/path/to/other/checkout npx ts-node --transpile-only benchmarks/compress-rss.ts   (before/after)
 *
 * Prints VmRSS sampled at every progress report and every 200 ms, the largest per phase, and the process's
 * VmHWM (/proc/self/status) at the end: the peak of the whole run, model generation included.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

const root = process.env.FFMERGE_ROOT ?? path.resolve(__dirname, '..');
/* eslint-disable @typescript-eslint/no-require-imports */
const { compress } = require(path.join(root, 'lib/pipeline/compress')) as typeof import('../lib/pipeline/compress');
const { writeSafetensors } = require(path.join(root, 'lib/safetensors')) as typeof import('../lib/safetensors');
/* eslint-enable @typescript-eslint/no-require-imports */
type TensorToWrite = Parameters<typeof writeSafetensors>[1][number];

const args = process.argv.slice(2);
const flag = (name: string, dflt: number) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : dflt;
};

function status(key: 'VmRSS' | 'VmHWM'): number {
  const m = new RegExp(`${key}:\\s+(\\d+) kB`).exec(fs.readFileSync('/proc/self/status', 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

async function main(): Promise<void> {
  const d = 768, dFF = 3072, L = 12, vocab = 50257, ctx = 1024;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ffmerge-bench-rss-'));
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
    const val = Array.from({ length: Math.ceil(flag('val', 1024) / 256) }, block);
    const afterSetup = status('VmHWM');
    const peak = new Map<string, number>();
    let phase = 'load';
    const sample = () => peak.set(phase, Math.max(peak.get(phase) ?? 0, status('VmRSS')));
    const timer = setInterval(sample, 200);
    const t0 = performance.now();
    const r = await compress(dir, {
      k: 4,
      calibration: cal,
      validation: val,
      validationTokens: 1e9,
      calibrationTokens: 1e9,
      searchTokens: flag('search', 256),
      onProgress: (p: { phase: string }) => {
        sample();
        phase = p.phase;
        sample();
      },
    });
    clearInterval(timer);
    console.log(`compress-rss (${root}): ${os.cpus().length} CPUs, k=${r.k}, window ${r.windows.map((w: { window: string }) => w.window).join(',')}, calibration ${r.data.calibration} tokens, ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    console.log(`peak VmRSS per phase (MB): ${[...peak].map(([p, v]) => `${p} ${v.toFixed(0)}`).join(', ')}`);
    console.log(`VmHWM: after generating the checkpoint ${afterSetup.toFixed(0)} MB, whole run ${status('VmHWM').toFixed(0)} MB`);
    console.log(`timings: ${Object.entries(r.timings).map(([p, s]) => `${p} ${(s as number).toFixed(1)} s`).join(', ')}`);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
