/**
 * The `ffmerge` command line: inspect, compress, eval. Every typed error ends the run with one line and a
 * non-zero exit code (see errors.ts); --json switches every command to machine-readable stdout.
 */
import * as fs from 'node:fs';
import { Command, CommanderError } from 'commander';
import { FfmergeError } from '../errors';
import { reportError } from './errors';
import { runInspect } from './inspect';

function requireModelDir(p: string): string {
  if (!fs.existsSync(p) || !fs.statSync(p).isDirectory()) {
    throw new FfmergeError('DATA_NOT_FOUND', `model directory ${p} does not exist`);
  }
  return p;
}

export function buildProgram(state: { json: boolean }): Command {
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

  return program;
}

/** Runs the CLI; resolves to the process exit code. */
export async function main(argv: string[]): Promise<number> {
  const state = { json: argv.includes('--json') };
  const program = buildProgram(state);
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
  }
}
