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

  it('a pass from the kept states sees the same FF inputs as one from the embeddings, bit for bit', async () => {
    const layers = [2, 3];
    const entry = new EntryStates(model, cal);
    const plain = await inputs(model, layers, cal);
    const reused = await inputs(model, layers, cal, entry);
    expect(reused).toHaveLength(plain.length);
    reused.forEach((x, i) => expect(Buffer.from(x.buffer, x.byteOffset, x.byteLength).equals(Buffer.from(plain[i]!.buffer, plain[i]!.byteOffset, plain[i]!.byteLength))).toBe(true));
  });

  it('keeps the latest layer asked, and serves only its own model and main stack', async () => {
    const entry = new EntryStates(model, cal);
    const a = entry.get(2, {});
    expect(entry.get(2, {})).toBe(a);
    const states = await a;
    expect(states).toHaveLength(cal.length);
    expect(states[1]!.length).toBe(3 * 17 * model.spec.dModel);
    expect(entry.get(3, {})).not.toBe(a);
    expect(await entry.get(0, {})).toEqual([undefined, undefined]);
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
    expect((await again).map((s) => s?.length)).toEqual([2 * 13 * model.spec.dModel, 3 * 17 * model.spec.dModel]);
  });
});
