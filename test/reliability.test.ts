/**
 * Inputs a user or a server can give that once crashed, hung, grew without bound, lost output or failed
 * without a code (issue 11). Each test names what the code did before.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';

import * as path from 'node:path';
import { main } from '../lib/cli/main';
import { exitCodeFor } from '../lib/cli/errors';
import { FfmergeError } from '../lib/errors';
import { CheckpointReader } from '../lib/checkpoint/ties';
import { checkOutputDir, ffTies, writeCheckpoint } from '../lib/checkpoint/write';
import { inspectModel } from '../lib/model/inspect';
import { compress } from '../lib/pipeline/compress';
import { SafetensorsReader, writeSafetensors } from '../lib/safetensors';
import { removeSyntheticDirs, syntheticLlama, tempDir, writeSynthetic, type Synthetic } from './helpers/synthetic-model';
import { validationText } from './helpers/validation-text';

afterAll(removeSyntheticDirs);

/** Runs the CLI in this process with its output captured. */
async function cli(args: string[]): Promise<{ exit: number; out: string }> {
  let out = '';
  const w = process.stdout.write;
  const e = process.stderr.write;
  const capture = ((chunk: string | Uint8Array) => {
    out += String(chunk);
    return true;
  }) as typeof process.stdout.write;
  process.stdout.write = capture;
  process.stderr.write = capture;
  try {
    return { exit: await main(['node', 'ffmerge', ...args]), out };
  } finally {
    process.stdout.write = w;
    process.stderr.write = e;
  }
}

const codeOf = (out: string) => (JSON.parse(out.slice(out.indexOf('{'))) as { error?: { code: string } }).error?.code;

let model: Synthetic;
let ids: string;
beforeAll(async () => {
  model = await syntheticLlama({ layers: 3, vocab: 40, seed: 5 });
  ids = path.join(tempDir('ids'), 'ids.jsonl');
  fs.writeFileSync(ids, Array.from({ length: 8 }, (_, i) => JSON.stringify({ input_ids: Array.from({ length: 24 }, (_, j) => (i * 7 + j * 3) % 40) })).join('\n') + '\n');
});

/** A copy of the synthetic model folder with `config` overrides (or a raw config.json text). */
function variant(config: Record<string, unknown> | string): string {
  const dir = tempDir('variant');
  for (const f of fs.readdirSync(model.dir)) fs.copyFileSync(path.join(model.dir, f), path.join(dir, f));
  fs.writeFileSync(path.join(dir, 'config.json'), typeof config === 'string' ? config : JSON.stringify({ ...model.config, ...config }));
  return dir;
}

describe('item 2: a layer count the tensors cannot hold is refused before anything is sized by it', () => {
  // Before: inspect and compress grew past 3 GB (the per-k savings loop) with no error.
  it.each([1e9, 2 ** 31, 2 ** 53 - 1, 1e6, 4])('num_hidden_layers %d → INVALID_CONFIG', async (n) => {
    await expect(inspectModel(variant({ num_hidden_layers: n }))).rejects.toMatchObject({ code: 'INVALID_CONFIG' });
  }, 10_000);
});

