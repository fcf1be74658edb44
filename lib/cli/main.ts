/**
 * The `ffmerge` command line: inspect, compress, eval. Every typed error ends the run with one line and a
 * non-zero exit code (see errors.ts); --json switches every command to machine-readable stdout.
 */
import * as fs from 'node:fs';
import { Command, CommanderError } from 'commander';
import { FfmergeError } from '../errors';
import { reportError } from './errors';
import { runInspect } from './inspect';
import { runCompress, runEval, type CompressCliOptions } from './compress';

function requireModelDir(p: string): string {
  if (!fs.existsSync(p) || !fs.statSync(p).isDirectory()) {
    throw new FfmergeError('DATA_NOT_FOUND', `model directory ${p} does not exist`);
  }
  return p;
}

export function buildProgram(state: { json: boolean }, signal: AbortSignal): Command {
  const program = new Command('ffmerge')
    .description('Compress Transformer checkpoints by merging feed-forward sublayers')
    .showHelpAfterError()
    .exitOverride();

  program
    .command('inspect')
    .description('architecture, layers, FF share of parameters, and what each k would save')
    .argument('<model>', 'model directory (config.json + model.safetensors)')
    .option('--json', 'machine-readable output')
    .action(async (model: string, opts: { json?: boolean }) => {
      state.json = Boolean(opts.json);
      await runInspect(requireModelDir(model), state.json);
    });

  program
    .command('compress')
    .description('merge k adjacent FF sublayers into one and write the smaller checkpoint (no model: the bundled llama-stories260k)')
    .argument('[model]', 'model directory; omitted: the bundled llama-stories260k with its calibration text')
    .option('--data <file>', 'calibration text (.txt, .txt.gz, .jsonl); the blocks after the calibration budget validate unless --valid')
    .option('--valid <file>', 'validation text the window search and the report score on')
    .option('--test <file>', 'held-out text evaluated on the base and the merged model')
    .option('--k <n>', 'FF sublayers merged into one (default: a quarter of the layers, at least 2)')
    .option('--fraction <x>', 'share of FF sublayers to remove instead of --k (0 < x < 1)')
    .option('--window <spec>', 'auto (search every start) or a-b (0-based, inclusive), or a-b,c-d', 'auto')
    .option('--anchor <which>', 'first | middle | last layer of the window that the others align to', 'first')
    .option('--method <m>', 'permute (align, then average: the paper) | vanilla (average unaligned)', 'permute')
    .option('--recover <r>', 'none | refit (training-free: least-squares W_out/b_out so each merged layer reproduces its original FF output)', 'none')
    .option('--format <f>', 'tied (shared tensors stored once, smaller file) | expanded (loads anywhere the original loads)', 'tied')
    .option('--out <dir>', 'output directory (default ./<model>-ffmerge); must not exist or be empty')
    .option('--overwrite', 'replace a non-empty output directory')
    .option('--baselines <list>', 'comma list: drop-ff (remove the FFs merging removes), drop-layers (remove those layers)')
    .option('--calibration-tokens <n>', 'calibration token budget (default 10240)')
    .option('--validation-tokens <n>', 'validation token budget (default 10240)')
    .option('--search-tokens <n>', 'tokens each search candidate is scored on (default: all validation tokens)')
    .option('--test-tokens <n>', 'test token budget (default: the whole file)')
    .option('--block-size <n>', 'tokens per sequence (default 256)')
    .option('--json', 'print the result as JSON on stdout (no progress bar)')
    .action(async (model: string | undefined, opts: CompressCliOptions) => {
      state.json = Boolean(opts.json);
      await runCompress(model === undefined ? undefined : requireModelDir(model), opts, signal);
    });

  program
    .command('eval')
    .description('perplexity of a model (original or compressed, tied or expanded) on a text file')
    .argument('<model>', 'model directory')
    .requiredOption('--data <file>', 'text file (.txt, .txt.gz, .jsonl), cut into blocks of --block-size tokens')
    .option('--tokens <n>', 'token budget (default: the whole file)')
    .option('--block-size <n>', 'tokens per sequence (default 256)')
    .option('--json', 'machine-readable output')
    .action(async (model: string, opts: { data: string; tokens?: string; blockSize?: string; json?: boolean }) => {
      state.json = Boolean(opts.json);
      await runEval(requireModelDir(model), opts, signal);
    });

  return program;
}

/** Runs the CLI; resolves to the process exit code. */
export async function main(argv: string[]): Promise<number> {
  const state = { json: argv.includes('--json') };
  // Ctrl-C aborts the running job cleanly (temp output removed); a second Ctrl-C kills the process.
  const ac = new AbortController();
  const onSigint = () => {
    process.off('SIGINT', onSigint);
    ac.abort();
  };
  process.on('SIGINT', onSigint);
  const program = buildProgram(state, ac.signal);
  try {
    await program.parseAsync(argv);
    return 0;
  } catch (e) {
    if (e instanceof CommanderError) {
      // help and version are not failures; usage errors were already printed by commander
      if (e.code === 'commander.helpDisplayed' || e.code === 'commander.version' || e.code === 'commander.help') return 0;
      if (state.json) process.stdout.write(JSON.stringify({ ok: false, error: { code: 'INVALID_ARGUMENT', message: e.message } }) + '\n');
      return 2;
    }
    return reportError(e, state.json);
  } finally {
    process.off('SIGINT', onSigint);
  }
}
