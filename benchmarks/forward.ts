/**
 * Forward-pass throughput: tokens/s and achieved GFLOP/s for gpt2-sotu and a GPT-2-small-shaped model
 * (12 layers, d 768, 12 heads, FF 3072, vocab 50257, random weights made here), next to the peak of the
 * matrix kernel (ffm::sgemm) measured in the same run, on the same pool.
 *
 *   npx ts-node --transpile-only benchmarks/forward.ts [--batch 8] [--seq 256] [--reps 3] [--models sotu,small]
 *
 * FLOPs counted: every matmul the pass executes (QKV, attention scores and mix over the full T×T
 * square, output projection, FF, LM head for the NLL), 2 per multiply-add.
 */
import * as os from 'node:os';
import { buildModel, loadModel } from '../lib/model/load';
import type { Model } from '../lib/model/model';
import { NO_ROPE_SCALING, TOKEN_LM_IO, fullAttention, type ModelSpec } from '../lib/model/spec';
import { loadAddon } from '../lib/native/loader';
import { modelAddon } from '../lib/native/model';
import * as fs from 'node:fs';
import { sharedPath } from '../test/helpers/shared';

function arg(name: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1]! : dflt;
}
const batch = Number(arg('batch', '8'));
const seq = Number(arg('seq', '256'));
const reps = Number(arg('reps', '3'));
const models = arg('models', 'sotu,small').split(',');

function flopsPerToken(s: ModelSpec, T: number): number {
  const qw = s.nHeads * s.headDim;
  const W = qw + 2 * s.nKvHeads * s.headDim;
  // causal attention: a token attends to itself and those before it, (T + 1) / 2 keys on average, and the
  // kernel skips the masked ones (native/core/nn/attention.cc); T keys overstated the rate (tester EQ)
  const keys = (T + 1) / 2;
  const perLayer = 2 * s.dModel * W + 2 * 2 * keys * qw + 2 * qw * s.dModel + 2 * s.dModel * s.dFF * (s.gatedFF ? 3 : 2);
  return s.layers * perLayer + 2 * s.dModel * s.vocab;
}

function gpt2Small(): Model {
  const spec: ModelSpec = {
    ...TOKEN_LM_IO,
    family: 'gpt2', layers: 12, dModel: 768, nHeads: 12, nKvHeads: 12, headDim: 64, dFF: 3072, vocab: 50257, maxPositions: 1024,
    maxPositionsField: 'n_positions', norm: 'layernorm', normPlacement: 'pre', normEps: 1e-5, finalNorm: true, positions: 'learned',
    ropeTheta: 0, ropeDim: 0, ropeScaling: NO_ROPE_SCALING, activation: 'gelu_new', gatedFF: false, causal: true, slidingWindow: fullAttention(12), embedScale: 1,
    tiedEmbeddings: true,
  };
  let s = 12345;
  const rand = (n: number, scale: number, offset = 0) => {
    const a = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      s ^= s << 13; s ^= s >>> 17; s ^= s << 5;
      a[i] = offset + ((s >>> 0) / 4294967296 - 0.5) * scale;
    }
    return a;
  };
  const d = 768, F = 3072;
  const t: Record<string, Float32Array> = { tok_emb: rand(50257 * d, 0.1), pos_emb: rand(1024 * d, 0.02), final_norm_w: rand(d, 0.1, 1), final_norm_b: rand(d, 0.1) };
  for (let l = 0; l < 12; l++) {
    const p = `layers.${l}.`;
    Object.assign(t, {
      [`${p}norm1_w`]: rand(d, 0.1, 1), [`${p}norm1_b`]: rand(d, 0.1), [`${p}qkv_w`]: rand(3 * d * d, 0.07), [`${p}qkv_b`]: rand(3 * d, 0.02),
      [`${p}o_w`]: rand(d * d, 0.07), [`${p}o_b`]: rand(d, 0.02), [`${p}norm2_w`]: rand(d, 0.1, 1), [`${p}norm2_b`]: rand(d, 0.1),
      [`${p}ff.w_in`]: rand(F * d, 0.07), [`${p}ff.b_in`]: rand(F, 0.02), [`${p}ff.w_out`]: rand(d * F, 0.035), [`${p}ff.b_out`]: rand(d, 0.02),
    });
  }
  return buildModel({}, spec, t);
}

async function timeForward(m: Model): Promise<number> {
  const ids = Int32Array.from({ length: batch * seq }, (_, i) => (i * 7919) % m.spec.vocab);
  await m.forward({ ids, batch, seq }, { output: 'nll' }); // warm-up
  let best = Infinity;
  for (let r = 0; r < reps; r++) {
    const t0 = process.hrtime.bigint();
    await m.forward({ ids, batch, seq }, { output: 'nll' });
    best = Math.min(best, Number(process.hrtime.bigint() - t0) / 1e9);
  }
  return best;
}

async function main(): Promise<void> {
  const { info } = loadAddon();
  console.log(`ffmerge forward benchmark — sgemm kernel "${info.gemmKernel}", ${info.threads} threads, batch ${batch} × ${seq} tokens, best of ${reps}`);
  // the machine and the hour, as the other benchmarks record them (tester EQ)
  console.log(`machine: ${os.cpus()[0]?.model ?? '?'}, ${os.cpus().length} logical CPUs, load ${os.loadavg().map((v) => v.toFixed(1)).join(' ')}, ${new Date().toISOString()}`);
  // The kernel's peak on the shape that dominates GPT-2-small's pass (rows × FF × d), both B layouts.
  const M = batch * seq;
  const peaks = [false, true].map((transB) => {
    const s = modelAddon().benchSgemmSeconds(M, 3072, 768, transB, Math.max(1, reps));
    const g = (2 * M * 3072 * 768) / s / 1e9;
    console.log(`  sgemm ${M}×3072×768 ${transB ? 'B transposed (Linear weights)' : 'B plain'}: ${g.toFixed(1)} GFLOP/s`);
    return g;
  });
  const peak = Math.max(...peaks);
  console.log(`  kernel peak: ${peak.toFixed(1)} GFLOP/s\n`);
  console.log('| model | tokens/s | GFLOP/s | % of sgemm peak |');
  console.log('|---|---|---|---|');
  for (const name of models) {
    if (name === 'sotu' && !fs.existsSync(sharedPath('fixtures', 'gpt2-sotu', 'config.json'))) {
      console.log(`| gpt2-sotu | skipped: ${sharedPath('fixtures', 'gpt2-sotu')} not found (needs ../shared) | | |`);
      continue;
    }
    const m = name === 'sotu' ? await loadModel(sharedPath('fixtures', 'gpt2-sotu')) : gpt2Small();
    const label = name === 'sotu' ? 'gpt2-sotu (2.9 M)' : 'GPT-2-small shape (124 M, random)';
    const s = await timeForward(m);
    const gflops = (flopsPerToken(m.spec, seq) * batch * seq) / s / 1e9;
    console.log(`| ${label} | ${((batch * seq) / s).toFixed(0)} | ${gflops.toFixed(1)} | ${((100 * gflops) / peak).toFixed(0)}% |`);
    m.dispose();
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
