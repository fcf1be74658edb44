/**
 * Staged copies (lib/native/staged.ts, native/binding/staged_floats.cc): Model.withFF moves arrays of
 * STAGE_MIN floats or more into native memory a slice at a time before the view takes them. The view must
 * hold exactly the arrays given (a copy: later writes to them do not reach it), a tie must stay one copy,
 * and a staged buffer a model holds must never be written again. The FFs here (d 128, d_ff 8192 + 1) are
 * above STAGE_MIN and span more than one STAGE_SLICE, so every path is the staged one.
 */
import { loadModel } from '../lib/model/load';
import type { Model } from '../lib/model/model';
import type { FFWeights } from '../lib/model/ff-weights';
import { STAGE_MIN, STAGE_SLICE, stageFloats, type StagedFloatsHandle } from '../lib/native/staged';
import { removeSyntheticDirs, syntheticGpt2 } from './helpers/synthetic-model';
import { randomFF, rng } from './helpers/random-ff';

const d = 512;
const F = 8193; // d·F = 4,194,816 floats: over STAGE_MIN and one float over STAGE_SLICE
let model: Model;

beforeAll(async () => {
  const s = await syntheticGpt2({ layers: 3, d, heads: 4, ff: F, vocab: 40, positions: 8 });
  model = await loadModel(s.dir);
});

afterAll(() => {
  model?.dispose();
  removeSyntheticDirs();
});

const ids = Int32Array.from([3, 1, 4, 1, 5, 9, 2]);

function same(a: Float32Array, b: Float32Array): boolean {
  return a.length === b.length && Buffer.compare(Buffer.from(a.buffer, a.byteOffset, a.byteLength), Buffer.from(b.buffer, b.byteOffset, b.byteLength)) === 0;
}

describe('Model.withFF with staged arrays', () => {
  test('the sizes under test take the staged path, over more than one slice', () => {
    expect(d * F).toBeGreaterThanOrEqual(STAGE_MIN);
    expect(d * F).toBeGreaterThan(STAGE_SLICE);
  });

  test('the view holds exactly the given FF, as a copy, tied where one object is given twice', async () => {
    const ff: FFWeights = randomFF(rng(5), d, F, false, true);
    const wIn = ff.wIn.slice();
    const view = await model.withFF([{ layer: 0, ff }, { layer: 2, ff }]);
    try {
      const got = view.ffWeights(2);
      expect(same(got.wIn, wIn)).toBe(true);
      expect(same(got.wOut, ff.wOut)).toBe(true);
      expect(same(got.bIn!, ff.bIn!)).toBe(true);
      expect(view.sharesFF(0, view, 2)).toBe(true);
      expect(view.sharesFF(1, model, 1)).toBe(true);
      ff.wIn.fill(0); // the caller's arrays are its own again
      expect(same(view.ffWeights(0).wIn, wIn)).toBe(true);
    } finally {
      view.dispose();
    }
  });

  test("a view given a layer's own FF, staged, gives the base model's logits bit for bit", async () => {
    const own = model.ffWeights(1);
    const view = await model.withFF([{ layer: 1, ff: own }]);
    try {
      expect(view.sharesFF(1, model, 1)).toBe(false); // a copy went through the staging
      const a = await view.forward({ ids, batch: 1, seq: ids.length }, { output: 'logits' });
      const b = await model.forward({ ids, batch: 1, seq: ids.length }, { output: 'logits' });
      expect(same(a.logits!, b.logits!)).toBe(true);
    } finally {
      view.dispose();
    }
  });

  test('an aborted signal stops the staging with ABORTED, and the model stays usable', async () => {
    const ff = randomFF(rng(7), d, F, false, true);
    const ac = new AbortController();
    ac.abort();
    await expect(model.withFF([{ layer: 1, ff }], { signal: ac.signal })).rejects.toMatchObject({ code: 'ABORTED' });
    const view = await model.withFF([{ layer: 1, ff }]);
    expect(same(view.ffWeights(1).wOut, ff.wOut)).toBe(true);
    view.dispose();
  });
});

describe('StagedFloats', () => {
  test('a staged buffer that a model holds refuses writes (BUSY); out-of-range writes are SHAPE_MISMATCH', async () => {
    const ff = randomFF(rng(8), d, F, false, true);
    const h: StagedFloatsHandle = await stageFloats(ff.wIn);
    expect(() => h.write(d * F - 1, new Float32Array(2))).toThrow(expect.objectContaining({ code: 'SHAPE_MISMATCH' }));
    h.write(0, ff.wIn.subarray(0, 4)); // not shared yet: writable
    const view = await model.withFF([{ layer: 1, ff: { ...ff, wIn: h as unknown as Float32Array } }]);
    try {
      expect(() => h.write(0, new Float32Array(4))).toThrow(expect.objectContaining({ code: 'BUSY' }));
      expect(same(view.ffWeights(1).wIn, ff.wIn)).toBe(true);
      h.dispose(); // the view keeps its own reference
      expect(same(view.ffWeights(1).wIn, ff.wIn)).toBe(true);
    } finally {
      view.dispose();
    }
  });

  test('a disposed buffer is INVALID_STATE where a model would take it', async () => {
    const ff = randomFF(rng(9), d, F, false, true);
    const h = await stageFloats(ff.wIn);
    h.dispose();
    await expect(model.withFF([{ layer: 1, ff: { ...ff, wIn: h as unknown as Float32Array } }])).rejects.toMatchObject({ code: 'INVALID_STATE' });
    expect(() => h.write(0, new Float32Array(1))).toThrow(expect.objectContaining({ code: 'INVALID_STATE' }));
  });

  test('a buffer of the wrong length is refused by the model (SHAPE_MISMATCH), not read past its end', async () => {
    const ff = randomFF(rng(10), d, F, false, true);
    const h = await stageFloats(ff.wIn.subarray(0, STAGE_MIN));
    try {
      await expect(model.withFF([{ layer: 1, ff: { ...ff, wIn: h as unknown as Float32Array } }])).rejects.toMatchObject({ code: 'SHAPE_MISMATCH' });
    } finally {
      h.dispose();
    }
  });
});
