/**
 * select's memory bound: where the pooled units' normal equations ((P+1)² doubles) would pass the budget, a
 * first pass keeps, per source layer, the units that explain the most alone, and the selection runs on those.
 */
import * as path from 'node:path';
import { compress } from '../lib/pipeline/compress';
import { DEFAULT_SELECT_GRAM_BYTES, poolCap, prescreen } from '../lib/pipeline/merge-methods/select';
import { loadModel } from '../lib/model/load';

const MODEL = path.resolve(__dirname, '..', 'models', 'llama-stories260k');
const DATA = path.join(MODEL, 'calibration.txt');

describe('poolCap', () => {
  it('keeps a pool that fits, cuts one that does not, never below 1.25 × d_ff', () => {
    expect(poolCap(2048, 512, DEFAULT_SELECT_GRAM_BYTES)).toBe(2048); // gpt2-sotu, k = 4: 34 MB
    expect(poolCap(12288, 3072, DEFAULT_SELECT_GRAM_BYTES)).toBe(4095); // GPT-2-small, k = 4: 1.2 GB → 134 MB
    const cap = poolCap(12288, 3072, DEFAULT_SELECT_GRAM_BYTES);
    expect((cap + 1) ** 2 * 8).toBeLessThanOrEqual(DEFAULT_SELECT_GRAM_BYTES);
    expect(poolCap(22016, 11008, DEFAULT_SELECT_GRAM_BYTES)).toBe(13760); // 7B width, k = 2: the floor
    expect(poolCap(344, 172, 1)).toBe(215);
  });
});

describe('prescreen', () => {
  it('takes the best of each source layer by its quota, ties to the lower index, sorted', () => {
    // two layers of 4 units; layer 0's units are all stronger than layer 1's
    const gains = Float64Array.from([5, 9, 1, 9, 0.5, 0.1, 0.7, 0.2]);
    expect(prescreen(gains, 2, 4)).toEqual([1, 3, 4, 6]);
    expect(prescreen(gains, 2, 5)).toEqual([0, 1, 3, 4, 6]); // the odd one goes to the first layer
    expect(prescreen(gains, 2, 8)).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
  });
});

describe('select under a memory budget (bundled llama, window 1-2)', () => {
  jest.setTimeout(300_000);
  const common = { k: 2, window: '1-2', method: 'select', recover: 'none', calibration: DATA, calibrationTokens: 2048, validationTokens: 1024 } as const;

  it('with a budget below the pool, keeps at most each layer\'s quota of units and still merges well', async () => {
    const os = await import('node:os');
    const fs = await import('node:fs');
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ffmerge-prescreen-'));
    try {
      const full = await compress(MODEL, common);
      const capped = await compress(MODEL, { ...common, selectMemory: 1, out: path.join(tmp, 'out') });
      // 344 pooled units cut to 215 (1.25 × 172): 108 from layer 1, 107 from layer 2
      const base = await loadModel(MODEL);
      const merged = await loadModel(path.join(tmp, 'out'));
      const d = base.spec.dModel;
      const row = (t: Float32Array, i: number) => t.subarray(i * d, i * d + d).join(',');
      const from = new Map<string, number>();
      for (const l of [1, 2]) {
        const w = base.ffWeights(l).wIn;
        for (let i = 0; i < base.spec.dFF; i++) from.set(row(w, i), l);
      }
      const m = merged.ffWeights(1).wIn;
      const counts = { 1: 0, 2: 0 } as Record<number, number>;
      for (let i = 0; i < base.spec.dFF; i++) counts[from.get(row(m, i))!]! += 1;
      expect(counts[1]! + counts[2]!).toBe(172);
      expect(counts[1]!).toBeLessThanOrEqual(108);
      expect(counts[2]!).toBeLessThanOrEqual(107);
      base.dispose();
      merged.dispose();
      // the floor's 216² doubles pass the 1-byte budget, and the notes say so (tester EC: silently)
      expect(capped.data.notes).toContain('select at decoder 1-2 kept 215 pooled units resident, whose sums take 364.5 KiB, more than the select memory budget of 1 B (--select-memory): the selection needs at least 1.25 × d_ff (172) units to choose from');
      expect(full.data.notes.filter((n) => n.startsWith('select at'))).toEqual([]);
      // the cut pool costs little here: within 10 % of the full pool's validation perplexity
      expect(capped.merged.validation).toBeLessThan(full.merged.validation * 1.1);
      expect(capped.merged.validation).toBeLessThan(capped.base.validation * 3);
    } finally {
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  });

  it('refuses a budget that is not a positive number', async () => {
    await expect(compress(MODEL, { ...common, selectMemory: 0 })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(compress(MODEL, { ...common, selectMemory: '1GB' as never })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
  });
});
