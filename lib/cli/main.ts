/**
 * The `ffmerge` command line: inspect, compress, eval, export, convert, finetune. Every typed error ends the run with one line and a
 * non-zero exit code (see errors.ts); --json switches every command to machine-readable stdout.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { inspect } from 'node:util';
import { Command, CommanderError } from 'commander';
import { FfmergeError, isFfmergeError, showValue } from '../errors';
import { EXIT_ABORTED, exitCodeFor, reportError } from './errors';
import { asciiOnly, writeAscii } from './ascii';
import { runInspect } from './inspect';
import { runCompress, type CompressCliOptions } from './compress';
import { runEval, type EvalCliOptions } from './eval';
import { runExport, type ExportCliOptions } from './export';
import { runConvert, type ConvertCliOptions } from './convert';
import { MAX_BATCH, runFinetune, type FinetuneCliOptions } from './finetune';
import { loadAddon, packageRoot } from '../native/loader';
import { checkEnvironment } from '../native/env';
import { BASELINES } from '../pipeline/baselines';
import { MERGE_METHODS } from '../pipeline/merge-methods';
import { RECOVER_METHODS } from '../pipeline/recover';
import { DEFAULT_COMBOS } from '../pipeline/compress';
import { loadPlugins } from './plugins';
import { callTasks, isOwnTask } from '../pipeline/tasks';
import { checkFolder } from '../files';

function checkModelDir(p: string): void {
  if (p === '') throw new FfmergeError('INVALID_ARGUMENT', 'the model directory is an empty string (an unset shell variable?): give the folder that holds config.json and the weights');
  // the shell leaves a leading ~ unexpanded in --out=~/x or when quoted
  const tilde = p.startsWith('~') ? ' (the shell did not expand "~": write the path out, or use $HOME)' : '';
  checkFolder(p, 'model directory', 'config.json and the weights', tilde);
}

function packageVersion(): string {
  try {
    return (JSON.parse(fs.readFileSync(path.join(packageRoot, 'package.json'), 'utf8')) as { version?: string }).version ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

function addonLoads(): boolean {
  try {
    loadAddon();
    return true;
  } catch {
    return false;
  }
}

/** `ffmerge --version`: the version, and which native build runs (prebuilt or compiled here) and why. */
function versionText(): string {
  let native: string;
  try {
    const a = loadAddon();
    native = `native addon ${a.origin} (${a.info.variant}, GEMM ${a.info.gemmKernel}, ${process.platform}-${process.arch}): ${a.path}`;
  } catch (e) {
    native = `native addon not loadable: ${(e as Error).message}`;
  }
  return `ffmerge ${packageVersion()}\n${native}\nnode ${process.version}`;
}

interface HelpRegistries {
  methods: typeof MERGE_METHODS;
  recovers: typeof RECOVER_METHODS;
  baselines: typeof BASELINES;
  /** The module's own tasks (checked as compress checks them), by name. */
  tasks?: string[];
}

/** ffmerge's own; with `compress --plugins <module> --help`, the module's plug-ins besides (loaded, and checked). */
async function helpRegistries(argv: string[]): Promise<HelpRegistries> {
  const args = argv.slice(2);
  const at = args.findIndex((a) => a === '--plugins' || a.startsWith('--plugins='));
  const help = args.includes('--help') || args.includes('-h');
  const file = at < 0 ? undefined : args[at]!.startsWith('--plugins=') ? args[at]!.slice('--plugins='.length) : args[at + 1];
  const plugins = help && args.find((a) => !a.startsWith('-')) === 'compress' ? await loadPlugins(file) : undefined;
  const tasks = callTasks(plugins).filter(isOwnTask).map((t) => t.name);
  return { methods: MERGE_METHODS.with(plugins?.mergeMethods), recovers: RECOVER_METHODS.with(plugins?.recoverMethods), baselines: BASELINES.with(plugins?.baselines), ...(tasks.length ? { tasks } : {}) };
}

