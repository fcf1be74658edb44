/**
 * Calibration features that stay native: Model.forward's `accumulate` streams FF pre-activations into a
 * CorrelationAccumulator inside the forward job. Checked against the JS-copy path (captureFF + acc.add) on a
 * synthetic GPT-2 and on the gpt2-sotu and marian-multi30k-en-de fixtures, with padding and feature masks,
 * plus the accumulator's rules carried over: BUSY while a forward holds it, ABORTED, SHAPE_MISMATCH.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { FfmergeError } from '../lib/errors';
import { loadModel } from '../lib/model/load';
import type { ForwardInput, Model, StackName } from '../lib/model/model';
import { CorrelationAccumulator } from '../lib/native/correlation';
import { modelAddon } from '../lib/native/model';
import { collectStackCorrelations, type CalibrationBatch, type CollectOptions } from '../lib/pipeline/features';
import { loadTokenizer } from '../lib/tokenizer';
import { readParallel } from '../lib/data/parallel';
import { translationBatches } from '../lib/data/feature-batches';
import { removeSyntheticDirs, syntheticGpt2 } from './helpers/synthetic-model';
import { describeShared, sharedPath } from './helpers/shared';
import type { Progress } from '../lib/native/job';

afterAll(() => removeSyntheticDirs());

type Pairs = [number, number][];

function randomIds(n: number, vocab: number, seed: number): Int32Array {
  return Int32Array.from({ length: n }, (_, i) => (i * 7919 + seed * 104729 + ((i * i) % 13)) % vocab);
}

/** A plain view in this realm (the addon's arrays fail `instanceof` under jest), no copy. */
function view(x: Float32Array | undefined): Float32Array | null {
  return x ? new Float32Array(x.buffer, x.byteOffset, x.length) : null;
}

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

function dimsOf(model: Model, stack: StackName): number[] {
  const spec = stack === model.mainStack ? model.spec : model.encoderSpec!;
  return Array(spec.layers).fill(spec.dFF) as number[];
}

/** The JS-copy path: captureFF / captureEncoderFF, then acc.add of the copies (what features.ts did before). */
async function viaCopy(model: Model, batches: CalibrationBatch[], pairs: Map<StackName, Pairs>): Promise<Map<StackName, CorrelationAccumulator>> {
  const accs = new Map<StackName, CorrelationAccumulator>();
  for (const [stack, ps] of pairs) accs.set(stack, new CorrelationAccumulator(dimsOf(model, stack), ps));
  const used = (stack: StackName) => accs.get(stack)?.usedLayers();
  const mainUsed = used(model.mainStack);
  for (const b of batches) {
    const encUsed = model.encoderSpec ? used('encoder') : undefined;
    const r = await model.forward(b.input, {
      output: 'hidden',
      toLayer: mainUsed ? mainUsed[mainUsed.length - 1]! + 1 : 0,
      ...(mainUsed ? { captureFF: mainUsed } : {}),
      ...(encUsed ? { captureEncoderFF: encUsed } : {}),
      ...(b.featureMask ? { featureMask: b.featureMask } : {}),
    });
    for (const [stack, acc] of accs) {
      const captured = stack === model.mainStack ? r.ff : r.encoderFF;
      const layers = acc.dims.map((_, l) => view(captured?.get(l)));
      const first = acc.usedLayers()[0]!;
      await acc.add(layers, layers[first]!.length / acc.dims[first]!);
    }
  }
  return accs;
}

/**
 * Every pair equals the copy path's bit for bit, rows agree, on both passes: all pairs at once, streamed natively
 * (what these small models get by default), and layer-major (memoryBytes 0, what a model whose pairs do not
 * fit gets); `extra.memoryBytes` given: that pass only.
 */