describe('item 5: the output folder', () => {
  it('inside the input model folder is refused', () => {
    // Before: accepted (only an output containing the input was refused); then OUTPUT_EXISTS, though nothing is there (tester ED).
    expect(() => checkOutputDir(model.dir, path.join(model.dir, 'out'))).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
  });

  it('temp folders of dead processes are swept, an old output moved aside is put back', () => {
    const parent = tempDir('sweep');
    const out = path.join(parent, 'out');
    // a pid that is certainly gone: a child that has exited
    const dead = Number(execFileSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))']).toString());
    const stale = path.join(parent, `.out.ffmerge-tmp-${dead}-1700000000000-abc123`);
    const old = `${stale}-old`;
    const live = path.join(parent, `.out.ffmerge-tmp-${process.pid}-${Date.now()}-def456`);
    const other = path.join(parent, `.other.ffmerge-tmp-${dead}-1700000000000-abc123`);
    for (const d of [stale, old, live, other]) fs.mkdirSync(d);
    fs.writeFileSync(path.join(old, 'report.json'), '{}');
    expect(() => checkOutputDir(model.dir, out)).toThrow(expect.objectContaining({ code: 'OUTPUT_EXISTS' })); // the restored old output
    expect(fs.readdirSync(out)).toEqual(['report.json']);
    expect(fs.readdirSync(parent).sort()).toEqual(['.other.ffmerge-tmp-' + `${dead}-1700000000000-abc123`, path.basename(live), 'out'].sort());
  });

  it("a killed run's temps are swept by a later process that has its pid (a restarted container's server); this process's own are kept", () => {
    const parent = tempDir('sweep-samepid');
    const out = path.join(parent, 'out');
    // named with this process's pid before it began: an earlier process's. Before: kept for good, the pid being alive.
    const earlier = path.join(parent, `.out.ffmerge-tmp-${process.pid}-${Math.floor(performance.timeOrigin) - 5000}-abc123`);
    const own = path.join(parent, `.out.ffmerge-tmp-${process.pid}-${Date.now()}-def456`);
    for (const d of [earlier, own]) fs.mkdirSync(d);
    checkOutputDir(model.dir, out);
    expect(fs.readdirSync(parent)).toEqual([path.basename(own)]);
  });

  it('an old output moved aside under a name without the random part (earlier versions) is put back, not deleted', () => {
    const parent = tempDir('sweep-norand');
    const out = path.join(parent, 'out');
    const dead = Number(execFileSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))']).toString());
    // Before: the pattern's optional random part took "-old", so this read as a plain temp folder and was deleted.
    const old = path.join(parent, `.out.ffmerge-tmp-${dead}-1700000000000-old`);
    fs.mkdirSync(old);
    fs.writeFileSync(path.join(old, 'report.json'), '{}');
    expect(() => checkOutputDir(model.dir, out)).toThrow(expect.objectContaining({ code: 'OUTPUT_EXISTS' }));
    expect(fs.readdirSync(out)).toEqual(['report.json']);
    expect(fs.readdirSync(parent)).toEqual(['out']);
  });

  it('a run killed while removing the output it replaced leaves no half-deleted old output to be put back', async () => {
    const out = path.join(tempDir('swap'), 'out');
    await writeCheckpoint({ source: model.dir, out, format: 'expanded' });
    // The removal of the moved-aside old output dies halfway (as a SIGKILL would). Before: the half-deleted
    // folder still had its `-old` name, and the next run's sweep, finding the output gone, renamed it back.
    // the module object itself (the `import * as` namespace is a read-only view of it)
    const nodeFs = require('node:fs') as typeof fs;
    const rm = nodeFs.rmSync;
    const spy = jest.spyOn(nodeFs, 'rmSync').mockImplementationOnce(() => {
      throw new Error('killed while removing');
    });
    try {
      await expect(writeCheckpoint({ source: model.dir, out, format: 'expanded', overwrite: true })).rejects.toThrow('killed while removing');
    } finally {
      spy.mockRestore();
    }
    expect(nodeFs.rmSync).toBe(rm);
    const beside = fs.readdirSync(path.dirname(out));
    expect(beside.filter((n) => n.endsWith('-old'))).toEqual([]);
    expect(fs.readdirSync(out)).toContain('model.safetensors');
  });

  it('an unwritable output parent is refused before any work', async () => {
    const file = path.join(tempDir('notdir'), 'file');
    fs.writeFileSync(file, 'x');
    // Before: INTERNAL_ERROR (ENOTDIR) after the whole run.
    const t0 = performance.now();
    await expect(compress(model.dir, { calibration: ids, k: 2, out: path.join(file, 'out') })).rejects.toMatchObject({ code: 'OUTPUT_NOT_WRITABLE' });
    expect(performance.now() - t0).toBeLessThan(2000);
  });
});

describe('item 6: a non-finite metric is an error', () => {
  let nanDir: string;
  beforeAll(async () => {
    const s: Synthetic = { ...model, dir: tempDir('nan'), hf: new Map(model.hf) };
    const norm = s.hf.get('model.norm.weight')!;
    s.hf.set('model.norm.weight', { shape: norm.shape, data: norm.data.map((v, i) => (i === 0 ? NaN : v)) });
    await writeSynthetic(s);
    nanDir = s.dir;
  });

  it('compress rejects with NON_FINITE_METRIC and writes nothing', async () => {
    const out = path.join(tempDir('nanout'), 'out');
    // Before: resolved with every perplexity NaN, a window picked at random, the output written.
    await expect(compress(nanDir, { calibration: ids, calibrationTokens: 96, k: 2, out })).rejects.toMatchObject({ code: 'NON_FINITE_METRIC' });
    expect(fs.existsSync(out)).toBe(false);
  });

  it('eval exits 4 with NON_FINITE_METRIC', async () => {
    // Before: printed "perplexity NaN" and exited 0.
    const r = await cli(['eval', nanDir, '--data', ids, '--json']);
    expect({ exit: r.exit, code: codeOf(r.out) }).toEqual({ exit: 4, code: 'NON_FINITE_METRIC' });
  });
});

describe('item 7: special files in place of inputs fail at once', () => {
  const fifo = (p: string) => {
    fs.rmSync(p, { force: true });
    execFileSync('mkfifo', [p]);
  };
  // Before: each of these blocked forever on open(2).
  it.each([
    ['config.json', 'INVALID_CONFIG'],
    ['model.safetensors', 'IO_ERROR'],
  ])('a FIFO as %s → %s', async (file, code) => {
    const dir = variant({});
    fifo(path.join(dir, file));
    const r = await cli(['inspect', dir, '--json']);
    expect({ exit: r.exit, code: codeOf(r.out) }).toEqual({ exit: 3, code });
  }, 10_000);

  it('a FIFO as tokenizer.json → INVALID_CONFIG', async () => {
    const dir = variant({});
    fs.writeFileSync(path.join(tempDir('txt'), 'unused'), '');
    fifo(path.join(dir, 'tokenizer.json'));
    const text = path.join(tempDir('txt'), 'data.txt');
    fs.writeFileSync(text, 'hello world\n');
    const r = await cli(['eval', dir, '--data', text, '--json']);
    expect({ exit: r.exit, code: codeOf(r.out) }).toEqual({ exit: 3, code: 'INVALID_CONFIG' });
  }, 10_000);

  it.each(['fifo', 'directory'])('--data pointing at a %s → INVALID_DATA, exit 3', async (kind) => {
    const data = path.join(tempDir('data'), 'data.jsonl'); // read before any tokenizer is needed
    if (kind === 'fifo') fifo(data);
    else fs.mkdirSync(data);
    // Before: the FIFO blocked forever; the directory failed with INTERNAL_ERROR (EISDIR).
    const r = await cli(['eval', model.dir, '--data', data, '--json']);
    expect({ exit: r.exit, code: codeOf(r.out) }).toEqual({ exit: 3, code: 'INVALID_DATA' });
  }, 10_000);
});

