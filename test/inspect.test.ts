/**
 * What `ffmerge inspect` (inspectModel, formatSummary) says about the model it is given (tester DB): an expanded
 * output whose merged copies were changed after compressing is not described as merged (the copies are
 * compared as convert and export compare them, and only for such an output: an ordinary model's inspect reads
 * headers only); the stored dtypes are shown; an ONNX output folder is refused with a code that says the wrong
 * folder was given. On the bundled llama-stories260k; the BF16 cast on the llama fixture of ../shared.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { compress } from '../lib/pipeline/compress';
import { convertCheckpoint } from '../lib/checkpoint/convert';
import { exportOnnx } from '../lib/export/onnx/export';
import { inspectModel } from '../lib/model/inspect';
import { formatSummary } from '../lib/cli/inspect';
import { SafetensorsReader } from '../lib/safetensors';
import { castCheckpoint } from './helpers/cast-checkpoint';
import { describeShared, sharedPath } from './helpers/shared';
import { removeSyntheticDirs, syntheticGpt2, writeSynthetic } from './helpers/synthetic-model';

const BUNDLED = path.resolve(__dirname, '..', 'models', 'llama-stories260k');
const TEXT = path.join(BUNDLED, 'calibration.txt');
const BIN = path.resolve(__dirname, '..', 'bin', 'ffmerge.js');

jest.setTimeout(600_000);

function ffmerge(...args: string[]) {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', env: { ...process.env, FFMERGE_FROM_SOURCE: '1' }, timeout: 300_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Flips the lowest bit of the first byte of one tensor's data in a safetensors file, in place (an edit after compressing). */
function flipByte(file: string, name: string): void {
  const buf = fs.readFileSync(file);
  const n = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8')) as Record<string, { data_offsets: [number, number] }>;
  const at = 8 + n + header[name]!.data_offsets[0];
  buf[at] = buf[at]! ^ 1;
  fs.writeFileSync(file, buf);
}

let tmp: string;
const dir = (name: string) => path.join(tmp, name);
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ffmerge-inspect-'));
});
afterAll(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
  removeSyntheticDirs();
});