async function expectSame(model: Model, batches: CalibrationBatch[], pairs: Map<StackName, Pairs>, extra: CollectOptions = {}): Promise<Partial<Record<StackName, number>>> {
  const copy = await viaCopy(model, batches, pairs);
  let rows: Partial<Record<StackName, number>> = {};
  for (const memoryBytes of extra.memoryBytes !== undefined ? [extra.memoryBytes] : [undefined, 0]) {
    const progress: number[] = [];
    const r = await collectStackCorrelations(model, batches, pairs, { ...extra, ...(memoryBytes !== undefined ? { memoryBytes } : {}), onProgress: (p) => progress.push(p.done / p.total) });
    rows = r.rows;
    const mainPairs = pairs.get(model.mainStack) ?? [];
    const encPairs = model.encoderSpec ? (pairs.get('encoder') ?? []).length : 0;
    // each pair's finalization is a step, announced as it starts (tester FC: 16-20 s after the count was full)
    const steps =
      memoryBytes === 0
        ? // an encoder's pass, one step per batch, comes first (tester DU: it went unreported); then the main
          // stack layer-major, one step per (layer, batch) up to the last layer a pair needs
          (encPairs ? batches.length + encPairs : 0) + (mainPairs.length ? (Math.max(...mainPairs.flat()) + 1) * batches.length + mainPairs.length : 0)
        : // one pass per batch for every stack
          batches.length + encPairs + mainPairs.length;
    expect({ memoryBytes, steps: new Set(progress).size }).toEqual({ memoryBytes, steps });
    expect(progress[progress.length - 1]).toBe(1);
    expect(progress.filter((x) => x === 1)).toHaveLength(1);
    for (let i = 1; i < progress.length; i++) expect(progress[i]).toBeGreaterThanOrEqual(progress[i - 1]!);
    for (const [stack, ps] of pairs) {
      const want = copy.get(stack)!;
      expect(r.rows[stack]).toBe(want.count);
      expect(r.corr.get(stack)!.tokens).toBe(want.count);
      for (let p = 0; p < ps.length; p++) {
        const [a, l] = ps[p]!;
        const got = await r.corr.get(stack)!.get(a, l);
        // same batches, blocks and shifts on either pass: equal bit for bit
        expect(maxAbsDiff(got, await want.finalize(p))).toBe(0);
      }
    }
  }
  return rows;
}

