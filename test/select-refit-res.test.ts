/**
 * The training-free merge beyond the paper on the bundled llama-stories260k (SwiGLU, no FF biases):
 *  - `select` keeps whole units of the window's layers (a (gate, up) row pair from one layer, never mixed);
 *  - `refit-res` rewrites the window's shared W_out and the later layers' own W_out, and the written
 *    checkpoint (tied and expanded) reproduces the scored model: reloaded, it scores the same validation;
 *  - with method 'auto', compress scores every default combination at every window and keeps the best.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { compress, DEFAULT_COMBOS } from '../lib/pipeline/compress';
import { select } from '../lib/pipeline/merge-methods/select';
import type { Progress } from '../lib/native/job';
import { loadModel } from '../lib/model/load';
import { inspectModel } from '../lib/model/inspect';
import { readTies } from '../lib/checkpoint/ties';
import { tokenizeFile } from '../lib/data/tokenize-file';
import { cutBlocks } from '../lib/data/blocks';
import { perplexity } from '../lib/eval/perplexity';
import { describeShared, sharedPath } from './helpers/shared';
import { formatReport } from '../lib/cli/report';

const MODEL = path.resolve(__dirname, '..', 'models', 'llama-stories260k');
const DATA = path.join(MODEL, 'calibration.txt');
const common = { k: 2, calibration: DATA, calibrationTokens: 2048, validationTokens: 1024 } as const;

/**
 * A written checkpoint's perplexity on compress's validation blocks (the 1024 tokens after the 2048 that
 * calibrate, in blocks of 256). Compressing it again cannot measure this: its merged windows are refused.
 */
async function validationOf(dir: string): Promise<number> {
  const blocks = cutBlocks(await tokenizeFile(MODEL, DATA, { maxTokens: 3072 }), 256).slice(8, 12);
  const m = await loadModel(dir);
  try {
    return (await perplexity(m, blocks)).ppl;
  } finally {
    m.dispose();
  }
}

