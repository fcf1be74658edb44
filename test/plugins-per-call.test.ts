/**
 * A caller's own plug-ins (tester BC): given per call (compress's `plugins`, the CLI's --plugins), picked by
 * name beside ffmerge's own, checked as they are given, and seen by no other call: a server running several
 * jobs in one process must not have one job's plug-ins change another's registries.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { compress } from '../lib/pipeline/compress';
import { BASELINES } from '../lib/pipeline/baselines';
import { MERGE_METHODS } from '../lib/pipeline/merge-methods';
import { RECOVER_METHODS } from '../lib/pipeline/recover';
import type { Baseline, MergeMethod, RecoverMethod } from '../lib/pipeline/plugins';
import { validationText } from './helpers/validation-text';

const BUNDLED = path.resolve(__dirname, '..', 'models', 'llama-stories260k');
const TEXT = path.join(BUNDLED, 'calibration.txt');
const BIN = path.resolve(__dirname, '..', 'bin', 'ffmerge.js');
const small = { calibration: TEXT, validation: validationText(TEXT), calibrationTokens: 1024, validationTokens: 1024, k: 2 } as const;

/** Halves the merged FF's output: a real change to the model, so its score must move. */
const halveOut: RecoverMethod = {
  name: 'halve-out',
  description: "halves the merged FF's output",
  async recover(_ctx, m) {
    const ff = m.merged;
    return { ...m, merged: { ...ff, wOut: ff.wOut.map((v) => v / 2), ...(ff.bOut ? { bOut: ff.bOut.map((v) => v / 2) } : {}) } };
  },
};

/** Removes the last k − 1 layers: one placement, so it is built, not scored. */
const dropLast: Baseline = {
  name: 'drop-last',
  description: 'removes the last layers',
  candidates: ({ model, stacks, ffRemoved }) => {
    const L = model.layers(stacks[0]!);
    const layers = Array.from({ length: ffRemoved }, (_, i) => L - ffRemoved + i);
    return [{ windows: { decoder: `${layers[0]}-${L - 1}` }, start: layers[0]!, paramsRemoved: 1, edits: async () => stacks.map((stack) => ({ kind: 'drop-layers' as const, stack, layers })) }];
  },
};

const nowhere: Baseline = { name: 'nowhere', description: 'no placement at all', candidates: () => [] };

describe('plug-ins of a call', () => {
  jest.setTimeout(300_000);

  it('are picked by name and reported, and another call running beside it does not see them', async () => {
    const mine = compress(BUNDLED, { ...small, window: '1-2', method: 'permute', recover: 'halve-out', baselines: ['drop-last', 'nowhere'], plugins: { recoverMethods: [halveOut], baselines: [dropLast, nowhere] } });
    // started while the first runs: the registries it reads are ffmerge's own
    const other = compress(BUNDLED, { ...small, window: '1-2', method: 'permute', recover: 'halve-out' });
    await expect(other).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringMatching(/^recover must be one of none, refit, refit-seq, refit-res, finetune \(got "halve-out"\)$/) });
    const r = await mine;
    expect(r.recover).toBe('halve-out');
    expect(r.windows).toEqual([expect.objectContaining({ window: '1-2', method: 'permute', recover: 'halve-out' })]);
    expect(r.baselines['drop-last']).toMatchObject({ windows: { decoder: '4-4' }, paramsRemoved: 1, candidates: [] });
    // a baseline with no placement is named in the notes, not left out without a word
    expect(r.baselines.nowhere).toBeUndefined();
    expect(r.data.notes).toContain('baseline nowhere has no placement at this size in decoder: not evaluated');
    // the plug-in really ran: the same merge without it scores otherwise
    const plain = await compress(BUNDLED, { ...small, window: '1-2', method: 'permute', recover: 'none' });
    expect(r.merged.validation).not.toBeCloseTo(plain.merged.validation, 3);
    // and ffmerge's registries are as they were
    expect(RECOVER_METHODS.names()).toEqual(['none', 'refit', 'refit-seq', 'refit-res', 'finetune']);
    expect(BASELINES.names()).toEqual(['drop-ff', 'drop-layers', 'paper']);
  });

  it('are checked as they are given: a name of its own, writable on the command line, and the function of its kind', async () => {
    const merge: MergeMethod = { name: 'x', description: 'd', needsCorrelations: false, merge: () => Promise.reject(new Error('not run')) };
    const refused = async (plugins: object, message: RegExp) => {
      await expect(compress(BUNDLED, { ...small, method: 'permute', plugins } as never)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringMatching(message) });
    };
    await refused({ mergeMethods: [{ ...merge, name: 'permute' }] }, /^merge method "permute" is given twice \(the merge methods: permute, vanilla, select\); give yours a name of its own$/);
    await refused({ recoverMethods: [halveOut, halveOut] }, /recover method "halve-out" is given twice/);
    // 'auto' is compress's own search: a method of that name could never be picked
    await refused({ mergeMethods: [{ ...merge, name: 'auto' }] }, /name is letters, digits, '\.', '_' and '-', starting with a letter or digit, and not auto \(got "auto"\)/);
    // a comma splits --baselines; a space would never match
    for (const name of ['', 'a,b', ' none', 'x y']) await refused({ baselines: [{ ...dropLast, name }] }, /a baseline's name is letters, digits/);
    await refused({ baselines: [{ name: 'b', description: 'd' }] }, /^a baseline is an object with a name, a description and candidates\(\) \(got/);
    await refused({ recoverMethods: halveOut }, /^plugins: the recover methods must be a list/);
    await refused({ tasks: [] }, /^compress: plugins: unknown option "tasks" \(the options are mergeMethods, recoverMethods, baselines\)$/);
    // ffmerge's own registries cannot be changed from outside
    expect('register' in MERGE_METHODS).toBe(false);
    expect(MERGE_METHODS.with([merge]).names()).toEqual(['permute', 'vanilla', 'select', 'x']);
    expect(MERGE_METHODS.names()).toEqual(['permute', 'vanilla', 'select']);
  });
});