describe('accumulate on a synthetic GPT-2', () => {
  const L = 4, F = 36, V = 50, S = 12;
  let model: Model;
  beforeAll(async () => {
    model = await loadModel((await syntheticGpt2({ layers: L, ff: F, vocab: V, positions: 16, seed: 3 })).dir);
  });
  afterAll(() => model.dispose());

  const padded = (): CalibrationBatch => {
    const mask = new Uint8Array(3 * S).fill(1);
    mask.fill(0, S + 8, 2 * S); // second sequence: 8 real tokens, right padding
    mask.fill(0, 2 * S + 5, 3 * S);
    return { input: { ids: randomIds(3 * S, V, 1), batch: 3, seq: S, attentionMask: mask } };
  };
  const featured = (): CalibrationBatch => {
    const featureMask = new Uint8Array(2 * S).fill(1);
    for (const i of [0, 3, 4, S + 1, S + 11]) featureMask[i] = 0;
    return { input: { ids: randomIds(2 * S, V, 2), batch: 2, seq: S }, featureMask };
  };

  it('equals captureFF + add, with an attention mask with padding and with a feature mask', async () => {
    const pairs: Pairs = [[0, 1], [0, 2], [1, 3], [2, 2]];
    const rows = await expectSame(model, [padded(), featured(), { input: { ids: randomIds(S, V, 4), batch: 1, seq: S } }], new Map([['decoder', pairs]]));
    expect(rows.decoder).toBe(S + 8 + 5 + (2 * S - 5) + S);
  });

  it('padding and non-feature positions are not features', async () => {
    // A causal model with right padding computes the real positions alike with or without the mask, so the
    // unmasked pass's rows at real (feature) positions are exactly what the masked pass must accumulate.
    for (const b of [padded(), featured()]) {
      const keep = b.featureMask ?? b.input.attentionMask!;
      const native = new CorrelationAccumulator([F, F, F, F], [[0, 2], [1, 1]]);
      await model.forward(b.input, { output: 'hidden', toLayer: 3, accumulate: { decoder: native }, ...(b.featureMask ? { featureMask: b.featureMask } : {}) });
      const all = await model.forward({ ...b.input, attentionMask: undefined } as ForwardInput, { output: 'hidden', toLayer: 3, captureFF: [0, 1, 2] });
      const pick = (x: Float32Array) => {
        const out: number[] = [];
        keep.forEach((k, r) => {
          if (k) out.push(...x.subarray(r * F, (r + 1) * F));
        });
        return Float32Array.from(out);
      };
      const rows = keep.reduce((s, k) => s + (k ? 1 : 0), 0);
      const ref = new CorrelationAccumulator([F, F, F, F], [[0, 2], [1, 1]]);
      await ref.add([pick(all.ff!.get(0)!), pick(all.ff!.get(1)!), pick(all.ff!.get(2)!), null], rows);
      expect(native.count).toBe(rows);
      for (const p of [0, 1]) expect(maxAbsDiff(await native.finalize(p), await ref.finalize(p))).toBeLessThan(1e-5);
    }
  });

  it('captureFF and accumulate together in one pass', async () => {
    const b = padded();
    const acc = new CorrelationAccumulator([F, F, F, F], [[1, 2]]);
    const r = await model.forward(b.input, { output: 'hidden', captureFF: [2, 0], accumulate: { decoder: acc } });
    expect([...r.ff!.keys()]).toEqual([2, 0]);
    const ref = new CorrelationAccumulator([F, F, F, F], [[1, 2]]);
    const c = await model.forward(b.input, { output: 'hidden', captureFF: [1, 2] });
    expect(maxAbsDiff(r.ff!.get(2)!, c.ff!.get(2)!)).toBe(0);
    await ref.add([null, view(c.ff!.get(1)), view(c.ff!.get(2)), null], acc.count);
    expect(maxAbsDiff(await acc.finalize(0), await ref.finalize(0))).toBeLessThan(1e-6);
  });

  it('a wrong-shaped accumulator is SHAPE_MISMATCH; too short a pass or a stack the model lacks is INVALID_ARGUMENT', async () => {
    const input = padded().input;
    const code = (p: Promise<unknown>) => p.then(() => 'resolved', (e: FfmergeError) => e.code);
    expect(await code(model.forward(input, { output: 'hidden', accumulate: { decoder: new CorrelationAccumulator([F, F, F], [[0, 1]]) } }))).toBe('SHAPE_MISMATCH');
    const narrow = new CorrelationAccumulator([F, F - 1, F, F], [[0, 2]]);
    await expect(model.forward(input, { output: 'hidden', accumulate: { decoder: narrow } })).rejects.toThrow(/FF width 36/);
    const acc = new CorrelationAccumulator([F, F, F, F], [[0, 3]]);
    await expect(model.forward(input, { output: 'hidden', toLayer: 3, accumulate: { decoder: acc } })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringMatching(/toLayer must be at least 4/) });
    expect(await code(model.forward(input, { output: 'hidden', accumulate: { encoder: acc } }))).toBe('INVALID_ARGUMENT');
    // the native checks hold on their own (lib/native/model.ts callers that skip Model.forward), and a
    // rejected call leaves the accumulator free
    const native = (accumulator: unknown, toLayer = L) => () =>
      modelAddon().modelForward((model as unknown as { handle: never }).handle, { ...input, output: 'hidden', toLayer, accumulator }, undefined);
    expect(native(narrow.nativeAccumulator)).toThrow(expect.objectContaining({ code: 'SHAPE_MISMATCH', message: expect.stringMatching(/layer 1 is 35 units wide/) }));
    expect(native(acc.nativeAccumulator, 3)).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT', message: expect.stringMatching(/uses layer 3/) }));
    expect(native({})).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT', message: expect.stringMatching(/CorrelationAccumulator/) }));
    expect(native(new Float32Array(4))).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT', message: expect.stringMatching(/CorrelationAccumulator/) }));
    await model.forward(input, { output: 'hidden', accumulate: { decoder: acc } });
    expect(acc.count).toBe(S + 8 + 5);
  });

  it('BUSY while a forward holds the accumulator, free again once it settles', async () => {
    const acc = new CorrelationAccumulator([F, F, F, F], [[0, 1]]);
    const b = padded();
    const running = model.forward(b.input, { output: 'hidden', accumulate: { decoder: acc } });
    // forward() claims the accumulator synchronously when it starts the native job
    await expect(acc.add([new Float32Array(F), new Float32Array(F), null, null], 1)).rejects.toMatchObject({ code: 'BUSY' });
    await expect(acc.finalize(0)).rejects.toMatchObject({ code: 'BUSY' });
    expect(() => acc.setBlockRows(16)).toThrow(expect.objectContaining({ code: 'BUSY' }));
    await expect(model.forward(b.input, { output: 'hidden', accumulate: { decoder: acc } })).rejects.toMatchObject({ code: 'BUSY' });
    await running;
    expect(acc.count).toBe(S + 8 + 5);
    expect((await acc.finalize(0)).length).toBe(F * F);
  });

  it('an already aborted signal rejects with ABORTED (mid-pass aborts: see gpt2-sotu, big enough to catch)', async () => {
    const pre = new AbortController();
    pre.abort();
    await expect(collectStackCorrelations(model, [padded()], new Map([['decoder', [[0, 1]] as Pairs]]), { signal: pre.signal })).rejects.toMatchObject({ code: 'ABORTED' });
  });
});