describe('an expanded output whose copies differ', () => {
  const edited = 'model.layers.2.mlp.down_proj.weight';

  it('is listed as inconsistent with the tensor that differs, not counted as merged, as convert and export see it', async () => {
    await compress(BUNDLED, { calibration: TEXT, calibrationTokens: 512, validationTokens: 512, blockSize: 128, method: 'permute', recover: 'none', window: '1-2', format: 'expanded', out: dir('e12') });
    const reads = jest.spyOn(SafetensorsReader.prototype, 'readRaw');
    try {
      // an ordinary model, and a tied output: headers only, no tensor data read
      await inspectModel(BUNDLED);
      await convertCheckpoint(dir('e12'), dir('t12'), 'tied');
      reads.mockClear();
      const tied = await inspectModel(dir('t12'));
      expect(tied.merges?.windows.map((w) => w.window)).toEqual(['1-2']);
      expect(reads).not.toHaveBeenCalled();
      // as written, the expanded output's copies agree: the merge is counted (its copies read, pair by pair)
      const before = await inspectModel(dir('e12'));
      expect(reads).toHaveBeenCalled();
      expect(before.merges).toEqual({ windows: [expect.objectContaining({ stack: 'decoder', window: '1-2', layers: [1, 2] })], inconsistent: [] });
      expect(before.tiedParams).toBe(tied.totalParams);
      expect(formatSummary(before)).toMatch(/already compressed \(expanded format\).*the merges remove 33,024 FF params in the tied format/);
      // the comparison reports its windows and stops on a signal (tester DZ: neither option was taken)
      const events: string[] = [];
      await inspectModel(dir('e12'), { onProgress: (p) => void events.push(`${p.phase} ${p.done}/${p.total} ${p.unit}`) });
      // counted by the pair of copies read, as convert and export count them (tester FA: a window is gigabytes)
      expect(events).toEqual(['inspect 0/3 tensors', 'inspect 1/3 tensors', 'inspect 2/3 tensors', 'inspect 3/3 tensors']);
      await expect(inspectModel(dir('e12'), { signal: AbortSignal.abort() })).rejects.toMatchObject({ code: 'ABORTED' });
      // a callback's error fails the call, an async one's rejection too (tester EG: it ended the process)
      const thrown = new Error('from the callback');
      await expect(inspectModel(dir('e12'), { onProgress: () => { throw thrown; } })).rejects.toBe(thrown);
      await expect(inspectModel(dir('e12'), { onProgress: async () => { throw thrown; } })).rejects.toBe(thrown);
      // compress and eval, which check the copies themselves or not at all, read headers only
      reads.mockClear();
      await inspectModel(dir('e12'), { compareCopies: false });
      expect(reads).not.toHaveBeenCalled();
    } finally {
      reads.mockRestore();
    }

    flipByte(path.join(dir('e12'), 'model.safetensors'), edited);
    const s = await inspectModel(dir('e12'));
    // before: windows [1-2], inconsistent [], "the merges remove 33,024 FF params", tiedParams counted without its copies
    expect(s.merges?.windows).toEqual([]);
    expect(s.merges?.inconsistent).toEqual([
      {
        stack: 'decoder',
        window: '1-2',
        layers: [1, 2],
        found: 'copies differ',
        tensor: edited,
        differsFrom: 'model.layers.1.mlp.down_proj.weight',
        reason: expect.stringContaining(`${edited} differs from model.layers.1.mlp.down_proj.weight`),
      },
    ]);
    expect(s.tiedParams).toBeUndefined();
    const text = formatSummary(s);
    expect(text).not.toMatch(/the merges remove/);
    expect(text).toMatch(new RegExp(`the record also lists decoder 1-2, whose copies differ: ${edited.replace(/\./g, '\\.')} differs from model\\.layers\\.1\\.mlp\\.down_proj\\.weight.*not counted`));
    // the same verdict as convert's (and export's, which writes that window unshared)
    await expect(convertCheckpoint(dir('e12'), dir('never'), 'tied')).rejects.toMatchObject({ code: 'INVALID_DATA', message: expect.stringContaining(edited) });
    const j = ffmerge('inspect', dir('e12'), '--json');
    expect(j.code).toBe(0);
    expect(JSON.parse(j.stdout).merges.inconsistent).toEqual([expect.objectContaining({ window: '1-2', found: 'copies differ', tensor: edited })]);
  });
});

describe('buffers are stored, not parameters', () => {
  it("GPT-2's causal masks count in bytes, not in the parameters a merge's share is taken of (tester DN: +786,432 params)", async () => {
    const plain = await syntheticGpt2({ layers: 2 });
    const base = await inspectModel(plain.dir);
    const masked = await syntheticGpt2({ layers: 2 });
    for (const l of [0, 1]) {
      masked.hf.set(`transformer.h.${l}.attn.bias`, { shape: [1, 1, 8, 8], data: new Float32Array(64).fill(1) });
      masked.hf.set(`transformer.h.${l}.attn.masked_bias`, { shape: [], data: new Float32Array([-1e4]) });
    }
    await writeSynthetic(masked);
    const s = await inspectModel(masked.dir);
    expect(s.totalParams).toBe(base.totalParams);
    expect(s.dtypes).toEqual({ F32: base.totalParams });
    expect(s.totalBytes).toBe(base.totalBytes + 4 * 2 * (64 + 1));
  });
});

describe('the stored dtypes', () => {
  it('a float32 model: one dtype; a checkpoint cast layer by layer: each, with its parameters', async () => {
    const s = await inspectModel(BUNDLED);
    expect(s.dtypes).toEqual({ F32: s.totalParams });
    expect(formatSummary(s)).toMatch(/\ndtype {8}F32\n/);
    await castCheckpoint(BUNDLED, dir('mixed'), 'F16', { names: (n) => /^model\.layers\.[34]\.mlp\./.test(n) });
    const m = await inspectModel(dir('mixed'));
    // layers 3 and 4's FF tensors in F16, the rest in F32
    const f16 = 2 * m.stacks[0]!.ffParamsPerLayer;
    expect(m.dtypes).toEqual({ F32: m.totalParams - f16, F16: f16 });
    const fmt = (n: number) => n.toLocaleString('en-US');
    expect(formatSummary(m)).toContain(`\ndtypes       F32 ${fmt(m.dtypes.F32!)} params, F16 ${fmt(m.dtypes.F16!)} params\n`);
  });
});

