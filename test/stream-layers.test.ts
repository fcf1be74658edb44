/**
 * Layer streaming (loadModel({stream: true})): each layer is read from disk when a pass reaches it and freed
 * after, so results must equal the resident model's bit for bit — forward, FF access, merged views, dropped
 * layers, parameter counts, ties, and encoder–decoder generation — for F32 and BF16 checkpoints.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { loadModel } from '../lib/model/load';
import type { Model } from '../lib/model/model';
import { generationConfigFrom } from '../lib/model/model';
import { castCheckpoint } from './helpers/cast-checkpoint';
import { describeShared, sharedPath } from './helpers/shared';

function ids(n: number, vocab: number, seed = 13): Int32Array {
  return Int32Array.from({ length: n }, (_, i) => (i * 7919 + seed) % vocab);
}

const same = (a: ArrayBufferView, b: ArrayBufferView): boolean =>
  Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));

async function compareDecoder(resident: Model, streamed: Model): Promise<void> {
  expect(streamed.weightDtypes().layers).toBe('streamed');
  const input = { ids: ids(2 * 11, resident.spec.vocab), batch: 2, seq: 11 };
  const a = await resident.forward(input, { output: 'logits', captureFF: [1, 2] });
  const b = await streamed.forward(input, { output: 'logits', captureFF: [1, 2] });
  expect(same(b.logits, a.logits)).toBe(true);
  expect(same(b.ff!.get(2)!, a.ff!.get(2)!)).toBe(true);
  // FF access reads the layer from disk; a view overriding layers 1-2 with layer 1's FF
  const ffR = resident.ffWeights(1);
  const ffS = streamed.ffWeights(1);
  expect(same(ffS.wIn, ffR.wIn)).toBe(true);
  expect(same(ffS.wOut, ffR.wOut)).toBe(true);
  // the same copies read off the main thread, from the stream, the resident model and a view's override
  const keys = ['wIn', 'bIn', 'wGate', 'bGate', 'wOut', 'bOut'] as const;
  for (const [m, want] of [[streamed, ffS], [resident, ffR]] as const) {
    const got = await m.readFFWeights(1);
    for (const k of keys) {
      expect(got[k] === undefined).toBe(want[k] === undefined);
      if (got[k]) expect(same(got[k]!, want[k]!)).toBe(true);
    }
  }
  const pre = new AbortController();
  pre.abort();
  await expect(streamed.readFFWeights(2, { signal: pre.signal })).rejects.toMatchObject({ code: 'ABORTED' });
  await expect(streamed.readFFWeights(99)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
  const vR = await resident.withFF(new Map([[1, ffR], [2, ffR]]));
  const vS = await streamed.withFF(new Map([[1, ffS], [2, ffS]]));
  expect(vS.sharesFF(1, vS, 2)).toBe(true);
  expect(streamed.sharesFF(1, streamed, 2)).toBe(false);
  expect(streamed.sharesFF(3, streamed, 3)).toBe(true);
  const c = await vR.forward(input, { output: 'nll' });
  const d = await vS.forward(input, { output: 'nll' });
  expect(d.nllSum).toBe(c.nllSum);
  // dropped layers and their parameter counts
  const dR = resident.withoutLayers({ [resident.mainStack]: [0, 3] });
  const dS = streamed.withoutLayers({ [streamed.mainStack]: [0, 3] });
  expect(same((await dS.forward(input, { output: 'logits' })).logits, (await dR.forward(input, { output: 'logits' })).logits)).toBe(true);
  for (let l = 0; l < resident.spec.layers; l++) expect(streamed.layerParams(l)).toBe(resident.layerParams(l));
  expect(vS.layerParams(1)).toBe(vR.layerParams(1));
  for (const m of [vR, vS, dR, dS]) m.dispose();
}

describeShared('fixtures/gpt2-sotu', 'streamed layers: gpt2-sotu', () => {
  test('equal to the resident model, F32 and BF16', async () => {
    const dir = sharedPath('fixtures/gpt2-sotu');
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ffmerge-stream-'));
    try {
      await castCheckpoint(dir, path.join(tmp, 'bf16'), 'BF16');
      for (const d of [dir, path.join(tmp, 'bf16')]) {
        const r = await loadModel(d, { stream: false });
        const s = await loadModel(d, { stream: true });
        await compareDecoder(r, s);
        r.dispose();
        s.dispose();
      }
    } finally {
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  });
});

describeShared('fixtures/llama-stories260k', 'streamed layers: llama', () => {
  test('equal to the resident model', async () => {
    const dir = sharedPath('fixtures/llama-stories260k');
    const r = await loadModel(dir, { stream: false });
    const s = await loadModel(dir, { stream: true });
    await compareDecoder(r, s);
    // an abort during a streamed pass stops it with ABORTED
    const ac = new AbortController();
    ac.abort();
    await expect(s.forward({ ids: ids(8, s.spec.vocab), batch: 1, seq: 8 }, { output: 'logits', signal: ac.signal })).rejects.toMatchObject({ code: 'ABORTED' });
    r.dispose();
    s.dispose();
  });
});

describeShared('fixtures/marian-multi30k-en-de', 'streamed layers: marian', () => {
  test('both stacks streamed: greedy translation equal to the resident model', async () => {
    const dir = sharedPath('fixtures/marian-multi30k-en-de');
    const r = await loadModel(dir, { stream: false });
    const s = await loadModel(dir, { stream: true });
    const gen = generationConfigFrom(JSON.parse(fs.readFileSync(path.join(dir, 'generation_config.json'), 'utf8')) as Record<string, unknown>, r.config as Record<string, unknown>);
    const src = { ids: ids(2 * 7, r.spec.vocab, 5), batch: 2, seq: 7 };
    const a = await r.generate(src, { ...gen, maxLength: 12 });
    const b = await s.generate(src, { ...gen, maxLength: 12 });
    expect(Array.from(b.ids)).toEqual(Array.from(a.ids));
    r.dispose();
    s.dispose();
  });
});

describe('stream from compress and the CLI (tester EU: no way to ask for it under 2 GiB)', () => {
  const BUNDLED = path.resolve(__dirname, '..', 'models', 'llama-stories260k');
  const text = path.join(BUNDLED, 'calibration.txt');
  test('compress({ stream: true }) loads the model streamed and gives the numbers of a resident run; eval --stream too', async () => {
    const { compress } = require('../lib/pipeline/compress') as typeof import('../lib/pipeline/compress');
    const loaded: unknown[] = [];
    const load = require('../lib/model/load') as typeof import('../lib/model/load');
    const real = load.loadModel;
    const spy = jest.spyOn(load, 'loadModel').mockImplementation(async (dir, o) => {
      loaded.push(o?.stream);
      return real(dir, o);
    });
    try {
      const o = { calibration: text, calibrationTokens: 1024, validationTokens: 1024, k: 2, window: '3-4', method: 'permute', recover: 'none' } as const;
      const streamed = await compress(BUNDLED, { ...o, stream: true });
      expect(loaded).toEqual([true]);
      const resident = await compress(BUNDLED, o);
      expect(streamed.merged.validation).toBe(resident.merged.validation);
      expect(streamed.base.validation).toBe(resident.base.validation);
    } finally {
      spy.mockRestore();
    }
    const bin = path.resolve(__dirname, '..', 'bin', 'ffmerge.js');
    const run = (...args: string[]) => JSON.parse(execFileSync(process.execPath, [bin, 'eval', BUNDLED, '--data', text, '--tokens', '1024', '--json', ...args], { encoding: 'utf8' }));
    expect(run('--stream').perplexity).toBe(run().perplexity);
  }, 120_000);
});
