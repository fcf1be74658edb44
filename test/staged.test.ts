/**
 * Staged copies (lib/native/staged.ts, native/binding/staged_floats.cc): Model.withFF moves arrays of
 * STAGE_MIN floats or more into native memory a slice at a time before the view takes them. The view must
 * hold exactly the arrays given (a copy: later writes to them do not reach it), a tie must stay one copy,
 * and a staged buffer a model holds must never be written again. The FFs here (d 128, d_ff 8192 + 1) are
 * above STAGE_MIN and span more than one STAGE_SLICE, so every path is the staged one. NativeFF.set and
 * CorrelationAccumulator.add stage too, and the accumulators' addFF and Model.forward's entry state on request:
 * their results must be exactly those of the arrays given.
 */
import { loadModel } from '../lib/model/load';
import type { Model } from '../lib/model/model';
import type { FFWeights } from '../lib/model/ff-weights';
import { STAGE_MIN, STAGE_SLICE, stageFloats, type StagedFloatsHandle } from '../lib/native/staged';
import { removeSyntheticDirs, syntheticGpt2 } from './helpers/synthetic-model';
import { randomFF, rng } from './helpers/random-ff';
import { NativeFF } from '../lib/native/native-ff';
import { CorrelationAccumulator } from '../lib/native/correlation';
import { RidgeAccumulator } from '../lib/native/ridge';
import { pearsonReference } from '../lib/reference/correlation';

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
      expect(same(a.logits, b.logits)).toBe(true);
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

