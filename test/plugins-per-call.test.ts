/**
 * A caller's own plug-ins (tester BC): given per call (compress's `plugins`, the CLI's --plugins), picked by
 * name beside ffmerge's own, checked as they are given, and seen by no other call: a server running several
 * jobs in one process must not have one job's plug-ins change another's registries.
 */
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { FfmergeError } from '../lib/errors';
import { compress } from '../lib/pipeline/compress';
import { BASELINES } from '../lib/pipeline/baselines';
import { MERGE_METHODS } from '../lib/pipeline/merge-methods';
import { RECOVER_METHODS } from '../lib/pipeline/recover';
import type { Baseline, BaselineCandidate, BaselineContext, MergedWindow, MergeMethod, RecoverMethod } from '../lib/pipeline/plugins';
import type { Model } from '../lib/model/model';
import { guardBaseline } from '../lib/pipeline/plugin-guard';
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
    expect(r.plugins).toEqual(['halve-out', 'drop-last']);
    expect(r.windows).toEqual([expect.objectContaining({ window: '1-2', method: 'permute', recover: 'halve-out' })]);
    expect(r.baselines['drop-last']).toMatchObject({ windows: { decoder: '4-4' }, paramsRemoved: 1, candidates: [] });
    // a baseline with no placement is named in the notes, not left out without a word
    expect(r.baselines.nowhere).toBeUndefined();
    expect(r.data.notes).toContain('baseline nowhere has no placement at this size in decoder: not evaluated');
    // the plug-in really ran: the same merge without it scores otherwise
    const plain = await compress(BUNDLED, { ...small, window: '1-2', method: 'permute', recover: 'none', plugins: { recoverMethods: [halveOut], baselines: [dropLast] } });
    expect(r.merged.validation).not.toBeCloseTo(plain.merged.validation, 3);
    // plug-ins given but picked by no name run nowhere, and the report says so
    expect(plain.plugins).toBeUndefined();
    expect(plain.data.notes).toContain(
      "plug-ins given but not picked by name, so not run: recover method halve-out, baseline drop-last (pick them with method, recover or baselines; method 'auto' tries ffmerge's own combinations only)",
    );
    expect(r.data.notes.filter((n) => n.startsWith('plug-ins given'))).toEqual([]);
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
    await refused({ mergeMethods: [{ ...merge, name: 'auto' }] }, /name is up to 64 letters, digits, '\.', '_' and '-', starting with a letter or digit, and not auto \(got "auto"\)/);
    // a comma splits --baselines; a space would never match
    for (const name of ['', 'a,b', ' none', 'x y', 'x'.repeat(65)]) await refused({ baselines: [{ ...dropLast, name }] }, /a baseline's name is up to 64 letters, digits/);
    await refused({ baselines: [{ name: 'b', description: 'd' }] }, /^a baseline is an object with a name, a description and candidates\(\) \(got/);
    await refused({ recoverMethods: halveOut }, /^plugins: the recover methods must be a list/);
    await refused({ models: [] }, /^compress: plugins: unknown option "models" \(the options are mergeMethods, recoverMethods, baselines, tasks\)$/);
    await refused({ tasks: [{ name: 't', description: 'd' }] }, /^a task is an object with a name, a description and create\(\) \(got/);
    // a name read once: a getter that answers 'permute' later neither replaces ffmerge's permute nor hides whose it is
    let reads = 0;
    const shifty = { ...merge, needsCorrelations: true, get name() { return reads++ < 1 ? 'shifty' : 'permute'; }, merge: (...a: Parameters<MergeMethod['merge']>) => MERGE_METHODS.get('permute').merge(...a) };
    const r = await compress(BUNDLED, { ...small, window: '1-2', method: 'shifty', plugins: { mergeMethods: [shifty] } });
    expect({ method: r.method, plugins: r.plugins }).toEqual({ method: 'shifty', plugins: ['shifty'] });
    // ffmerge's own registries cannot be changed from outside, nor their methods (tester BG: a select that never
    // settled hung every later call, a wrapped refit changed another call's numbers)
    expect('register' in MERGE_METHODS).toBe(false);
    expect(Object.isFrozen(MERGE_METHODS) && Object.isFrozen((MERGE_METHODS as unknown as { entries: unknown[] }).entries)).toBe(true);
    expect(() => Object.assign(MERGE_METHODS.get('select'), { merge: () => new Promise(() => {}) })).toThrow(TypeError);
    expect(() => Object.assign(RECOVER_METHODS.get('refit'), { recover: () => Promise.reject(new Error('x')) })).toThrow(TypeError);
    expect(MERGE_METHODS.with([merge]).names()).toEqual(['permute', 'vanilla', 'select', 'x']);
    // a call's registry keeps ffmerge's entries as they are (not a stand-in of a stand-in)
    expect(MERGE_METHODS.with([merge]).get('permute')).toBe(MERGE_METHODS.get('permute'));
    expect(MERGE_METHODS.names()).toEqual(['permute', 'vanilla', 'select']);
  });
});

