/**
 * @jest-environment ./test/helpers/ort-environment.js
 *
 * `ffmerge export` and `ffmerge compress --format onnx` as a user runs them, on the bundled llama-stories260k
 * (no ../shared needed), and `ffmerge export` of the Marian fixture when ../shared is there; the written
 * folders load in onnxruntime-node.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as ort from 'onnxruntime-node';
import { runLm } from './helpers/onnx-lm';
import { describeShared, sharedPath } from './helpers/shared';

const BIN = path.resolve(__dirname, '..', 'bin', 'ffmerge.js');
const BUNDLED = path.resolve(__dirname, '..', 'models', 'llama-stories260k');
const DIMS = { layers: 5, kvHeads: 4, headDim: 8, vocab: 512 };

function ffmerge(cwd: string, ...args: string[]) {
  const r = spawnSync(process.execPath, [BIN, ...args], { cwd, encoding: 'utf8', env: { ...process.env, FFMERGE_FROM_SOURCE: '1' }, timeout: 600_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Sets the first value of one F32 tensor of a safetensors file, in place (an edit after compressing). */
function pokeFloat(file: string, name: string, value: number): void {
  const buf = fs.readFileSync(file);
  const n = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8')) as Record<string, { dtype: string; data_offsets: [number, number] }>;
  expect(header[name]!.dtype).toBe('F32');
  buf.writeFloatLE(value, 8 + n + header[name]!.data_offsets[0]);
  fs.writeFileSync(file, buf);
}

