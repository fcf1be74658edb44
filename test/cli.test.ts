/**
 * The ffmerge CLI as a user runs it: `node bin/ffmerge.js …` in a fresh temp directory. bin/ffmerge.js runs
 * dist/ when built, else lib/ through ts-node; FFMERGE_FROM_SOURCE=1 pins the source path here so the tests
 * never exercise a stale dist/.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describeShared, sharedPath } from './helpers/shared';

const BIN = path.resolve(__dirname, '..', 'bin', 'ffmerge.js');
const BUNDLED = path.resolve(__dirname, '..', 'models', 'llama-stories260k');

function ffmerge(cwd: string, ...args: string[]) {
  const r = spawnSync(process.execPath, [BIN, ...args], {
    cwd,
    encoding: 'utf8',
    env: { ...process.env, FFMERGE_FROM_SOURCE: '1' },
    timeout: 600_000,
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('ffmerge CLI', () => {
  let cwd: string;
  beforeEach(() => {
    cwd = fs.mkdtempSync(path.join(os.tmpdir(), 'ffmerge-cli-'));
  });
  afterEach(() => fs.rmSync(cwd, { recursive: true, force: true }));
  jest.setTimeout(600_000);

  it('compress with no arguments merges the bundled model and writes a smaller tied checkpoint + report', () => {
    const r = ffmerge(cwd, 'compress', '--json');
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.ok).toBe(true);
    expect(out.k).toBe(2);
    // 4 windows × the default combinations; the demo shows drop-ff and the paper's merge beside it
    expect(out.candidates).toHaveLength(12);
    expect(out.merged.validation).toBeGreaterThan(1);
    expect(Object.keys(out.baselines)).toEqual(['drop-ff', 'paper']);
    expect(out.merged.validation).toBeLessThan(out.baselines['drop-ff'].validation);
    expect(out.merged.validation).toBeLessThan(out.baselines.paper.validation);
    const dir = path.join(cwd, 'llama-stories260k-ffmerge');
    expect(fs.existsSync(path.join(dir, 'report.json'))).toBe(true);
    expect(fs.existsSync(path.join(dir, 'tokenizer.json'))).toBe(true);
    const before = fs.statSync(path.join(BUNDLED, 'model.safetensors')).size;
    const after = fs.statSync(path.join(dir, 'model.safetensors')).size;
    expect(before - after).toBeGreaterThan(out.params.removed * 4 - 4096);

    // a second run refuses the now non-empty output and leaves it untouched
    const again = ffmerge(cwd, 'compress');
    expect(again.code).toBe(2);
    expect(again.stderr).toMatch(/exists and is not empty.*OUTPUT_EXISTS/);
    expect(fs.statSync(path.join(dir, 'model.safetensors')).size).toBe(after);

    // eval reads the tied output (ties restored)
    const ev = ffmerge(cwd, 'eval', dir, '--data', path.join(BUNDLED, 'calibration.txt'), '--tokens', '1024', '--json');
    expect(ev.code).toBe(0);
    expect(JSON.parse(ev.stdout).perplexity).toBeGreaterThan(1);
  });

  it.each([
    [['compress', BUNDLED, '--data', path.join(BUNDLED, 'calibration.txt'), '--k', '9'], 2, /k = 9 is larger than the model's 5 layers.*K_TOO_LARGE/],
    [['compress', BUNDLED, '--data', path.join(BUNDLED, 'calibration.txt'), '--window', '3-7'], 2, /INVALID_WINDOW/],
    [['compress', BUNDLED, '--data', path.join(BUNDLED, 'calibration.txt'), '--window', 'middle'], 2, /not of the form a-b.*INVALID_WINDOW/],
    [['compress', BUNDLED, '--data', 'no-such-file.txt'], 3, /no-such-file.txt does not exist.*DATA_NOT_FOUND/],
    [['compress', 'no-such-model'], 3, /DATA_NOT_FOUND/],
    [['compress', BUNDLED, '--data', path.join(BUNDLED, 'calibration.txt'), '--method', 'magic'], 2, /--method must be one of permute, vanilla/],
    [['compress', BUNDLED, '--data', path.join(BUNDLED, 'calibration.txt'), '--out', BUNDLED], 2, /would overwrite the input.*OUTPUT_EXISTS/],
    [['frobnicate'], 2, /unknown command/],
    [['compress', BUNDLED, '--data', path.join(BUNDLED, 'calibration.txt'), '--calibration-size', '10'], 2, /--calibration-size does not apply to llama models.*OPTION_NOT_APPLICABLE/],
    [['compress', BUNDLED, '--data', path.join(BUNDLED, 'calibration.txt'), '--stacks', 'encoder'], 2, /stacks applies to encoder–decoder models.*OPTION_NOT_APPLICABLE/],
    [['eval', BUNDLED, '--data', path.join(BUNDLED, 'calibration.txt'), '--count', '3'], 2, /--count does not apply.*OPTION_NOT_APPLICABLE/],
  ])('%j exits %i with a clear one-line message and leaves nothing behind', (args, code, message) => {
    const r = ffmerge(cwd, ...(args as string[]));
    expect(r.code).toBe(code);
    expect(r.stderr).toMatch(message as RegExp);
    expect(fs.readdirSync(cwd)).toEqual([]);
  });

  it('an existing non-empty --out is refused before any work', () => {
    fs.mkdirSync(path.join(cwd, 'taken'));
    fs.writeFileSync(path.join(cwd, 'taken', 'keep.txt'), 'x');
    const r = ffmerge(cwd, 'compress', '--out', 'taken', '--json');
    expect(r.code).toBe(2);
    expect(JSON.parse(r.stdout).error.code).toBe('OUTPUT_EXISTS');
    expect(fs.readdirSync(path.join(cwd, 'taken'))).toEqual(['keep.txt']);
  });
});

describeShared('data/lm/stories260k-samples-test.jsonl', 'ffmerge eval on token-id rows', () => {
  it("gives the llama fixture's eval.json perplexity on its own {\"input_ids\"} rows", () => {
    const want = JSON.parse(fs.readFileSync(sharedPath('fixtures', 'llama-stories260k', 'eval.json'), 'utf8')).ppl as { valid: number; test: number };
    for (const split of ['valid', 'test'] as const) {
      const r = ffmerge(os.tmpdir(), 'eval', BUNDLED, '--data', sharedPath('data', 'lm', `stories260k-samples-${split}.jsonl`), '--json');
      expect(r.code).toBe(0);
      const out = JSON.parse(r.stdout);
      expect(out.tokens).toBe(48 * 256);
      expect(Math.abs(out.perplexity / want[split] - 1)).toBeLessThan(1e-5);
    }
  });
});

describeShared('fixtures/gpt2-sotu', 'ffmerge inspect', () => {
  it('reports layers, FF share and per-k savings', () => {
    const r = ffmerge(os.tmpdir(), 'inspect', sharedPath('fixtures', 'gpt2-sotu'), '--json');
    expect(r.code).toBe(0);
    const s = JSON.parse(r.stdout);
    expect(s.stacks[0].layers).toBe(12);
    expect(s.totalParams).toBe(2936576);
    expect(s.savings.find((v: { k: number }) => v.k === 4).paramsRemoved).toBe(3 * 131712);
    const text = ffmerge(os.tmpdir(), 'inspect', sharedPath('fixtures', 'gpt2-sotu'));
    expect(text.stdout).toMatch(/FF sublayers 1,580,544 = 53\.8%/);
  });
});