describe('select + refit-res', () => {
  jest.setTimeout(600_000);
  let tmp: string;
  beforeAll(() => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ffmerge-select-'));
  });
  afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

  it('keeps whole units of the window, and the written checkpoint reproduces the scored model', async () => {
    for (const format of ['tied', 'expanded'] as const) {
      const out = path.join(tmp, format);
      const r = await compress(MODEL, { ...common, window: '1-2', method: 'select', recover: 'refit-res', format, out });
      expect(r.windows[0]).toMatchObject({ window: '1-2', method: 'select', recover: 'refit-res', adjusted: [3] });
      expect(r.merged.validation).toBeLessThan(r.base.validation * 3);

      // every merged unit is one unit of layer 1 or 2: its up row, gate row and nothing else from that layer
      const base = await loadModel(MODEL);
      const merged = await loadModel(out);
      const d = base.spec.dModel;
      const dFF = base.spec.dFF;
      const m1 = merged.ffWeights(1);
      const sources = [1, 2].map((l) => base.ffWeights(l));
      const row = (t: Float32Array, i: number) => t.subarray(i * d, i * d + d).join(',');
      const units = new Map(sources.flatMap((s, li) => Array.from({ length: dFF }, (_, i) => [row(s.wIn, i), `${li}:${row(s.wGate!, i)}`] as const)));
      for (let i = 0; i < dFF; i++) {
        const src = units.get(row(m1.wIn, i));
        expect(src).toBeDefined();
        expect(src!.slice(2)).toBe(row(m1.wGate!, i));
      }
      // tied: layer 2's FF is stored as layer 1's; the rewritten later layers are stored, each its own
      const ties = Object.keys(await readTies(out));
      expect(ties.length > 0 && ties.every((n) => /layers\.2\.mlp/.test(n))).toBe(format === 'tied');
      // the layers after the window keep their own W_in and get a new W_out
      const l3 = merged.ffWeights(3);
      const o3 = base.ffWeights(3);
      expect(l3.wIn).toEqual(o3.wIn);
      expect(l3.wOut).not.toEqual(o3.wOut);
      base.dispose();
      merged.dispose();

      // reloaded and scored on the same validation tokens: the merged model's number
      expect(Math.abs((await validationOf(MODEL)) / r.base.validation - 1)).toBeLessThan(1e-4); // the same blocks
      expect(Math.abs((await validationOf(out)) / r.merged.validation - 1)).toBeLessThan(1e-4);
    }
  });

  it('given windows merge the same in any order, never rewrite a layer another window shares, and are written as scored', async () => {
    const opts = { ...common, method: 'select', recover: 'refit-res' } as const;
    const out = path.join(tmp, 'two-windows');
    // refit-res rewrites the layer after each window: after 0-1 that is layer 2, which 2-3 shares
    const r = await compress(MODEL, { ...opts, window: '2-3,0-1', out });
    expect(r.windows.map((w) => [w.window, w.adjusted])).toEqual([['0-1', undefined], ['2-3', [4]]]);
    const inOrder = await compress(MODEL, { ...opts, window: '0-1,2-3' });
    expect(inOrder.merged.validation).toBe(r.merged.validation);
    // the written checkpoint (layers 2 and 3 one tied FF) scores what the search scored
    expect(Math.abs((await validationOf(out)) / r.merged.validation - 1)).toBeLessThan(1e-4);
  });

  it("with method 'auto', every default combination is scored at every window and the best kept", async () => {
    // the registry hands out a frozen stand-in that calls the method's own merge: that is what is counted
    const selectMerge = jest.spyOn(select, 'merge');
    let r;
    try {
      r = await compress(MODEL, { ...common, method: 'auto' });
      // select + refit-res and select alone share one select merge per window
      expect(selectMerge).toHaveBeenCalledTimes(4);
    } finally {
      selectMerge.mockRestore();
    }
    // ... and its candidates score what the combination run alone scores
    const alone = await compress(MODEL, { ...common, window: '2-3', method: 'select', recover: 'none' });
    expect(r.candidates.find((c) => c.windows.decoder === '2-3' && c.method === 'select+none')!.score).toBeCloseTo(alone.merged.validation, 6);
    // select fits W_out by the refit's own least squares: a refit after it changes nothing, so the default
    // does not run one (tester DU: select + refit scored and wrote what select alone did)
    const refitted = await compress(MODEL, { ...common, window: '2-3', method: 'select', recover: 'refit' });
    expect(refitted.merged.validation).toBe(alone.merged.validation);
    const combos = DEFAULT_COMBOS.map(([m, rc]) => `${m}+${rc}`);
    expect(r.candidates).toHaveLength(4 * combos.length);
    for (const w of ['0-1', '1-2', '2-3', '3-4']) {
      expect(r.candidates.filter((c) => c.windows.decoder === w).map((c) => c.method)).toEqual(combos);
    }
    const best = r.candidates.reduce((a, b) => (b.score < a.score ? b : a));
    expect(r.windows[0]!.window).toBe(best.windows.decoder);
    expect(`${r.method}+${r.recover}`).toBe(best.method);
    expect(r.merged.validation).toBeCloseTo(best.score, 6);
  });
});

