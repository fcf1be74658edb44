/**
 * A caller's own task (compress's `plugins.tasks`, the CLI's --plugins): asked before ffmerge's, it brings its
 * own data and metric to the one pipeline, and what it gives is checked as a merge method's result is. And a
 * method's readsCalibration (not its name) says whether a run reads calibration data.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { compress } from '../lib/pipeline/compress';
import { blocksFrom, makeBatches } from '../lib/pipeline/data';
import { argmaxRows } from '../lib/metrics/accuracy';
import type { Model } from '../lib/model/model';
import type { MergeMethod } from '../lib/pipeline/plugins';
import type { Task, TaskKind } from '../lib/pipeline/task';
import { MERGE_METHODS } from '../lib/pipeline/merge-methods';

const BUNDLED = path.resolve(__dirname, '..', 'models', 'llama-stories260k');
const TEXT = path.join(BUNDLED, 'calibration.txt');
const BIN = path.resolve(__dirname, '..', 'bin', 'ffmerge.js');

/** Top-1 next-token accuracy of `model` on token blocks: a metric none of ffmerge's tasks has. */
async function nextTokenAccuracy(model: Model, blocks: Int32Array[]): Promise<number> {
  let right = 0;
  let total = 0;
  for (const b of makeBatches(blocks, 4)) {
    const { logits } = await model.forward({ ids: b.ids, batch: b.batch, seq: b.seq }, { output: 'logits' });
    const pred = argmaxRows(logits, model.spec.vocab);
    for (let i = 0; i < b.batch; i++) {
      for (let t = 0; t + 1 < b.seq; t++, total++) if (pred[i * b.seq + t] === b.ids[i * b.seq + t + 1]) right++;
    }
  }
  return right / total;
}

/** A task that calibrates on the first 1024 tokens and scores next-token accuracy on the next 1024, data of its own. */
async function nextTokenTask(over: Partial<Task> = {}, kind: Partial<TaskKind> = {}): Promise<{ kind: TaskKind; valid: Int32Array[] }> {
  const blocks = await blocksFrom(TEXT, { blockSize: 128, what: 'calibration', tokenizerDir: BUNDLED, maxTokens: 2048 });
  const [cal, valid] = [blocks.slice(0, 8), blocks.slice(8, 16)];
  return {
    valid,
    kind: {
      name: 'next-token',
      description: 'top-1 next-token accuracy',
      optionKeys: [],
      accepts: (s) => s.modelType === 'llama',
      check: () => undefined,
      create: async () => ({
        metric: { name: 'next-token accuracy', higherIsBetter: true },
        calibration: makeBatches(cal, 4).map((b) => ({ input: b, featureRows: b.batch * b.seq })),
        data: { unit: 'tokens', calibration: 1024, validation: 1024, search: 1024, notes: ['validation: blocks 8-15'] },
        prepare: async () => undefined,
        search: (m) => nextTokenAccuracy(m, valid),
        validate: (m) => nextTokenAccuracy(m, valid),
        ...over,
      }),
      ...kind,
    },
  };
}

