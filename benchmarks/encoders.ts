/**
 * Encoder / encoder–decoder throughput, with achieved GFLOP/s against the GEMM kernel's peak measured in the
 * same run:
 *   1. vit-fmnist: images/s of the native engine vs numpy (python3, float32, batched) and vs the pure-JS
 *      float64 reference (test/reference/encoder.ts);
 *   2. a ViT-B/16-shaped model with random weights (12 layers, d 768, FF 3072, 197 tokens): images/s;
 *   3. marian-multi30k-en-de: sentences/s of greedy translation (KV cache, batched).
 * Run: npx ts-node --transpile-only benchmarks/encoders.ts [--quick]
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { loadAddon } from '../lib/native/loader';
import { matmul } from '../lib/native/gemm';
import { buildModel, loadModel, readConfig } from '../lib/model/load';
import { architectureOf, stackOf } from '../lib/model/architectures';
import { SafetensorsReader } from '../lib/safetensors';
import { conformImages, imagesToTensor, loadIdxImages, loadPreprocessor } from '../lib/data/images';
import { vitForwardReference } from '../test/reference/encoder';
import { loadTokenizer } from '../lib/tokenizer';
import { readParallel } from '../lib/data/parallel';
import { loadGenerationConfig, translate } from '../lib/eval/translate';
import type { ModelSpec } from '../lib/model/spec';

const QUICK = process.argv.includes('--quick');
const SHARED = path.resolve(process.env.FFMERGE_SHARED ?? path.join(__dirname, '..', '..', 'shared'));

function now(): number {
  return Number(process.hrtime.bigint()) / 1e9;
}

/** Best of `reps` timings of fn (seconds). */
async function best(reps: number, fn: () => Promise<unknown> | unknown): Promise<number> {
  let b = Infinity;
  for (let i = 0; i < reps; i++) {
    const t0 = now();
    await fn();
    b = Math.min(b, now() - t0);
  }
  return b;
}

/** FLOPs of one image through a ViT (multiply-add = 2). */
function vitFlops(s: ModelSpec): number {
  const P = (s.imageH! / s.patch!) * (s.imageW! / s.patch!);
  const T = P + 1;
  const d = s.dModel;
  const perLayer = 2 * T * d * 3 * d + 2 * 2 * T * T * d + 2 * T * d * d + 2 * 2 * T * d * s.dFF;
  return 2 * P * s.channels! * s.patch! ** 2 * d + s.layers * perLayer + 2 * d * s.numLabels!;
}

async function gemmPeak(): Promise<number> {
  const n = QUICK ? 512 : 1024;
  const a = Float32Array.from({ length: n * n }, (_, i) => ((i * 7) % 13) / 13 - 0.5);
  const b = Float32Array.from({ length: n * n }, (_, i) => ((i * 5) % 11) / 11 - 0.5);
  await matmul(a, b, { m: n, n, k: n }); // warm
  const t = await best(5, () => matmul(a, b, { m: n, n, k: n }));
  return (2 * n * n * n) / t / 1e9;
}