describe("pairs in place of one window (method 'auto', k > 2)", () => {
  jest.setTimeout(600_000);
  it('scores every pair, then the k − 1 best disjoint pairs together, and keeps the best of all', async () => {
    const events: Progress[] = [];
    const r = await compress(MODEL, { ...common, k: 3, method: 'auto', baselines: ['drop-ff', 'paper'], onProgress: (p) => events.push(p) });
    // progress: every candidate announced as it starts (with its label), then counted when scored, pairs included
    const search = events.filter((e) => e.phase === 'search');
    expect(search.filter((e) => e.detail).map((e) => e.detail)).toEqual(r.candidates.map((c) => `decoder ${c.windows.decoder} ${c.method}`));
    expect(search.map((e) => e.done)).toEqual(r.candidates.flatMap((_, i) => [i, i + 1]));
    expect(new Set(search.map((e) => e.total))).toEqual(new Set([r.candidates.length]));
    // the baselines share one count
    const baselines = events.filter((e) => e.phase === 'baselines' && !e.detail);
    const nBaseline = r.baselines['drop-ff']!.candidates.length + r.baselines.paper!.candidates.length;
    expect(baselines.map((e) => e.done)).toEqual(Array.from({ length: nBaseline }, (_, i) => i + 1));
    expect(baselines.every((e) => e.total === nBaseline)).toBe(true);
    const windows = r.candidates.filter((c) => /^\d+-\d+$/.test(c.windows.decoder!));
    const k3 = windows.filter((c) => ['0-2', '1-3', '2-4'].includes(c.windows.decoder!));
    const pairs = windows.filter((c) => ['0-1', '1-2', '2-3', '3-4'].includes(c.windows.decoder!));
    expect(k3).toHaveLength(3 * DEFAULT_COMBOS.length);
    expect(pairs).toHaveLength(4);
    const combined = r.candidates.filter((c) => c.windows.decoder!.includes(','));
    expect(combined).toHaveLength(1);
    const [a, b] = combined[0]!.windows.decoder!.split(',').map((w) => Number(w.split('-')[0]));
    expect(b! - a!).toBeGreaterThanOrEqual(2); // disjoint
    const bestWindow = k3.reduce((x, y) => (y.score < x.score ? y : x));
    const want = combined[0]!.score < bestWindow.score ? combined[0]!.windows.decoder : bestWindow.windows.decoder;
    expect(r.windows.map((w) => w.window).join(',')).toBe(want);
    // the report and the card say which it was ("k = 3" alone would read as windows of 3)
    expect(formatReport(r)).toMatch(r.windows.length === 2 ? /merged {4}k = 3 as 2 pairs,/ : /merged {4}k = 3,/);
    // two FF sublayers removed either way
    expect(r.params.removed).toBe(2 * (await inspectModel(MODEL)).stacks[0]!.ffParamsPerLayer);
    // a later layer rewritten for one pair never lies inside the other pair
    const inWindows = new Set(r.windows.flatMap((w) => w.layers));
    for (const w of r.windows) for (const l of w.adjusted ?? []) expect(inWindows.has(l)).toBe(false);
  });
});

describeShared('fixtures/vit-fmnist', 'select + refit-res on an image classifier (pre-norm encoder)', () => {
  jest.setTimeout(600_000);
  it('runs, rewrites the layer after the window, and scores', async () => {
    const IMAGES = { images: sharedPath('data', 'fmnist', 'train-images-idx3-ubyte.gz'), labels: sharedPath('data', 'fmnist', 'train-labels-idx1-ubyte.gz') };
    const r = await compress(sharedPath('fixtures', 'vit-fmnist'), { images: IMAGES, k: 3, window: '8-10', method: 'select', recover: 'refit-res', calibrationImages: 100, validationImages: 200 });
    expect(r.windows).toMatchObject([{ stack: 'encoder', window: '8-10', method: 'select', recover: 'refit-res', adjusted: [11] }]);
    expect(r.merged.validation).toBeGreaterThan(0.5);
  });
});

describeShared('fixtures/marian-multi30k-en-de', 'select + refit-res on a translation model (post-norm, both stacks)', () => {
  jest.setTimeout(600_000);
  it('runs on both stacks, with refit-seq targets (no later layer rewritten)', async () => {
    const m30k = (f: string) => sharedPath('data', 'multi30k', f);
    const r = await compress(sharedPath('fixtures', 'marian-multi30k-en-de'), {
      parallel: { source: m30k('val.en.gz'), target: m30k('val.de.gz') },
      window: '4-5',
      method: 'select',
      recover: 'refit-res',
      calibrationPairs: 100,
      validationSentences: 10,
    });
    expect(r.windows.map((w) => [w.stack, w.method, w.adjusted])).toEqual([
      ['encoder', 'select', undefined],
      ['decoder', 'select', undefined],
    ]);
    expect(r.merged.validation).toBeGreaterThan(0);
  });
});
