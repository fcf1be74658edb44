import { averageFF, averageFFAsync, FFMean } from '../lib/merge/average';
import { permuteFF, permuteFFAsync } from '../lib/merge/permute';
import { STAGE_MIN } from '../lib/native/staged';
import { shuffled } from './helpers/permutation';
import { anchorOffset, checkWindow, enumerateWindows, kFromFraction, kLabel, parseWindow } from '../lib/merge/windows';
import { transpose, type FFWeights } from '../lib/model/ff-weights';
import { ffForwardReference } from './reference/ff';
import { SafetensorsReader } from '../lib/safetensors';
import { FfmergeError } from '../lib/errors';
import { describeShared, sharedPath } from './helpers/shared';

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32 - 0.5;
  };
}

function randomFF(d: number, dFF: number, gate: boolean, seed: number): FFWeights {
  const r = rng(seed);
  const fill = (n: number) => Float32Array.from({ length: n }, r);
  return {
    d,
    dFF,
    wIn: fill(dFF * d),
    bIn: fill(dFF),
    ...(gate ? { wGate: fill(dFF * d) } : {}),
    wOut: fill(d * dFF),
    bOut: fill(d),
  };
}

function randomPerm(n: number, seed: number): Int32Array {
  const r = rng(seed);
  const p = Int32Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor((r() + 0.5) * (i + 1));
    [p[i], p[j]] = [p[j]!, p[i]!];
  }
  return p;
}

function maxRelDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  let scale = 1e-30;
  for (let i = 0; i < a.length; i++) scale = Math.max(scale, Math.abs(b[i]!));
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m / scale;
}

describe('permuteFF', () => {
  it.each([
    [7, 13, false, 'gelu_new'],
    [5, 11, true, 'silu'],
  ] as const)('keeps the FF function (d=%i, dFF=%i, gate=%s)', (d, dFF, gate, act) => {
    const ff = randomFF(d, dFF, gate, 1);
    const x = Float32Array.from({ length: 9 * d }, rng(2));
    const perm = randomPerm(dFF, 3);
    const before = ffForwardReference(ff, x, 9, act);
    const after = ffForwardReference(permuteFF(ff, perm), x, 9, act);
    expect(maxRelDiff(after.out, before.out)).toBeLessThan(1e-6);
    // the hidden units moved: unit j of the result is unit perm[j] of the input
    for (let j = 0; j < dFF; j++) expect(after.hidden[j]).toBeCloseTo(before.hidden[perm[j]!]!, 10);
  });

  it('rejects a non-permutation with INVALID_ARGUMENT', () => {
    const ff = randomFF(3, 4, false, 1);
    expect(() => permuteFF(ff, [0, 1, 1, 2])).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
    expect(() => permuteFF(ff, [0, 1, 2])).toThrow(FfmergeError);
  });
});

describe('averageFF', () => {
  it('is the element-wise mean', () => {
    const a = randomFF(4, 6, true, 1);
    const b = randomFF(4, 6, true, 2);
    const c = randomFF(4, 6, true, 3);
    const m = averageFF([a, b, c]);
    for (let i = 0; i < a.wIn.length; i++) expect(m.wIn[i]).toBeCloseTo((a.wIn[i]! + b.wIn[i]! + c.wIn[i]!) / 3, 6);
    for (let i = 0; i < a.bOut!.length; i++) expect(m.bOut![i]).toBeCloseTo((a.bOut![i]! + b.bOut![i]! + c.bOut![i]!) / 3, 6);
    expect(m.wGate).toBeDefined();
  });

  it('merging exact permuted copies with the inverse alignment gives the original FF back', () => {
    const ff = randomFF(5, 9, false, 8);
    const perm = randomPerm(9, 9);
    const copy = permuteFF(ff, perm);
    // aligning the copy to the anchor: unit j of the anchor is unit inv[j] of the copy
    const inv = new Int32Array(9);
    perm.forEach((p, j) => (inv[p] = j));
    const merged = averageFF([ff, permuteFF(copy, inv)]);
    expect(maxRelDiff(merged.wIn, ff.wIn)).toBe(0);
    expect(maxRelDiff(merged.wOut, ff.wOut)).toBe(0);
  });

  it('rejects mismatched shapes', () => {
    expect(() => averageFF([randomFF(4, 6, false, 1), randomFF(4, 7, false, 1)])).toThrow(
      expect.objectContaining({ code: 'SHAPE_MISMATCH' }),
    );
  });
});