describe('item 8: errors that had no code', () => {
  it.each([
    ['nested 100,000 deep', '{"model_type":"llama","x":' + '['.repeat(100_000) + ']'.repeat(100_000) + '}'],
    ['null', 'null'],
    ['an array', '[]'],
  ])('config.json %s → INVALID_CONFIG', async (_what, text) => {
    // Before: INTERNAL_ERROR (a TypeError on null; JSON.stringify overflowing the stack in the message).
    const r = await cli(['inspect', variant(text), '--json']);
    expect({ exit: r.exit, code: codeOf(r.out) }).toEqual({ exit: 3, code: 'INVALID_CONFIG' });
  });

  it('a deeply nested value in a bad config field → INVALID_CONFIG', async () => {
    const deep = '['.repeat(100_000) + ']'.repeat(100_000);
    const text = JSON.stringify({ ...model.config, hidden_size: '@' }).replace('"@"', deep);
    const r = await cli(['inspect', variant(text), '--json']);
    expect({ exit: r.exit, code: codeOf(r.out) }).toEqual({ exit: 3, code: 'INVALID_CONFIG' });
  });

  it('a deeply nested shape in a safetensors header → SAFETENSORS_INVALID_HEADER', async () => {
    const dir = variant({});
    const deep = '['.repeat(100_000) + ']'.repeat(100_000);
    const json = Buffer.from(`{"a":{"dtype":"F32","shape":[${deep}],"data_offsets":[0,0]}}`);
    const prefix = Buffer.alloc(8);
    prefix.writeBigUInt64LE(BigInt(json.length));
    fs.writeFileSync(path.join(dir, 'model.safetensors'), Buffer.concat([prefix, json]));
    const r = await cli(['inspect', dir, '--json']);
    expect({ exit: r.exit, code: codeOf(r.out) }).toEqual({ exit: 3, code: 'SAFETENSORS_INVALID_HEADER' });
  });

  it.each(['constructor', 'toString', '__proto__', 'hasOwnProperty'])('model_type %s → UNSUPPORTED_ARCHITECTURE', async (t) => {
    const r = await cli(['inspect', variant({ model_type: t }), '--json']);
    expect({ exit: r.exit, code: codeOf(r.out) }).toEqual({ exit: 3, code: 'UNSUPPORTED_ARCHITECTURE' });
  });

  it('SHAPE_MISMATCH exits 3 (bad input), not 1', () => {
    expect(exitCodeFor(new FfmergeError('SHAPE_MISMATCH', 'x'))).toBe(3);
  });
});

describe('item 9: tensors named like Object.prototype members', () => {
  const names = ['constructor', 'toString', '__proto__'];
  let dir: string;
  beforeAll(async () => {
    const s: Synthetic = { ...model, dir: tempDir('proto'), hf: new Map(model.hf) };
    for (const n of names) s.hf.set(n, { shape: [2], data: Float32Array.from([1, 2]) });
    await writeSynthetic(s);
    dir = s.dir;
  });

  it('the reader finds them and inspect leaves no file handle open', async () => {
    const fds = () => fs.readdirSync('/proc/self/fd').length;
    const r = await CheckpointReader.open(dir);
    for (const n of names) {
      // Before: TENSOR_NOT_FOUND ("constructor" resolved to Object.prototype.constructor through the tie map).
      expect(r.has(n)).toBe(true);
      expect(Array.from(await r.readF32(n))).toEqual([1, 2]);
    }
    await r.close();
    const before = fds();
    await expect(inspectModel(variant({ num_hidden_layers: 1e9 }))).rejects.toMatchObject({ code: 'INVALID_CONFIG' });
    expect(fds()).toBe(before);
  });

  it.each(['tied', 'expanded'] as const)('the %s writer keeps them and its output reads back', async (format) => {
    const out = path.join(tempDir('protoout'), 'out');
    // Before: the tied writer dropped "constructor"/"toString"; "__proto__" made a header its reader rejected.
    await writeCheckpoint({ source: dir, out, format, ties: ffTies(model.config, 'decoder', [0, 1]) });
    const r = await SafetensorsReader.open(path.join(out, 'model.safetensors'));
    for (const n of names) expect(Array.from(await r.readF32(n))).toEqual([1, 2]);
    await r.close();
  });

  it('writeSafetensors refuses a tensor named __metadata__', async () => {
    const file = path.join(tempDir('meta'), 'x.safetensors');
    await expect(writeSafetensors(file, [{ name: '__metadata__', dtype: 'F32', shape: [1], data: new Float32Array(1) }])).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
  });
});