describe('what a plug-in gives is checked before it is used (tester BD)', () => {
  jest.setTimeout(300_000);
  const permute = MERGE_METHODS.get('permute');
  /** A merge method that gives what `edit` makes of permute's answer. */
  const merging = (edit: (m: MergedWindow) => unknown): MergeMethod => ({
    name: 'h',
    description: 'hostile',
    needsCorrelations: true,
    merge: async (ctx, stack, w, opts) => edit(await permute.merge(ctx, stack, w, opts)) as MergedWindow,
  });
  const refusedMerge = (edit: (m: MergedWindow) => unknown, message: RegExp) =>
    expect(compress(BUNDLED, { ...small, method: 'h', plugins: { mergeMethods: [merging(edit)] } })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringMatching(message) });
  const baselineWith = (candidates: Baseline['candidates']) => ({ ...small, method: 'permute', window: '1-2', baselines: ['b'], plugins: { baselines: [{ name: 'b', description: 'd', candidates }] } });
  const refusedBaseline = (candidates: Baseline['candidates'], message: RegExp) =>
    expect(compress(BUNDLED, baselineWith(candidates))).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringMatching(message) });
  const one = (c: Partial<BaselineCandidate>): BaselineCandidate[] => [{ windows: { decoder: '4' }, start: 4, paramsRemoved: 0, edits: async () => [{ kind: 'drop-layers', stack: 'decoder', layers: [4] }], ...c }];

  it('a merge or recover result for another window, stack or anchor, or none at all, is refused', async () => {
    // before: scored as windows of 2, written as one window of all 5 layers (perplexity 17.7 scored, 824 written)
    await refusedMerge((m) => ({ ...m, window: { start: 0, k: 5 } }), /^merge method h was asked for window 0-1 \(k = 2\) and answered another \(got/);
    await refusedMerge((m) => ({ ...m, stack: 'encoder' }), /^merge method h was asked for the decoder stack and answered another \(got "encoder"\)$/);
    await refusedMerge((m) => ({ ...m, anchor: 99 }), /^merge method h gave an anchor outside its window \(got 99\)$/);
    await refusedMerge((m) => ({ ...m, note: 42 }), /^merge method h gave a note that is not a string \(got 42\)$/);
    await refusedMerge(() => undefined, /^merge method h must give a MergedWindow object \(got undefined\)$/);
    await refusedMerge((m) => ({ ...m, merged: { ...m.merged, d: m.merged.dFF, dFF: m.merged.d } }), /^merge method h gave an FF of d 172 × d_ff 64; the decoder stack's FF is 64 × 172/);
    await refusedMerge((m) => ({ ...m, adjusted: new Proxy(new Map(), {}) }), /^merge method h must give adjusted as a Map of layer → FF/);
    await refusedMerge((m) => ({ ...m, adjusted: new Map([[1, m.merged]]) }), /^merge method h adjusted a layer that is not one of the 5 layers outside the window \(got 1\)$/);
    const shrink: RecoverMethod = { name: 'shrink', description: 'd', recover: async (_c, m) => ({ ...m, window: { start: m.window.start, k: 1 } }) };
    await expect(compress(BUNDLED, { ...small, method: 'permute', recover: 'shrink', plugins: { recoverMethods: [shrink] } })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringMatching(/^recover method shrink was asked for window 0-1/) });
  });

  it("a method's note joins the report's notes", async () => {
    const r = await compress(BUNDLED, { ...small, method: 'h', window: '1-2', plugins: { mergeMethods: [merging((m) => ({ ...m, note: 'h merged it by hand' }))] } });
    expect(r.data.notes).toContain('h merged it by hand');
  });

  it("a baseline's candidates and edits are checked: a list (not a Promise), starts and counts, edits of the model's own layers", async () => {
    await refusedBaseline((async () => one({})) as never, /^baseline b candidates\(\) must return a list, not a Promise/);
    await refusedBaseline(() => one({ start: -3 }), /^baseline b gave a candidate whose start is not a layer 0…4 \(got -3\)$/);
    await refusedBaseline(() => one({ paramsRemoved: NaN }), /^baseline b gave a candidate whose paramsRemoved is not a count \(got NaN\)$/);
    await refusedBaseline(() => one({ edits: async () => [{ kind: 'explode' }] as never }), /^baseline b gave an edit whose kind is not 'ff' or 'drop-layers' \(got "explode"\)$/);
    await refusedBaseline(() => one({ edits: async () => [{ kind: 'drop-layers', stack: 'decoder', layers: [5] }] }), /^baseline b gave an edit whose layers are not a list of the decoder stack's layers 0…4 \(got/);
    await refusedBaseline(() => one({ edits: async () => [{ kind: 'drop-layers', stack: 'encoder', layers: [0] }] }), /^baseline b gave an edit of a stack this model lacks \(it has decoder\)/);
    // tester BG: no edit at all (the base model, reported as a removal), one layer edited twice, a list of 2^32 − 1
    await refusedBaseline(() => one({ edits: async () => [] }), /^baseline b gave a candidate whose edits\(\) gives no edit: that is the model as it is/);
    await refusedBaseline(() => one({ edits: async () => [{ kind: 'drop-layers', stack: 'decoder', layers: [3] }, { kind: 'drop-layers', stack: 'decoder', layers: [3] }] }), /^baseline b gave two edits of decoder layer 3 \(got 3\)$/);
    const huge = [0];
    huge.length = 2 ** 32 - 1;
    await refusedBaseline(() => one({ edits: async () => [{ kind: 'drop-layers', stack: 'decoder', layers: huge }] }), /^baseline b gave an edit whose layers are not a list of the decoder stack's layers 0…4 \(got "4294967295 entries"\)$/);
    // tester BG: what a caller's baseline does to its view of the merge context breaks nothing of ffmerge's
    const r = await compress(BUNDLED, baselineWith((ctx) => (ctx.merge.correlations.clear(), one({}))));
    expect(r.windows[0]!.method).toBe('permute');
  });

  it('an FF with a piece the architecture lacks is refused (it was scored, then dropped by the writer)', async () => {
    // before: reported perplexity 6742.73, written model 17.63
    await refusedMerge((m) => ({ ...m, merged: { ...m.merged, bOut: new Float32Array(m.merged.d).fill(5) } }), /^merge method h gave an FF with bOut, which the decoder stack's FF of llama lacks \(layer 0\)$/);
    await refusedMerge((m) => ({ ...m, merged: { ...m.merged, wGate: undefined } }), /^merge method h gave an FF without wGate, which the decoder stack's FF of llama has \(layer 0\)$/);
  });

  it("a baseline's FF is held to the architecture too, and a plug-in's non-finite value is refused naming it (tester FH)", async () => {
    // before: an llama FF with bOut was scored as a same-size baseline; a NaN was "non-finite hidden states in layer 1"
    const ffEdit = (edit: (ff: ReturnType<Model['ffWeights']>) => object) => (ctx: BaselineContext) =>
      one({ windows: { decoder: '3' }, start: 3, edits: async () => [{ kind: 'ff' as const, stack: 'decoder' as const, layers: [3], ff: edit(ctx.model.ffWeights(3)) as never }] });
    await refusedBaseline(ffEdit((ff) => ({ ...ff, bOut: new Float32Array(ff.d) })), /^baseline b gave an FF with bOut, which the decoder stack's FF of llama lacks \(layer 3\)$/);
    await refusedBaseline(ffEdit((ff) => ({ ...ff, d: ff.dFF, dFF: ff.d })), /^baseline b gave an FF of d 172 × d_ff 64; the decoder stack's FF is 64 × 172/);
    await refusedBaseline(ffEdit((ff) => ({ ...ff, wGate: ff.wGate!.map((v, i) => (i === 7 ? Infinity : v)) })), /^baseline b gave an FF whose wGate holds Infinity \(entry 7\): its values must be finite$/);
    await refusedMerge((m) => ({ ...m, merged: { ...m.merged, wOut: m.merged.wOut.map(() => NaN) } }), /^merge method h gave an FF whose wOut holds NaN \(entry 0\): its values must be finite$/);
    // finite values that overflow: the forward's error, its code kept, names the plug-in too (tester FM: it
    // blamed "that layer's weights" alone); a window given (validated, not searched) and a search alike
    const huge: RecoverMethod = { name: 'huge', description: 'd', recover: async (_c, m) => ({ ...m, merged: { ...m.merged, wIn: m.merged.wIn.map(() => 3e38) } }) };
    for (const window of ['1-2', undefined]) {
      await expect(compress(BUNDLED, { ...small, method: 'permute', recover: 'huge', ...(window ? { window } : {}), baselines: [], plugins: { recoverMethods: [huge] } })).rejects.toMatchObject({
        code: 'NON_FINITE_ACTIVATIONS',
        message: expect.stringMatching(/ \(the model scored holds FFs of recover method huge, a plug-in given to this call\)$/),
      });
    }
  });

  it("a baseline that draws is seeded (its `seeded`), and the notes of several windows name theirs (tester FH)", async () => {
    const seeds: unknown[] = [];
    const drawing: Baseline = { name: 'b', description: 'd', seeded: true, candidates: (ctx) => (seeds.push(ctx.merge.seed), one({})) };
    const r = await compress(BUNDLED, { ...small, method: 'permute', window: '1-2', baselines: ['b'], seed: 5, plugins: { baselines: [drawing] } });
    expect(seeds).toEqual([5]);
    expect(r.data.notes).toContain("seed 5 (--seed): b's draws");
    // before: a plug-in's note came once per window, alike, none saying which
    const noting: RecoverMethod = { name: 'noting', description: 'd', recover: async (_c, m) => ({ ...m, note: 'kept as merged' }) };
    const two = await compress(BUNDLED, { ...small, method: 'permute', window: '0-1,3-4', recover: 'noting', plugins: { recoverMethods: [noting] } });
    expect(two.data.notes.filter((n) => n.includes('kept as merged'))).toEqual(['decoder 0-1: kept as merged', 'decoder 3-4: kept as merged']);
  });

  it("what a caller's plug-in changes after giving it reaches neither the score nor the output", async () => {
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ffmerge-late-'));
    try {
      const late: RecoverMethod = {
        name: 'late',
        description: 'changes its answer once given',
        async recover(_ctx, m) {
          const window = { ...m.window };
          const wOut = m.merged.wOut.slice();
          // a copy made by the array's own slice() would be this very array (reviewer BF)
          Object.assign(wOut, { slice: () => wOut });
          const adjusted = new Map();
          setTimeout(() => ((window.start = 0), wOut.fill(0), adjusted.set(m.window.start, m.merged)), 0);
          return { ...m, window, merged: { ...m.merged, wOut }, adjusted };
        },
      };
      const out = path.join(tmp, 'out');
      const r = await compress(BUNDLED, { ...small, window: '2-3', method: 'permute', recover: 'late', plugins: { recoverMethods: [late] }, out });
      // before: layers 0-1 tied in the output, wOut zeros there, the record's window 0-1 with anchor 2
      expect(r.windows).toEqual([expect.objectContaining({ window: '2-3', layers: [2, 3], anchor: 2, recover: 'late' })]);
      expect(r.windows[0]!.adjusted).toBeUndefined();
      // the card says whose method it is
      expect(fs.readFileSync(path.join(out, 'README.md'), 'utf8')).toContain("- not part of ffmerge: `late`, the caller's own plug-in\n");
      const written = await compress(out, { ...small, window: '0-1', method: 'vanilla' });
      expect(written.base.validation).toBeCloseTo(r.merged.validation, 9);
    } finally {
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  });

  it("a baseline's candidate and edits are read once, and the merge context cannot be reassigned", async () => {
    let reads = 0;
    let startReads = 0;
    let frozen = false;
    const r = await compress(
      BUNDLED,
      baselineWith((ctx) => {
        frozen = Object.isFrozen(ctx.merge);
        const edits = [{ kind: 'drop-layers' as const, stack: 'decoder' as const, layers: [4] }];
        // a start that changes once read, and a list whose first edit changes once read
        const list = new Proxy(edits, { get: (t, k) => (k === '0' && reads++ > 0 ? { kind: 'zzz' } : Reflect.get(t, k)) });
        return [{ windows: { decoder: '4' }, get start() { return startReads++ > 0 ? -5 : 4; }, paramsRemoved: 1, edits: async () => list }];
      }),
    );
    expect(frozen).toBe(true);
    // scored with layer 4 removed: as drop-layers at 4 (a start read again had been -5, an edit read again 'zzz')
    const ref = await compress(BUNDLED, { ...small, method: 'permute', window: '1-2', baselines: ['drop-layers'] });
    expect(r.baselines.b!.validation).toBeCloseTo(ref.baselines['drop-layers']!.candidates.find((c) => c.windows.decoder === '4')!.score, 9);
  });

  it("a baseline's start is a layer of the stacks it searches: an encoder deeper than the decoder (reviewer BF)", () => {
    // ffmerge's own drop-ff on a 12-encoder, 6-decoder translation model, encoder only: starts up to 11
    const model = { mainStack: 'decoder', stacks: () => ['encoder', 'decoder'], layers: (s: string) => (s === 'encoder' ? 12 : 6) } as unknown as Model;
    const at = (start: number) => [{ windows: { encoder: String(start) }, start, paramsRemoved: 1, edits: async () => [] }];
    const guarded = (start: number) => guardBaseline({ name: 'b', description: 'd', candidates: () => at(start) }, 'b', false, undefined).candidates({ model, stacks: ['encoder'] } as unknown as BaselineContext);
    expect(guarded(11).map((c) => c.start)).toEqual([11]);
    expect(() => guarded(12)).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT', message: 'baseline b gave a candidate whose start is not a layer 0…11 (got 12)' }));
  });

  it('an abort ends the call while a plug-in never settles', async () => {
    const ac = new AbortController();
    let started!: () => void;
    const running = new Promise<void>((r) => (started = r));
    const never: MergeMethod = { name: 'never', description: 'd', needsCorrelations: false, merge: () => (started(), new Promise<MergedWindow>(() => {})) };
    const call = compress(BUNDLED, { ...small, method: 'never', plugins: { mergeMethods: [never] }, signal: ac.signal });
    await running;
    ac.abort();
    // before: still pending long after the abort
    await expect(call).rejects.toMatchObject({ code: 'ABORTED' });
  });

  it("a plug-in's own failure names it (PLUGIN_FAILED); its FfmergeErrors pass as they are (tester ED: INTERNAL_ERROR, \"[object Object]\")", async () => {
    const failing = (thrown: () => never): RecoverMethod => ({ name: 'boom', description: 'd', recover: async () => thrown() });
    const run = (r: RecoverMethod) => compress(BUNDLED, { ...small, window: '1-2', method: 'permute', recover: 'boom', plugins: { recoverMethods: [r] } });
    await expect(run(failing(() => (undefined as unknown as { foo: { bar: number } }).foo.bar as never))).rejects.toMatchObject({
      code: 'PLUGIN_FAILED',
      message: expect.stringMatching(/^recover method boom \(a plug-in given to this call\) failed: Cannot read properties of undefined/),
    });
    await expect(run(failing(() => { throw { code: 'X' }; }))).rejects.toMatchObject({ code: 'PLUGIN_FAILED', message: 'recover method boom (a plug-in given to this call) failed: threw {"code":"X"}, not an Error' });
    await expect(run(failing(() => { throw new FfmergeError('INVALID_DATA', 'mine'); }))).rejects.toMatchObject({ code: 'INVALID_DATA', message: 'mine' });
    // stopped by the call's own abort inside the plug-in: ABORTED, and its own rejection after that is handled
    // (tester EG: PLUGIN_FAILED, and an unhandled rejection that ended the process)
    for (const sync of [false, true]) {
      const ac = new AbortController();
      const stop = () => {
        ac.abort();
        ac.signal.throwIfAborted();
      };
      const r: RecoverMethod = { name: 'boom', description: 'd', recover: (sync ? (_c: unknown, m: MergedWindow) => (stop(), m) : async (_c: unknown, m: MergedWindow) => (stop(), m)) as RecoverMethod['recover'] };
      await expect(compress(BUNDLED, { ...small, window: '1-2', method: 'permute', recover: 'boom', plugins: { recoverMethods: [r] }, signal: ac.signal })).rejects.toMatchObject({ code: 'ABORTED' });
    }
    // tasks: at least one, each a task there is; in TypeScript a misspelt one fails to compile (tester FH: it
    // compiled, and failed at run time only)
    // @ts-expect-error 'language-modelling' is not a TaskName
    const misspelt: RecoverMethod['tasks'] = ['language-modelling'];
    await expect(run({ ...failing(() => undefined as never), tasks: misspelt })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(run({ ...failing(() => undefined as never), tasks: [] })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringContaining('has tasks that are not a list of task names') });
    await expect(run({ ...failing(() => undefined as never), tasks: ['lm'] as never })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', message: "recover method 'boom' names tasks there are none of: lm (the tasks: language-modeling, image-classification, translation)" });
    // thrown by candidates() itself, before any promise
    await expect(compress(BUNDLED, baselineWith(() => { throw new RangeError('no room'); }))).rejects.toMatchObject({ code: 'PLUGIN_FAILED', message: 'baseline b (a plug-in given to this call) failed: no room' });
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

  it('with --json, what a plug-in logs goes to stderr: stdout stays one JSON document (tester DL)', () => {
    const noisy = baseline.replace("const L = model.layers(stacks[0]);", "console.log('hello from a plug-in'); console.info('info too'); console.dir({ dir: 1 }); const L = model.layers(stacks[0]);");
    fs.writeFileSync(path.join(dir, 'noisy.mjs'), `console.log('loaded');\nexport const baselines = [${noisy}];\n`);
    const r = run(...flags, '--plugins', 'noisy.mjs', '--baselines', 'zero-last');
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout).baselines['zero-last']).toBeDefined();
    expect(r.stderr).toBe('loaded\nhello from a plug-in\ninfo too\n{ dir: 1 }\n');
  });

  it('--help lists the module\'s plug-ins beside ffmerge\'s own, and refuses a module it cannot load', () => {
    fs.writeFileSync(path.join(dir, 'ok.mjs'), `export const baselines = [${baseline}];\nexport const mergeMethods = [{ name: 'mine', description: 'my own merge', needsCorrelations: false, merge: async () => ({}) }];\n`);
    const help = (...args: string[]) => run(...args).stdout.replace(/\s+/g, ' ');
    for (const args of [['--plugins', 'ok.mjs', '--help'], ['-h', '--plugins=ok.mjs']]) {
      expect(help(...args)).toMatch(/--method <m> .*select \(.*\) \| mine \(my own merge\) \| auto/);
      expect(help(...args)).toMatch(/--baselines <list> .*; paper \(.*\); zero-last \(zeroes the last FFs\)/);
    }
    expect(help('--help')).not.toMatch(/mine|zero-last/);
    const r = run('--plugins', 'missing.mjs', '--help');
    expect({ code: r.code, stdout: r.stdout, stderr: r.stderr }).toEqual({ code: 3, stdout: '', stderr: expect.stringMatching(/--plugins: missing\.mjs does not exist .*\[DATA_NOT_FOUND\]/) });
  });

  it('refuses a missing file, a module that exports no plug-ins, one that fails to load, and an unknown name', () => {
    fs.writeFileSync(path.join(dir, 'empty.js'), 'exports.nothing = 1;\n');
    fs.writeFileSync(path.join(dir, 'broken.js'), "throw new Error('boom');\n");
    fs.writeFileSync(path.join(dir, 'ok.js'), `exports.baselines = [${baseline}];\n`);
    const cases: [string[], number, RegExp][] = [
      [['--plugins', 'missing.js'], 3, /--plugins: missing\.js does not exist .*\[DATA_NOT_FOUND\]/],
      [['--plugins', 'empty.js'], 2, /--plugins: empty\.js exports none of mergeMethods, recoverMethods, baselines, tasks .*\[INVALID_ARGUMENT\]/],
      [['--plugins', 'broken.js'], 2, /--plugins: broken\.js could not be loaded: boom \[INVALID_ARGUMENT\]/],
      [['--plugins', 'ok.js', '--baselines', 'zero-first'], 2, /--baselines must be one of drop-ff, drop-layers, paper, zero-last, got "zero-first" \[INVALID_ARGUMENT\]/],
    ];
    for (const [args, code, message] of cases) {
      const r = run(...flags.filter((f) => f !== '--json'), ...args);
      expect({ args, code: r.code, stderr: r.stderr }).toEqual({ args, code, stderr: expect.stringMatching(message) });
    }
  });

  it('a plug-in that never settles ends the run with an error, not exit 0; a signal ends it though a timer stays alive', async () => {
    fs.writeFileSync(path.join(dir, 'never.js'), "exports.mergeMethods = [{ name: 'never', description: 'd', needsCorrelations: false, merge: () => new Promise(() => {}) }];\n");
    const r = run(...flags.filter((f) => f !== '--json' && f !== 'permute' && f !== '--method'), '--method', 'never', '--plugins', 'never.js');
    // before: exit 0, nothing on stderr after the progress
    expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 1, stderr: expect.stringMatching(/a promise it waited on can never settle .*\[INTERNAL_ERROR\]\n$/) });
    // a merge that keeps a timer alive: SIGTERM aborts, and the process ends (before: only a second signal did)
    const marker = path.join(dir, 'started');
    fs.writeFileSync(path.join(dir, 'busy.js'), `exports.mergeMethods = [{ name: 'busy', description: 'd', needsCorrelations: false, merge: () => { require('fs').writeFileSync(${JSON.stringify(marker)}, ''); setInterval(() => {}, 1000); return new Promise(() => {}); } }];\n`);
    const child = spawn(process.execPath, [BIN, 'compress', ...flags.filter((f) => f !== '--json' && f !== 'permute' && f !== '--method'), '--method', 'busy', '--plugins', 'busy.js'], { cwd: dir, env: { ...process.env, FFMERGE_FROM_SOURCE: '1', FFMERGE_PROGRESS: '0' } });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    while (!fs.existsSync(marker)) await new Promise((r) => setTimeout(r, 100));
    child.kill('SIGTERM');
    expect({ code: await exited, stderr }).toEqual({ code: 143, stderr: expect.stringMatching(/\[ABORTED\]\n$/) });
  });
});