const GPT2 = sharedPath('fixtures', 'gpt2-sotu');

describeShared('fixtures/gpt2-sotu', 'accumulate on gpt2-sotu', () => {
  jest.setTimeout(120_000);
  let model: Model;
  let tokens: Int32Array;
  beforeAll(async () => {
    model = await loadModel(GPT2);
    const tok = await loadTokenizer(GPT2);
    tokens = Int32Array.from(tok.encode(fs.readFileSync(sharedPath('data', 'lm', 'valid.txt'), 'utf8').slice(0, 60_000), { addSpecialTokens: false }));
  });
  afterAll(() => model.dispose());

  const batchOf = (offset: number, batch: number, seq: number): ForwardInput => ({ ids: tokens.slice(offset, offset + batch * seq), batch, seq });

  it('equals captureFF + add on real text, with padding', async () => {
    const padded = batchOf(1024, 3, 128);
    const mask = new Uint8Array(3 * 128).fill(1);
    mask.fill(0, 128 + 90, 2 * 128);
    padded.attentionMask = mask;
    const rows = await expectSame(model, [{ input: batchOf(0, 4, 128) }, { input: padded }], new Map([['decoder', [[0, 5], [3, 3], [4, 7]] as Pairs]]));
    expect(rows.decoder).toBe(4 * 128 + 3 * 128 - 38);
  });

  it('layer-major: anchors after their layers, and an abort mid-way is ABORTED with the pairs in flight freed', async () => {
    // anchor 'last' style pairs (the anchor runs after the layers it aligns) and 'first' style together
    await expectSame(model, [{ input: batchOf(0, 2, 128) }, { input: batchOf(4096, 1, 100) }], new Map([['decoder', [[3, 1], [3, 2], [1, 4], [6, 6]] as Pairs]]));
    // the same with every kept anchor and every carried hidden state spilled to disk (no RAM budget): bit for
    // bit, and no file left behind
    const spillDir = fs.mkdtempSync(path.join(os.tmpdir(), 'ffmerge-features-spill-'));
    try {
      await expectSame(model, [{ input: batchOf(0, 2, 128) }, { input: batchOf(4096, 1, 100) }], new Map([['decoder', [[3, 1], [3, 2], [1, 4], [0, 5], [0, 6]] as Pairs]]), { memoryBytes: 0, stateMemoryBytes: 0, spillDir });
      expect(fs.readdirSync(spillDir)).toEqual([]);
      // ...and spilled it was: a spill folder that is gone fails the collection (the options reach the layer loop)
      const gone = path.join(spillDir, 'gone');
      await expect(
        collectStackCorrelations(model, [{ input: batchOf(0, 2, 128) }], new Map([['decoder', [[0, 1]] as Pairs]]), { memoryBytes: 0, stateMemoryBytes: 0, spillDir: gone }),
      ).rejects.toThrow(gone);
    } finally {
      fs.rmSync(spillDir, { recursive: true, force: true });
    }
    // the batch-major pass (every pair at once) aborted after its first batch frees every pair's sums at once,
    // not when V8 collects the accumulator (tester FL: +123 MB per aborted run); finalized ones were freed already
    const release = jest.spyOn(CorrelationAccumulator.prototype, 'release');
    try {
      const early = new AbortController();
      await expect(
        collectStackCorrelations(model, [{ input: batchOf(0, 2, 64) }, { input: batchOf(512, 2, 64) }], new Map([['decoder', [[0, 1], [0, 2], [1, 3]] as Pairs]]), { signal: early.signal, onProgress: () => early.abort() }),
      ).rejects.toMatchObject({ code: 'ABORTED' });
      expect(release.mock.calls.map(([p]) => p)).toEqual([0, 1, 2]);
    } finally {
      release.mockRestore();
    }
    const ctl = new AbortController();
    let steps = 0;
    const run = collectStackCorrelations(model, [{ input: batchOf(0, 4, 128) }, { input: batchOf(1024, 4, 128) }], new Map([['decoder', [[0, 1], [0, 2], [0, 3]] as Pairs]]), {
      memoryBytes: 0,
      signal: ctl.signal,
      onProgress: () => {
        if (++steps === 3) ctl.abort(); // layer 1, first batch: pair (0, 1) is in flight
      },
    });
    await expect(run).rejects.toMatchObject({ code: 'ABORTED' });
    expect(steps).toBe(3);
    // nothing is left holding the model or the addon: the same collection runs to the end afterwards
    const again = await collectStackCorrelations(model, [{ input: batchOf(0, 1, 64) }], new Map([['decoder', [[0, 1]] as Pairs]]), { keep: 'permutation' });
    const perm = await again.corr.get('decoder')!.permutation(0, 1);
    expect(perm.length).toBe(model.spec.dFF);
    await expect(again.corr.get('decoder')!.get(0, 1)).rejects.toMatchObject({ code: 'INVALID_STATE' });
  });

  it('abort while the pass runs rejects with ABORTED and leaves the accumulator free', async () => {
    const acc = new CorrelationAccumulator(Array(12).fill(512) as number[], [[0, 11], [2, 9], [5, 6]]);
    const ctl = new AbortController();
    let reports = 0;
    const p = model.forward(batchOf(0, 16, 256), {
      output: 'hidden',
      accumulate: { decoder: acc },
      signal: ctl.signal,
      onProgress: () => {
        reports++;
        ctl.abort(); // at the first layer's report: mid-way through the 12 layers
      },
    });
    await expect(p).rejects.toMatchObject({ code: 'ABORTED' });
    expect(reports).toBeGreaterThan(0);
    // a cancel landing in the forward adds nothing; one landing inside the add leaves it unusable (as add's)
    await expect(acc.finalize(0)).rejects.toMatchObject({ code: 'INVALID_STATE' });
  });
});