describeShared('fixtures/llama-stories260k', 'the stored dtype of a BF16 copy of the llama fixture', () => {
  it('is BF16, in the text and in --json', async () => {
    await castCheckpoint(sharedPath('fixtures', 'llama-stories260k'), dir('bf16'), 'BF16');
    const s = await inspectModel(dir('bf16'));
    expect(s.dtypes).toEqual({ BF16: s.totalParams });
    const r = ffmerge('inspect', dir('bf16'));
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/\ndtype {8}BF16\n/);
    expect(JSON.parse(ffmerge('inspect', dir('bf16'), '--json').stdout).dtypes).toEqual({ BF16: s.totalParams });
  });
});

describe('an ONNX output folder', () => {
  it('is refused as the wrong folder given (INVALID_ARGUMENT, exit 2), naming what to give instead', async () => {
    await exportOnnx(BUNDLED, { out: dir('onnx') });
    // before: TENSOR_NOT_FOUND (exit 3), as if the checkpoint had lost tensors
    await expect(inspectModel(dir('onnx'))).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringMatching(/holds an ONNX export, which ffmerge writes but does not read; give the safetensors folder/) });
    const r = ffmerge('inspect', dir('onnx'));
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/holds an ONNX export.*\[INVALID_ARGUMENT\]/);
  });

  it('so is a folder with a .onnx file at its top, as torch.onnx.export writes one (tester DD: TENSOR_NOT_FOUND, exit 3)', async () => {
    const top = dir('onnx-top');
    fs.mkdirSync(top, { recursive: true });
    fs.copyFileSync(path.join(BUNDLED, 'config.json'), path.join(top, 'config.json'));
    fs.copyFileSync(path.join(dir('onnx'), 'onnx', 'model.onnx'), path.join(top, 'Model.ONNX'));
    await expect(inspectModel(top)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringMatching(/holds an ONNX export/) });
    // beside PyTorch .bin weights, the .onnx was exported from them: the advice is theirs (tester DG)
    fs.writeFileSync(path.join(top, 'pytorch_model.bin'), '');
    await expect(inspectModel(top)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringMatching(/holds PyTorch \.bin weights; save them as safetensors first/) });
  });
});

describe('shards without their index', () => {
  it('are named, with the index said to be missing (tester DS: "has no model.safetensors" alone)', async () => {
    const shards = dir('no-index');
    fs.mkdirSync(shards, { recursive: true });
    fs.copyFileSync(path.join(BUNDLED, 'config.json'), path.join(shards, 'config.json'));
    for (const f of ['model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors']) fs.copyFileSync(path.join(BUNDLED, 'model.safetensors'), path.join(shards, f));
    await expect(inspectModel(shards)).rejects.toMatchObject({
      code: 'TENSOR_NOT_FOUND',
      message: expect.stringContaining('and no model.safetensors.index.json for the safetensors files it holds (model-00001-of-00002.safetensors, model-00002-of-00002.safetensors)'),
    });
    // a fixture's reference.safetensors beside no weights is no shard (tester DT)
    const none = dir('reference-only');
    fs.mkdirSync(none, { recursive: true });
    fs.copyFileSync(path.join(BUNDLED, 'config.json'), path.join(none, 'config.json'));
    fs.copyFileSync(path.join(BUNDLED, 'model.safetensors'), path.join(none, 'reference.safetensors'));
    await expect(inspectModel(none)).rejects.toMatchObject({ code: 'TENSOR_NOT_FOUND', message: expect.not.stringContaining('index') });
  });
});