describe('sliced (event-loop friendly) merge ops', () => {
  it('permuteFFAsync and averageFFAsync give bit-identical results to the plain loops, over many slices', async () => {
    // d × dFF above the slice size, odd sizes: several slices with a ragged last one
    const ffs = [0, 1, 2].map((s) => randomFF(129, 1031, true, 40 + s));
    const perm = shuffled(1031, 7);
    const pa = await permuteFFAsync(ffs[0]!, perm);
    const ps = permuteFF(ffs[0]!, perm);
    for (const k of ['wIn', 'bIn', 'wGate', 'wOut', 'bOut'] as const) expect(Buffer.from(pa[k]!.buffer).equals(Buffer.from(ps[k]!.buffer))).toBe(true);
    const aa = await averageFFAsync(ffs);
    const as = averageFF(ffs);
    for (const k of ['wIn', 'bIn', 'wGate', 'wOut', 'bOut'] as const) expect(Buffer.from(aa[k]!.buffer).equals(Buffer.from(as[k]!.buffer))).toBe(true);
  });

  it('above STAGE_MIN (sums and results in native memory) they are still the plain loops bit for bit', async () => {
    const ffs = [0, 1].map((s) => randomFF(513, 2045, true, 80 + s)); // 513 × 2045 = 1,049,085 ≥ STAGE_MIN
    expect(513 * 2045).toBeGreaterThanOrEqual(STAGE_MIN);
    const perm = shuffled(2045, 9);
    const pa = await permuteFFAsync(ffs[0]!, perm);
    const ps = permuteFF(ffs[0]!, perm);
    const aa = await averageFFAsync([pa, ffs[1]!]);
    const as = averageFF([ps, ffs[1]!]);
    for (const k of ['wIn', 'bIn', 'wGate', 'wOut', 'bOut'] as const) {
      expect(Buffer.from(pa[k]!.buffer, pa[k]!.byteOffset, pa[k]!.byteLength).equals(Buffer.from(ps[k]!.buffer))).toBe(true);
      expect(Buffer.from(aa[k]!.buffer, aa[k]!.byteOffset, aa[k]!.byteLength).equals(Buffer.from(as[k]!.buffer))).toBe(true);
    }
  });

  it('FFMean, fed one FF at a time (what permute and vanilla do), is averageFF bit for bit and refuses what it refuses', async () => {
    const ffs = [0, 1, 2, 3].map((s) => randomFF(37, 301, true, 60 + s));
    const mean = new FFMean();
    for (const ff of ffs) await mean.add(ff);
    const got = await mean.result();
    const want = averageFF(ffs);
    for (const k of ['wIn', 'bIn', 'wGate', 'wOut', 'bOut'] as const) expect(Buffer.from(got[k]!.buffer).equals(Buffer.from(want[k]!.buffer))).toBe(true);
    expect(got.bGate).toBeUndefined();
    const odd = new FFMean();
    await odd.add(ffs[0]!);
    await expect(odd.add(randomFF(37, 300, true, 1))).rejects.toMatchObject({ code: 'SHAPE_MISMATCH', message: expect.stringContaining('FF 1 is 300×37') });
    await expect(new FFMean().result()).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
  });

  it('stop with ABORTED when the signal fires, and check shapes like the plain ones', async () => {
    const ac = new AbortController();
    ac.abort();
    await expect(averageFFAsync([randomFF(8, 16, false, 1), randomFF(8, 16, false, 2)], { signal: ac.signal })).rejects.toMatchObject({ code: 'ABORTED' });
    await expect(averageFFAsync([randomFF(8, 16, false, 1), randomFF(8, 12, false, 2)])).rejects.toMatchObject({ code: 'SHAPE_MISMATCH' });
    await expect(permuteFFAsync(randomFF(8, 4, false, 1), [0, 0, 1, 2])).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
  });
});