describeShared('fixtures/marian-multi30k-en-de', 'accumulate on marian-multi30k-en-de (two stacks)', () => {
  jest.setTimeout(120_000);
  const FIXTURE = sharedPath('fixtures', 'marian-multi30k-en-de');

  it('encoder and decoder accumulators equal captureEncoderFF/captureFF + add; padding excluded per stack', async () => {
    const model = await loadModel(FIXTURE);
    try {
      const tok = await loadTokenizer(FIXTURE);
      const pairs = (await readParallel(sharedPath('data', 'multi30k', 'val.en.gz'), sharedPath('data', 'multi30k', 'val.de.gz'))).slice(0, 40);
      const batches = translationBatches(pairs, tok, { decoderStartTokenId: 2, padTokenId: 2, batchSize: 16 });
      const rows = await expectSame(
        model,
        batches,
        new Map<StackName, Pairs>([
          ['encoder', [[0, 1], [2, 5]]],
          ['decoder', [[1, 1], [1, 3]]],
        ]),
      );
      expect(rows.encoder).toBe(batches.reduce((s, b) => s + b.encoderFeatureRows!, 0));
      expect(rows.decoder).toBe(batches.reduce((s, b) => s + b.featureRows, 0));
      expect(rows.encoder).toBeLessThan(batches.reduce((s, b) => s + b.input.batch * b.input.encoderSeq!, 0));
      // the decoder's carried states and the encoder's output spilled to disk: the same numbers
      const spillDir = fs.mkdtempSync(path.join(os.tmpdir(), 'ffmerge-features-spill-'));
      try {
        await expectSame(model, batches, new Map<StackName, Pairs>([['decoder', [[1, 1], [1, 3]]]]), { memoryBytes: 0, stateMemoryBytes: 0, spillDir });
        expect(fs.readdirSync(spillDir)).toEqual([]);
      } finally {
        fs.rmSync(spillDir, { recursive: true, force: true });
      }
      // one stack only: the decoder runs no layer, the encoder still feeds its accumulator
      const encProgress: Progress[] = [];
      const enc = await collectStackCorrelations(model, batches.slice(0, 2), new Map([['encoder', [[3, 4]] as Pairs]]), { onProgress: (p) => encProgress.push(p) });
      expect(enc.rows).toEqual({ encoder: batches[0]!.encoderFeatureRows! + batches[1]!.encoderFeatureRows! });
      expect(encProgress).toEqual([
        ...[1, 2].map((done) => ({ phase: 'features', done, total: 3, detail: 'encoder' })),
        { phase: 'features', done: 2, total: 3, detail: 'encoder layers 3 and 4: correlations' },
        { phase: 'features', done: 3, total: 3 },
      ]);
    } finally {
      model.dispose();
    }
  });
});

