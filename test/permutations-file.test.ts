/**
 * permutations.json: an aligned merge says how it permuted each layer's FF units, which the merged weights alone
 * cannot tell. Checked by rebuilding the merged FF from the source's layers with it.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { compress } from '../lib/pipeline/compress';
import { loadModel } from '../lib/model/load';
import { validationText } from './helpers/validation-text';

const BUNDLED = path.resolve(__dirname, '..', 'models', 'llama-stories260k');
const TEXT = path.join(BUNDLED, 'calibration.txt');
const small = { calibration: TEXT, validation: validationText(TEXT), calibrationTokens: 1024, validationTokens: 1024 } as const;

describe('permutations.json', () => {
  jest.setTimeout(120_000);
  let tmp: string;
  beforeAll(() => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ffmerge-perms-'));
  });
  afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

  it("rebuilds the merged FF from the source's layers, and a later merge of the output keeps the earlier windows", async () => {
    const out = path.join(tmp, 'a');
    await compress(BUNDLED, { ...small, k: 3, window: '2-4', method: 'permute', recover: 'none', out });
    const file = JSON.parse(fs.readFileSync(path.join(out, 'permutations.json'), 'utf8'));
    expect(file.windows).toEqual([{ stack: 'decoder', window: '2-4', anchor: 2, method: 'permute', recover: 'none', permutations: { 3: expect.any(Array), 4: expect.any(Array) } }]);
    expect(fs.readFileSync(path.join(out, 'README.md'), 'utf8')).toContain('`permutations.json`');
    const [src, merged] = await Promise.all([loadModel(BUNDLED), loadModel(out)]);
    try {
      const m = merged.ffWeights(2);
      const { d, dFF } = m;
      const layers = [2, 3, 4].map((l) => ({ ff: src.ffWeights(l), perm: l === 2 ? Array.from({ length: dFF }, (_, j) => j) : (file.windows[0].permutations[l] as number[]) }));
      let worst = 0;
      for (let j = 0; j < dFF; j++) {
        for (let c = 0; c < d; c++) {
          const mean = layers.reduce((s, { ff, perm }) => s + ff.wIn[perm[j]! * d + c]! / 3, 0);
          worst = Math.max(worst, Math.abs(mean - m.wIn[j * d + c]!));
        }
      }
      expect(worst).toBeLessThan(1e-6);
      // not the identity: an unaligned average would not match
      expect(layers.slice(1).some(({ perm }) => perm.some((p, j) => p !== j))).toBe(true);
    } finally {
      src.dispose();
      merged.dispose();
    }
    const again = path.join(tmp, 'b');
    await compress(out, { ...small, k: 2, window: '0-1', method: 'permute', recover: 'none', out: again });
    const both = JSON.parse(fs.readFileSync(path.join(again, 'permutations.json'), 'utf8'));
    expect(both.windows.map((w: { window: string }) => w.window)).toEqual(['2-4', '0-1']);
  });

  it("a caller's merge method's perms are checked and written, and the card says so only where the file is there (reviewer RD)", async () => {
    const { MERGE_METHODS } = await import('../lib/pipeline/merge-methods');
    const permute = MERGE_METHODS.get('permute');
    const mine = (edit: (p: Map<number, Int32Array>) => unknown) => ({ name: 'my-permute', description: 'd', needsCorrelations: true, merge: async (...a: Parameters<typeof permute.merge>) => { const m = await permute.merge(...a); return { ...m, perms: edit(m.perms) as never }; } });
    const out = path.join(tmp, 'mine');
    await compress(BUNDLED, { ...small, k: 2, window: '1-2', method: 'my-permute', recover: 'none', out, plugins: { mergeMethods: [mine((p) => p)] } });
    expect(JSON.parse(fs.readFileSync(path.join(out, 'permutations.json'), 'utf8')).windows).toEqual([{ stack: 'decoder', window: '1-2', anchor: 1, method: 'my-permute', recover: 'none', permutations: { 2: expect.any(Array) } }]);
    const bad = (edit: (p: Map<number, Int32Array>) => unknown, message: RegExp) =>
      expect(compress(BUNDLED, { ...small, k: 2, window: '1-2', method: 'my-permute', recover: 'none', plugins: { mergeMethods: [mine(edit)] } })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringMatching(message) });
    await bad((p) => new Map([[2, p.get(2)!.map(() => 0)]]), /^merge method my-permute gave layer 2 a permutation that is not an Int32Array of the 172 units, each once/);
    await bad((p) => new Map([[1, p.get(2)!]]), /^merge method my-permute gave a permutation of a layer that is not one of its window's, other than the anchor/);
    await bad(() => ({}), /^merge method my-permute must give perms as a Map/);
    // no perms: no file, and the card does not point at one
    const none = path.join(tmp, 'none');
    await compress(BUNDLED, { ...small, k: 2, window: '1-2', method: 'my-permute', recover: 'none', out: none, plugins: { mergeMethods: [mine(() => undefined)] } });
    expect(fs.existsSync(path.join(none, 'permutations.json'))).toBe(false);
    expect(fs.readFileSync(path.join(none, 'README.md'), 'utf8')).not.toContain('permutations.json');
  });

  it("a source's file of that name that is not ffmerge's is not pointed at; finetune's card points at one it carries (tester GB)", async () => {
    const src = path.join(tmp, 'src');
    fs.cpSync(BUNDLED, src, { recursive: true });
    fs.writeFileSync(path.join(src, 'permutations.json'), '{"mine":"unrelated"}');
    const out = path.join(tmp, 'vanilla');
    await compress(src, { ...small, k: 2, window: '1-2', method: 'vanilla', recover: 'none', out });
    expect(fs.readFileSync(path.join(out, 'README.md'), 'utf8')).not.toContain('permutations.json');
    const aligned = path.join(tmp, 'aligned');
    await compress(BUNDLED, { ...small, k: 2, window: '1-2', method: 'permute', recover: 'none', out: aligned });
    const tuned = path.join(tmp, 'tuned');
    const bin = path.resolve(__dirname, '..', 'bin', 'ffmerge.js');
    const run = spawnSync(process.execPath, [bin, 'finetune', aligned, '--data', TEXT, '--steps', '1', '--out', tuned], { encoding: 'utf8', env: { ...process.env, FFMERGE_FROM_SOURCE: '1', FFMERGE_PROGRESS: '0' } });
    expect({ code: run.status, stderr: run.stderr }).toEqual({ code: 0, stderr: expect.any(String) });
    expect(fs.existsSync(path.join(tuned, 'permutations.json'))).toBe(true);
    expect(fs.readFileSync(path.join(tuned, 'README.md'), 'utf8')).toContain('`permutations.json`');
  });

  it("a source's permutations.json nested too deep to write again is read as none, not an INTERNAL_ERROR at save (tester GD)", async () => {
    const out = path.join(tmp, 'deep-src');
    await compress(BUNDLED, { ...small, k: 2, window: '3-4', method: 'permute', recover: 'none', out });
    fs.writeFileSync(path.join(out, 'permutations.json'), `{"about": "x", "windows": [${'['.repeat(100000)}${']'.repeat(100000)}]}`);
    const again = path.join(tmp, 'deep-out');
    await compress(out, { ...small, k: 2, window: '0-1', method: 'permute', recover: 'none', out: again });
    const file = JSON.parse(fs.readFileSync(path.join(again, 'permutations.json'), 'utf8'));
    expect(file.windows.map((w: { window: string }) => w.window)).toEqual(['0-1']);
  });

  it('is not written where no window was aligned (select)', async () => {
    const out = path.join(tmp, 'c');
    await compress(BUNDLED, { ...small, k: 2, window: '1-2', method: 'select', recover: 'none', out });
    expect(fs.existsSync(path.join(out, 'permutations.json'))).toBe(false);
    expect(fs.readFileSync(path.join(out, 'README.md'), 'utf8')).not.toContain('permutations.json');
  });
});
