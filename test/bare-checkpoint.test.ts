/**
 * A GPT-2 checkpoint saved from the bare model (GPT2Model, as the Hub's `gpt2` is) names its tensors without the
 * "transformer." level. The loader resolves either form; the writers were handed the architecture's names by
 * compress (ffReplacements, ffTies) and failed at the save, after the whole compress had run: TENSOR_NOT_FOUND
 * for tied and expanded output, an unknown tie for ONNX.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { compress } from '../lib/pipeline/compress';
import { loadModel } from '../lib/model/load';
import { inspectModel } from '../lib/model/inspect';
import { removeSyntheticDirs, syntheticGpt2, tempDir, writeSynthetic, type Synthetic } from './helpers/synthetic-model';

afterAll(removeSyntheticDirs);

test('compress writes a bare GPT-2 checkpoint tied, expanded and as ONNX, with the prefixed one\'s weights', async () => {
  const s = await syntheticGpt2({ layers: 3, d: 20, heads: 4, ff: 36, vocab: 50, positions: 16, seed: 21 });
  const bare: Synthetic = { ...s, dir: tempDir('gpt2-bare'), hf: new Map([...s.hf].map(([n, t]) => [n.replace(/^transformer\./, ''), t])) };
  await writeSynthetic(bare);
  const ids = Array.from({ length: 8 }, (_, b) => Int32Array.from({ length: 16 }, (_, i) => (b * 31 + i * 7) % 50));
  const opts = { calibration: ids, validation: ids.map((b) => b.map((t) => (t + 3) % 50)), k: 2, window: '1-2', method: 'permute', recover: 'none' } as const;
  const out = tempDir('bare-out');
  const prefixed = await compress(s.dir, { ...opts, out: path.join(out, 'prefixed'), format: 'tied' });
  for (const format of ['tied', 'expanded', 'onnx'] as const) {
    const r = await compress(bare.dir, { ...opts, out: path.join(out, format), format });
    expect(r.out?.format).toBe(format);
  }
  // the same merge, stored once under the bare names
  const a = await loadModel(path.join(out, 'prefixed'));
  const b = await loadModel(path.join(out, 'tied'));
  const input = { ids: Int32Array.from({ length: 12 }, (_, i) => (i * 5) % 50), batch: 1, seq: 12 };
  expect(Array.from((await b.forward(input, { output: 'logits' })).logits)).toEqual(Array.from((await a.forward(input, { output: 'logits' })).logits));
  a.dispose();
  b.dispose();
  const [tied, expanded] = [await inspectModel(path.join(out, 'tied')), await inspectModel(path.join(out, 'expanded'))];
  expect(tied.ffParams).toBe((await inspectModel(path.join(out, 'prefixed'))).ffParams);
  expect(expanded.ffParams).toBeGreaterThan(tied.ffParams);
  // inspect counts a bare checkpoint's FF as the prefixed one's (it counted 0: the names were not resolved)
  expect((await inspectModel(bare.dir)).ffParams).toBe((await inspectModel(s.dir)).ffParams);
  expect(prefixed.params.removed).toBeGreaterThan(0);
  expect(fs.existsSync(path.join(out, 'onnx', 'onnx', 'model.onnx'))).toBe(true);
});