describe('compress --plugins', () => {
  jest.setTimeout(300_000);
  let dir: string;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ffmerge-plugins-'));
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  const run = (...args: string[]) => {
    const r = spawnSync(process.execPath, [BIN, 'compress', ...args], { cwd: dir, encoding: 'utf8', env: { ...process.env, FFMERGE_FROM_SOURCE: '1', FFMERGE_PROGRESS: '0' } });
    return { code: r.status, stdout: r.stdout, stderr: r.stderr };
  };
  // a baseline written as a user would, with no import of ffmerge: zero the FF of the last k − 1 layers
  const baseline = `{
    name: 'zero-last', description: 'zeroes the last FFs',
    candidates: ({ model, stacks, ffRemoved }) => {
      const L = model.layers(stacks[0]);
      const layers = Array.from({ length: ffRemoved }, (_, i) => L - ffRemoved + i);
      const ff = model.ffWeights(0, stacks[0]);
      const zero = { d: ff.d, dFF: ff.dFF, wIn: new Float32Array(ff.wIn.length), wOut: new Float32Array(ff.wOut.length), ...(ff.wGate ? { wGate: new Float32Array(ff.wGate.length) } : {}) };
      return [{ windows: { decoder: String(L - 1) }, start: L - ffRemoved, paramsRemoved: 0, edits: async () => stacks.map((stack) => ({ kind: 'ff', stack, layers, ff: zero })) }];
    },
  }`;
  const flags = ['--data', TEXT, '--calibration-tokens', '1024', '--validation-tokens', '1024', '--k', '2', '--window', '1-2', '--method', 'permute', '--json'];

  it('loads a CommonJS or an ES module, and its plug-ins are picked by name', () => {
    fs.writeFileSync(path.join(dir, 'cjs.js'), `exports.baselines = [${baseline}];\n`);
    fs.writeFileSync(path.join(dir, 'esm.mjs'), `export default { baselines: [${baseline}] };\n`);
    for (const file of ['cjs.js', 'esm.mjs']) {
      const r = run(...flags, '--plugins', file, '--baselines', 'zero-last,drop-ff', '--out', `out-${file}`);
      expect({ file, code: r.code, stderr: r.stderr }).toEqual({ file, code: 0, stderr: '' });
      const out = JSON.parse(r.stdout);
      expect(Object.keys(out.baselines)).toEqual(['zero-last', 'drop-ff']);
      // zeroing layer 4's FF is drop-ff's candidate at 4
      expect(out.baselines['zero-last'].validation).toBeCloseTo(out.baselines['drop-ff'].candidates.find((c: { windows: { decoder: string } }) => c.windows.decoder === '4').score, 6);
    }
  });

  it('refuses a missing file, a module that exports no plug-ins, one that fails to load, and an unknown name', () => {
    fs.writeFileSync(path.join(dir, 'empty.js'), 'exports.nothing = 1;\n');
    fs.writeFileSync(path.join(dir, 'broken.js'), "throw new Error('boom');\n");
    fs.writeFileSync(path.join(dir, 'ok.js'), `exports.baselines = [${baseline}];\n`);
    const cases: [string[], number, RegExp][] = [
      [['--plugins', 'missing.js'], 3, /--plugins: missing\.js is not a file .*\[DATA_NOT_FOUND\]/],
      [['--plugins', 'empty.js'], 2, /--plugins: empty\.js exports none of mergeMethods, recoverMethods, baselines .*\[INVALID_ARGUMENT\]/],
      [['--plugins', 'broken.js'], 2, /--plugins: broken\.js could not be loaded: boom \[INVALID_ARGUMENT\]/],
      [['--plugins', 'ok.js', '--baselines', 'zero-first'], 2, /--baselines must be one of drop-ff, drop-layers, paper, zero-last, got "zero-first" \[INVALID_ARGUMENT\]/],
    ];
    for (const [args, code, message] of cases) {
      const r = run(...flags.filter((f) => f !== '--json'), ...args);
      expect({ args, code: r.code, stderr: r.stderr }).toEqual({ args, code, stderr: expect.stringMatching(message) });
    }
  });
});
