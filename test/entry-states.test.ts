/**
 * EntryStates (lib/pipeline/ff-inputs.ts): the base model's calibration states entering a window, shared by
 * the methods fitted there. A pass started from them must see exactly the FF inputs a pass from the
 * embeddings sees, bit for bit (the search's results may not move), and the cache must never serve a model
 * or stack it was not computed for.
 */
import * as path from 'node:path';
import type { FeatureBatch } from '../lib/data/feature-batches';
import { loadModel } from '../lib/model/load';
import type { Model } from '../lib/model/model';
import { modelFFs } from '../lib/pipeline/align';
import { EntryStates, forEachFFInput } from '../lib/pipeline/ff-inputs';
import { FIT_STATE_MEMORY_BYTES } from '../lib/pipeline/spill';
import { averageFF } from '../lib/merge/average';
import { RECOVER_METHODS } from '../lib/pipeline/recover';
import type { MergeContext, MergedWindow } from '../lib/pipeline/plugins';
import { mulberry32 } from './reference/random';

const MODEL = path.resolve(__dirname, '..', 'models', 'llama-stories260k');

/** Two batches of random ids: one plain, one with padded tail positions (not features). */
function batches(vocab: number): FeatureBatch[] {
  const rnd = mulberry32(11);
  const ids = (n: number) => Int32Array.from({ length: n }, () => Math.floor(rnd() * vocab));
  const batch = 3;
  const seq = 17;
  const mask = Uint8Array.from({ length: batch * seq }, (_, i) => (i % seq < seq - 1 - Math.floor(i / seq) * 3 ? 1 : 0));
  let real = 0;
  for (const v of mask) real += v;
  return [
    { input: { ids: ids(2 * 13), batch: 2, seq: 13 }, featureRows: 26 },
    { input: { ids: ids(batch * seq), batch, seq, attentionMask: mask }, featureMask: mask, featureRows: real },
  ];
}

async function inputs(model: Model, layers: number[], cal: FeatureBatch[], entry?: EntryStates): Promise<Float32Array[]> {
  const out: Float32Array[] = [];
  await forEachFFInput(model, model.mainStack, layers, cal, async (_l, X) => void out.push(X.slice()), {}, entry);
  return out;
}

describe('EntryStates', () => {
  let model: Model;
  let cal: FeatureBatch[];
  beforeAll(async () => {
    model = await loadModel(MODEL);
    cal = batches(model.spec.vocab);
  });
  afterAll(() => model.dispose());

  it('a pass from the kept states sees the same FF inputs as one from the embeddings, bit for bit, in RAM or on disk', async () => {
    const layers = [2, 3];
    const plain = await inputs(model, layers, cal);
    // budget 0: the states go to an unlinked file (tester EU: they grew with the calibration, in RAM)
    for (const entry of [new EntryStates(model, cal), new EntryStates(model, cal, 0)]) {
      const reused = await inputs(model, layers, cal, entry);
      expect((await entry.get(2, {}))!.kind).toBe(entry.budget === 0 ? 'disk' : 'ram');
      expect(reused).toHaveLength(plain.length);
      reused.forEach((x, i) => expect(Buffer.from(x.buffer, x.byteOffset, x.byteLength).equals(Buffer.from(plain[i]!.buffer, plain[i]!.byteOffset, plain[i]!.byteLength))).toBe(true));
      await entry.close();
    }
  });

  it('refit-res gives the same fit with its states on disk as in RAM', async () => {
    const ffs = await modelFFs(model, [1, 2]);
    const merged = averageFF([ffs.get(1)!, ffs.get(2)!]);
    const fitted = [];
    for (const budget of [FIT_STATE_MEMORY_BYTES, 0]) {
      const entry = new EntryStates(model, cal, budget);
      const ctx = { model, anchor: 'first', correlations: new Map(), calibration: cal, entry } as unknown as MergeContext;
      const m: MergedWindow = { stack: model.mainStack, window: { start: 1, k: 2 }, merged, method: 'vanilla', recover: 'none' } as unknown as MergedWindow;
      fitted.push(await RECOVER_METHODS.get('refit-res').recover(ctx, m, {}));
      await entry.close();
    }
    const [ram, disk] = fitted as [MergedWindow, MergedWindow];
    expect(Buffer.from(disk.merged.wOut.buffer).equals(Buffer.from(ram.merged.wOut.buffer))).toBe(true);
    expect([...disk.adjusted!.keys()]).toEqual([3]);
    expect(Buffer.from(disk.adjusted!.get(3)!.wOut.buffer).equals(Buffer.from(ram.adjusted!.get(3)!.wOut.buffer))).toBe(true);
  });

  it('keeps the latest layer asked, and serves only its own model and main stack', async () => {
    const entry = new EntryStates(model, cal);
    const a = entry.get(2, {});
    expect(entry.get(2, {})).toBe(a);
    const states = (await a)!;
    expect((await states.get(0)).length).toBe(2 * 13 * model.spec.dModel);
    expect((await states.get(1)).length).toBe(3 * 17 * model.spec.dModel);
    expect(entry.get(3, {})).not.toBe(a);
    expect(await entry.get(0, {})).toBeUndefined();
    expect(entry.serves(model, model.mainStack)).toBe(true);
    const ffs = await modelFFs(model, [1]);
    const view = await model.withFF([{ layer: 1, ff: ffs.get(1)! }]);
    try {
      expect(entry.serves(view, view.mainStack)).toBe(false);
    } finally {
      view.dispose();
    }
  });

  it('an aborted computation is not kept', async () => {
    const entry = new EntryStates(model, cal);
    const ac = new AbortController();
    ac.abort();
    const aborted = entry.get(2, { signal: ac.signal });
    await expect(aborted).rejects.toMatchObject({ code: 'ABORTED' });
    const again = entry.get(2, {});
    expect(again).not.toBe(aborted);
    // (no instanceof: arrays made by the addon come from another realm under jest)
    const states = (await again)!;
    expect([(await states.get(0)).length, (await states.get(1)).length]).toEqual([2 * 13 * model.spec.dModel, 3 * 17 * model.spec.dModel]);
    await entry.close();
  });
});