describe('item 10: library options the CLI never passes', () => {
  it.each([
    [{ batchBlocks: 0 }],
    [{ batchBlocks: -1 }],
    [{ calibrationTokens: -5 }],
    [{ format: 'bogus' }],
  ])('%j → INVALID_ARGUMENT before any work', async (o) => {
    await expect(compress(model.dir, { calibration: ids, k: 2, ...(o as object) })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
  }, 10_000);

  it('compress(dir) without options returns a rejected promise, never throws synchronously', async () => {
    let p: Promise<unknown> | undefined;
    expect(() => {
      p = (compress as unknown as (d: string) => Promise<unknown>)(model.dir);
    }).not.toThrow();
    await expect(p).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
  });
});



describe('item 11: option values a fuzz of the library found untyped (TypeError, a crash, or a wrong report)', () => {
  it.each([
    [{ window: [] }, 'INVALID_WINDOW', /empty list merges nothing/], // TypeError
    [{ window: [{ start: 0, k: 2 }, null] }, 'INVALID_WINDOW', /a window is \{ start, k \}/], // TypeError
    [{ window: { start: '0', k: 2 } }, 'INVALID_WINDOW', /a window is \{ start, k \}/], // "start 0 does not fit"
    [{ window: '0-1,1-2' }, 'INVALID_WINDOW', /overlap at layer 1/], // failed at the write, after all the work
    [{ window: [{ start: 0, k: 2 }], k: 3 }, 'INVALID_WINDOW', /spans 2 layers but k = 3/], // reported k 3
    [{ k: undefined, fraction: 0.6, window: '0-1' }, 'INVALID_WINDOW', /spans 2 layers but k = 3 \(from fraction 0.6 of \d+ layers\)/], // reported k 3
    [{ k: undefined, fraction: '0.5' }, 'INVALID_ARGUMENT', /fraction must be between 0 and 1/], // a string was taken
    [{ signal: 'no' }, 'INVALID_ARGUMENT', /signal must be an AbortSignal/], // TypeError
    [{ onProgress: 5 }, 'INVALID_ARGUMENT', /onProgress must be a function/], // crashed the process (tokenizer worker)
    [{ out: 5 }, 'INVALID_ARGUMENT', /out must be a folder path/], // node's ERR_INVALID_ARG_TYPE
    [{ validation: [new Int32Array(0)] }, 'INVALID_ARGUMENT', /validation block 0 has 0 token/], // "batch and seq must be positive"
    [{ calibration: [] }, 'INVALID_ARGUMENT', /calibration: the list of token blocks is empty/],
  ])('%j → %s', async (o, code, message) => {
    await expect(compress(model.dir, { calibration: ids, k: 2, method: 'permute', ...(o as object) })).rejects.toMatchObject({ code, message: expect.stringMatching(message) });
  }, 20_000);

  it('a progress callback that throws fails the call with its own error, and the host lives on', async () => {
    const bug = new Error('bug in the caller');
    // text calibration: the first reports come from the tokenizer worker's message handler, where an exception
    // used to escape into the event loop and kill the process
    const text = path.join(tempDir('text'), 'cal.txt');
    fs.writeFileSync(text, 'the cat sat on the mat and the dog ran off. '.repeat(400));
    const throwing = () => {
      throw bug;
    };
    await expect(compress(path.resolve(__dirname, '..', 'models', 'llama-stories260k'), { calibration: text, k: 2, method: 'permute', onProgress: throwing })).rejects.toBe(bug);
    // and from a native job's progress (the assignment), where Node-API dropped it with a warning
    const { linearSumAssignment } = await import('../lib/native/assignment');
    const cost = Float32Array.from({ length: 400 * 400 }, (_, i) => Math.sin(i));
    await expect(linearSumAssignment(cost, 400, 400, { onProgress: throwing })).rejects.toBe(bug);
  }, 60_000);

  it('a progress callback that throws while the checkpoint is written fails the call with its own error, not IO_ERROR', async () => {
    // before: the writer's catch made it IO_ERROR "writing …/.x.ffmerge-tmp-…/model.safetensors failed: bug"
    const bug = new Error('bug in the caller');
    const dir = tempDir('save-throw');
    const throwOnSecondSave = () => {
      let n = 0;
      return (p: { phase: string }) => {
        if (p.phase === 'save' && ++n === 2) throw bug;
      };
    };
    const bundled = path.resolve(__dirname, '..', 'models', 'llama-stories260k');
    const quick = { calibration: path.join(bundled, 'calibration.txt'), calibrationTokens: 1024, validationTokens: 1024, k: 2, window: '3-4', method: 'permute' } as const;
    for (const format of ['tied', 'expanded'] as const) {
      await expect(compress(bundled, { ...quick, format, out: path.join(dir, format), onProgress: throwOnSecondSave() })).rejects.toBe(bug);
    }
    const { convertCheckpoint } = await import('../lib/checkpoint/convert');
    const tied = path.join(dir, 'ok');
    await compress(bundled, { ...quick, out: tied });
    await expect(convertCheckpoint(tied, path.join(dir, 'conv'), 'expanded', { onProgress: throwOnSecondSave() })).rejects.toBe(bug);
    expect(fs.readdirSync(dir)).toEqual(['ok']); // nothing half-written, no temporary folder
  }, 60_000);
});

describe('item 12: every long call refuses a signal or progress callback of the wrong type, typed', () => {
  const BUNDLED = path.resolve(__dirname, '..', 'models', 'llama-stories260k');
  it.each([[{ signal: 'no' }], [{ signal: {} }], [{ onProgress: 5 }]])('%j', async (o) => {
    const { loadModel } = await import('../lib/model/load');
    const { exportOnnx } = await import('../lib/export/onnx/export');
    const { tokenizeFile } = await import('../lib/data/tokenize-file');
    const { perplexity } = await import('../lib/eval/perplexity');
    const m = await loadModel(model.dir);
    const out = path.join(tempDir('wrong-type'), 'out');
    try {
      const calls: (() => Promise<unknown>)[] = [
        () => loadModel(model.dir, o as never),
        () => exportOnnx(model.dir, { out, ...o } as never),
        () => writeCheckpoint({ source: model.dir, out, format: 'tied', replace: new Map(), ...o } as never),
        () => tokenizeFile(BUNDLED, path.join(BUNDLED, 'calibration.txt'), o as never),
        () => perplexity(m, [Int32Array.from([1, 2, 3])], o as never),
        () => m.forward({ ids: Int32Array.from([1, 2, 3]), batch: 1, seq: 3 }, { output: 'nll', ...o } as never),
      ];
      for (const call of calls) await expect(call()).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringMatching(/must be (an AbortSignal|a function)/) });
      expect(fs.existsSync(out)).toBe(false);
    } finally {
      m.dispose();
    }
  });
});