describe('pages given back by the reaper (core/large_buffer.h: release_pages)', () => {
  const settle = () => new Promise((r) => setTimeout(r, 300)); // the reaper runs on its own thread
  const logits = async (m: Model) => (await m.forward({ ids, batch: 1, seq: ids.length }, { output: 'logits' })).logits;

  test('a disposed view releases only what it alone owns: a view sharing its FF, and the base, are intact', async () => {
    expect(d * F * 4).toBeGreaterThanOrEqual(16 * 2 ** 20); // each FF matrix is large enough to be released
    const ff = randomFF(rng(15), d, F, false, true);
    const a = await model.withFF([{ layer: 0, ff }, { layer: 2, ff }]); // one FF tied over two layers
    const b = await a.withFF([{ layer: 1, ff: randomFF(rng(16), d, F, false, true) }]); // shares a's FF
    const c = await model.withFF([{ layer: 1, ff }]); // its own copy
    try {
      const before = await logits(b);
      const baseBefore = await logits(model);
      const cBefore = await logits(c);
      a.dispose();
      await settle();
      expect(same(await logits(b), before)).toBe(true);
      expect(same(b.ffWeights(0).wIn, ff.wIn)).toBe(true);
      b.dispose();
      await settle();
      expect(same(await logits(model), baseBefore)).toBe(true);
      expect(same(await logits(c), cBefore)).toBe(true);
    } finally {
      b.dispose();
      c.dispose();
    }
  });

  test('dropped job results and NativeFFs are released without touching what is still held', async () => {
    const ff = randomFF(rng(17), d, F, false, true);
    const pool = await NativeFF.of(ff);
    const kept = await pool.rows([0, 1, 2]);
    pool.dispose();
    const read = await model.readFFWeights(1);
    const copy = Float32Array.from(read.wIn);
    (globalThis as { gc?: () => void }).gc?.();
    await settle();
    expect(same(read.wIn, copy)).toBe(true);
    expect(same(kept.wIn, ff.wIn.subarray(0, 3 * d))).toBe(true);
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

describe('other calls that stage large arrays', () => {
  test('NativeFF.set copies more than one slice of rows exactly, at an offset', async () => {
    const ff = randomFF(rng(11), d, F, true, true); // gate rows too: 2·d floats a unit, 3 slices
    expect(F * 2 * d).toBeGreaterThan(2 * STAGE_SLICE);
    const pool = new NativeFF(F + 3, d, { bIn: true, gate: true, bGate: true });
    try {
      await pool.set(3, ff);
      const units = Array.from({ length: F }, (_, i) => i + 3);
      const got = await pool.rows(units);
      for (const k of ['wIn', 'bIn', 'wGate', 'bGate'] as const) expect(same(got[k]!, ff[k]!)).toBe(true);
    } finally {
      pool.dispose();
    }
  });

  test('CorrelationAccumulator.add with stage reads a staged layer in place, next to a copied one', async () => {
    const rows = 1030;
    const wide = 1024; // rows × wide = 1,054,720 floats: staged; the narrow layer is copied
    const narrow = 8;
    const r = rng(12);
    const x = Float32Array.from({ length: rows * wide }, r);
    const y = Float32Array.from({ length: rows * narrow }, r);
    expect(x.length).toBeGreaterThanOrEqual(STAGE_MIN);
    const acc = new CorrelationAccumulator([wide, narrow], [[0, 1]]);
    await acc.add([x, y], rows, { stage: true });
    const got = await acc.finalize(0);
    const want = pearsonReference(x, y, rows, wide, narrow);
    let worst = 0;
    for (let i = 0; i < want.length; i++) worst = Math.max(worst, Math.abs(got[i]! - want[i]!));
    expect(worst).toBeLessThan(1e-5);
  });

  test('an array detached while it is staged rejects with BUFFER_DETACHED (correlation add with stage, withFF, NativeFF.set)', async () => {
    const rows = 1030;
    const acc = new CorrelationAccumulator([1024, 8], [[0, 1]]);
    const x = new Float32Array(rows * 1024).fill(0.5);
    const p = acc.add([x, new Float32Array(rows * 8)], rows, { stage: true });
    structuredClone(x.buffer, { transfer: [x.buffer] }); // before the first slice is copied
    await expect(p).rejects.toMatchObject({ code: 'BUFFER_DETACHED' });
    const ff = randomFF(rng(13), d, F, false, true);
    const q = model.withFF([{ layer: 1, ff }]);
    structuredClone(ff.wOut.buffer, { transfer: [ff.wOut.buffer as ArrayBuffer] });
    await expect(q).rejects.toMatchObject({ code: 'BUFFER_DETACHED' });
    const g = randomFF(rng(14), d, F, true, false);
    const pool = new NativeFF(F, d, { bIn: false, gate: true, bGate: false });
    try {
      const r = pool.set(0, g);
      structuredClone(g.wGate!.buffer, { transfer: [g.wGate!.buffer as ArrayBuffer] });
      await expect(r).rejects.toMatchObject({ code: 'BUFFER_DETACHED' });
    } finally {
      pool.dispose();
    }
  });

  test('addFF with stage (ridge and correlation): the same sums as the copied call, bit for bit; a detach rejects', async () => {
    const rows = 2051;
    const width = 520; // X and Y each rows × 520 floats: over STAGE_MIN
    const units = 9;
    const r = rng(17);
    const ff = randomFF(r, width, units, true, true);
    const X = Float32Array.from({ length: rows * width }, r);
    const Y = Float32Array.from({ length: rows * width }, r);
    expect(X.length).toBeGreaterThanOrEqual(STAGE_MIN);
    const [copied, staged] = [new RidgeAccumulator(units, width), new RidgeAccumulator(units, width)];
    await copied.addFF(X, rows, ff, 'silu', Y);
    await staged.addFF(X, rows, ff, 'silu', Y, { stage: true });
    const [a, b] = [await copied.solve(1e-3), await staged.solve(1e-3)];
    expect(same(a.w, b.w) && same(a.b, b.b)).toBe(true);
    const [c1, c2] = [new CorrelationAccumulator([units, width], [[0, 1]]), new CorrelationAccumulator([units, width], [[0, 1]])];
    await c1.addFF(X, rows, ff, 'silu', Y);
    await c2.addFF(X, rows, ff, 'silu', Y, { stage: true });
    expect(Array.from(await c2.explained(0))).toEqual(Array.from(await c1.explained(0)));
    const Z = Y.slice();
    const p = staged.addFF(X, rows, ff, 'silu', Z, { stage: true });
    structuredClone(Z.buffer, { transfer: [Z.buffer] });
    await expect(p).rejects.toMatchObject({ code: 'BUFFER_DETACHED' });
    expect(staged.count).toBe(rows); // nothing was added
  });

  test("forward with stage: a staged entry state gives the copied call's states bit for bit; a detach rejects", async () => {
    const batch = 256;
    const seq = 8; // batch · seq · d = STAGE_MIN: the smallest state that is staged
    const many = Int32Array.from({ length: batch * seq }, (_, i) => (i * 7 + (i >> 3)) % 40);
    const input = { ids: many, batch, seq };
    const h0 = (await model.forward(input, { output: 'hidden', toLayer: 1 })).hidden;
    expect(h0.length).toBeGreaterThanOrEqual(STAGE_MIN);
    const copied = (await model.forward(input, { output: 'hidden', fromLayer: 1, hidden: h0 })).hidden;
    const staged = (await model.forward(input, { output: 'hidden', fromLayer: 1, hidden: h0, stage: true })).hidden;
    expect(same(staged, copied)).toBe(true);
    const h1 = h0.slice();
    const p = model.forward(input, { output: 'hidden', fromLayer: 1, hidden: h1, stage: true });
    structuredClone(h1.buffer, { transfer: [h1.buffer] });
    await expect(p).rejects.toMatchObject({ code: 'BUFFER_DETACHED' });
  });

  test('a staged layer of the wrong length is refused (SHAPE_MISMATCH), not read past its end', async () => {
    const acc = new CorrelationAccumulator([STAGE_MIN, 1], [[0, 1]]);
    const h = await stageFloats(new Float32Array(STAGE_MIN));
    try {
      const native = (acc as unknown as { native: { add(l: unknown[], rows: number, cb: undefined): { promise: Promise<void> } } }).native;
      expect(() => native.add([h, new Float32Array(2)], 2, undefined)).toThrow(expect.objectContaining({ code: 'SHAPE_MISMATCH' }));
    } finally {
      h.dispose();
    }
  });
});
