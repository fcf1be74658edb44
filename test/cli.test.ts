/**
 * The ffmerge CLI as a user runs it: `node bin/ffmerge.js …` in a fresh temp directory. bin/ffmerge.js runs
 * dist/ when built, else lib/ through ts-node; FFMERGE_FROM_SOURCE=1 pins the source path here so the tests
 * never exercise a stale dist/.
 */
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describeShared, sharedPath } from './helpers/shared';
import { removeSyntheticDirs, syntheticGpt2 } from './helpers/synthetic-model';
import { buildProgram } from '../lib/cli/main';

afterAll(removeSyntheticDirs);

const BIN = path.resolve(__dirname, '..', 'bin', 'ffmerge.js');
const BUNDLED = path.resolve(__dirname, '..', 'models', 'llama-stories260k');

function ffmerge(cwd: string, ...args: string[]) {
  return ffmergeEnv({}, cwd, ...args);
}

function ffmergeEnv(env: Record<string, string>, cwd: string, ...args: string[]) {
  const r = spawnSync(process.execPath, [BIN, ...args], {
    cwd,
    encoding: 'utf8',
    env: { ...process.env, FFMERGE_FROM_SOURCE: '1', ...env },
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
    // TMPDIR: the demo's scratch output lands in a folder of this test's
    const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'ffmerge-cli-tmp-'));
    const ffmerge = (c: string, ...args: string[]) => ffmergeEnv({ TMPDIR: scratch }, c, ...args);
    try {
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
    // the demo writes into the temp folder ($TMPDIR/ffmerge-demo-<uid>: one per user), never into the current directory
    expect(fs.readdirSync(cwd)).toEqual([]);
    const dir = path.join(scratch, `ffmerge-demo-${process.getuid?.() ?? os.userInfo().username}`, 'llama-stories260k-ffmerge');
    expect(out.out.dir).toBe(dir);
    expect(fs.existsSync(path.join(dir, 'report.json'))).toBe(true);
    expect(fs.existsSync(path.join(dir, 'tokenizer.json'))).toBe(true);
    const before = fs.statSync(path.join(BUNDLED, 'model.safetensors')).size;
    const after = fs.statSync(path.join(dir, 'model.safetensors')).size;
    expect(before - after).toBeGreaterThan(out.params.removed * 4 - 4096);

    // the demo replaces its own scratch output; a user's --out that is not empty is refused and left untouched.
    // Asked for the paper's merge itself, the demo does not show it again as a baseline (tester CD)
    const paper = ffmerge(cwd, 'compress', '--method', 'permute', '--json');
    expect(paper.code).toBe(0);
    expect(Object.keys(JSON.parse(paper.stdout).baselines)).toEqual(['drop-ff']);
    const paperAt = ffmerge(cwd, 'compress', '--method', 'permute', '--window', '3-4', '--json'); // tester DD
    expect(paperAt.code).toBe(0);
    expect(Object.keys(JSON.parse(paperAt.stdout).baselines)).toEqual(['drop-ff']);
    expect(ffmerge(cwd, 'compress', '--json').code).toBe(0);
    const again = ffmerge(cwd, 'compress', '--out', dir);
    expect(again.code).toBe(2);
    expect(again.stderr).toMatch(/exists and is not empty.*OUTPUT_EXISTS/);
    expect(fs.statSync(path.join(dir, 'model.safetensors')).size).toBe(after);

    // a name someone else holds (here a plain file) is not used: a fresh folder takes the demo (tester CJ)
    const planted = fs.mkdtempSync(path.join(os.tmpdir(), 'ffmerge-cli-planted-'));
    try {
      fs.writeFileSync(path.join(planted, `ffmerge-demo-${process.getuid?.() ?? os.userInfo().username}`), 'not a folder');
      const fresh = ffmergeEnv({ TMPDIR: planted }, cwd, 'compress', '--method', 'permute', '--baselines', 'none', '--json');
      expect(fresh.code).toBe(0);
      expect(path.relative(planted, JSON.parse(fresh.stdout).out.dir)).toMatch(/^ffmerge-demo-\w{6}\/llama-stories260k-ffmerge$/);
    } finally {
      fs.rmSync(planted, { recursive: true, force: true });
    }
    // a temp folder that cannot be one (here a file) is said so, exit 3 (tester EH: INTERNAL_ERROR, exit 1)
    const notFolder = path.join(scratch, 'a-file');
    fs.writeFileSync(notFolder, 'x');
    const missing = ffmergeEnv({ TMPDIR: notFolder }, cwd, 'compress', '--method', 'permute', '--baselines', 'none');
    expect({ code: missing.code, stderr: missing.stderr }).toEqual({ code: 3, stderr: expect.stringMatching(/the demo writes into the temp folder .*a-file, which cannot be used \(ENOTDIR\): set TMPDIR to a folder that exists, or give --out \[IO_ERROR\]/) });

    // eval reads the tied output (ties restored)
    const ev = ffmerge(cwd, 'eval', dir, '--data', path.join(BUNDLED, 'calibration.txt'), '--tokens', '1024', '--json');
    expect(ev.code).toBe(0);
    expect(JSON.parse(ev.stdout).perplexity).toBeGreaterThan(1);
    // the weights' read is shown (tester FC: 31 s with no line for a 1.3 GB model)
    const shown = ffmerge(cwd, 'eval', dir, '--data', path.join(BUNDLED, 'calibration.txt'), '--tokens', '1024');
    expect(shown.stderr).toMatch(/Loading the weights .* of tensor data/);
    } finally {
      fs.rmSync(scratch, { recursive: true, force: true });
    }
  });

  it.each([
    [['compress', BUNDLED, '--data', path.join(BUNDLED, 'calibration.txt'), '--k', '9'], 2, /k = 9 is larger than the model's 5 layers.*K_TOO_LARGE/],
    [['compress', BUNDLED, '--data', path.join(BUNDLED, 'calibration.txt'), '--window', '3-7'], 2, /INVALID_WINDOW/],
    [['compress', BUNDLED, '--data', path.join(BUNDLED, 'calibration.txt'), '--window', 'middle'], 2, /not of the form a-b.*INVALID_WINDOW/],
    [['compress', BUNDLED, '--data', path.join(BUNDLED, 'calibration.txt'), '--window', '0-2,1-3'], 2, /windows 0-2, 1-3 overlap at layer 1.*INVALID_WINDOW/],
    // one run, one k (before: merged, and config.json and report.json recorded k: 2)
    [['compress', BUNDLED, '--data', path.join(BUNDLED, 'calibration.txt'), '--window', '0-1,2-4'], 2, /windows 0-1, 2-4 span different numbers of layers \(2, 3\).*INVALID_WINDOW/],
    [['compress', BUNDLED, '--data', path.join(BUNDLED, 'calibration.txt'), '--fraction', '0.6', '--window', '0-1'], 2, /window "0-1" spans 2 layers but k = 4 \(from fraction 0.6 of 5 layers\).*INVALID_WINDOW/],
    [['compress', BUNDLED, '--data', 'no-such-file.txt'], 3, /no-such-file.txt does not exist.*DATA_NOT_FOUND/],
    // an empty value read as a file "" that does not exist (tester DE: --data "$UNSET")
    [['eval', BUNDLED, '--data', ''], 2, /--data is given an empty value \(an unset shell variable\?\): give a value \(see --help\) \[INVALID_ARGUMENT\]/],
    [['eval', '', '--data', path.join(BUNDLED, 'calibration.txt')], 2, /the model directory is an empty string.*INVALID_ARGUMENT/],
    [['compress', 'no-such-model'], 3, /DATA_NOT_FOUND/],
    // no command at all (it printed the help and exited 0), and export without its --out (now marked required)
    [[], 2, /no command given.*INVALID_ARGUMENT/],
    [['export', BUNDLED], 2, /required option '--out <dir>' not specified.*INVALID_ARGUMENT/],
    // a file given as the model, and an unexpanded ~ (tester X: both said only "does not exist")
    [['inspect', path.join(BUNDLED, 'calibration.txt')], 3, /calibration\.txt is a file, not a model directory.*DATA_NOT_FOUND/],
    [['inspect', '~/no-such-model'], 3, /the shell did not expand "~".*DATA_NOT_FOUND/],
    // a file in the path: Node's ENOTDIR came out as INTERNAL_ERROR, exit 1 (tester ED)
    [['inspect', path.join(BUNDLED, 'config.json') + path.sep], 3, /part of its path is a file, not a folder \[DATA_NOT_FOUND\]/],
    [['compress', BUNDLED, '--plugins', path.join(BUNDLED, 'calibration.txt', 'x.mjs')], 3, /--plugins: .*x\.mjs is not reachable: part of its path is a file.*DATA_NOT_FOUND/],
    [['compress', BUNDLED, '--data', path.join(BUNDLED, 'calibration.txt'), '--method', 'magic'], 2, /--method must be one of permute, vanilla/],
    // an empty list ran none without a word (tester DB); none is said as 'none'
    [['compress', BUNDLED, '--data', path.join(BUNDLED, 'calibration.txt'), '--baselines', ' '], 2, /--baselines " " names none: name baselines \(a comma list\), or give --baselines none to run none \[INVALID_ARGUMENT\]/],
    [['compress', BUNDLED, '--data', path.join(BUNDLED, 'calibration.txt'), '--baselines', ','], 2, /--baselines "," names none: .*INVALID_ARGUMENT/],
    [['compress', BUNDLED, '--data', path.join(BUNDLED, 'calibration.txt'), '--baselines', ''], 2, /--baselines "" names none: .*give --baselines none to run none \[INVALID_ARGUMENT\]/],
    // 0 said "a positive integer", 1 "an integer ≥ 2": one rule, one message (tester EM)
    [['compress', BUNDLED, '--data', path.join(BUNDLED, 'calibration.txt'), '--block-size', '0'], 2, /--block-size must be an integer ≥ 2, got "0" \[INVALID_ARGUMENT\]/],
    [['eval', BUNDLED, '--data', path.join(BUNDLED, 'calibration.txt'), '--block-size', '0'], 2, /--block-size must be an integer ≥ 2, got "0" \[INVALID_ARGUMENT\]/],
    // accepted silently, the repeat dropped (tester EM)
    [['compress', BUNDLED, '--data', path.join(BUNDLED, 'calibration.txt'), '--baselines', 'drop-ff,drop-ff'], 2, /--baselines "drop-ff,drop-ff" names drop-ff twice \[INVALID_ARGUMENT\]/],
    [['compress', BUNDLED, '--data', path.join(BUNDLED, 'calibration.txt'), '--baselines', 'drop-ff,'], 2, /--baselines "drop-ff," has an empty entry: .*INVALID_ARGUMENT/],
    [['compress', BUNDLED, '--data', path.join(BUNDLED, 'calibration.txt'), '--baselines', 'none,drop-ff'], 2, /--baselines none,drop-ff: none runs no baseline, so it stands alone \[INVALID_ARGUMENT\]/],
    [['compress', BUNDLED, '--data', path.join(BUNDLED, 'calibration.txt'), '--select-memory', '1.5GB'], 2, /--select-memory must be a positive integer.*INVALID_ARGUMENT/],
    [['compress', BUNDLED, '--data', path.join(BUNDLED, 'calibration.txt'), '--out', BUNDLED], 2, /would overwrite the input.*OUTPUT_EXISTS/],
    [['frobnicate'], 2, /unknown command/],
    [['compress', BUNDLED, '--data', path.join(BUNDLED, 'calibration.txt'), '--calibration-size', '10'], 2, /--calibration-size does not apply to llama models.*OPTION_NOT_APPLICABLE/],
    [['compress', BUNDLED, '--data', path.join(BUNDLED, 'calibration.txt'), '--stacks', 'encoder'], 2, /stacks \(--stacks\) applies to encoder–decoder models.*OPTION_NOT_APPLICABLE/],
    // naming the model's one stack was taken silently (a tester's find): refused as any option it does not read
    [['compress', BUNDLED, '--data', path.join(BUNDLED, 'calibration.txt'), '--stacks', 'decoder'], 2, /stacks \(--stacks\) applies to encoder–decoder models; llama has one stack \(decoder\).*OPTION_NOT_APPLICABLE/],
    [['eval', BUNDLED, '--data', path.join(BUNDLED, 'calibration.txt'), '--count', '3'], 2, /--count does not apply.*OPTION_NOT_APPLICABLE/],
    // a seed for a run that draws nothing at random would change nothing (tester FB asked for --seed)
    [['compress', BUNDLED, '--data', path.join(BUNDLED, 'calibration.txt'), '--method', 'permute', '--seed', '7'], 2, /seed \(--seed\) seeds the random draws.*this run makes none of them \[OPTION_NOT_APPLICABLE\]/],
    // numbers are decimal integers, and what was asked for is never cut or ignored silently
    [['compress', BUNDLED, '--data', path.join(BUNDLED, 'calibration.txt'), '--k', '1e1'], 2, /--k must be an integer ≥ 2, got "1e1".*INVALID_ARGUMENT/],
    [['compress', BUNDLED, '--data', path.join(BUNDLED, 'calibration.txt'), '--k', '0x2'], 2, /--k must be an integer ≥ 2, got "0x2".*INVALID_ARGUMENT/],
    // one lower bound, said as it is (tester ED: 0 was "a positive integer", 1 "an integer ≥ 2")
    [['compress', BUNDLED, '--data', path.join(BUNDLED, 'calibration.txt'), '--k', '0'], 2, /--k must be an integer ≥ 2, got "0".*INVALID_ARGUMENT/],
    [['compress', BUNDLED, '--data', path.join(BUNDLED, 'calibration.txt'), '--block-size', '600'], 2, /blockSize \(--block-size\) 600 is longer than the model's 512 positions.*INVALID_ARGUMENT/],
    [['compress', BUNDLED, '--data', path.join(BUNDLED, 'calibration.txt'), '--test-tokens', '512'], 2, /testTokens \(--test-tokens\) budgets the test data.*OPTION_NOT_APPLICABLE/],
    [['eval', BUNDLED, '--data', path.join(BUNDLED, 'calibration.txt'), '--block-size', '600'], 2, /--block-size 600 is longer than the model's 512 positions.*INVALID_ARGUMENT/],
    [['finetune', BUNDLED, '--data', path.join(BUNDLED, 'calibration.txt'), '--seq', '600'], 2, /--seq 600 is longer than the model's 512 positions.*INVALID_ARGUMENT/],
    [['finetune', BUNDLED, '--data', path.join(BUNDLED, 'calibration.txt'), '--valid-tokens', '512'], 2, /--valid-tokens needs --valid.*OPTION_NOT_APPLICABLE/],
    [['finetune', BUNDLED, '--data', path.join(BUNDLED, 'calibration.txt'), '--eval-every', '1', '--steps', '2'], 2, /--eval-every scores the validation data, and none is given: give --valid <file> with it.*OPTION_NOT_APPLICABLE/],
    [['finetune', BUNDLED, '--data', path.join(BUNDLED, 'calibration.txt'), '--lr', '-1'], 2, /--lr must be a positive number, got "-1".*INVALID_ARGUMENT/],
    // refused before the model loads (the data named is not there), saying why: it was "must be a positive number" after the load (tester EM)
    [['finetune', BUNDLED, '--data', path.join(BUNDLED, 'no-such-file.txt'), '--lr', '1e-50'], 2, /--lr 1e-50 is smaller than float32.*INVALID_ARGUMENT/],
    // accepted: a clip past float32 was silently no clip, and "0x10" read as 16 (tester EP)
    [['finetune', BUNDLED, '--data', path.join(BUNDLED, 'no-such-file.txt'), '--clip', '1e39'], 2, /--clip 1e39 is larger than float32.*INVALID_ARGUMENT/],
    [['finetune', BUNDLED, '--data', path.join(BUNDLED, 'no-such-file.txt'), '--lr', '0x10'], 2, /--lr must be a positive number, got "0x10".*INVALID_ARGUMENT/],
    // before the data is read (a file that is not there is not named): it was refused only after tokenizing all of it
    [['finetune', BUNDLED, '--data', path.join(BUNDLED, 'no-such-file.txt'), '--micro', '16', '--batch', '8'], 2, /micro 16 \(--micro\) is larger than batch 8 \(--batch\).*INVALID_ARGUMENT/],
    // a tester's finds: a one-block budget is no training window (was INVALID_DATA blaming the file), --seq 1
    // not named, a warm-up longer than the run accepted (the card claimed a learning rate never reached)
    [['finetune', BUNDLED, '--data', path.join(BUNDLED, 'calibration.txt'), '--seq', '32', '--tokens', '32'], 2, /--tokens 32 keeps 32 tokens \(whole --seq 32 blocks\), fewer than one training window of seq \+ 1 = 33: give --tokens 64 or more.*INVALID_ARGUMENT/],
    [['finetune', BUNDLED, '--data', path.join(BUNDLED, 'calibration.txt'), '--seq', '1'], 2, /--seq 1 is too short.*INVALID_ARGUMENT/],
    // with the other training flags, before "fine-tuning … → …" is said (tester DB)
    [['finetune', BUNDLED, '--data', path.join(BUNDLED, 'calibration.txt'), '--seq', '0'], 2, /^ffmerge: --seq must be a positive integer, got "0".*INVALID_ARGUMENT/],
    [['eval', BUNDLED, '--data', path.join(BUNDLED, 'calibration.txt'), '--block-size', '1'], 2, /--block-size must be an integer ≥ 2, got "1" \[INVALID_ARGUMENT\]/],
    [['finetune', BUNDLED, '--data', path.join(BUNDLED, 'calibration.txt'), '--steps', '2', '--seq', '32', '--warmup', '10'], 2, /warmup \(--warmup\) 10 is more than the 2 steps.*INVALID_ARGUMENT/],
    // help of no command exited 0 (tester DL); help of help is help's own (tester DM)
    [['help', 'bogus'], 2, /unknown command "bogus" \(see the commands above\) \[INVALID_ARGUMENT\]/],
    [['help', 'help'], 0, /Usage: ffmerge/],
    // an option given twice was read as its last value: --data a --data b scored b alone (tester AX)
    [['compress', BUNDLED, '--data', path.join(BUNDLED, 'calibration.txt'), '--k', '2', '--k', '3'], 2, /--k is given twice \("2", then "3"\): give it once.*INVALID_ARGUMENT/],
    [['eval', BUNDLED, '--data', path.join(BUNDLED, 'calibration.txt'), '--data', 'b.txt'], 2, /--data is given twice \(".*calibration\.txt", then "b\.txt"\): give it once.*INVALID_ARGUMENT/],
  ])('%j exits %i with a clear one-line message and leaves nothing behind', (args, code, message) => {
    const r = ffmerge(cwd, ...(args as string[]));
    expect(r.code).toBe(code);
    expect(r.stderr).toMatch(message as RegExp);
    // a refusal is the only line: "compressing … → out" is said once the work starts (tester AT)
    expect(r.stderr).not.toMatch(/ffmerge: compressing/);
    expect(fs.readdirSync(cwd)).toEqual([]);
  });

  it('finetune refuses flags that need the model (its positions, its kind, its data flags) before it says the run starts: the error is the one line', () => {
    // tester DD: "ffmerge: fine-tuning … → X" came first, so a usage error read as a run that had started
    const cal = path.join(BUNDLED, 'calibration.txt');
    const vit = sharedPath('fixtures', 'vit-fmnist');
    const marian = sharedPath('fixtures', 'marian-multi30k-en-de');
    const cases: [string[], number, RegExp][] = [
      [['finetune', BUNDLED, '--data', cal, '--seq', '5000'], 2, /--seq 5000 is longer than the model's 512 positions/],
      [['finetune', BUNDLED], 2, /finetune needs --data/],
      [['finetune', BUNDLED, '--data', cal, '--eval-every', '5'], 2, /--eval-every scores the validation data/],
      // tester DG: validation that is the training file, and a --valid-tokens of 0, still came after it
      [['finetune', BUNDLED, '--data', cal, '--valid', cal], 2, /is the training \(--data\) file again/],
      [['finetune', BUNDLED, '--data', cal, '--valid', path.join(BUNDLED, 'tokenizer.json'), '--valid-tokens', '0'], 2, /--valid-tokens must be a positive integer, got "0"/],
      // a data file that is not there (it was named after the banner, as the data was read)
      [['finetune', BUNDLED, '--data', path.join(cwd, 'no-such.txt')], 3, /training file .*no-such\.txt does not exist.*DATA_NOT_FOUND/],
      [['finetune', BUNDLED, '--data', cal, '--valid', path.join(cwd, 'no-such.txt')], 3, /validation file .*no-such\.txt does not exist.*DATA_NOT_FOUND/],
      [['finetune', BUNDLED, '--data', cwd], 3, /is a directory; ffmerge reads only regular files here.*INVALID_DATA/],
      ...(fs.existsSync(vit) ? [[['finetune', vit], 2, /finetune on an image model needs --images/] as [string[], number, RegExp]] : []),
      ...(fs.existsSync(vit) ? [[['finetune', vit, '--images', path.join(cwd, 'no.idx'), '--labels', path.join(cwd, 'no.idx')], 3, /training data file .*no\.idx does not exist.*DATA_NOT_FOUND/] as [string[], number, RegExp]] : []),
      ...(fs.existsSync(marian) ? [[['finetune', marian, '--data', cal], 3, /this marian model is not one/] as [string[], number, RegExp]] : []),
    ];
    for (const [args, code, message] of cases) {
      const r = ffmerge(cwd, ...args, '--out', path.join(cwd, 'out'));
      expect(r.code).toBe(code);
      expect(r.stderr).toMatch(message);
      expect(r.stderr.trimEnd().split('\n')).toHaveLength(1);
    }
  });

  it("under a locale that is not UTF-8, the CLI's symbols are ASCII; JSON is left as it is (tester DL: mojibake under LANG=C)", () => {
    const run = (env: NodeJS.ProcessEnv, ...args: string[]) =>
      spawnSync(process.execPath, [BIN, ...args], { cwd, encoding: 'utf8', env: { ...process.env, FFMERGE_FROM_SOURCE: '1', LC_ALL: '', LC_CTYPE: '', ...env } });
    const kOne = ['compress', BUNDLED, '--data', path.join(BUNDLED, 'calibration.txt'), '--k', '1'];
    for (const env of [{ LANG: 'C' }, { LC_ALL: 'POSIX' }, { LANG: 'en_US.UTF-8', LC_CTYPE: 'en_US.ISO-8859-1' }]) {
      expect(run(env, 'compress', '--help').stdout).toContain('encoder-decoder models');
      expect(run(env, ...kOne).stderr).toContain('k must be an integer >= 2');
      expect(JSON.parse(run(env, ...kOne, '--json').stdout).error.message).toContain('≥ 2');
    }
    // a symbol the command line holds (a file name's) is quoted back as given (tester DM)
    expect(run({ LANG: 'C' }, 'eval', BUNDLED, '--data', 'nope–x×.jsonl').stderr).toContain('nope–x×.jsonl does not exist');
    for (const env of [{ LANG: 'C.UTF-8' }, { LANG: 'en_US.utf8' }, { LANG: '' }]) {
      expect(run(env, 'compress', '--help').stdout).toContain('encoder–decoder models');
      expect(run(env, ...kOne).stderr).toContain('≥ 2');
    }
  });

  it('run from inside the model folder, the default output is a usage error saying so (tester DL: OUTPUT_EXISTS, "inside the input")', () => {
    const dir = path.join(cwd, 'm');
    fs.cpSync(BUNDLED, dir, { recursive: true });
    const before = fs.readdirSync(dir).sort();
    for (const cmd of [['compress', '.', '--data', 'calibration.txt', '--k', '2'], ['finetune', '.', '--data', 'calibration.txt', '--steps', '1']]) {
      const r = ffmerge(dir, ...cmd);
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(/the default output \.\/m-(ffmerge|finetuned) would be inside the model folder \. \(the current folder is in it\): give --out <a folder outside it>.*\[INVALID_ARGUMENT\]/);
      expect(fs.readdirSync(dir).sort()).toEqual(before);
    }
    // a folder that is no model is said to be none, whatever the default output (tester DM: finetune named the output)
    const empty = path.join(cwd, 'empty');
    fs.mkdirSync(empty);
    for (const cmd of ['compress', 'finetune']) expect(ffmerge(empty, cmd, '.', '--data', 'x.txt').stderr).toMatch(/\. is not a model directory \(no config\.json\)/);
  });

  it("a message quoting a file's control characters prints them escaped, on one line (tester AX: an index's shard name cleared the terminal)", () => {
    const dir = path.join(cwd, 'm');
    fs.mkdirSync(dir);
    for (const f of ['config.json', 'tokenizer.json', 'tokenizer_config.json']) fs.copyFileSync(path.join(BUNDLED, f), path.join(dir, f));
    fs.writeFileSync(path.join(dir, 'model.safetensors.index.json'), JSON.stringify({ weight_map: { 'model.embed_tokens.weight': '\u001b[2J\u001b[31mx\nnext.safetensors' } }));
    const r = ffmerge(cwd, 'inspect', dir);
    expect(r.code).toBe(3);
    expect(r.stderr).not.toMatch(/[\u0000-\u0008\u000b-\u001f]/);
    expect(r.stderr.trimEnd().split('\n')).toHaveLength(1);
    expect(r.stderr).toContain('names shard "\\u001b[2J\\u001b[31mx\\nnext.safetensors"');
    // any message: a data path with them, named as it is in --json, escaped for the terminal
    const bad = 'x\u001b[2J\ny.txt';
    const e = ffmerge(cwd, 'eval', BUNDLED, '--data', bad);
    expect(e.code).toBe(3);
    expect(e.stderr).toContain('x\\u001b[2J\\u000ay.txt');
    expect(e.stderr.trimEnd().split('\n')).toHaveLength(1);
    expect(JSON.parse(ffmerge(cwd, 'eval', BUNDLED, '--data', bad, '--json').stdout).error.message).toContain(bad);
  });

  it('a token row too long for the model, or with an id JSON cannot hold, is a data error (exit 3) saying what it holds', async () => {
    const rows = path.join(cwd, 'rows.jsonl');
    fs.writeFileSync(rows, '{"input_ids": [1, 2, 1e400]}\n');
    const r = ffmerge(cwd, 'eval', BUNDLED, '--data', rows);
    expect(r.code).toBe(3);
    expect(r.stderr).toMatch(/input_ids\[2\] = Infinity is not a token id.*INVALID_DATA/);
    // learned positions bound a row's length (16 here)
    const gpt2 = await syntheticGpt2({ positions: 16 });
    fs.writeFileSync(rows, JSON.stringify({ input_ids: Array.from({ length: 20 }, (_, i) => i % 50) }) + '\n');
    const long = ffmerge(cwd, 'eval', gpt2.dir, '--data', rows);
    expect(long.stderr).toMatch(/SEQUENCE_TOO_LONG/);
    expect(long.code).toBe(3);
  });

  it('finetune --tokens counts whole --seq blocks of token-id rows as of text (tester AN: a 130-token row was kept whole for --tokens 1)', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ffmerge-ft-rows-'));
    try {
      const rows = path.join(dir, 'rows.jsonl');
      const row = (k: number) => JSON.stringify({ input_ids: Array.from({ length: 130 }, (_, i) => ((i * 7 + k) % 500) + 3) });
      fs.writeFileSync(rows, `${row(0)}\n${row(1)}\n`);
      const short = ffmerge(cwd, 'finetune', BUNDLED, '--data', rows, '--seq', '64', '--tokens', '1', '--steps', '1', '--out', 'ft');
      expect(short.code).toBe(2);
      expect(short.stderr).toMatch(/--tokens 1 keeps 64 tokens \(whole --seq 64 blocks\), fewer than one training window of seq \+ 1 = 65: give --tokens 128 or more/);
      const ok = ffmerge(cwd, 'finetune', BUNDLED, '--data', rows, '--seq', '64', '--tokens', '131', '--steps', '1', '--batch', '2', '--out', path.join(dir, 'ft'));
      expect(ok.code).toBe(0);
      expect(JSON.parse(fs.readFileSync(path.join(dir, 'ft', 'finetune.json'), 'utf8')).trainingTokens).toBe(128);
      expect(fs.readdirSync(cwd)).toEqual([]);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it("--baselines none runs no baseline, the demo's own included", () => {
    // the demo (no model given) runs drop-ff beside a merge unless told otherwise
    const demo = (...more: string[]) => JSON.parse(ffmerge(cwd, 'compress', '--method', 'permute', '--out', 'o', '--overwrite', '--json', ...more).stdout);
    expect(Object.keys(demo().baselines)).toEqual(['drop-ff']);
    expect(demo('--baselines', 'none').baselines).toEqual({});
    fs.rmSync(path.join(cwd, 'o'), { recursive: true });
  });

  it('calibration data with nothing left to validate on names the budget as a way out', () => {
    // tester DB: the hint said only "give a validation file, or more calibration text"
    // the budget is the caller's own: a usage error, exit 2, as for every task (tester EM; it was INVALID_DATA, exit 3)
    const r = ffmerge(cwd, 'compress', BUNDLED, '--data', path.join(BUNDLED, 'calibration.txt'), '--calibration-tokens', '1000000');
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/all taken by the calibration budget; .*or a smaller budget \(calibrationTokens, --calibration-tokens: 1000000 now\) \[INVALID_ARGUMENT\]/);
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
    // the line for people says how many of those tokens were predicted (each row's first is not; tester AV)
    const r = ffmerge(os.tmpdir(), 'eval', BUNDLED, '--data', sharedPath('data', 'lm', 'stories260k-samples-test.jsonl'));
    expect(r.stdout).toMatch(/^perplexity 3\.60\d on 12,288 tokens of .*, 12,240 of them predicted \(/);
  });

  it('--block-size with rows, which are never cut, is refused (exit 2) by eval and compress, before any work', () => {
    const rows = sharedPath('data', 'lm', 'stories260k-samples-valid.jsonl');
    const cwd = fs.mkdtempSync(path.join(os.tmpdir(), 'ffmerge-cli-rows-'));
    try {
      const e = ffmerge(cwd, 'eval', BUNDLED, '--data', rows, '--tokens', '512', '--block-size', '128');
      expect(e.code).toBe(2);
      expect(e.stderr).toMatch(/--block-size cuts text into blocks; .*stories260k-samples-valid\.jsonl holds token-id rows, each used as it is.*OPTION_NOT_APPLICABLE/);
      const c = ffmerge(cwd, 'compress', BUNDLED, '--data', rows, '--k', '2', '--block-size', '128', '--json');
      expect(c.code).toBe(2);
      expect(JSON.parse(c.stdout).error).toMatchObject({ code: 'OPTION_NOT_APPLICABLE', message: expect.stringMatching(/^blockSize \(--block-size\) cuts text into blocks; calibration file .* holds token-id rows/) });
      expect(fs.readdirSync(cwd)).toEqual([]);
    } finally {
      fs.rmSync(cwd, { recursive: true, force: true });
    }
  });
});

describeShared('fixtures/marian-multi30k-en-de', 'ffmerge finetune on a model the trainer does not take', () => {
  it('is refused before the data is read (it tokenized all of --data first: 92 s for a 6 MB file, tester DB)', () => {
    const cwd = fs.mkdtempSync(path.join(os.tmpdir(), 'ffmerge-cli-ft-'));
    try {
      // rows no reader takes: read first, they were the refusal (INVALID_DATA)
      fs.writeFileSync(path.join(cwd, 'bad.jsonl'), '{"input_ids": "not ids"}\n');
      const r = ffmerge(cwd, 'finetune', sharedPath('fixtures', 'marian-multi30k-en-de'), '--data', 'bad.jsonl', '--steps', '2', '--out', 'ft');
      expect(r.code).toBe(3);
      expect(r.stderr).toMatch(/fine-tuning covers decoder-only .* this marian model is not one: it normalises after each sublayer \(post-norm\) \[UNSUPPORTED_ARCHITECTURE\]/);
      expect(fs.readdirSync(cwd)).toEqual(['bad.jsonl']);
    } finally {
      fs.rmSync(cwd, { recursive: true, force: true });
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

describe('ffmerge CLI: what users notice (issue 12)', () => {
  let cwd: string;
  beforeAll(() => {
    cwd = fs.mkdtempSync(path.join(os.tmpdir(), 'ffmerge-cli12-'));
  });
  afterAll(() => fs.rmSync(cwd, { recursive: true, force: true }));
  jest.setTimeout(600_000);
  const cal = path.join(BUNDLED, 'calibration.txt');

  it.each(['compress', 'eval', 'inspect', 'export', 'finetune', 'convert'])(
    '%s --help fits 80 columns off a terminal and writes every default one way, "(default 300)" (tester CC)',
    (command) => {
      // in-process, as commander renders it off a terminal (80 columns); a spawn per command took 10 s
      const help = buildProgram({ json: false }, new AbortController().signal).commands.find((c) => c.name() === command)!.helpInformation();
      for (const line of help.split('\n')) expect(line.length).toBeLessThanOrEqual(80);
      // commander's own rendering, `(default: "300")`, beside the hand-written "(default 256)"
      expect(help).not.toMatch(/default: "/);
      // a required option says so (tester DB: export's --out read as optional)
      const required = { export: ['--out'], convert: ['--format', '--out'] }[command] ?? [];
      expect(help.split('\n').filter((l) => /^\s+--\S+ .*\(required\)/.test(l)).map((l) => l.trim().split(' ')[0])).toEqual(required);
    },
  );

  it('inspect with no model inspects the bundled one, as compress does', () => {
    const r = ffmerge(cwd, 'inspect', '--json');
    expect(r.code).toBe(0);
    const s = JSON.parse(r.stdout);
    expect(s.modelType).toBe('llama');
    expect(fs.realpathSync(s.dir)).toBe(fs.realpathSync(BUNDLED));
  });

  it('--version prints the version and which native build runs', () => {
    const r = ffmerge(cwd, '--version');
    expect(r.code).toBe(0);
    const version = JSON.parse(fs.readFileSync(path.join(__dirname, '..', 'package.json'), 'utf8')).version;
    expect(r.stdout.split('\n')[0]).toBe(`ffmerge ${version}`);
    expect(r.stdout).toMatch(/native addon (prebuilt|built from source) \(cpu, GEMM \w+/);
    // an addon that cannot load is said, and the exit code says it too (tester CG: 0, so an install check passed)
    const cuda = ffmergeEnv({ FFMERGE_BACKEND: 'cuda' }, cwd, '--version');
    if (!/native addon \S+ \(cuda/.test(cuda.stdout)) {
      expect(cuda.stdout).toMatch(/native addon not loadable: FFMERGE_BACKEND=cuda/);
      expect(cuda.code).toBe(1);
    }
  });

  it.each([
    [['compress', '--frobnicate']],
    [['eval', BUNDLED, '--data']],
    [['eval']],
    [['compress', BUNDLED, 'extra-arg', 'another']],
  ])('usage error %j: one line with a code, no help dump, exit 2', (args) => {
    const r = ffmerge(cwd, ...args);
    expect(r.code).toBe(2);
    expect(r.stderr.trimEnd().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/^ffmerge: .*\[INVALID_ARGUMENT\]\n$/);
    expect(r.stderr).not.toMatch(/Usage:|Options:/);
  });

  it.each([
    [['compress', BUNDLED, '--k', '--out', 'x'], '--k', '--out'],
    [['compress', BUNDLED, '--out', '--overwrite'], '--out', '--overwrite'],
    [['eval', BUNDLED, '--tokens', '--data', cal], '--tokens', '--data'],
    [['finetune', BUNDLED, '--data', cal, '--batch', '--steps', '2'], '--batch', '--steps'],
  ])('an option given no value never takes the next option as it: %j (exit 2, naming both)', (args, option, next) => {
    const r = ffmerge(cwd, ...args);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe(`ffmerge: ${option} needs a value, got the option ${next} (see --help) [INVALID_ARGUMENT]\n`);
    expect(fs.readdirSync(cwd)).toEqual([]);
  });

  it('finetune --batch past 65536 is refused (exit 2) before the data is read; 65536 passes that check', () => {
    const over = ffmerge(cwd, 'finetune', BUNDLED, '--data', 'missing.txt', '--batch', '65537', '--json');
    expect(over.code).toBe(2);
    expect(JSON.parse(over.stdout).error).toEqual({ code: 'INVALID_ARGUMENT', message: '--batch must be at most 65536 (sequences or images per step), got 65537' });
    // the same run at the cap gets as far as the data file, which is missing
    const at = ffmerge(cwd, 'finetune', BUNDLED, '--data', 'missing.txt', '--batch', '65536', '--json');
    expect(JSON.parse(at.stdout).error.code).toBe('DATA_NOT_FOUND');
    expect(fs.readdirSync(cwd)).toEqual([]);
  });

  it('finetune checks its schedule (lr × weight decay, warm-up) before the data is read', () => {
    const wd = ffmerge(cwd, 'finetune', BUNDLED, '--data', 'missing.txt', '--weight-decay', '1e30', '--json');
    expect(wd.code).toBe(2);
    expect(JSON.parse(wd.stdout).error).toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringContaining('lr × weightDecay') });
    // before: the missing data file (DATA_NOT_FOUND) was reported first, the warm-up only after the data was read
    const warm = ffmerge(cwd, 'finetune', BUNDLED, '--data', 'missing.txt', '--steps', '3', '--warmup', '4', '--json');
    expect(JSON.parse(warm.stdout).error).toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringContaining('warmup (--warmup) 4 is more than the 3 steps') });
    expect(fs.readdirSync(cwd)).toEqual([]);
  });

  it('a usage error with --json is a JSON error object on stdout', () => {
    const r = ffmerge(cwd, 'compress', '--frobnicate', '--json');
    expect(r.code).toBe(2);
    expect(JSON.parse(r.stdout).error).toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringContaining('--frobnicate') });
  });

  it('eval --json ends with a newline', () => {
    const r = ffmerge(cwd, 'eval', BUNDLED, '--data', cal, '--tokens', '512', '--json');
    expect(r.code).toBe(0);
    expect(r.stdout.endsWith('}\n')).toBe(true);
    expect(JSON.parse(r.stdout).tokens).toBe(512);
  });

  it('eval --tokens past what the data holds says so, as compress does; a budget the data fills says nothing', () => {
    // tester EM: --tokens 100000 on a file of 12,288 tokens gave "tokens": 12288 and no word
    const r = ffmerge(cwd, 'eval', BUNDLED, '--data', cal, '--tokens', '100000', '--json');
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout) as { tokens: number; notes?: string[] };
    expect(out.notes).toEqual([`all ${out.tokens.toLocaleString('en-US')} tokens the data holds, fewer than the 100,000 --tokens asks`]);
    expect(JSON.parse(ffmerge(cwd, 'eval', BUNDLED, '--data', cal, '--tokens', '1000', '--json').stdout)).not.toHaveProperty('notes');
  });

  it('SIGTERM (a timeout, a stopping container) and SIGHUP stop a run as Ctrl-C does: the ABORTED line, exit 128 + the signal, no temporary folder left', async () => {
    // before: only SIGINT was handled; SIGTERM killed the process silently and left the temp output behind
    for (const [sig, code] of [['SIGINT', 130], ['SIGTERM', 143], ['SIGHUP', 129]] as const) {
      const parent = fs.mkdtempSync(path.join(cwd, `${sig}-`));
      let r: { code: number | null; signal: string | null; stderr: string } | undefined;
      // signalled once its temporary output exists (the handlers are installed by then); again if it finished first
      for (let attempt = 0; attempt < 20 && r === undefined; attempt++) {
        const name = `out${attempt}`;
        const child = spawn(process.execPath, [BIN, 'export', BUNDLED, '--out', path.join(parent, name)], { env: { ...process.env, FFMERGE_FROM_SOURCE: '1' } });
        let stderr = '';
        child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
        const exit = new Promise<{ code: number | null; signal: string | null }>((res) => child.on('close', (c, s) => res({ code: c, signal: s })));
        let done = false;
        void exit.then(() => (done = true));
        while (!done && !fs.readdirSync(parent).some((n) => n.startsWith(`.${name}.ffmerge-tmp-`))) await new Promise((res) => setTimeout(res, 1));
        if (!done) child.kill(sig);
        const e = await exit;
        if (e.code !== 0) r = { ...e, stderr };
      }
      expect({ sig, code: r?.code, signal: r?.signal }).toEqual({ sig, code, signal: null });
      // what stopped it, and that nothing was written (tester DB: "the operation was aborted" said neither)
      const by = { SIGINT: 'Ctrl-C \\(SIGINT\\)', SIGTERM: 'SIGTERM', SIGHUP: 'SIGHUP \\(its terminal closed\\)' }[sig];
      expect(r!.stderr).toMatch(new RegExp(`^ffmerge: stopped by ${by} before it finished; nothing was written \\[ABORTED\\]$`, 'm'));
      expect(fs.readdirSync(parent).filter((n) => n.includes('ffmerge-tmp'))).toEqual([]);
    }
  });

  it('a closed terminal (SIGHUP, the terminal gone) ends the run by that signal, cleaned up: no crash on exit', () => {
    // before: Node 20 aborts on exit when the terminal is gone (nodejs/node#51519), a SIGSEGV where 129 was meant
    // (tester CC); and a write to the closed terminal (EIO) ended the run as an uncaught exception
    if (spawnSync('python3', ['-c', 'import pty']).status !== 0) {
      console.warn('skipped: the closed-terminal check runs the CLI on a pseudo-terminal through python3, which is missing');
      return;
    }
    const parent = fs.mkdtempSync(path.join(cwd, 'hangup-'));
    const out = path.join(parent, 'out');
    const r = spawnSync('python3', [path.join(__dirname, 'helpers', 'hangup.py'), 'Calibrating', process.execPath, BIN, 'compress', '--out', out], {
      encoding: 'utf8',
      env: { ...process.env, FFMERGE_FROM_SOURCE: '1', TERM: 'xterm' },
    });
    expect(JSON.parse(r.stdout)).toEqual({ marker: true, signal: 1, code: null });
    expect(fs.readdirSync(parent)).toEqual([]);
  });

  it.each([
    ['its output on the terminal', 'Calibrating', '"$0" "$1" compress --out "$2"; echo $? > "$3"'],
    // `ffmerge … > log 2>&1` left running: only stdin is the terminal; it is closed once the log has a line
    ['its output in a file, stdin the terminal', 'started', '{ while [ ! -s "$4" ]; do sleep 0.2; done; echo started; } & "$0" "$1" compress --out "$2" > "$4" 2>&1; echo $? > "$3"'],
  ])('a run that outlives its terminal (its shell ignores SIGHUP), %s, finishes and exits 0: no abort on exit', (_, marker, run) => {
    // before: the run completed, then Node 20 aborted as it restored the gone terminal's modes (exit 134)
    if (spawnSync('python3', ['-c', 'import pty']).status !== 0) {
      console.warn('skipped: the closed-terminal check runs the CLI on a pseudo-terminal through python3, which is missing');
      return;
    }
    const dir = fs.mkdtempSync(path.join(cwd, 'outlive-'));
    const [out, status, log] = [path.join(dir, 'out'), path.join(dir, 'status'), path.join(dir, 'log')];
    // sh leads the terminal's session and ignores its SIGHUP; ffmerge, in sh's process group, is sent none
    const script = `trap "" HUP; ${run}`;
    const r = spawnSync('python3', [path.join(__dirname, 'helpers', 'hangup.py'), marker, '/bin/sh', '-c', script, process.execPath, BIN, out, status, log], {
      encoding: 'utf8',
      env: { ...process.env, FFMERGE_FROM_SOURCE: '1', TERM: 'xterm' },
    });
    expect(JSON.parse(r.stdout)).toMatchObject({ marker: true });
    expect(fs.readFileSync(status, 'utf8').trim()).toBe('0');
    expect(fs.readdirSync(out)).toContain('model.safetensors');
  });

  it('read-only inputs give writable outputs; the timing table lists only phases that ran; a model card; inspect counts ties once; convert both ways', async () => {
    const ro = path.join(cwd, 'ro-model');
    fs.cpSync(BUNDLED, ro, { recursive: true });
    for (const f of fs.readdirSync(ro)) fs.chmodSync(path.join(ro, f), 0o444);
    const out = path.join(cwd, 'merged');
    const r = ffmerge(cwd, 'compress', ro, '--data', cal, '--calibration-tokens', '4096', '--window', '1-2', '--out', out);
    expect(r.code).toBe(0);
    for (const f of fs.readdirSync(out)) expect(fs.statSync(path.join(out, f)).mode & 0o200).toBe(0o200);
    // an export too (before: its tokenizer files kept the input's read-only mode)
    const onnx = path.join(cwd, 'ro-onnx');
    expect(ffmerge(cwd, 'export', ro, '--out', onnx).code).toBe(0);
    for (const f of fs.readdirSync(onnx, { recursive: true }) as string[]) expect({ f, writable: fs.statSync(path.join(onnx, f)).mode & 0o200 }).toEqual({ f, writable: 0o200 });

    const after = r.stdout.slice(r.stdout.indexOf('time per phase:')).split('\n').slice(2);
    const timing = after.slice(0, after.indexOf('')).map((l) => l.split(/\s+/)[0]!);
    expect(timing).toEqual(expect.arrayContaining(['load', 'features', 'merge', 'validate', 'save']));
    for (const absent of ['search', 'baselines', 'test']) expect(timing).not.toContain(absent);

    const card = fs.readFileSync(path.join(out, 'README.md'), 'utf8');
    const report = JSON.parse(fs.readFileSync(path.join(out, 'report.json'), 'utf8'));
    // every phase the run printed, save too (written while saving: the time up to report.json)
    expect(Object.keys(report.timings).sort()).toEqual([...timing].sort());
    expect(card).toMatch(/^---\n[\s\S]*?\n---\n\n# ro-model with merged feed-forward sublayers/);
    // an anchor only where a window was aligned to one (the search here keeps select, which aligns none)
    expect(card).toContain(report.windows[0].anchor === undefined ? 'k = 2: layers 1, 2\n' : `k = 2: layers 1, 2 (anchor ${report.windows[0].anchor})`);
    expect(card).toContain(`| base | ${report.base.validation.toFixed(3)} |`);
    // the default: the combination the search kept at the given window, named in the card
    expect(card).toContain(`| merged (${report.method}${report.recover !== 'none' ? ` + ${report.recover}` : ''}) | ${report.merged.validation.toFixed(3)} |`);
    expect(card).toContain(`- method: \`${report.method}\``);
    // a layer the recover method rewrote outside the window (refit-res: the next one) is named, or none is
    const adjusted = report.windows[0].adjusted as number[] | undefined;
    if (adjusted) expect(card).toContain(`none newly shared (each keeps its own FF, or the one an earlier merge gave it): layer${adjusted.length > 1 ? 's' : ''} ${adjusted.join(', ')}`);
    else expect(card).not.toContain('also rewritten');
    expect(card).toContain(`parameters: ${report.params.removed.toLocaleString('en-US')} of`);
    expect(card).toMatch(/\*\*tied\*\* format[\s\S]*ffmerge convert/);

    const before = JSON.parse(ffmerge(cwd, 'inspect', ro, '--json').stdout);
    const inspected = JSON.parse(ffmerge(cwd, "inspect", out, "--json").stdout);
    expect(before.ffParams - inspected.ffParams).toBe(report.params.removed);
    expect(inspected.totalParams).toBe(report.params.after);
    const text = ffmerge(cwd, 'inspect', out).stdout;
    expect(text).toMatch(new RegExp(`already compressed \\(tied format\\), k = 2, method ${report.method}, windows decoder 1-2, \\d+ tensors tied`));
    expect(text).not.toMatch(/[{}"]/);

    const expanded = path.join(cwd, 'expanded');
    const c1 = ffmerge(cwd, 'convert', out, '--format', 'expanded', '--out', expanded, '--json');
    expect(c1.code).toBe(0);
    expect(JSON.parse(fs.readFileSync(path.join(expanded, 'config.json'), 'utf8')).ffmerge.ties).toBeUndefined();
    // every tensor stored again: the size of the original but for the header's metadata
    expect(Math.abs(fs.statSync(path.join(expanded, 'model.safetensors')).size - fs.statSync(path.join(ro, 'model.safetensors')).size)).toBeLessThan(512);
    expect(fs.readFileSync(path.join(expanded, 'README.md'), 'utf8')).toMatch(/\*\*expanded\*\* format/);
    const tiedAgain = path.join(cwd, 'tied-again');
    expect(ffmerge(cwd, 'convert', expanded, '--format', 'tied', '--out', tiedAgain).code).toBe(0);
    expect(fs.readFileSync(path.join(tiedAgain, 'model.safetensors')).equals(fs.readFileSync(path.join(out, 'model.safetensors')))).toBe(true);
    // converting is written like every output: an existing folder is refused, a plain model is not an ffmerge output
    expect(ffmerge(cwd, 'convert', out, '--format', 'expanded', '--out', expanded).code).toBe(2);
    const plain = ffmerge(cwd, 'convert', ro, '--format', 'expanded', '--out', path.join(cwd, 'x'));
    expect(plain.code).toBe(2);
    expect(plain.stderr).toMatch(/not an ffmerge output/);
  });

  it('an expanded output changed after compressing is not silently re-tied', () => {
    const out = path.join(cwd, 'merged');
    const expanded = path.join(cwd, 'expanded-edit');
    expect(ffmerge(cwd, 'convert', out, '--format', 'expanded', '--out', expanded).code).toBe(0);
    const f = path.join(expanded, 'model.safetensors');
    const bytes = fs.readFileSync(f);
    const header = JSON.parse(bytes.subarray(8, 8 + Number(bytes.readBigUInt64LE(0))).toString('utf8'));
    const tied = Object.keys(JSON.parse(fs.readFileSync(path.join(out, 'config.json'), 'utf8')).ffmerge.ties)[0]!;
    const at = 8 + Number(bytes.readBigUInt64LE(0)) + header[tied].data_offsets[0];
    bytes.writeFloatLE(bytes.readFloatLE(at) + 1, at);
    fs.writeFileSync(f, bytes);
    const r = ffmerge(cwd, 'convert', expanded, '--format', 'tied', '--out', path.join(cwd, 'never'));
    expect(r.code).toBe(3);
    expect(r.stderr).toMatch(/differs from .*INVALID_DATA/);
    expect(fs.existsSync(path.join(cwd, 'never'))).toBe(false);
  });

  it('loading the library or the CLI does not load sharp (only image folders need it)', () => {
    const r = spawnSync(process.execPath, ['-r', 'ts-node/register/transpile-only', '-e',
      "require('./lib/index.ts'); require('./lib/cli/main.ts'); console.log(Object.keys(require.cache).filter((k) => /node_modules[\\/\\\\]sharp[\\/\\\\]/.test(k)).length)"],
      { cwd: path.join(__dirname, '..'), encoding: 'utf8' });
    expect(r.stderr).toBe('');
    expect(r.stdout.trim()).toBe('0');
  });
});