describe('windows', () => {
  it('enumerates every start', () => {
    expect(enumerateWindows(12, 4).map((w) => w.start)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8]);
  });
  it('parses a-b and checks it', () => {
    expect(parseWindow('4-7', 12)).toEqual({ start: 4, k: 4 });
    expect(() => parseWindow('4-7', 12, 3)).toThrow(expect.objectContaining({ code: 'INVALID_WINDOW' }));
    expect(() => parseWindow('10-12', 12)).toThrow(expect.objectContaining({ code: 'INVALID_WINDOW' }));
    expect(() => parseWindow('banana', 12)).toThrow(expect.objectContaining({ code: 'INVALID_WINDOW' }));
    // a window of one layer: before, "does not fit in the model's 4 layers"
    expect(() => checkWindow({ start: 0, k: 1 }, 4)).toThrow(expect.objectContaining({ code: 'INVALID_WINDOW', message: 'window start 0, k 1: a window merges at least 2 layers' }));
    expect(() => checkWindow({ start: 3, k: 2 }, 4)).toThrow(expect.objectContaining({ code: 'INVALID_WINDOW', message: expect.stringContaining("does not fit in the model's 4 layers") }));
    expect(() => enumerateWindows(5, 6)).toThrow(expect.objectContaining({ code: 'K_TOO_LARGE' }));
  });
  it('names k as the windows have it: k − 1 pairs chosen in place of one window of k say so', () => {
    expect(kLabel(3, [3])).toBe('k = 3');
    expect(kLabel(3, [2, 2])).toBe('k = 3 as 2 pairs');
    expect(kLabel(2, [2, 3])).toBe('k = 2, 3');
  });
  it('k from fraction and anchors', () => {
    expect(kFromFraction(0.25, 12)).toBe(4);
    expect(kFromFraction(0.1, 5)).toBe(2); // 0.5 of a layer rounds to one
    // a share that rounds to no FF sublayer is refused, not raised to k = 2 (20 % of 5 layers)
    expect(() => kFromFraction(0.01, 5)).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT', message: expect.stringMatching(/rounds to none.*k = 2, fraction 0\.2\b/) }));
    // one rounding past a window of every layer is refused too, not cut to it silently (3.96 of 4 layers)
    expect(kFromFraction(0.75, 4)).toBe(4);
    expect(() => kFromFraction(0.99, 4)).toThrow(expect.objectContaining({ code: 'K_TOO_LARGE', message: expect.stringMatching(/rounds to 4; the most a merge of 4 layers removes is 3 \(k = 4, fraction 0\.75\)/) }));
    // a 1-layer model: no k was given, so the message is not about k (before: "k must be an integer ≥ 2 … got 1")
    expect(() => kFromFraction(0.25, 1)).toThrow(expect.objectContaining({ code: 'K_TOO_LARGE', message: 'the model has 1 layer: a merge needs at least 2 FF sublayers' }));
    expect(anchorOffset('first', 4)).toBe(0);
    expect(anchorOffset('middle', 4)).toBe(1);
    expect(anchorOffset('last', 4)).toBe(3);
  });
});

describeShared('fixtures/gpt2-sotu', 'permuting a real GPT-2 FF (Conv1D layout)', () => {
  it('leaves the FF outputs unchanged to float rounding', async () => {
    const r = await SafetensorsReader.open(sharedPath('fixtures', 'gpt2-sotu', 'model.safetensors'));
    const d = 128;
    const dFF = 512;
    const conv: FFWeights = {
      d,
      dFF,
      wIn: await r.readF32('transformer.h.3.mlp.c_fc.weight'),
      bIn: await r.readF32('transformer.h.3.mlp.c_fc.bias'),
      wOut: await r.readF32('transformer.h.3.mlp.c_proj.weight'),
      bOut: await r.readF32('transformer.h.3.mlp.c_proj.bias'),
    };
    await r.close();
    const perm = randomPerm(dFF, 42);
    // stored [in, out] (Conv1D), read in the canonical layout as the loader reads it
    const canon: FFWeights = { ...conv, wIn: transpose(conv.wIn, d, dFF), wOut: transpose(conv.wOut, dFF, d) };
    const x = Float32Array.from({ length: 7 * d }, rng(11));
    const before = ffForwardReference(canon, x, 7, 'gelu_new');
    const after = ffForwardReference(permuteFF(canon, perm), x, 7, 'gelu_new');
    expect(maxRelDiff(after.out, before.out)).toBeLessThan(1e-9);
  });
});
