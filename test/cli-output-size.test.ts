/**
 * What compress and convert say about the files they write, on the bundled llama-stories260k: report.json's
 * `out` carries the bytes of the weight files as `--json` does, and `--max-shard-size` shards the safetensors
 * output (compress and convert) as the library's maxShardSize does; an ONNX output, which has no safetensors
 * file to shard, refuses it before any work.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

const BIN = path.resolve(__dirname, '..', 'bin', 'ffmerge.js');
const FAST = ['--window', '1-2', '--method', 'permute', '--recover', 'none', '--calibration-tokens', '2048', '--validation-tokens', '2048'];

function ffmerge(cwd: string, ...args: string[]) {
  const r = spawnSync(process.execPath, [BIN, ...args], { cwd, encoding: 'utf8', env: { ...process.env, FFMERGE_FROM_SOURCE: '1' }, timeout: 600_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

const report = (dir: string) => JSON.parse(fs.readFileSync(path.join(dir, 'report.json'), 'utf8')) as { out: Record<string, unknown> };
const weightBytes = (dir: string) =>
  fs
    .readdirSync(dir)
    .filter((f) => f.endsWith('.safetensors'))
    .reduce((n, f) => n + fs.statSync(path.join(dir, f)).size, 0);

describe('report.json out.bytes and --max-shard-size', () => {
  jest.setTimeout(600_000);
  let cwd: string;
  beforeAll(() => {
    cwd = fs.mkdtempSync(path.join(os.tmpdir(), 'ffmerge-cli-size-'));
  });
  afterAll(() => fs.rmSync(cwd, { recursive: true, force: true }));

  it('compress and convert write report.json with out.bytes, as --json prints it', () => {
    const c = ffmerge(cwd, 'compress', ...FAST, '--out', 'tied', '--json');
    expect(c.code).toBe(0);
    const dir = path.join(cwd, 'tied');
    // before: { dir, format } only
    expect(report(dir).out).toEqual(JSON.parse(c.stdout).out);
    expect(report(dir).out.bytes).toBe(weightBytes(dir));
    const v = ffmerge(cwd, 'convert', 'tied', '--format', 'expanded', '--out', 'exp', '--json');
    expect(v.code).toBe(0);
    const exp = path.join(cwd, 'exp');
    expect(report(exp).out).toEqual({ dir: exp, format: 'expanded', bytes: JSON.parse(v.stdout).bytes });
    expect(report(exp).out.bytes).toBe(weightBytes(exp));
    const o = ffmerge(cwd, 'compress', ...FAST, '--format', 'onnx', '--out', 'onnx', '--json');
    expect(o.code).toBe(0);
    expect(report(path.join(cwd, 'onnx')).out).toEqual(JSON.parse(o.stdout).out);
    expect(report(path.join(cwd, 'onnx')).out.bytes).toBe(fs.statSync(path.join(cwd, 'onnx', 'onnx', 'model.onnx')).size);
  });

  it('--max-shard-size shards what compress and convert write; onnx refuses it', () => {
    const c = ffmerge(cwd, 'compress', ...FAST, '--max-shard-size', '300000', '--out', 'tied-sharded', '--json');
    // before: exit 2, unknown option
    expect(c.stderr).toBe('');
    expect(c.code).toBe(0);
    const dir = path.join(cwd, 'tied-sharded');
    expect(fs.existsSync(path.join(dir, 'model.safetensors'))).toBe(false);
    const index = JSON.parse(fs.readFileSync(path.join(dir, 'model.safetensors.index.json'), 'utf8')) as { weight_map: Record<string, string> };
    const shards = [...new Set(Object.values(index.weight_map))].sort();
    expect(shards.length).toBeGreaterThan(1);
    expect(shards[0]).toMatch(/^model-00001-of-0000\d\.safetensors$/);
    expect(JSON.parse(c.stdout).out.bytes).toBe(weightBytes(dir));
    // the sharded output is what the loader reads: convert reads it, and shards its own output too
    const v = ffmerge(cwd, 'convert', 'tied-sharded', '--format', 'expanded', '--max-shard-size', '300000', '--out', 'exp-sharded', '--json');
    expect(v.code).toBe(0);
    const out = JSON.parse(v.stdout) as { files: string[]; bytes: number };
    expect(out.files.length).toBeGreaterThan(1);
    expect(out.bytes).toBe(weightBytes(path.join(cwd, 'exp-sharded')));
    // nothing to shard in an ONNX folder: refused before any work, not ignored
    const o = ffmerge(cwd, 'compress', ...FAST, '--format', 'onnx', '--max-shard-size', '300000', '--out', 'never', '--json');
    expect(o.code).toBe(2);
    expect(JSON.parse(o.stdout).error.code).toBe('OPTION_NOT_APPLICABLE');
    expect(fs.existsSync(path.join(cwd, 'never'))).toBe(false);
    for (const bad of ['0', '1e6', '-5']) {
      const b = ffmerge(cwd, 'convert', 'tied', '--format', 'expanded', '--max-shard-size', bad, '--out', 'never', '--json');
      expect(b.code).toBe(2);
      expect(JSON.parse(b.stdout).error.code).toBe('INVALID_ARGUMENT');
    }
  });
});

describe('the library refuses a maxShardSize no file takes', () => {
  it('format onnx, or no out: OPTION_NOT_APPLICABLE before any work', async () => {
    const { compress } = await import('../lib/pipeline/compress');
    const model = path.resolve(__dirname, '..', 'models', 'llama-stories260k');
    const base = { calibration: path.join(model, 'calibration.txt'), window: '1-2', method: 'permute', recover: 'none', maxShardSize: 300000 } as const;
    const out = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'ffmerge-shard-')), 'never');
    try {
      // before: compress wrote the ONNX folder and ignored maxShardSize (only the CLI refused it)
      await expect(compress(model, { ...base, format: 'onnx', out })).rejects.toMatchObject({ code: 'OPTION_NOT_APPLICABLE' });
      await expect(compress(model, { ...base })).rejects.toMatchObject({ code: 'OPTION_NOT_APPLICABLE', message: expect.stringMatching(/without out nothing is written/) });
      expect(fs.existsSync(out)).toBe(false);
    } finally {
      fs.rmSync(path.dirname(out), { recursive: true, force: true });
    }
  });
});

describe('--max-shard-size takes sizes as Hugging Face writes them', () => {
  it('an integer, or a number with a unit (decimal GB, binary GiB); anything else is INVALID_ARGUMENT', () => {
    const { byteSize } = require('../lib/cli/flags') as typeof import('../lib/cli/flags');
    // before: "5GB" was refused, only a plain integer was read
    expect(['5000000000', '5GB', '5gb', '500MiB', '1.5GB', '64KiB'].map((v) => byteSize(v, 'max-shard-size'))).toEqual([5e9, 5e9, 5e9, 500 * 2 ** 20, 1.5e9, 65536]);
    for (const bad of ['0', '1e6', '-5', '1.5', '5 parsecs', 'GB', '0.1B']) {
      expect(() => byteSize(bad, 'max-shard-size')).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
    }
  });
});