function numpyVit(dir: string, images: number, batch: number): { imagesPerSec: number; top1: number } | string {
  const script = String.raw`
import json, struct, sys, time, gzip, numpy as np
d, n, bs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
raw = open(d + '/model.safetensors', 'rb').read()
hl = struct.unpack('<Q', raw[:8])[0]; hdr = json.loads(raw[8:8 + hl])
W = {k: np.frombuffer(raw[8 + hl + v['data_offsets'][0]: 8 + hl + v['data_offsets'][1]], dtype=np.float32).reshape(v['shape'])
     for k, v in hdr.items() if k != '__metadata__'}
cfg = json.load(open(d + '/config.json'))
imgs = np.frombuffer(gzip.open(sys.argv[4]).read()[16:], dtype=np.uint8).reshape(-1, 1, 28, 28)[:n]
labels = np.frombuffer(gzip.open(sys.argv[5]).read()[8:], dtype=np.uint8)[:n]
from scipy.special import erf
def ln(x, w, b, eps=1e-12):
    m = x.mean(-1, keepdims=True); v = ((x - m) ** 2).mean(-1, keepdims=True)
    return (x - m) / np.sqrt(v + eps) * w + b
def fwd(px):
    B = px.shape[0]; p = cfg['patch_size']; g = 28 // p; dm = cfg['hidden_size']; H = cfg['num_attention_heads']; hd = dm // H
    cols = px.reshape(B, 1, g, p, g, p).transpose(0, 2, 4, 1, 3, 5).reshape(B, g * g, p * p)
    pw = W['vit.embeddings.patch_embeddings.projection.weight'].reshape(dm, -1)
    x = cols @ pw.T + W['vit.embeddings.patch_embeddings.projection.bias']
    x = np.concatenate([np.broadcast_to(W['vit.embeddings.cls_token'], (B, 1, dm)), x], 1) + W['vit.embeddings.position_embeddings']
    T = x.shape[1]
    for l in range(cfg['num_hidden_layers']):
        q = 'vit.encoder.layer.%d.' % l; a = q + 'attention.attention.'
        h = ln(x, W[q + 'layernorm_before.weight'], W[q + 'layernorm_before.bias'])
        Q = (h @ W[a + 'query.weight'].T + W[a + 'query.bias']).reshape(B, T, H, hd).transpose(0, 2, 1, 3)
        K = (h @ W[a + 'key.weight'].T + W[a + 'key.bias']).reshape(B, T, H, hd).transpose(0, 2, 1, 3)
        V = (h @ W[a + 'value.weight'].T + W[a + 'value.bias']).reshape(B, T, H, hd).transpose(0, 2, 1, 3)
        s = Q @ K.transpose(0, 1, 3, 2) / np.sqrt(hd); s = np.exp(s - s.max(-1, keepdims=True)); s /= s.sum(-1, keepdims=True)
        o = (s @ V).transpose(0, 2, 1, 3).reshape(B, T, dm)
        x = x + o @ W[q + 'attention.output.dense.weight'].T + W[q + 'attention.output.dense.bias']
        h = ln(x, W[q + 'layernorm_after.weight'], W[q + 'layernorm_after.bias'])
        u = h @ W[q + 'intermediate.dense.weight'].T + W[q + 'intermediate.dense.bias']
        u = 0.5 * u * (1 + erf(u / np.sqrt(2)))
        x = x + u @ W[q + 'output.dense.weight'].T + W[q + 'output.dense.bias']
    h = ln(x[:, 0], W['vit.layernorm.weight'], W['vit.layernorm.bias'])
    return h @ W['classifier.weight'].T + W['classifier.bias']
px = ((imgs.astype(np.float32) / 255) - 0.5) / 0.5
fwd(px[:bs])
best = 1e9
for rep in range(2):
    t0 = time.perf_counter(); preds = np.concatenate([fwd(px[i:i + bs]).argmax(-1) for i in range(0, n, bs)]); best = min(best, time.perf_counter() - t0)
print(json.dumps({'imagesPerSec': n / best, 'top1': int((preds == labels).sum())}))
`;
  const r = spawnSync(
    'python3',
    ['-c', script, dir, String(images), String(batch), path.join(SHARED, 'data/fmnist/t10k-images-idx3-ubyte.gz'), path.join(SHARED, 'data/fmnist/t10k-labels-idx1-ubyte.gz')],
    { encoding: 'utf8', env: { ...process.env, OMP_NUM_THREADS: String(loadAddon().info.threads), OPENBLAS_NUM_THREADS: String(loadAddon().info.threads) } },
  );
  if (r.status !== 0) return `numpy peer failed: ${(r.stderr || r.error?.message || '').split('\n').slice(-3).join(' ')}`;
  return JSON.parse(r.stdout.trim()) as { imagesPerSec: number; top1: number };
}

function randomVitB16(): { config: Record<string, unknown>; spec: ModelSpec; tensors: Record<string, Float32Array> } {
  const config: Record<string, unknown> = {
    model_type: 'vit',
    hidden_size: 768,
    num_hidden_layers: 12,
    num_attention_heads: 12,
    intermediate_size: 3072,
    image_size: 224,
    patch_size: 16,
    num_channels: 3,
    hidden_act: 'gelu',
    num_labels: 1000,
  };
  const arch = architectureOf(config);
  const spec = stackOf(arch, arch.mainStack).spec(config);
  let seed = 1;
  const rand = (n: number, scale = 0.02, offset = 0) => {
    const a = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
      a[i] = offset + scale * (seed / 2 ** 32 - 0.5);
    }
    return a;
  };
  const d = spec.dModel;
  const t: Record<string, Float32Array> = {
    patch_w: rand(d * 3 * 16 * 16),
    patch_b: rand(d),
    cls_token: rand(d),
    pos_emb: rand(197 * d),
    final_norm_w: rand(d, 0.1, 1),
    final_norm_b: rand(d),
    classifier_w: rand(1000 * d),
    classifier_b: rand(1000),
  };
  for (let l = 0; l < spec.layers; l++) {
    const p = `layers.${l}.`;
    Object.assign(t, {
      [`${p}norm1_w`]: rand(d, 0.1, 1),
      [`${p}norm1_b`]: rand(d),
      [`${p}qkv_w`]: rand(3 * d * d),
      [`${p}qkv_b`]: rand(3 * d),
      [`${p}o_w`]: rand(d * d),
      [`${p}o_b`]: rand(d),
      [`${p}norm2_w`]: rand(d, 0.1, 1),
      [`${p}norm2_b`]: rand(d),
      [`${p}ff.w_in`]: rand(spec.dFF * d),
      [`${p}ff.b_in`]: rand(spec.dFF),
      [`${p}ff.w_out`]: rand(d * spec.dFF),
      [`${p}ff.b_out`]: rand(d),
    });
  }
  return { config, spec, tensors: t };
}