describe.each(['llama-stories260k', 'vit-fmnist'])('layer-major features on %s', (name) => {
  jest.setTimeout(120_000);
  describeShared(`fixtures/${name}`, 'equals the batch-major capture', () => {
    it('every pair bit for bit, padding excluded', async () => {
      const model = await loadModel(sharedPath('fixtures', name));
      try {
        const spec = model.spec;
        const L = spec.layers;
        const pairs: Pairs = [[0, 1], [0, L - 1], [L - 1, L - 2], [1, 1]];
        let batches: CalibrationBatch[];
        if (spec.input === 'patches') {
          const { channels = 1, imageH = 1, imageW = 1, patch = 1 } = spec;
          const seq = 1 + (imageH / patch) * (imageW / patch);
          const px = (n: number, seed: number) => Float32Array.from({ length: n * channels * imageH * imageW }, (_, i) => Math.sin(i * 0.37 + seed));
          batches = [{ input: { batch: 3, seq, pixels: px(3, 1) } }, { input: { batch: 2, seq, pixels: px(2, 2) } }];
        } else {
          const S = 40;
          const mask = new Uint8Array(2 * S).fill(1);
          mask.fill(0, S + 25, 2 * S);
          batches = [
            { input: { ids: randomIds(3 * S, spec.vocab, 5), batch: 3, seq: S } },
            { input: { ids: randomIds(2 * S, spec.vocab, 6), batch: 2, seq: S, attentionMask: mask } },
          ];
        }
        await expectSame(model, batches, new Map([[model.mainStack, pairs]]));
      } finally {
        model.dispose();
      }
    });
  });
});