describe('ffmerge export / compress --format onnx', () => {
  jest.setTimeout(600_000);
  let cwd: string;
  beforeAll(() => {
    cwd = fs.mkdtempSync(path.join(os.tmpdir(), 'ffmerge-cli-onnx-'));
  });
  afterAll(() => fs.rmSync(cwd, { recursive: true, force: true }));

  it('compress --format onnx writes the merged model as an ONNX folder with report.json', async () => {
    const r = ffmerge(cwd, 'compress', '--format', 'onnx', '--out', 'merged', '--json');
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.out.format).toBe('onnx');
    for (const f of ['onnx/model.onnx', 'config.json', 'generation_config.json', 'tokenizer.json', 'report.json']) expect(fs.existsSync(path.join(cwd, 'merged', f))).toBe(true);
    expect(fs.existsSync(path.join(cwd, 'merged', 'model.safetensors'))).toBe(false);
    const s = await ort.InferenceSession.create(path.join(cwd, 'merged', 'onnx', 'model.onnx'));
    const { logits } = await runLm(s, DIMS, [1, 403, 407]);
    expect(logits).toHaveLength(3 * 512);
    expect(logits.every(Number.isFinite)).toBe(true);
    await s.release();
    // ffmerge writes ONNX but does not read it: inspect (eval, compress) says so and what to give instead
    // (the wrong folder given: INVALID_ARGUMENT, exit 2; it was TENSOR_NOT_FOUND, as if tensors were lost: tester DB)
    const i = ffmerge(cwd, 'inspect', 'merged');
    expect(i.code).toBe(2);
    expect(i.stderr).toMatch(/holds an ONNX export, which ffmerge writes but does not read; give the safetensors folder.*\[INVALID_ARGUMENT\]/);
  });

  it('export of a tied compress output: an ONNX card and record (not the tied ones), the report carried', () => {
    const c = ffmerge(cwd, 'compress', '--window', '1-2', '--method', 'permute', '--recover', 'none', '--calibration-tokens', '2048', '--validation-tokens', '2048', '--out', 'tied');
    expect(c.code).toBe(0);
    const r = ffmerge(cwd, 'export', 'tied', '--format', 'onnx', '--out', 'tied-onnx', '--json');
    expect(r.code).toBe(0);
    const dir = path.join(cwd, 'tied-onnx');
    // before: the tied card was copied ("absent from `model.safetensors`", with no model.safetensors here)
    const card = fs.readFileSync(path.join(dir, 'README.md'), 'utf8');
    const tiedCard = fs.readFileSync(path.join(cwd, 'tied', 'README.md'), 'utf8');
    expect(card).toContain('**ONNX** export');
    expect(card).not.toMatch(/\*\*tied\*\* format|model\.safetensors|```python/);
    // the compression's numbers describe these weights as well: the card keeps them, report.json comes along
    // (its front matter names the ONNX folder's library: transformers.js)
    const body = (c: string) => c.slice(c.indexOf('\n---\n') + 5, c.indexOf('## How to load'));
    expect(body(card)).toBe(body(tiedCard));
    expect(card).toMatch(/^---\ntags:\n  - ffmerge\nlibrary_name: transformers.js\n---\n/);
    const report = JSON.parse(fs.readFileSync(path.join(dir, 'report.json'), 'utf8'));
    expect(report.out).toEqual({ dir, format: 'onnx', bytes: JSON.parse(r.stdout).onnxBytes });
    // the record names the format on disk; the merges and ties stay in it (which checkpoint tensors one initializer serves)
    const info = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8')).ffmerge;
    expect(info.format).toBe('onnx');
    expect(info.windows.map((w: { window: string }) => w.window)).toEqual(['1-2']);
    expect(Object.keys(info.ties).length).toBeGreaterThan(0);
    // a plain model exported: its record says onnx too, and no card is made up for it
    const p = ffmerge(cwd, 'export', BUNDLED, '--format', 'onnx', '--out', 'plain-onnx');
    expect(p.code).toBe(0);
    // its progress is shown, as every long command's (the phase had no line: nothing was drawn)
    expect(p.stderr).toMatch(/Writing ONNX\s+47 tensors/);
    expect(JSON.parse(fs.readFileSync(path.join(cwd, 'plain-onnx', 'config.json'), 'utf8')).ffmerge.format).toBe('onnx');
    expect(fs.existsSync(path.join(cwd, 'plain-onnx', 'README.md'))).toBe(false);
    // with the weights beside it, model.onnx's own size and theirs are given apart (tester AV: one sum read as model.onnx's)
    const ext = ffmerge(cwd, 'export', BUNDLED, '--out', 'ext-onnx', '--external-data', 'always');
    expect(ext.code).toBe(0);
    const bytes = (f: string) => fs.statSync(path.join(cwd, 'ext-onnx', 'onnx', f)).size;
    expect(bytes('model.onnx')).toBeLessThan(bytes('model.onnx_data'));
    expect(ext.stdout).toMatch(/model\.onnx \([\d.]+ kB \+ [\d.]+ [kM]B of weights in \.onnx_data files, fp32 weights\)/);
  });

  it('export --dtype fp16 --json: half-size weights, a summary for scripts', () => {
    const r = ffmerge(cwd, 'export', BUNDLED, '--format', 'onnx', '--out', 'fp16', '--dtype', 'fp16', '--json');
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out).toMatchObject({ ok: true, dtype: 'fp16', external: false });
    const full = fs.statSync(path.join(BUNDLED, 'model.safetensors')).size;
    expect(Math.abs(out.weightBytes / full - 0.5)).toBeLessThan(0.01); // the safetensors header is the rest
    expect(out.onnxBytes).toBeGreaterThan(out.weightBytes);
  });

  it('export of an expanded output with one window edited: the other window stays shared, the edited one is named', () => {
    const c = ffmerge(cwd, 'compress', '--window', '0-1,2-3', '--method', 'permute', '--recover', 'none', '--calibration-tokens', '2048', '--validation-tokens', '2048', '--format', 'expanded', '--out', 'exp2');
    expect(c.code).toBe(0);
    const edited = 'model.layers.3.mlp.up_proj.weight';
    pokeFloat(path.join(cwd, 'exp2', 'model.safetensors'), edited, 0.123);
    const r = ffmerge(cwd, 'export', 'exp2', '--out', 'exp2-onnx', '--json');
    expect(r.code).toBe(0);
    // before: exported wholly unshared (as many initializers as the plain model), silently, windows dropped
    expect(r.stderr).toContain(`ffmerge: warning: decoder window 2-3 exported unshared (each layer its own FF): ${edited} differs from model.layers.2.mlp.up_proj.weight`);
    const out = JSON.parse(r.stdout);
    expect(out.unshared).toEqual([expect.objectContaining({ stack: 'decoder', window: '2-3', layers: [2, 3], tensor: edited, differsFrom: 'model.layers.2.mlp.up_proj.weight' })]);
    const plain = JSON.parse(ffmerge(cwd, 'export', BUNDLED, '--out', 'exp2-plain', '--json').stdout);
    expect(out.weightTensors).toBe(plain.weightTensors - 3); // window 0-1's up, gate and down proj shared
    const info = JSON.parse(fs.readFileSync(path.join(cwd, 'exp2-onnx', 'config.json'), 'utf8')).ffmerge;
    expect(info.windows.map((w: { window: string }) => w.window)).toEqual(['0-1']);
    expect(Object.keys(info.ties).sort()).toEqual(['model.layers.1.mlp.down_proj.weight', 'model.layers.1.mlp.gate_proj.weight', 'model.layers.1.mlp.up_proj.weight']);
    expect(info.unshared).toMatch(/^decoder window 2-3 is not shared: its expanded copies differ, so they are exported as they are: model\.layers\.3\.mlp\.up_proj\.weight differs/);
    expect(info.unshared).not.toMatch(/refusing/);
    // the compression's report counts both merges: not this folder's numbers
    expect(fs.existsSync(path.join(cwd, 'exp2-onnx', 'report.json'))).toBe(false);
    // the card names the window that is not shared here, as the record does
    expect(fs.readFileSync(path.join(cwd, 'exp2-onnx', 'README.md'), 'utf8')).toMatch(/- not shared in this folder \(each layer keeps its own FF\): decoder window 2-3 is not shared/);
  });

  it('bad arguments exit 2 with one line and a stable code', () => {
    for (const args of [['export', BUNDLED], ['export', BUNDLED, '--format', 'tflite', '--out', 'x'], ['export', BUNDLED, '--out', 'x', '--dtype', 'int8']]) {
      const r = ffmerge(cwd, ...args, '--json');
      expect(r.code).toBe(2);
      expect(JSON.parse(r.stdout).error.code).toBe('INVALID_ARGUMENT');
    }
    expect(fs.existsSync(path.join(cwd, 'x'))).toBe(false);
  });
});

describeShared('fixtures/marian-multi30k-en-de', 'ffmerge export of a Marian model', () => {
  jest.setTimeout(300_000);
  let cwd: string;
  beforeAll(() => {
    cwd = fs.mkdtempSync(path.join(os.tmpdir(), 'ffmerge-cli-onnx-marian-'));
  });
  afterAll(() => fs.rmSync(cwd, { recursive: true, force: true }));

  it('writes encoder_model.onnx + decoder_model_merged.onnx that onnxruntime loads', async () => {
    const r = ffmerge(cwd, 'export', sharedPath('fixtures', 'marian-multi30k-en-de'), '--format', 'onnx', '--out', 'marian', '--json');
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out).toMatchObject({ ok: true, dtype: 'fp32', external: false });
    expect(out.files.map((f: { file: string }) => f.file)).toEqual(['onnx/encoder_model.onnx', 'onnx/decoder_model_merged.onnx']);
    for (const f of out.files as { file: string; onnxBytes: number }[]) {
      expect(fs.statSync(path.join(cwd, 'marian', f.file)).size).toBe(f.onnxBytes);
      const s = await ort.InferenceSession.create(path.join(cwd, 'marian', f.file));
      expect(s.outputNames[0]).toBe(f.file.includes('encoder') ? 'last_hidden_state' : 'logits');
      await s.release();
    }
    const text = ffmerge(cwd, 'export', sharedPath('fixtures', 'marian-multi30k-en-de'), '--out', 'marian2');
    expect(text.code).toBe(0);
    expect(text.stdout).toContain('encoder_model.onnx + ');
  });
});