async function main(): Promise<void> {
  const info = loadAddon().info;
  const lines: string[] = [];
  const say = (s: string) => {
    lines.push(s);
    console.log(s);
  };
  say(`# encoders benchmark — ${new Date().toISOString()}`);
  say(`machine: ${os.cpus()[0]?.model ?? '?'}, ${os.cpus().length} logical CPUs, loadavg ${os.loadavg().map((v) => v.toFixed(1)).join(' ')} (shared machine: numbers are noisy)`);
  say(`addon: ${info.variant}, ${info.threads} threads, GEMM kernel ${info.gemmKernel}${QUICK ? ', --quick' : ''}`);
  // The machine is shared: the peak is the best of several measurements (here and again at the end), so the
  // percentages below are against the best the kernel reached in this run.
  const peakStart = await gemmPeak();
  const rates: [string, number][] = [];

  // 1. vit-fmnist (the fixtures are in ../shared: without it, skipped, saying so; tester EQ)
  const vitDir = path.join(SHARED, 'fixtures', 'vit-fmnist');
  const missing = [vitDir, path.join(SHARED, 'fixtures', 'marian-multi30k-en-de'), path.join(SHARED, 'data', 'fmnist')].filter((d) => !fs.existsSync(d));
  if (missing.length) return void say(`skipped: ${missing.join(', ')} not found (needs ../shared)`);
  const vit = await loadModel(vitDir);
  const pre = await loadPreprocessor(vitDir);
  const set = await conformImages(
    await loadIdxImages(path.join(SHARED, 'data/fmnist/t10k-images-idx3-ubyte.gz'), path.join(SHARED, 'data/fmnist/t10k-labels-idx1-ubyte.gz')),
    pre,
  );
  const nImages = QUICK ? 1000 : 5000;
  const batch = 250;
  const pixels = imagesToTensor(set, pre, 0, nImages);
  const per = 784;
  const runNative = async () => {
    for (let i = 0; i < nImages; i += batch) {
      await vit.forward({ batch, seq: 17, pixels: pixels.subarray(i * per, (i + batch) * per) }, { output: 'logits' });
    }
  };
  await runNative();
  const tNative = await best(2, runNative);
  const ips = nImages / tNative;
  const vf = vitFlops(vit.spec);
  say('');
  say(`## vit-fmnist (${(vf / 1e6).toFixed(1)} MFLOP/image), ${nImages} test images, batch ${batch}`);
  say(`native: ${ips.toFixed(0)} images/s, ${((ips * vf) / 1e9).toFixed(1)} GFLOP/s`);
  rates.push(['vit-fmnist', (ips * vf) / 1e9]);
  const np = numpyVit(vitDir, nImages, batch);
  if (typeof np === 'string') say(np);
  else say(`numpy (float32, batch ${batch}, scipy erf): ${np.imagesPerSec.toFixed(0)} images/s → native is ${(ips / np.imagesPerSec).toFixed(2)}x numpy`);
  const reader = await SafetensorsReader.open(vitDir);
  const tensors = new Map<string, Float32Array>();
  for (const n of reader.names()) tensors.set(n, await reader.readF32(n));
  await reader.close();
  const cfg = await readConfig(vitDir);
  const jsImages = QUICK ? 4 : 16;
  const tJs = await best(1, () => vitForwardReference(cfg, tensors, pixels.subarray(0, jsImages * per), jsImages));
  say(`pure JS (float64 reference, ${jsImages} images): ${(jsImages / tJs).toFixed(1)} images/s → native is ${(ips / (jsImages / tJs)).toFixed(0)}x pure JS`);
  vit.dispose();

  // 2. ViT-B/16 shape
  const vb = randomVitB16();
  const big = buildModel(vb.config, vb.spec, vb.tensors);
  const bBatch = QUICK ? 2 : 8;
  const bPixels = Float32Array.from({ length: bBatch * 3 * 224 * 224 }, (_, i) => Math.sin(i));
  await big.forward({ batch: 1, seq: 197, pixels: bPixels.subarray(0, 3 * 224 * 224) }, { output: 'logits' });
  const tBig = await best(QUICK ? 1 : 2, () => big.forward({ batch: bBatch, seq: 197, pixels: bPixels }, { output: 'logits' }));
  const bf = vitFlops(vb.spec);
  const bips = bBatch / tBig;
  say('');
  say(`## ViT-B/16 shape, random weights (${(bf / 1e9).toFixed(1)} GFLOP/image), batch ${bBatch}`);
  say(`native: ${bips.toFixed(2)} images/s, ${((bips * bf) / 1e9).toFixed(1)} GFLOP/s`);
  rates.push(['ViT-B/16 shape', (bips * bf) / 1e9]);
  big.dispose();

  // 3. Marian greedy translation
  const mDir = path.join(SHARED, 'fixtures', 'marian-multi30k-en-de');
  const marian = await loadModel(mDir);
  const tok = await loadTokenizer(mDir);
  const gen = await loadGenerationConfig(mDir);
  const pairs = (await readParallel(path.join(SHARED, 'data/multi30k/test_2016_flickr.en.gz'), path.join(SHARED, 'data/multi30k/test_2016_flickr.de.gz'))).slice(
    0,
    QUICK ? 200 : 1000,
  );
  const enc = pairs.map((p) => tok.encode(p.source, { maxLength: 64 }));
  const order = enc.map((_, i) => i).sort((a, b) => enc[a]!.length - enc[b]!.length);
  const mb = 100;
  const s = marian.spec;
  const es = marian.encoderSpec!;
  let flops = 0;
  const runMarian = async () => {
    flops = 0;
    for (let i = 0; i < order.length; i += mb) {
      const idx = order.slice(i, i + mb);
      const seq = Math.max(...idx.map((j) => enc[j]!.length));
      const ids = new Int32Array(idx.length * seq).fill(gen.padTokenId);
      const mask = new Uint8Array(idx.length * seq);
      idx.forEach((j, r) => {
        ids.set(enc[j]!, r * seq);
        mask.fill(1, r * seq, r * seq + enc[j]!.length);
      });
      const g = await marian.generate({ ids, batch: idx.length, seq, attentionMask: mask }, gen);
      const d = s.dModel;
      // encoder: every (padded) source position; decoder: every row of every step, incl. the LM head
      flops += idx.length * seq * es.layers * (2 * 4 * d * d + 2 * 2 * d * es.dFF + 4 * seq * d);
      const steps = g.length - 1;
      for (let t = 1; t <= steps; t++) {
        flops += idx.length * (s.layers * (2 * 6 * d * d + 2 * 2 * d * s.dFF + 4 * (t + seq) * d) + 2 * d * s.vocab);
      }
      flops += s.layers * idx.length * seq * 2 * 2 * d * d; // cross K/V of the encoder states, once
    }
  };
  await runMarian();
  const tM = await best(QUICK ? 1 : 2, runMarian);
  say('');
  say(`## marian-multi30k-en-de greedy translation, ${pairs.length} test sentences, batch ${mb} (length-sorted)`);
  say(`native: ${(pairs.length / tM).toFixed(1)} sentences/s, ${(flops / tM / 1e9).toFixed(1)} GFLOP/s`);
  rates.push(['Marian greedy', flops / tM / 1e9]);
  // beam search (4 beams) on a slice, for scale: about 4x the decoder work of greedy
  const beamPairs = pairs.slice(0, QUICK ? 50 : 200);
  const tB = await best(1, () => translate(marian, tok, beamPairs.map((p) => p.source), { generation: { ...gen, numBeams: 4 }, batchSize: 50 }));
  say(`beam search, 4 beams, first ${beamPairs.length} sentences: ${(beamPairs.length / tB).toFixed(1)} sentences/s`);
  marian.dispose();

  const peak = Math.max(peakStart, await gemmPeak());
  say('');
  say(`## achieved vs the GEMM kernel's peak (square sgemm ${QUICK ? 512 : 1024}³, best of the start and end of this run: ${peak.toFixed(1)} GFLOP/s${QUICK ? '; --quick: a small multiply, which larger shapes can outrun' : ''})`);
  for (const [what, r] of rates) say(`${what}: ${r.toFixed(1)} GFLOP/s = ${((100 * r) / peak).toFixed(0)}% of peak`);
  const out = path.join(__dirname, 'results', 'encoders.md');
  if (process.argv.includes('--write')) {
    fs.writeFileSync(out, `${lines.join('\n')}\n\nCommand: npx ts-node --transpile-only benchmarks/encoders.ts --write\n`);
    console.log(`\nwritten to ${out}`);
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