describe('item 13: progress a server can draw', () => {
  const BUNDLED = path.resolve(__dirname, '..', 'models', 'llama-stories260k');
  it("every phase's count only goes up and never passes its total; the last search count is its total", async () => {
    const text = path.join(BUNDLED, 'calibration.txt');
    const seen = new Map<string, { done: number; total: number }[]>();
    const out = path.join(tempDir('progress'), 'out');
    await compress(BUNDLED, {
      // test: other text (the calibration file again is refused: its number would not be held out)
      calibration: text, calibrationTokens: 4096, validationTokens: 2048, test: validationText(text), testTokens: 1024, batchBlocks: 2,
      k: 2, method: 'permute', recover: 'none', baselines: ['drop-ff', 'drop-layers'], out,
      onProgress: (p) => seen.set(p.phase, [...(seen.get(p.phase) ?? []), { done: p.done, total: p.total }]),
    });
    // before: the base, merged and baseline tests each restarted 'test' at 1, and search ended at 4/5
    expect([...seen.keys()]).toEqual(expect.arrayContaining(['features', 'search', 'baselines', 'test', 'save']));
    for (const [phase, events] of seen) {
      for (const [i, e] of events.entries()) {
        expect({ phase, done: e.done, ok: e.done <= e.total }).toEqual({ phase, done: e.done, ok: true });
        if (i > 0) expect({ phase, done: e.done, ok: e.done >= events[i - 1]!.done }).toEqual({ phase, done: e.done, ok: true });
      }
    }
    const search = seen.get('search')!;
    expect(search[search.length - 1]!.done).toBe(search[search.length - 1]!.total);
    const test = seen.get('test')!;
    expect(test[test.length - 1]!.done).toBe(test[test.length - 1]!.total);
  });

  it('without out nothing is saved, and no save phase is reported or timed', async () => {
    const phases = new Set<string>();
    const r = await compress(BUNDLED, {
      calibration: path.join(BUNDLED, 'calibration.txt'), calibrationTokens: 2048, validationTokens: 1024, k: 2, window: '0-1', method: 'permute', recover: 'none',
      onProgress: (p) => phases.add(p.phase),
    });
    expect(r.out).toBeUndefined();
    expect(phases.has('save')).toBe(false);
    expect(Object.keys(r.timings)).not.toContain('save');
  });
});

