/**
 * The native forward pass on llama-stories260k (RMSNorm, rotary, GQA 8/4, SwiGLU, tied head) against
 * Hugging Face's outputs in reference.safetensors and the perplexities in eval.json.
 */
import * as fs from 'node:fs';
import { FfmergeError } from '../lib/errors';
import { greedy } from '../lib/eval/generate';
import { perplexity } from '../lib/eval/perplexity';
import { loadModel } from '../lib/model/load';
import type { FFWeights, Model } from '../lib/model/model';
import { SafetensorsReader } from '../lib/safetensors';
import { describeShared, sharedPath } from './helpers/shared';
import { relErr } from './helpers/synthetic-model';

const FIX = 'fixtures/llama-stories260k';

async function readI32(r: SafetensorsReader, name: string): Promise<Int32Array> {
  const raw = await r.readRaw(name);
  return new Int32Array(raw.buffer, raw.byteOffset, raw.byteLength / 4);
}

describeShared(FIX, 'llama-stories260k forward', () => {
  let model: Model;
  let ref: SafetensorsReader;
  let ids: Int32Array;
  const evalJson = () => JSON.parse(fs.readFileSync(sharedPath(FIX, 'eval.json'), 'utf8')) as { ppl: { valid: number; test: number } };

  beforeAll(async () => {
    model = await loadModel(sharedPath(FIX));
    ref = await SafetensorsReader.open(sharedPath(FIX, 'reference.safetensors'));
    ids = await readI32(ref, 'input_ids');
  });
  afterAll(async () => {
    model.dispose();
    await ref.close();
  });

  test('spec comes from config.json', () => {
    expect(model.spec).toMatchObject({ family: 'llama', layers: 5, dModel: 64, nHeads: 8, nKvHeads: 4, headDim: 8, dFF: 172, vocab: 512, positions: 'rotary', norm: 'rmsnorm', gatedFF: true, tiedEmbeddings: true });
  });

  test('logits equal the Hugging Face reference (≤ 1e-4 relative)', async () => {
    const want = await ref.readF32('logits');
    const r = await model.forward({ ids, batch: 1, seq: ids.length }, { output: 'logits' });
    expect(r.logits.length).toBe(want.length);
    expect(relErr(r.logits, want)).toBeLessThan(1e-4);
  });

  test.each(['valid', 'test'] as const)('perplexity on the %s samples equals eval.json to 0.1%%', async (split) => {
    const samples = await readI32(ref, 'samples');
    const rows = split === 'valid' ? [0, 48] : [48, 96];
    const blocks: Int32Array[] = [];
    for (let r = rows[0]!; r < rows[1]!; r++) blocks.push(samples.slice(r * 256, (r + 1) * 256));
    const seen: number[] = [];
    const res = await perplexity(model, blocks, { batchSize: 16, onProgress: (p) => seen.push(p.done) });
    expect(res.tokens).toBe(48 * 255);
    expect(Math.abs(res.ppl / evalJson().ppl[split] - 1)).toBeLessThan(1e-3);
    expect(seen.at(-1)).toBe(48 * 255);
  });

  test('perplexity batches blocks of different lengths (padding) without changing the result', async () => {
    const samples = await readI32(ref, 'samples');
    const blocks = [samples.slice(0, 256), samples.slice(256, 356), samples.slice(512, 514), samples.slice(768, 769)];
    const together = await perplexity(model, blocks, { batchSize: 4 });
    const alone = await perplexity(model, blocks, { batchSize: 1 });
    expect(together.tokens).toBe(255 + 99 + 1); // the 1-token block scores nothing
    expect(alone.tokens).toBe(together.tokens);
    expect(Math.abs(together.nll - alone.nll)).toBeLessThan(1e-5);
  });

  test('greedy continuation of <s> reproduces greedy_from_bos and reads "Once upon a time…"', async () => {
    const want = await readI32(ref, 'greedy_from_bos');
    const got = await greedy(model, [1], want.length - 1);
    expect(Array.from(got)).toEqual(Array.from(want));
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const { Tokenizer } = require('@huggingface/tokenizers') as { Tokenizer: new (j: unknown, c: unknown) => { decode(ids: number[], o?: object): string } };
    const tok = new Tokenizer(
      JSON.parse(fs.readFileSync(sharedPath(FIX, 'tokenizer.json'), 'utf8')),
      JSON.parse(fs.readFileSync(sharedPath(FIX, 'tokenizer_config.json'), 'utf8')),
    );
    const text = tok.decode(Array.from(got), { skip_special_tokens: true });
    expect(text.trimStart().startsWith('Once upon a time, there was a little girl named Lily.')).toBe(true);
  });

  test('a padded batch gives each sequence the logits it gets alone', async () => {
    const a = ids.slice(0, 48), b = ids.slice(5, 30);
    const V = model.spec.vocab;
    const alone = await model.forward({ ids: b, batch: 1, seq: b.length }, { output: 'logits' });
    const both = new Int32Array(2 * 48);
    both.set(a, 0);
    both.set(b, 48);
    const mask = new Uint8Array(2 * 48).fill(1);
    mask.fill(0, 48 + b.length);
    const r = await model.forward({ ids: both, batch: 2, seq: 48, attentionMask: mask }, { output: 'logits' });
    expect(relErr(r.logits.subarray(48 * V, (48 + b.length) * V), alone.logits)).toBeLessThan(1e-5);
  });

  test('running layers 0..2 then 2..5 from the hidden state equals the full pass', async () => {
    const full = await model.forward({ ids, batch: 1, seq: ids.length }, { output: 'logits' });
    const head = await model.forward({ ids, batch: 1, seq: ids.length }, { output: 'hidden', toLayer: 2 });
    expect(head.hidden.length).toBe(ids.length * 64);
    const tail = await model.forward({ ids, batch: 1, seq: ids.length }, { output: 'logits', fromLayer: 2, hidden: head.hidden });
    expect(relErr(tail.logits, full.logits)).toBeLessThan(1e-6);
  });

  test('nll output equals −log softmax of the logits at the next token', async () => {
    const seq = ids.length;
    const V = model.spec.vocab;
    const { logits } = await model.forward({ ids, batch: 1, seq }, { output: 'logits' });
    const { nll, nllCount, nllSum } = await model.forward({ ids, batch: 1, seq }, { output: 'nll' });
    expect(nll!.length).toBe(seq - 1);
    expect(nllCount).toBe(seq - 1);
    let sum = 0;
    for (let t = 0; t < seq - 1; t++) {
      const row = logits!.subarray(t * V, (t + 1) * V);
      const mx = Math.max(...row);
      const lse = mx + Math.log(row.reduce((s, v) => s + Math.exp(v - mx), 0));
      const want = lse - row[ids[t + 1]!]!;
      expect(Math.abs(nll![t]! - want)).toBeLessThan(1e-4);
      sum += want;
    }
    expect(Math.abs(nllSum! - sum) / sum).toBeLessThan(1e-5);
  });

  test('permuting one SwiGLU FF leaves the logits unchanged; another layer\'s FF changes them', async () => {
    const base = await model.forward({ ids, batch: 1, seq: ids.length }, { output: 'logits' });
    const ff = model.ffWeights(1);
    const F = model.spec.dFF, d = model.spec.dModel;
    const perm = Array.from({ length: F }, (_, i) => (i * 37 + 11) % F); // 37 is coprime with 172
    expect(new Set(perm).size).toBe(F);
    const rows = (w: Float32Array) => {
      const out = new Float32Array(w.length);
      perm.forEach((p, i) => out.set(w.subarray(p * d, (p + 1) * d), i * d));
      return out;
    };
    const cols = new Float32Array(ff.wOut.length);
    for (let r = 0; r < d; r++) perm.forEach((p, i) => (cols[r * F + i] = ff.wOut[r * F + p]!));
    const permuted: FFWeights = { wIn: rows(ff.wIn), wGate: rows(ff.wGate!), wOut: cols };
    const view = await model.withFF(new Map([[1, permuted]]));
    const same = await view.forward({ ids, batch: 1, seq: ids.length }, { output: 'logits' });
    expect(relErr(same.logits, base.logits)).toBeLessThan(1e-5);
    const swapped = await model.withFF([{ layer: 1, ff: model.ffWeights(2) }]);
    const other = await swapped.forward({ ids, batch: 1, seq: ids.length }, { output: 'logits' });
    expect(relErr(other.logits, base.logits)).toBeGreaterThan(1e-2);
    view.dispose();
    swapped.dispose();
  });

  test('one FF object given to several layers is one tied copy; views share everything else', async () => {
    const merged = model.ffWeights(3);
    const view = await model.withFF([{ layer: 2, ff: merged }, { layer: 3, ff: merged }, { layer: 4, ff: merged }]);
    expect(view.sharesFF(2, view, 3)).toBe(true);
    expect(view.sharesFF(3, view, 4)).toBe(true);
    expect(view.sharesFF(0, model, 0)).toBe(true); // untouched layers are the parent's buffers
    expect(view.sharesFF(3, model, 3)).toBe(false); // an override is its own copy
    expect(Array.from(view.ffWeights(4).wOut)).toEqual(Array.from(merged.wOut));
    view.dispose();
    expect(model.ffWeights(4).wIn.length).toBe(model.spec.dFF * model.spec.dModel); // the parent is untouched
  });

  test('aborting stops perplexity with ABORTED', async () => {
    const samples = await readI32(ref, 'samples');
    const ctl = new AbortController();
    ctl.abort();
    const p1 = perplexity(model, [samples.slice(0, 256)], { signal: ctl.signal });
    await expect(p1).rejects.toBeInstanceOf(FfmergeError);
    await expect(p1).rejects.toMatchObject({ code: 'ABORTED' });
    const ctl2 = new AbortController();
    const p = model.forward({ ids: samples.slice(0, 96 * 256), batch: 96, seq: 256 }, { output: 'logits', signal: ctl2.signal });
    ctl2.abort();
    await expect(p).rejects.toBeInstanceOf(FfmergeError);
    await expect(p).rejects.toMatchObject({ code: 'ABORTED' });
  });
});