export function buildProgram(
  state: { json: boolean },
  signal: AbortSignal,
  argv: string[] = [],
  { methods, recovers, baselines, tasks }: HelpRegistries = { methods: MERGE_METHODS, recovers: RECOVER_METHODS, baselines: BASELINES },
): Command {
  const wantsVersion = argv.includes('--version') || argv.includes('-V');
  const program = new Command('ffmerge')
    .description('Compress Transformer checkpoints by merging feed-forward sublayers')
    .version(wantsVersion ? versionText() : packageVersion(), '-V, --version', 'the version and which native build runs')
    // Usage errors are reported by main() as one line with a code, never with the whole help after them.
    .configureOutput({ outputError: () => {} })
    // defaults read "(default 300)" as the hand-written ones, not `(default: "300")`; required options say so
    .configureHelp({
      optionDescription: (o) => `${o.mandatory ? '(required) ' : ''}${o.description}${o.defaultValue === undefined ? '' : ` (default ${String(o.defaultValue)})`}`,
    })
    .exitOverride()
    .hook('preAction', (_, cmd) => {
      state.json = Boolean(cmd.opts().json);
      const model = cmd.processedArgs[0] as string | undefined;
      if (model !== undefined) checkModelDir(model);
    });

  program
    .command('inspect')
    .description('architecture, layers, FF share of parameters, and what each k would save')
    .argument('[model]', 'model directory (config.json + model.safetensors); omitted: the bundled llama-stories260k')
    .action((model: string | undefined, o: { json?: boolean }) => runInspect(model, o, signal));

  program
    .command('compress')
    .description('merge k adjacent FF sublayers into one and write the smaller checkpoint (no model: the bundled llama-stories260k)')
    .argument('[model]', 'model directory; omitted: the bundled llama-stories260k with its calibration text')
    .option('--data <file>', 'calibration text (.txt, .txt.gz, .jsonl of {"text"}) or token ids (.jsonl of {"input_ids"}, one sequence a row); the blocks after the calibration budget validate unless --valid. vit: an image folder; marian: a source<TAB>target .tsv')
    .option('--sample-calibration', 'language models: calibrate on text sampled from the model itself (temperature 1, seeded; --calibration-tokens of it); --data (or --valid) then only validates')
    .option('--valid <file>', 'validation text the window search and the report score on (vit: image folder; marian: .tsv)')
    .option('--test <file>', 'held-out text evaluated on the base and the merged model (vit: image folder; marian: .tsv)')
    .option('--images <idx>', 'vit: idx image file (.gz ok) for calibration and validation (with --labels)')
    .option('--labels <idx>', 'vit: idx label file matching --images')
    .option('--valid-images <idx>', 'vit: validation images (default: --images from --validation-start)')
    .option('--valid-labels <idx>', 'vit: validation labels')
    .option('--test-images <idx>', 'vit: test images (e.g. t10k), scored on the base and the merged model')
    .option('--test-labels <idx>', 'vit: test labels')
    .option('--source <file>', 'marian: source sentences, one a line (.gz ok), with --target')
    .option('--target <file>', 'marian: reference translations line-aligned with --source')
    .option('--valid-source <file>', 'marian: validation sources (default: the pairs after the calibration ones)')
    .option('--valid-target <file>', 'marian: validation references')
    .option('--test-source <file>', 'marian: test sources, scored on the base and the merged model')
    .option('--test-target <file>', 'marian: test references')
    .option('--stacks <mode>', 'encoder–decoder models: both-same (same window in encoder and decoder, default) | independent (each stack searched for its own window; not with a given --window) | encoder | decoder')
    .option('--calibration-size <n>', 'vit: calibration images (default 600); marian: calibration sentence pairs (default 600)')
    .option('--validation-size <n>', 'vit: validation images (default: the whole validation range, at most 5000); marian: validation sentences translated per candidate (default: the whole split, at most 1024)')
    .option('--validation-start <n>', 'vit: first validation image of --images (default 55000 on a 60000-image set, else after calibration)')
    .option('--test-size <n>', 'vit/marian: test images or sentences (default all)')
    .option('--select-by <score>', 'vit/marian: what the search ranks candidates by: metric (accuracy or BLEU, default) | loss (validation cross-entropy of the labels or teacher-forced references: smoother, and for marian no decoding per candidate; the metric is still reported)')
    .option('--k <n>', 'FF sublayers merged into one (default: the size of the --window given, else 1 + a quarter of the layers, rounded: a quarter of the FF sublayers go, e.g. k = 4 on 12 layers; at least 2)')
    .option('--fraction <x>', 'share of FF sublayers to remove instead of --k (0 < x < 1)')
    .option('--window <spec>', 'auto (search every start) or a-b (0-based, inclusive), or a-b,c-d', 'auto')
    .option('--anchor <which>', 'first | middle | last layer of the window that the others align to (default first; permute and the paper baseline)')
    .option('--method <m>', `${methods.all().map((m) => `${m.name} (${m.description})`).join(' | ')} | auto (at every window try ${DEFAULT_COMBOS.map(([m, r]) => `${m} + ${r}`).join(', ')}; keep the best on validation; the default when neither --method nor --recover is given). The paper's plain merge: --method permute --recover none`)
    .option('--select-memory <MiB>', "the most memory select's least-squares sums may take per window (default 128): a wider pool is first cut, per layer, to the units that explain the most alone (never below 1.25 × d_ff)")
    .option('--recover <r>', `${recovers.all().map((m) => `${m.name} (${m.description})`).join(' | ')} (default none)`)
    .option('--format <f>', 'tied (shared tensors stored once, smaller file) | expanded (loads anywhere the original loads) | onnx (onnx/model.onnx, or encoder_model.onnx + decoder_model_merged.onnx for Marian, with each shared tensor one initializer, for onnxruntime / transformers.js)', 'tied')
    .option('--out <dir>', 'output directory (default ./<model>-ffmerge); must not exist or be empty')
    .option('--overwrite', 'replace a non-empty output directory')
    .option('--stream', 'keep each layer on disk and read it when a pass reaches it: a lower peak for a model under 2 GiB (larger ones stream anyway), each pass re-reading the layers')
    .option('--max-shard-size <bytes>', 'tied/expanded: largest bytes of tensor data per safetensors file (an integer or 5GB, 500MiB; default 5GB, as Hugging Face); above it the weights are sharded as model-0000N-of-0000M.safetensors + model.safetensors.index.json')
    .option('--baselines <list>', `comma list (none: no baseline, the demo's too), each searched over its own placements (paper: over the merge's candidate windows, so only the given one with --window); drop-ff and paper remove what the merge removes, drop-layers whole layers, per merged stack the number nearest to the FF parameters the merge removes there but at least one (so it can remove more than the merge: a layer holds more than its FF), its parameter count in the report: ${baselines.all().map((b) => `${b.name} (${b.description})`).join('; ')}`)
    .option('--plugins <module>', `a JavaScript module (CommonJS or ES) exporting mergeMethods, recoverMethods, baselines and/or tasks: lists of your own plug-ins (README, Extending the pipeline), picked by name with --method, --recover and --baselines for this run; a task of its own, by accepting the model (it reads its own data: give no data flags)${tasks ? `. This module's tasks: ${tasks.join(', ')}` : ''}`)
    .option('--calibration-tokens <n>', 'calibration token budget, in whole blocks: at least one (default 10240; the bundled demo 6144)')
    .option('--validation-tokens <n>', 'validation token budget, in whole blocks: at least one (default 10240)')
    .option('--search-tokens <n>', 'tokens each search candidate is scored on, in whole blocks (default: all validation tokens; a model with ≥ 1B layer parameters: about 4 validation passes in all)')
    .option('--test-tokens <n>', 'test token budget, in whole blocks (default: the whole file)')
    .option('--draw <how>', 'which blocks of the --data/--valid text the budgets take: head (the first ones, default) | spread (drawn across the whole file; validation from the --data file disjoint from calibration)')
    .option('--block-size <n>', 'tokens per block text is cut into (default 256; not for .jsonl {"input_ids"} rows, used as they are)')
    .option('--seed <n>', 'seed of the random draws: --draw spread, --sample-calibration, --recover finetune (default: their fixed seeds, 1, 1 and 0); refused for a run that draws none')
    .addHelpText('after', '\nWith no model: the bundled llama-stories260k demo, written to\n<tmp>/ffmerge-demo-<user id>/llama-stories260k-ffmerge unless --out is given.')
    .action((model: string | undefined, o: CompressCliOptions) => runCompress(model, o, signal));

  program
    .command('eval')
    .description("perplexity (LMs), top-1 accuracy (vit) or BLEU + chrF (marian: decoded as its generation_config.json says, greedy unless it asks for beams; sources cut to the model's max_position_embeddings tokens) of a model, original or compressed")
    .argument('<model>', 'model directory')
    .option('--data <file>', 'text (.txt, .txt.gz, .jsonl of {"text"}) cut into blocks of --block-size tokens, or .jsonl of {"input_ids"} rows used as they are; vit: an image folder; marian: a .tsv')
    .option('--images <idx>', 'vit: idx image file (with --labels)')
    .option('--labels <idx>', 'vit: idx label file')
    .option('--source <file>', 'marian: source sentences (with --target)')
    .option('--target <file>', 'marian: reference translations')
    .option('--start <n>', 'vit/marian: evaluate from image or sentence n (0-based; default 0), e.g. a validation range')
    .option('--count <n>', 'vit/marian: evaluate n images or sentences from --start (default all the rest)')
    .option('--tokens <n>', 'token budget, in whole blocks: at least one (default: the whole file)')
    .option('--block-size <n>', 'tokens per block text is cut into (default 256; not for .jsonl {"input_ids"} rows, used as they are)')
    .option('--stream', 'keep each layer on disk and read it when a pass reaches it: a lower peak for a model under 2 GiB (larger ones stream anyway)')
    .action((model: string, o: EvalCliOptions) => runEval(model, o, signal));

  program
    .command('export')
    .description('write a model (original or compressed) as onnx/model.onnx (Marian: onnx/encoder_model.onnx + onnx/decoder_model_merged.onnx) + config and tokenizer files, laid out as Optimum exports; shared tensors stay one initializer')
    .argument('<model>', 'model directory (config.json + model.safetensors, tied or not)')
    .option('--format <f>', 'onnx', 'onnx')
    .requiredOption('--out <dir>', 'output directory; must not exist or be empty')
    .option('--dtype <t>', 'weights in the file: fp32 | fp16 (computation stays float32)', 'fp32')
    .option('--external-data <when>', 'auto (weights in <file>.onnx_data only above 2 GB) | always', 'auto')
    .option('--overwrite', 'replace a non-empty output directory')
    .action((model: string, o: ExportCliOptions) => runExport(model, o, signal));

  program
    .command('finetune')
    .description('recovery fine-tuning with the ties kept (decoder-only LMs, vit): AdamW on every weight, each shared tensor one parameter; writes the same format at the same size')
    .argument('<model>', 'model directory (original or compressed, tied or not)')
    .option('--data <file>', 'training text (.txt, .txt.gz, .jsonl of {"text"}) or token ids (.jsonl of {"input_ids"}); windows of seq + 1 tokens are drawn at random. vit: an image folder')
    .option('--valid <file>', 'validation text: its mean loss is reported before and after (and every --eval-every steps), in whole --seq blocks (rows are joined; the tokens after the last block are counted, not scored). vit: an image folder (loss and top-1 accuracy)')
    .option('--images <idx>', 'vit: idx training image file (.gz ok), with --labels; images from --validation-start on validate, never train')
    .option('--labels <idx>', 'vit: idx label file matching --images')
    .option('--valid-images <idx>', 'vit: validation images (default: --images from --validation-start)')
    .option('--valid-labels <idx>', 'vit: validation labels')
    .option('--validation-start <n>', 'vit: first validation image (default 55000 on a 60000-image set, else the last tenth; 0 with --valid-images)')
    .option('--validation-size <n>', 'vit: validation images (default: all from --validation-start)')
    .option('--train-size <n>', 'vit: train on the first n images only (default: all before the validation range)')
    .option('--steps <n>', 'optimizer steps', '300')
    .option('--lr <x>', 'peak learning rate', '2e-4')
    .option('--batch <n>', `sequences (vit: images) per step, at most ${MAX_BATCH}`, '32')
    .option('--seq <n>', 'tokens per sequence (at most the model\'s positions; default 256; language models only)')
    .option('--warmup <n>', 'linear warm-up steps (default 0)')
    .option('--schedule <s>', 'constant | cosine (to 10% of lr)', 'constant')
    .option('--weight-decay <x>', 'decoupled weight decay on 2-D weights', '0')
    .option('--clip <x>', 'max global gradient norm (0 = none)', '1')
    .option('--seed <n>', 'seed of the window (vit: image) draws', '0')
    .option('--eval-every <n>', 'validation loss (vit: and accuracy) every n steps, n at most --steps (needs validation data)')
    .option('--tokens <n>', 'training token budget, in whole --seq blocks: at least two, as a window is seq + 1 tokens (default: the whole file; language models only)')
    .option('--valid-tokens <n>', 'validation token budget, in whole --seq blocks (default 32768; needs --valid; language models only)')
    .option('--trainable <w>', 'all | ff (only the FF sublayers train)', 'all')
    .option('--micro <n>', 'sequences per forward/backward inside a step (default: what ~1 GiB of activations allows; another value sums gradients in another order, so weights differ at float rounding)')
    .option('--out <dir>', 'output directory (default ./<model>-finetuned); must not exist or be empty')
    .option('--overwrite', 'replace a non-empty output directory')
    .option('--max-shard-size <bytes>', 'largest bytes of tensor data per safetensors file (an integer or 5GB, 500MiB; default 5GB, as Hugging Face); above it the weights are sharded with a model.safetensors.index.json')
    .action((model: string, o: FinetuneCliOptions) => runFinetune(model, o, signal));

  program
    .command('convert')
    .description('rewrite a compressed output in the other format: expanded (any Hugging Face loader reads it as-is) or tied (smallest file)')
    .argument('<model>', 'a folder written by ffmerge compress')
    .requiredOption('--format <f>', 'expanded | tied')
    .requiredOption('--out <dir>', 'output directory; must not exist or be empty')
    .option('--overwrite', 'replace a non-empty output directory')
    .option('--max-shard-size <bytes>', 'largest bytes of tensor data per safetensors file (an integer or 5GB, 500MiB; default 5GB, as Hugging Face); above it the weights are sharded with a model.safetensors.index.json')
    .action((model: string, o: ConvertCliOptions) => runConvert(model, o, signal));

  for (const command of program.commands) command.option('--json', 'print the result as JSON on stdout (no progress bar)');
  // An option's value is never the next option (`--out --overwrite`), nor empty (an unset shell variable), and a
  // valued option given twice is refused, not read as its last value. Flags (--overwrite, --json) may repeat.
  const given = new Map<string, string>();
  for (const opt of program.commands.flatMap((c) => c.options)) {
    if (!opt.required) continue;
    opt.argParser((v: string) => {
      if (v.startsWith('--')) throw new FfmergeError('INVALID_ARGUMENT', `${opt.long} needs a value, got the option ${v} (see --help)`);
      // (--baselines says what an empty list means itself)
      if (v === '' && opt.long !== '--baselines') throw new FfmergeError('INVALID_ARGUMENT', `${opt.long} is given an empty value (an unset shell variable?): give a value (see --help)`);
      const before = given.get(opt.long!);
      if (before !== undefined) throw new FfmergeError('INVALID_ARGUMENT', `${opt.long} is given twice (${JSON.stringify(before)}, then ${JSON.stringify(v)}): give it once`);
      given.set(opt.long!, v);
      return v;
    });
  }
  return program;
}

const STOP_SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;
type StopSignal = (typeof STOP_SIGNALS)[number];
const STOPPED_BY: Record<StopSignal, string> = { SIGINT: 'Ctrl-C (SIGINT)', SIGTERM: 'SIGTERM', SIGHUP: 'SIGHUP (its terminal closed)' };

/**
 * A reader that went away (`ffmerge inspect m | head -1`) or a closed terminal (EIO): the rest of the output is
 * dropped and the run keeps its own exit code, as it does when stderr fails. Any other stdout failure (ENOSPC)
 * loses the result: reported as IO_ERROR.
 */
function onOutputError(this: NodeJS.WriteStream, e: NodeJS.ErrnoException): void {
  if (e.code === 'EPIPE' || e.code === 'EIO' || this === process.stderr) return;
  const failure = new FfmergeError('IO_ERROR', `the result could not be written to standard output: ${e.message}`);
  process.exitCode = exitCodeFor(failure);
  reportError(failure, false);
}

/**
 * Called by bin/ffmerge.js as a run that started on a terminal ends: each standard stream whose terminal hung
 * up while the run went on (its shell ignored SIGHUP) is pointed at /dev/null, so that Node 20 does not abort
 * while it restores that terminal's modes on exit (native/binding/terminal_binding.cc). Returns how many; 0
 * without the addon.
 */
export function releaseLostTerminal(): number {
  try {
    return (loadAddon().module.releaseLostTerminal as () => number)();
  } catch {
    return 0; // no addon: the run has already said why
  }
}

/** Runs the CLI; resolves to the process exit code. */
export async function main(argv: string[]): Promise<number> {
  const json = argv.includes('--json');
  const restore: (() => void)[] = [];
  if (json) {
    // stdout holds one JSON document: what a --plugins module logs goes to stderr
    const saved = { log: console.log, info: console.info, debug: console.debug, dir: console.dir };
    console.log = console.info = console.debug = console.error;
    console.dir = (item, options) => process.stderr.write(`${inspect(item, options)}\n`);
    restore.push(() => Object.assign(console, saved));
  }
  // a locale that is not UTF-8: the CLI's symbols in ASCII, on stderr and in text output (JSON is data: as it is)
  if (asciiOnly(process.env)) restore.push(...(json ? [process.stderr] : [process.stderr, process.stdout]).map((s) => writeAscii(s, argv.join(' '))));
  try {
    return await run(argv);
  } finally {
    for (const r of restore.reverse()) r();
  }
}

async function run(argv: string[]): Promise<number> {
  for (const stream of [process.stdout, process.stderr]) {
    if (!stream.listeners('error').includes(onOutputError)) stream.on('error', onOutputError);
  }
  const state = { json: argv.includes('--json') };
  // SIGINT, SIGTERM and SIGHUP abort the running job cleanly (temp output removed, the ABORTED line) with exit
  // code 128 + the signal's number, as the shell reports a process that signal killed. A second signal kills.
  const ac = new AbortController();
  let caught: StopSignal | undefined;
  const onSignal = (sig: StopSignal) => {
    for (const s of STOP_SIGNALS) process.off(s, onSignal);
    caught = sig;
    ac.abort();
  };
  for (const s of STOP_SIGNALS) process.on(s, onSignal);
  const exitCode = (code: number) => (code === EXIT_ABORTED && caught !== undefined ? 128 + os.constants.signals[caught] : code);
  let program: Command;
  try {
    program = buildProgram(state, ac.signal, argv, await helpRegistries(argv));
  } catch (e) {
    for (const s of STOP_SIGNALS) process.off(s, onSignal);
    return reportError(e, state.json);
  }
  // no command at all is a usage error (exit 2, the help on stderr), not a successful run of nothing
  if (argv.length <= 2) {
    process.stderr.write(program.helpInformation());
    return reportError(new FfmergeError('INVALID_ARGUMENT', 'no command given (see the commands above)'), state.json);
  }
  // Node exits 0 with an empty event loop even while a promise is pending (a --plugins promise that never settles)
  const onEarlyExit = (code: number) => {
    if (code !== 0) return;
    process.exitCode = reportError(new Error('the run stopped before its work was done: a promise it waited on can never settle (a --plugins module\'s?); nothing was finished'), state.json);
  };
  process.on('exit', onEarlyExit);
  try {
    // every command refuses an environment variable it cannot read; help is still shown
    if (!argv.includes('--help') && !argv.includes('-h')) checkEnvironment();
    await program.parseAsync(argv);
    return 0;
  } catch (e) {
    if (e instanceof CommanderError) {
      // help and version are not failures
      if (e.code === 'commander.helpDisplayed' || e.code === 'commander.help') {
        // `ffmerge help <unknown>`: commander shows the general help as a failure; `help help` is help's own
        const asked = argv[argv.indexOf('help') + 1];
        if (e.code === 'commander.help' && e.exitCode !== 0 && asked !== 'help') return reportError(new FfmergeError('INVALID_ARGUMENT', `unknown command ${showValue(asked)} (see the commands above)`), state.json);
        return 0;
      }
      // --version fails (1, as a command that needs the addon) when the addon does not load
      if (e.code === 'commander.version') return addonLoads() ? 0 : 1;
      // a usage error: one line with its code (commander's "(Did you mean …?)" hint kept on that line)
      const message = e.message.replace(/^error: /, '').replace(/\s*\n\s*/g, ' ').trim();
      const hint = e.code === 'commander.unknownCommand' ? '' : ' (see --help)';
      return reportError(new FfmergeError('INVALID_ARGUMENT', `${message}${hint}`), state.json);
    }
    // the line says what stopped the run, and that the output, written under a temporary name, is not there
    const stopped = caught !== undefined && isFfmergeError(e, 'ABORTED') ? new FfmergeError('ABORTED', `stopped by ${STOPPED_BY[caught]} before it finished; nothing was written`, { cause: e }) : e;
    return exitCode(reportError(stopped, state.json));
  } finally {
    for (const s of STOP_SIGNALS) process.off(s, onSignal);
    process.off('exit', onEarlyExit);
  }
}