describe('item 14: what a fourth tester found a server could meet', () => {
  const BUNDLED = path.resolve(__dirname, '..', 'models', 'llama-stories260k');
  const text = path.join(BUNDLED, 'calibration.txt');
  const quick = { calibration: text, calibrationTokens: 1024, validationTokens: 1024, k: 2, window: '3-4', method: 'permute', recover: 'none' } as const;

  it("an async progress callback that rejects fails the call with its own error, not the host's process", async () => {
    // Before: an unhandled rejection (the process exited 1) and the compress promise never settled.
    const unhandled: unknown[] = [];
    const onUnhandled = (e: unknown) => unhandled.push(e);
    process.on('unhandledRejection', onUnhandled);
    try {
      const bug = new Error('db write failed');
      const out = path.join(tempDir('async-cb'), 'out');
      await expect(compress(BUNDLED, { ...quick, out, onProgress: async (p) => { if (p.phase === 'validate-merged') throw bug; } })).rejects.toBe(bug);
      expect(fs.existsSync(out)).toBe(false);
      expect(fs.readdirSync(path.dirname(out))).toEqual([]);
      // a native job's progress too
      const { linearSumAssignment } = await import('../lib/native/assignment');
      const cost = Float32Array.from({ length: 300 * 300 }, (_, i) => Math.sin(i));
      await expect(linearSumAssignment(cost, 300, 300, { onProgress: async () => { throw bug; } })).rejects.toBe(bug);
      await new Promise((r) => setTimeout(r, 50));
      expect(unhandled).toEqual([]);
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
  }, 60_000);

  it("the save phase counts bytes, and a callback that throws at its last report leaves no output", async () => {
    // Before: 'save 1/1' came after the rename: the call rejected and the output stayed (a retry: OUTPUT_EXISTS).
    const saves: { done: number; total: number }[] = [];
    const out = path.join(tempDir('save-throw'), 'out');
    const r = await compress(BUNDLED, { ...quick, out, onProgress: (p) => { if (p.phase === 'save') saves.push({ done: p.done, total: p.total }); } });
    expect(saves.length).toBeGreaterThan(2);
    expect(saves[saves.length - 1]).toEqual({ done: saves[0]!.total, total: saves[0]!.total });
    // the tensor bytes of the file written: its size less the 8-byte length and the header
    const file = path.join(r.out.dir, 'model.safetensors'); // typed present: out was given (compress's overload)
    const header = Number(fs.readFileSync(file).readBigUInt64LE(0));
    expect(saves[0]!.total).toBe(fs.statSync(file).size - 8 - header);
    const again = path.join(tempDir('save-throw'), 'out');
    await expect(compress(BUNDLED, { ...quick, out: again, onProgress: (p) => { if (p.phase === 'save' && p.done === p.total) throw new Error('client gone'); } })).rejects.toThrow('client gone');
    expect(fs.readdirSync(path.dirname(again))).toEqual([]);
  }, 60_000);

  it('an output path that is a symbolic link is refused before any work', async () => {
    // Before: the whole job ran, then the rename onto the link failed as "written by another run meanwhile".
    const dir = tempDir('link');
    fs.mkdirSync(path.join(dir, 'target'));
    fs.symlinkSync(path.join(dir, 'target'), path.join(dir, 'link'));
    const t0 = performance.now();
    await expect(compress(BUNDLED, { ...quick, out: path.join(dir, 'link') })).rejects.toMatchObject({ code: 'OUTPUT_EXISTS', message: expect.stringMatching(/is a symbolic link \(to .*target\); give the folder it points to/) });
    expect(performance.now() - t0).toBeLessThan(2000);
  });

  it('a source replaced while it is compressed is refused (SOURCE_CHANGED), nothing written', async () => {
    // Before: the report scored the model loaded at the start, the output held the replaced file's tensors.
    const src = tempDir('replaced');
    fs.cpSync(BUNDLED, src, { recursive: true });
    const out = path.join(tempDir('replaced-out'), 'out');
    let swapped = false;
    const replace = () => {
      const file = path.join(src, 'model.safetensors');
      fs.copyFileSync(file, `${file}.new`);
      fs.renameSync(`${file}.new`, file); // the same bytes, another file: what a second job's overwrite does
      swapped = true;
    };
    await expect(compress(src, { ...quick, out, onProgress: (p) => { if (!swapped && p.phase === 'validate-merged') replace(); } })).rejects.toMatchObject({
      code: 'SOURCE_CHANGED',
      message: expect.stringMatching(/changed while it was compressed \(model\.safetensors replaced/),
    });
    expect(fs.readdirSync(path.dirname(out))).toEqual([]);
    expect(exitCodeFor(new FfmergeError('SOURCE_CHANGED', 'x'))).toBe(3);
  }, 60_000);

  it('an aborted write to a new deep path leaves none of the folders it made', async () => {
    const base = tempDir('deep');
    const ac = new AbortController();
    const out = path.join(base, 'a', 'b', 'out');
    await expect(writeCheckpoint({ source: model.dir, out, format: 'expanded', signal: ac.signal, onProgress: () => ac.abort() })).rejects.toMatchObject({ code: 'ABORTED' });
    expect(fs.readdirSync(base)).toEqual([]);
    // a parent that held something before is kept
    fs.mkdirSync(path.join(base, 'a'));
    fs.writeFileSync(path.join(base, 'a', 'keep'), '');
    const ac2 = new AbortController();
    await expect(writeCheckpoint({ source: model.dir, out, format: 'expanded', signal: ac2.signal, onProgress: () => ac2.abort() })).rejects.toMatchObject({ code: 'ABORTED' });
    expect(fs.readdirSync(path.join(base, 'a'))).toEqual(['keep']);
  });

  it('budgets inside one block still give calibration and validation a block each, from text and from long rows', async () => {
    // Before: 100 + 100 tokens read one block of 256, all calibration's: "no validation data".
    const r = await compress(BUNDLED, { ...quick, calibrationTokens: 100, validationTokens: 100 });
    expect(r.data).toMatchObject({ calibration: 256, validation: 256 });
    // rows longer than the text block size (400 > 256): the read stopped inside calibration's first row
    const rows = path.join(tempDir('long-rows'), 'rows.jsonl');
    fs.writeFileSync(rows, Array.from({ length: 4 }, (_, i) => JSON.stringify({ input_ids: Array.from({ length: 400 }, (_, j) => 1 + ((i * 31 + j * 7) % 500)) })).join('\n') + '\n');
    const rr = await compress(BUNDLED, { ...quick, calibration: rows, calibrationTokens: 100, validationTokens: 100 });
    expect(rr.data).toMatchObject({ calibration: 400, validation: 400 });
  }, 60_000);

  it("a calibration budget the caller gave that leaves no validation data is INVALID_ARGUMENT; a file too small for the default is INVALID_DATA", async () => {
    // tester EM: both were INVALID_DATA (exit 3), while ViT's calibration size past its data was INVALID_ARGUMENT (exit 2)
    const rows = path.join(tempDir('cal-all'), 'rows.jsonl');
    fs.writeFileSync(rows, Array.from({ length: 3 }, (_, i) => JSON.stringify({ input_ids: Array.from({ length: 100 }, (_, j) => 1 + ((i * 31 + j * 7) % 500)) })).join('\n') + '\n');
    await expect(compress(BUNDLED, { ...quick, calibration: rows, calibrationTokens: 100_000 })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringContaining('no validation data') });
    await expect(compress(BUNDLED, { ...quick, calibration: rows, calibrationTokens: undefined })).rejects.toMatchObject({ code: 'INVALID_DATA', message: expect.stringContaining('no validation data') });
  }, 60_000);

  it('a budget past the data is noted under a spread draw as under the first blocks', async () => {
    // tester ER: --draw spread used all 12,288 tokens of a 20,480-token budget without a word
    for (const draw of ['head', 'spread'] as const) {
      const r = await compress(BUNDLED, { ...quick, draw, calibrationTokens: 8192, validationTokens: 8192 });
      expect(r.data.notes.filter((n) => n.includes('fewer than the'))).toEqual([expect.stringMatching(/^calibration and validation: all [\d,]+ tokens the data holds, fewer than the 16,384 its budget asks$/)]);
    }
  }, 120_000);

  it('an anchor given to a search whose chosen window aligns none is still named, in the notes', async () => {
    // tester EM: --anchor changed the permute candidates' scores, and the report had no trace of it
    const r = await compress(BUNDLED, { ...quick, window: '1-3', k: 3, method: 'select', anchor: 'middle', baselines: ['paper'] });
    expect(r.anchor).toBeUndefined(); // select aligns no window
    expect(r.data.notes).toContain("anchor 'middle': baseline paper used it; the chosen windows align none");
    const p = await compress(BUNDLED, { ...quick, anchor: 'last' });
    expect(p.anchor).toBe('last');
    expect(p.data.notes.join(' ')).not.toContain("anchor 'last'");
  }, 120_000);

  it('save counts the bytes written: from 0, never back, to its total (tester ET: the merged FFs counted as written before any was)', async () => {
    const saves: { done: number; total: number }[] = [];
    await compress(BUNDLED, { ...quick, out: path.join(tempDir('save-progress'), 'out'), onProgress: (p) => void (p.phase === 'save' && saves.push(p)) });
    expect(saves[0]).toMatchObject({ done: 0 });
    for (let i = 1; i < saves.length; i++) expect(saves[i]!.done).toBeGreaterThanOrEqual(saves[i - 1]!.done);
    expect(saves.at(-1)!.done).toBe(saves.at(-1)!.total);
    for (const p of saves) expect(p.total).toBe(saves[0]!.total);
  }, 60_000);

  it('convertCheckpoint stands once its output is renamed into place, whatever its async callback does after (tester EZ)', async () => {
    const first = path.join(tempDir('conv-commit'), 'tied');
    await compress(BUNDLED, { ...quick, out: first });
    const { convertCheckpoint } = await import('../lib/checkpoint/convert');
    const out = path.join(path.dirname(first), 'expanded');
    // a callback whose promise (a database write, say) rejects once the output is there
    let polling = false;
    const onProgress = () => {
      if (polling) return Promise.resolve();
      polling = true;
      return new Promise<void>((_, reject) => {
        const tick = () => (fs.existsSync(out) ? reject(new Error('db write failed')) : setImmediate(tick));
        tick();
      });
    };
    await expect(convertCheckpoint(first, out, 'expanded', { onProgress })).resolves.toMatchObject({ out });
  }, 60_000);

  it('convertCheckpoint reports its comparison of the copies and its write, and exportOnnx its comparison', async () => {
    // Before: onProgress was accepted and never called; then the comparison of the copies was silent (tester ET)
    const first = path.join(tempDir('conv'), 'tied');
    await compress(BUNDLED, { ...quick, out: first });
    const { convertCheckpoint } = await import('../lib/checkpoint/convert');
    const { exportOnnx } = await import('../lib/export/onnx/export');
    const last = new Map<string, { done: number; total: number; unit?: string | undefined }>();
    const expanded = path.join(path.dirname(first), 'expanded');
    // from a tied source nothing is compared (its merges are stored once), so nothing is said of it
    await convertCheckpoint(first, expanded, 'expanded', { onProgress: (p) => void last.set(p.phase, p) });
    expect([...last.keys()]).toEqual(['save']);
    last.clear();
    await convertCheckpoint(expanded, path.join(path.dirname(first), 'tied-again'), 'tied', { onProgress: (p) => void last.set(p.phase, p) });
    expect([...last.keys()]).toEqual(['inspect', 'save']);
    expect(last.get('inspect')).toMatchObject({ unit: 'tensors', done: last.get('inspect')!.total });
    const pairs = last.get('inspect')!.total;
    expect(pairs).toBeGreaterThan(1);
    // export counts the same pairs, one event each (tester FA: one event per window, silent through its gigabytes)
    const counts: number[] = [];
    await exportOnnx(expanded, { out: path.join(path.dirname(first), 'onnx'), onProgress: (p) => void (p.phase === 'inspect' && (expect(p).toMatchObject({ unit: 'tensors', total: pairs }), counts.push(p.done))) });
    expect(counts).toEqual(Array.from({ length: pairs + 1 }, (_, i) => i));
  }, 60_000);
});

describe('item 15: hostile inputs a sixth tester found', () => {
  const fifo = (p: string) => {
    fs.rmSync(p, { force: true });
    execFileSync('mkfifo', [p]);
  };

  it('a NaN in an attention query weight is NON_FINITE_ACTIVATIONS (exit 4), not a finite wrong perplexity', async () => {
    // Before: every score of the head was NaN, std::max skipped them, and the row was zero-filled as one with
    // no key to look at: eval printed a perplexity and compress wrote the NaN weight out.
    const s: Synthetic = { ...model, dir: tempDir('nan-q'), hf: new Map(model.hf) };
    const name = 'model.layers.1.self_attn.q_proj.weight';
    const q = s.hf.get(name)!;
    s.hf.set(name, { shape: q.shape, data: q.data.map((v, i) => (i === 5 ? NaN : v)) });
    await writeSynthetic(s);
    const r = await cli(['eval', s.dir, '--data', ids, '--json']);
    expect({ exit: r.exit, code: codeOf(r.out) }).toEqual({ exit: 4, code: 'NON_FINITE_ACTIVATIONS' });
    // the layer where the NaN first shows is named (a seventh tester: the message named nothing to look at)
    expect(r.out).toContain('non-finite (NaN or Inf) in layer 1:');
  }, 20_000);

  it('a NaN in an FF weight of a relu model is NON_FINITE_ACTIVATIONS too (tester EV: relu turned NaN into 0)', async () => {
    const s: Synthetic = { ...model, dir: tempDir('nan-relu'), config: { ...model.config, hidden_act: 'relu' }, hf: new Map(model.hf) };
    const name = 'model.layers.0.mlp.gate_proj.weight';
    const g = s.hf.get(name)!;
    s.hf.set(name, { shape: g.shape, data: g.data.map((v, i) => (i === 5 ? NaN : v)) });
    await writeSynthetic(s);
    const r = await cli(['eval', s.dir, '--data', ids, '--json']);
    expect({ exit: r.exit, code: codeOf(r.out) }).toEqual({ exit: 4, code: 'NON_FINITE_ACTIVATIONS' });
    expect(r.out).toContain('non-finite (NaN or Inf) in layer 0:');
  }, 20_000);

  it('convert with a FIFO or null as config.json, export with a FIFO as generation_config.json: exit 3, no wait', async () => {
    // Before: convert and export blocked forever on the FIFO (SIGTERM could not stop them); null was INTERNAL_ERROR.
    const out = () => path.join(tempDir('hostile-out'), 'out');
    const a = variant({});
    fifo(path.join(a, 'config.json'));
    const c1 = await cli(['convert', a, '--format', 'expanded', '--out', out(), '--json']);
    expect({ exit: c1.exit, code: codeOf(c1.out) }).toEqual({ exit: 3, code: 'INVALID_CONFIG' });
    const c2 = await cli(['convert', variant('null'), '--format', 'expanded', '--out', out(), '--json']);
    expect({ exit: c2.exit, code: codeOf(c2.out) }).toEqual({ exit: 3, code: 'INVALID_CONFIG' });
    const b = variant({});
    fifo(path.join(b, 'generation_config.json'));
    const e = await cli(['export', b, '--out', out(), '--json']);
    expect({ exit: e.exit, code: codeOf(e.out) }).toEqual({ exit: 3, code: 'INVALID_CONFIG' });
  }, 20_000);

  it.each([
    ['rope_theta 1e999', '{"rope_theta": 1e999}', /"rope_theta" must be a finite positive number \(got Infinity\)/],
    ['tie_word_embeddings "yes"', { tie_word_embeddings: 'yes' }, /"tie_word_embeddings" must be true or false/],
  ])('config %s → INVALID_CONFIG naming the key (exit 3)', async (_label, change, message) => {
    // Before: Infinity reached the native spec check (INVALID_ARGUMENT, exit 2, "ropeTheta"); "yes" was read
    // as false and reported as a missing lm_head.weight.
    const cfg = typeof change === 'string' ? JSON.stringify(model.config).replace(/}$/, `, ${change.slice(1, -1)}}`).replace(/"rope_theta":[^,}]*,/, '') : change;
    const r = await cli(['eval', variant(cfg), '--data', ids, '--json']);
    const err = (JSON.parse(r.out.slice(r.out.indexOf('{'))) as { error: { code: string; message: string } }).error;
    expect({ exit: r.exit, code: err.code }).toEqual({ exit: 3, code: 'INVALID_CONFIG' });
    expect(err.message).toMatch(message);
  }, 20_000);

  it('a config without model_type says so', async () => {
    const { model_type: _t, ...rest } = model.config as Record<string, unknown>;
    const r = await cli(['inspect', variant(JSON.stringify(rest)), '--json']);
    expect(JSON.parse(r.out.slice(r.out.indexOf('{'))).error.message).toMatch(/^config\.json has no model_type/);
  });
});