describe("a caller's task", () => {
  jest.setTimeout(300_000);

  it('is asked before ffmerge\'s: its metric ranks the windows, and a call beside it still uses language modelling', async () => {
    const { kind, valid } = await nextTokenTask();
    const mine = compress(BUNDLED, { k: 2, method: 'permute', recover: 'none', plugins: { tasks: [kind] } });
    const other = compress(BUNDLED, { calibration: TEXT, calibrationTokens: 1024, validationTokens: 1024, k: 2, window: '1-2', method: 'vanilla', recover: 'none' });
    const [r, o] = await Promise.all([mine, other]);
    expect(o).toMatchObject({ task: 'language-modeling', metric: { name: 'perplexity' } });
    expect(r).toMatchObject({ task: 'next-token', metric: { name: 'next-token accuracy', higherIsBetter: true }, data: { unit: 'tokens', calibration: 1024, notes: expect.arrayContaining(['validation: blocks 8-15']) } });
    // every window scored by the task's own metric, and the best kept (higher is better)
    expect(r.candidates).toHaveLength(4);
    const best = r.candidates.reduce((a, c) => (c.score > a.score ? c : a));
    expect(r.windows.map((w) => w.window)).toEqual([best.windows.decoder]);
    // the base number is the task's metric of the model as loaded
    const { loadModel } = await import('../lib/model/load');
    const m = await loadModel(BUNDLED);
    try {
      expect(r.base.validation).toBe(await nextTokenAccuracy(m, valid));
    } finally {
      m.dispose();
    }
  });

  it("refuses ffmerge's data options it does not list, and its own that ffmerge's tasks do not read", async () => {
    const { kind } = await nextTokenTask();
    await expect(compress(BUNDLED, { calibration: TEXT, plugins: { tasks: [kind] } })).rejects.toMatchObject({ code: 'OPTION_NOT_APPLICABLE', message: 'calibration applies to language-modeling models; llama is compressed as next-token (it takes no data options: it reads its own data)' });
    await expect(compress(BUNDLED, { plugins: { tasks: [{ ...kind, optionKeys: ['myData' as never] }] } })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringMatching(/^task next-token has optionKeys that are not a list of options ffmerge's tasks read/) });
    // a name of ffmerge's is taken
    await expect(compress(BUNDLED, { plugins: { tasks: [{ ...kind, name: 'translation' }] } })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringMatching(/^task "translation" is given twice/) });
  });

  it('that does not accept the model is noted as not run; one that fails to decide names itself', async () => {
    const { kind } = await nextTokenTask();
    const r = await compress(BUNDLED, { calibration: TEXT, calibrationTokens: 1024, validationTokens: 1024, k: 2, window: '1-2', method: 'vanilla', recover: 'none', plugins: { tasks: [{ ...kind, accepts: () => false }] } });
    expect(r.task).toBe('language-modeling');
    expect(r.data.notes).toEqual(expect.arrayContaining([expect.stringMatching(/not run: task next-token/)]));
    await expect(compress(BUNDLED, { plugins: { tasks: [{ ...kind, accepts: () => { throw new TypeError('oops'); } }] } })).rejects.toMatchObject({ code: 'PLUGIN_FAILED', message: 'task next-token (a plug-in given to this call) failed: oops' });
  });

  it('is held to the Task contract: a metric, feature batches, counts, and numbers for scores', async () => {
    const bad = async (over: Record<string, unknown>, message: RegExp, code = 'INVALID_ARGUMENT') => {
      const { kind } = await nextTokenTask(over as Partial<Task>);
      await expect(compress(BUNDLED, { k: 2, window: '1-2', method: 'permute', recover: 'none', plugins: { tasks: [kind] } })).rejects.toMatchObject({ code, message: expect.stringMatching(message) });
    };
    await bad({ metric: { name: 'x' } }, /^task next-token gave a metric that is not \{ name, higherIsBetter \}/);
    await bad({ calibration: [{ input: { batch: 0, seq: 4 }, featureRows: 0 }] }, /^task next-token gave calibration batch 0 without an input/);
    await bad({ calibration: [] }, /^task next-token gave no calibration batches, and this run reads calibration features \(permute\+none\)/, 'INVALID_DATA');
    await bad({ data: { unit: 'tokens', calibration: -1, validation: 1, search: 1 } }, /^task next-token gave data whose calibration is not a count of tokens/);
    await bad({ validate: async () => '0.5' }, /^task next-token validate\(\) must give a number \(got "0.5"\)/);
    await bad({ validate: async () => NaN }, /^the validation next-token accuracy is NaN/, 'NON_FINITE_METRIC');
    await bad({ prepare: async () => { throw new RangeError('full'); } }, /^task next-token \(a plug-in given to this call\) failed: full$/, 'PLUGIN_FAILED');
  });

  it("a failing dispose() neither hides the run's own error nor leaves the model unfreed, and a run it fails writes nothing (tester GA)", async () => {
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ffmerge-task-dispose-'));
    try {
      let model: Model | undefined;
      const failing = async (over: Partial<Task>) => {
        const { kind } = await nextTokenTask({ dispose: async () => { throw new Error('rm failed'); }, ...over });
        const create = kind.create;
        return { ...kind, create: async (ctx: Parameters<TaskKind['create']>[0], o: Parameters<TaskKind['create']>[1]) => ((model = ctx.model), create(ctx, o)) };
      };
      const opts = { k: 2, window: '1-2', method: 'vanilla', recover: 'none' } as const;
      await expect(compress(BUNDLED, { ...opts, plugins: { tasks: [await failing({ validate: async () => { throw new Error('REAL'); } })] } })).rejects.toMatchObject({ code: 'PLUGIN_FAILED', message: expect.stringMatching(/failed: REAL$/) });
      await expect(model!.forward({ ids: new Int32Array(4), batch: 1, seq: 4 }, { output: 'logits' })).rejects.toMatchObject({ code: 'INVALID_STATE' });
      const out = path.join(tmp, 'out');
      await expect(compress(BUNDLED, { ...opts, out, plugins: { tasks: [await failing({})] } })).rejects.toMatchObject({ code: 'PLUGIN_FAILED', message: expect.stringMatching(/failed: rm failed$/) });
      expect(fs.existsSync(out)).toBe(false);
      // aborted while it scores: the model is freed though the task has a dispose()
      const ac = new AbortController();
      const run = compress(BUNDLED, { ...opts, signal: ac.signal, plugins: { tasks: [await failing({ dispose: async () => undefined, search: () => new Promise(() => ac.abort()), validate: () => new Promise(() => ac.abort()) })] } });
      await expect(run).rejects.toMatchObject({ code: 'ABORTED' });
      await expect(model!.forward({ ids: new Int32Array(4), batch: 1, seq: 4 }, { output: 'logits' })).rejects.toMatchObject({ code: 'INVALID_STATE' });
    } finally {
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  });

  it('calibration batches whose every position is masked out, or whose arrays do not fit, are refused naming the task and batch (tester GA)', async () => {
    const { kind } = await nextTokenTask();
    const withBatches = (edit: (b: { input: Record<string, unknown>; featureRows?: number; featureMask?: unknown }) => void): TaskKind => ({
      ...kind,
      create: async (ctx, o) => {
        const t = await kind.create(ctx, o);
        return { ...t, calibration: t.calibration.map((b) => { const c = { ...b, input: { ...b.input } } as never; edit(c); return c; }) };
      },
    });
    const run = (k: TaskKind) => compress(BUNDLED, { k: 2, window: '1-2', method: 'permute', recover: 'none', plugins: { tasks: [k] } });
    await expect(run(withBatches((b) => { b.featureMask = new Uint8Array(4 * 128); delete b.featureRows; }))).rejects.toMatchObject({ code: 'INVALID_DATA', message: expect.stringMatching(/^task next-token gave calibration batches with no feature position of the decoder stack \(every position masked out\), and this run reads calibration features \(permute\+none\)/) });
    await expect(run(withBatches((b) => (b.input.ids = Array.from(b.input.ids as Int32Array))))).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringMatching(/^task next-token gave calibration batch 0 whose ids is not an Int32Array/) });
    await expect(run(withBatches((b) => (b.featureMask = new Uint8Array(3))))).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringMatching(/^task next-token gave calibration batch 0 whose featureMask has 3 entries, not 512/) });
    await expect(run(withBatches((b) => (b.featureRows = 1)))).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringMatching(/^task next-token gave calibration batch 0 whose featureRows is not its 512 feature positions/) });
  });

  it("gets its own copies of the summary and options, must answer accepts() with a boolean, and what it gives is read once (tester GA)", async () => {
    const { kind } = await nextTokenTask();
    const sneaky: TaskKind = {
      ...kind,
      accepts: (s) => {
        (s as { modelType: string }).modelType = 'gpt-99';
        s.stacks[0]!.layers = 2;
        return s.modelType === 'gpt-99';
      },
      create: async (ctx, o) => {
        try {
          (ctx.options as { out?: string }).out = path.join(os.tmpdir(), 'ffmerge-hijack');
        } catch {
          // frozen: refused in strict mode
        }
        const t = await kind.create(ctx, o);
        let reads = 0;
        // answers false to a check, then 'no' (truthy) to any later read: read once, it stays false
        const metric = { name: 'next-token\n\n## heading', get higherIsBetter() { return (reads++ === 0 ? false : 'no') as never; } };
        return { ...t, metric, data: { ...t.data, notes: ['a\n\n| fake | table |'] } };
      },
    };
    const r = await compress(BUNDLED, { k: 2, method: 'vanilla', recover: 'none', plugins: { tasks: [sneaky] } });
    expect({ modelType: r.modelType, layers: r.layers, candidates: r.candidates.length, out: r.out, plugins: r.plugins }).toEqual({ modelType: 'llama', layers: { decoder: 5 }, candidates: 4, out: undefined, plugins: ['next-token'] });
    expect(r.metric).toEqual({ name: 'next-token ## heading', higherIsBetter: false });
    expect(r.data.notes).toContain('a | fake | table |');
    const best = r.candidates.reduce((a, c) => (c.score < a.score ? c : a));
    expect(r.windows[0]!.window).toBe(best.windows.decoder);
    expect(fs.existsSync(path.join(os.tmpdir(), 'ffmerge-hijack'))).toBe(false);
    await expect(compress(BUNDLED, { k: 2, plugins: { tasks: [{ ...kind, accepts: (async () => true) as never }] } })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringMatching(/^task next-token accepts\(\) must return true or false, not a Promise/) });
    // a getter that throws while the Task is read is the task's failure
    const throwing: TaskKind = { ...kind, create: async () => ({ get metric(): never { throw new RangeError('hb boom'); } }) as never };
    await expect(compress(BUNDLED, { k: 2, plugins: { tasks: [throwing] } })).rejects.toMatchObject({ code: 'PLUGIN_FAILED', message: 'task next-token (a plug-in given to this call) failed: hb boom' });
  });

  it('a Task created after the abort won is disposed, and none is created once the signal has fired (reviewer RD)', async () => {
    const { kind } = await nextTokenTask();
    const counts = { created: 0, disposed: 0 };
    const ac = new AbortController();
    const slow: TaskKind = {
      ...kind,
      // the abort comes while create() runs, whatever the machine's speed (a timer could fire before the model
      // had loaded, and then no create() ran at all)
      create: async (ctx, o) => {
        counts.created++;
        ac.abort();
        await new Promise((r) => setTimeout(r, 300));
        return { ...(await kind.create(ctx, o)), dispose: async () => void counts.disposed++ };
      },
    };
    await expect(compress(BUNDLED, { k: 2, signal: ac.signal, plugins: { tasks: [slow] } })).rejects.toMatchObject({ code: 'ABORTED' });
    await new Promise((r) => setTimeout(r, 1000));
    expect(counts).toEqual({ created: 1, disposed: 1 });
    // once the signal has fired, no Task is created
    await expect(compress(BUNDLED, { k: 2, signal: ac.signal, plugins: { tasks: [slow] } })).rejects.toMatchObject({ code: 'ABORTED' });
    expect(counts).toEqual({ created: 1, disposed: 1 });
  });

  it("an abort is always ABORTED, and a late Task's throwing dispose getter stays the task's own; a kind that cannot be read is PLUGIN_FAILED (tester GB)", async () => {
    const { kind } = await nextTokenTask();
    let unhandled: unknown;
    const onUnhandled = (e: unknown) => (unhandled = e);
    process.on('unhandledRejection', onUnhandled);
    try {
      const ac = new AbortController();
      const late: TaskKind = {
        ...kind,
        create: async (ctx, o) => {
          setTimeout(() => ac.abort(new Error('user cancelled')), 20);
          await new Promise((r) => setTimeout(r, 200));
          return Object.defineProperty({ ...(await kind.create(ctx, o)) }, 'dispose', { get() { throw new Error('dispose getter boom'); } });
        },
      };
      await expect(compress(BUNDLED, { k: 2, signal: ac.signal, plugins: { tasks: [late] } })).rejects.toMatchObject({ code: 'ABORTED' });
      await new Promise((r) => setTimeout(r, 500));
      expect(unhandled).toBeUndefined();
      // aborted before the task is created (here: as the model's load ends): ABORTED, not the signal's own reason
      const early = new AbortController();
      const r = compress(BUNDLED, { k: 2, signal: early.signal, plugins: { tasks: [kind] }, onProgress: (p) => { if (p.phase === 'load' && p.done === p.total) early.abort(new Error('user cancelled')); } });
      await expect(r).rejects.toMatchObject({ code: 'ABORTED' });
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
    const proxy = new Proxy({ ...kind }, { get: (t, k) => { if (k === 'optionKeys') throw new Error('optionKeys boom'); return (t as Record<string | symbol, unknown>)[k]; } });
    await expect(compress(BUNDLED, { k: 2, plugins: { tasks: [proxy] } })).rejects.toMatchObject({ code: 'PLUGIN_FAILED', message: 'a task given to this call could not be read: optionKeys boom' });
  });

  it('with no calibration batches runs a vanilla merge with recover none, which reads none', async () => {
    const { kind } = await nextTokenTask({ calibration: [] });
    const r = await compress(BUNDLED, { k: 2, window: '1-2', method: 'vanilla', recover: 'none', plugins: { tasks: [kind] } });
    expect(r.data).toMatchObject({ calibrationRead: false });
  });

  it('comes from a --plugins module too, and the data flags are refused for it', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ffmerge-task-plugin-'));
    try {
      // written as a user would, with no import of ffmerge: token ids of its own, scored by the model's mean logit of the next id
      fs.writeFileSync(path.join(dir, 'task.js'), `
const ids = (n, seed) => Int32Array.from({ length: n }, (_, i) => (seed * 7919 + i * 104729) % 500 + 3);
const batch = (seed) => ({ ids: ids(2 * 64, seed), batch: 2, seq: 64 });
const score = async (model) => {
  const input = batch(9);
  const { logits } = await model.forward(input, { output: 'logits' });
  let s = 0;
  for (let t = 0; t + 1 < 128; t++) s += logits[t * model.spec.vocab + input.ids[t + 1]];
  return s / 127;
};
exports.tasks = [{
  name: 'mean-logit', description: 'mean logit of the next id', optionKeys: [],
  accepts: (s) => s.modelType === 'llama', check() {},
  async create() {
    return {
      metric: { name: 'mean logit', higherIsBetter: true },
      calibration: [1, 2, 3].map((seed) => { const input = batch(seed); return { input, featureRows: 128 }; }),
      data: { unit: 'tokens', calibration: 384, validation: 128, search: 128, notes: [] },
      async prepare() {}, search: score, validate: score,
    };
  },
}];
`);
      const run = (...args: string[]) => spawnSync(process.execPath, [BIN, 'compress', BUNDLED, '--plugins', 'task.js', '--k', '2', '--method', 'permute', ...args], { cwd: dir, encoding: 'utf8', env: { ...process.env, FFMERGE_FROM_SOURCE: '1', FFMERGE_PROGRESS: '0' } });
      const refused = run('--data', TEXT);
      expect({ code: refused.status, stderr: refused.stderr }).toEqual({ code: 2, stderr: expect.stringContaining('--data does not apply to llama models (mean-logit, a task of --plugins: it reads its own data)') });
      const r = run('--out', 'out', '--json');
      expect({ code: r.status, stderr: r.stderr }).toEqual({ code: 0, stderr: '' });
      expect(JSON.parse(r.stdout)).toMatchObject({ task: 'mean-logit', metric: { name: 'mean logit' }, data: { calibration: 384 } });
      expect(fs.existsSync(path.join(dir, 'out', 'model.safetensors'))).toBe(true);
      // --help names the module's tasks
      const help = spawnSync(process.execPath, [BIN, 'compress', '--plugins', 'task.js', '--help'], { cwd: dir, encoding: 'utf8', env: { ...process.env, FFMERGE_FROM_SOURCE: '1' } });
      expect({ code: help.status, stdout: help.stdout.replace(/\s+/g, ' ') }).toEqual({ code: 0, stdout: expect.stringContaining("This module's tasks: mean-logit") });
      // and the report a person reads names the metric
      const text = run('--out', 'out2');
      expect({ code: text.status, stdout: text.stdout }).toEqual({ code: 0, stdout: expect.stringContaining('mean logit') });
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('readsCalibration', () => {
  it("is a method's own flag: sampled calibration is refused where no method reads it, whatever its name", async () => {
    const vanilla = MERGE_METHODS.get('vanilla');
    const blind: MergeMethod = { name: 'blind-mean', description: 'vanilla under another name', needsCorrelations: false, readsCalibration: false, merge: (ctx, s, w, o) => vanilla.merge(ctx, s, w, o) };
    const opts = { calibration: { sample: {} }, validation: TEXT, k: 2, window: '1-2', recover: 'none' } as const;
    await expect(compress(BUNDLED, { ...opts, method: 'blind-mean', plugins: { mergeMethods: [blind] } })).rejects.toMatchObject({ code: 'OPTION_NOT_APPLICABLE', message: expect.stringMatching(/^sampled calibration/) });
    // one that does not say may read it: the run goes on, and reads it
    const { readsCalibration: _, ...unsaid } = blind;
    const r = await compress(BUNDLED, { ...opts, calibrationTokens: 512, validationTokens: 1024, method: 'blind-mean', plugins: { mergeMethods: [unsaid] } });
    expect(r.data.calibrationRead).toBe(true);
  });
});
