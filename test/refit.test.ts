/**
 * --recover refit on the bundled llama-stories260k (SwiGLU, no FF biases): every candidate window's merged
 * model scores no worse on validation with the refit than without, and the search picks among refit scores.
 * (The gpt2-sotu all-windows comparison is in benchmarks/results/compress.md: it takes minutes on 2 cores.)
 */
import * as path from 'node:path';
import { compress } from '../lib/pipeline/compress';

const MODEL = path.resolve(__dirname, '..', 'models', 'llama-stories260k');
const DATA = path.join(MODEL, 'calibration.txt');

describe('training-free refit', () => {
  jest.setTimeout(600_000);
  it('never does worse than the plain merge, window by window (llama-stories260k, k = 2)', async () => {
    const common = { k: 2, calibration: DATA, calibrationTokens: 2048, validationTokens: 1024 } as const;
    const none = await compress(MODEL, { ...common, recover: 'none' });
    const refit = await compress(MODEL, { ...common, recover: 'refit' });
    expect(refit.candidates.map((c) => c.windows)).toEqual(none.candidates.map((c) => c.windows));
    refit.candidates.forEach((c, i) => expect(c.score).toBeLessThanOrEqual(none.candidates[i]!.score));
    const best = refit.candidates.reduce((a, b) => (b.score < a.score ? b : a));
    expect(refit.windows[0]!.window).toBe(best.windows.decoder);
    expect(refit.recover).toBe('refit');
  });
});
