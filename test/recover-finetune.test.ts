/**
 * recover 'finetune' checks its own training on calibration data it holds out (the last eighth): where the
 * loss there does not fall, the untrained merge is kept and the report says so. Before, training that made
 * the merge worse was kept without a word (tester DQ: gpt2-sotu validation 86.78 → 89.64).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { compress } from '../lib/pipeline/compress';
import { loadTokenizer } from '../lib/tokenizer';

const BUNDLED = path.resolve(__dirname, '..', 'models', 'llama-stories260k');

describe("recover 'finetune' and its held-out check", () => {
  jest.setTimeout(120_000);
  let tmp: string;
  let story: number[];
  beforeAll(async () => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ffmerge-ft-recover-'));
    const tok = await loadTokenizer(BUNDLED);
    story = Array.from(tok.encode(fs.readFileSync(path.join(BUNDLED, 'calibration.txt'), 'utf8').slice(0, 40_000)));
  });
  afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

  /** Token-id rows of 256: `repeats` rows of one token, then `stories` rows of the bundled text. */
  const rows = (name: string, repeats: number, stories: number): string => {
    const lines = [...Array.from({ length: repeats }, () => Array(256).fill(100)), ...Array.from({ length: stories }, (_, i) => story.slice(i * 256, (i + 1) * 256))];
    const file = path.join(tmp, name);
    fs.writeFileSync(file, lines.map((r) => JSON.stringify({ input_ids: r })).join('\n') + '\n');
    return file;
  };
  const common = { window: '3-4', method: 'permute', recover: 'finetune', calibrationTokens: 2048 } as const;

  test('training that lowers the held-out loss is kept, and its numbers are in the notes', async () => {
    const r = await compress(BUNDLED, { ...common, calibration: rows('plain.jsonl', 0, 13) });
    expect(r.recover).toBe('finetune');
    const note = r.data.notes.find((n) => n.startsWith('recover finetune at decoder 3-4: loss on held-out calibration data'));
    const [before, after] = note!.match(/(\d+\.\d+) → (\d+\.\d+)/)!.slice(1).map(Number);
    expect(after!).toBeLessThan(before!);
  });

  test('training that does not lower it is dropped: the untrained merge, recover none, and why', async () => {
    // seven rows of one token train the FFs away from the story held out in the eighth
    const skewed = rows('skewed.jsonl', 7, 6);
    const r = await compress(BUNDLED, { ...common, calibration: skewed });
    expect(r.recover).toBe('none');
    expect(r.windows[0]).toMatchObject({ window: '3-4', recover: 'none' });
    expect(r.data.notes).toContainEqual(expect.stringMatching(/^recover finetune at decoder 3-4: training did not lower the loss on held-out calibration data \(\d+\.\d+ → \d+\.\d+\), so the untrained merge was kept$/));
    // the same as merging without recovery
    const plain = await compress(BUNDLED, { ...common, recover: 'none', calibration: skewed });
    expect(r.merged.validation).toBe(plain.merged.validation);
  });
});
