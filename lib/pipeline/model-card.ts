/**
 * The model card (README.md) of every folder ffmerge writes. compress writes it from its result (`modelCard`);
 * every other writer rebuilds it with `outputCard` from the folder's own record (config.json's `ffmerge`) and
 * report.json, so a card never describes a format, a file or a training state the folder does not have.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { isObject } from '../arguments';
import { modelName, readRegularFileSync, MAX_JSON_FILE_BYTES } from '../files';
import { kLabel } from '../merge/windows';
import { groupDigits as int } from '../errors'; // not toLocaleString: its first call loads ICU data (~40 ms)
import { trainingRuns, whenTrained } from '../checkpoint/training-record';
import type { CompressFormat } from './options';
import { PERMUTATIONS_FILE, UNPICKED_NOTE, calibrationUsed, readPermutations, type CompressResult } from './result';
import type { MetricInfo } from './task';

/**
 * A metric's name for people (summary and card). BLEU names the decoding that produced it, which the
 * translation task records ("greedy", "beam search, 4 beams"); a report without it says just BLEU.
 */
export function metricLabel(m: MetricInfo): string {
  if (m.name === 'bleu') return typeof m.decoding === 'string' ? `BLEU (${m.decoding.replace(/\s+/g, ' ').slice(0, 100)})` : 'BLEU';
  return m.name === 'accuracy' ? 'top-1 accuracy' : m.name;
}
/** What each merge method did, in a phrase (methods not listed get none). */
const METHOD_NOTE: Record<string, string> = {
  permute: "the paper's merge: units aligned to the anchor by maximum correlation, then averaged",
  vanilla: 'averaged without alignment',
  select: 'the d_ff pooled units that best reproduce every position, W_out fitted by least squares',
};

function num(v: number | undefined, metric: string): string {
  if (v === undefined || !Number.isFinite(v)) return '–';
  return metric === 'accuracy' ? `${(100 * v).toFixed(2)}%` : v.toFixed(metric === 'bleu' ? 2 : 3);
}

/** Where a card is written and what it loads: the snippet's Auto class and folder name, any fine-tuning. */
export interface CardContext {
  /** The output folder; its name is what the Python snippet loads. */
  dir: string;
  /** config.json's contents: model_type and architectures pick the snippet's class. */
  config: Record<string, unknown>;
  /** The folder's `ffmerge.finetune` record, when its weights were trained after the merge. */
  finetune?: unknown;
  /** Whether the folder holds permutations.json (written by this merge, or carried from its source). */
  permutations?: boolean;
}

/** The 16-bit dtype config.json gives the weights (`dtype`, transformers 5; `torch_dtype` before), as the card names it. */
function halfDtype(config: Record<string, unknown>): string | undefined {
  const d = config.dtype ?? config.torch_dtype;
  return d === 'bfloat16' ? 'BF16' : d === 'float16' ? 'F16' : undefined;
}
const finite = (o: Record<string, unknown>, k: string): number | undefined => {
  const v = Object.hasOwn(o, k) ? o[k] : undefined;
  return typeof v === 'number' && Number.isFinite(v) ? v : undefined;
};
/** A record's value for the card, on one line: only a finite number or a string (a record edited by hand may hold anything). */
const field = (o: Record<string, unknown>, k: string): string | undefined => {
  const v = Object.hasOwn(o, k) ? o[k] : undefined;
  return typeof v === 'string' ? v.replace(/\s+/g, ' ').slice(0, 200) : finite(o, k)?.toString();
};

/**
 * The transformers class whose parameter names are the checkpoint's own (the tie map's names): the class with
 * the task head, which holds the base model under its prefix (`model.`, `transformer.`, `vit.`). AutoModel
 * builds the bare base model, where `model.layers.4.mlp` is no submodule. A BertModel checkpoint loads as the
 * bare model, whose names lack the `bert.` ffmerge's tie names carry (`strip`).
 */
function pythonClass(config: Record<string, unknown>): { cls: string; strip?: string } {
  const type = config.model_type;
  if (type === 'vit') return { cls: 'AutoModelForImageClassification' };
  if (type === 'marian') return { cls: 'AutoModelForSeq2SeqLM' };
  if (type === 'bert') {
    const arch = Array.isArray(config.architectures) ? (config.architectures as unknown[]) : [];
    return arch.includes('BertForSequenceClassification') ? { cls: 'AutoModelForSequenceClassification' } : { cls: 'AutoModel', strip: 'bert.' };
  }
  return { cls: 'AutoModelForCausalLM' }; // gpt2, llama, qwen2, qwen3, mistral: decoder language models
}

/** How to load the folder, by what it holds. `merged`: whether any FF is shared (a fine-tuned plain model has none). */
function loadingText(format: CompressFormat, ctx: CardContext, merged: boolean): string[] {
  if (format === 'onnx') {
    const onnx = isObject(ctx.config.ffmerge) && isObject(ctx.config.ffmerge.onnx) ? ctx.config.ffmerge.onnx : {};
    return [
      'This folder is an **ONNX** export laid out as Hugging Face Optimum lays out its exports (`onnx/model.onnx`,',
      'or `onnx/encoder_model.onnx` + `onnx/decoder_model_merged.onnx` for a translation model, with config and',
      'tokenizer files beside it): each merged FF sublayer is one initializer that every layer of its',
      merged ? 'window reads, so onnxruntime (and transformers.js on top of it) holds one copy.' : 'window reads. No FF sublayer is shared in this one: every layer has its own initializers.',
      ...(field(onnx, 'dtype') === 'fp16' ? ['The weights are stored in fp16 (computation is float32); the numbers above were measured in float32.'] : []),
    ];
  }
  if (!merged) return ['It loads anywhere the original model loads, as-is: no FF sublayers are shared.'];
  if (format === 'expanded') {
    return [
      'This folder is in the **expanded** format: the original architecture and tensor names, with every layer of a',
      'merged window holding the same merged weights. It loads anywhere the original model loads, as-is.',
      'The file is as large as the original; `npx ffmerge convert <this folder> --format tied --out <folder>` stores each',
      'merged FF once.',
    ];
  }
  const { cls, strip } = pythonClass(ctx.config);
  return [
    'This folder is in the **tied** format: each merged FF sublayer is stored once, and the tensors of the',
    'other layers of its window are absent from `model.safetensors`. The tie map (tied name → stored name) is in',
    "the safetensors metadata (`ffmerge_ties`) and in `config.json` under `ffmerge.ties`.",
    '',
    '- ffmerge: `const model = await loadModel(dir)` restores the ties.',
    '- Any Hugging Face loader: first write the expanded format, which loads as-is:',
    '  `npx ffmerge convert <this folder> --format expanded --out <folder>`.',
    '- Hugging Face transformers directly: load, then point each tied Parameter at its stored one:',
    '',
    '```python',
    `from transformers import ${cls}  # the class whose parameter names are the checkpoint's (and the tie map's)`,
    // JSON's string escapes are Python's: any folder name is one valid literal
    `model = ${cls}.from_pretrained(${JSON.stringify(path.basename(path.resolve(ctx.dir)))})  # this folder (its path, or its Hub id once uploaded); the tied tensors are reported missing`,
    'for tied, stored in model.config.ffmerge["ties"].items():',
    ...(strip ? [`    tied, stored = tied.removeprefix("${strip}"), stored.removeprefix("${strip}")  # the bare model has no "${strip}" level`] : []),
    '    m, _, a = tied.rpartition("."); s, _, b = stored.rpartition(".")',
    '    setattr(model.get_submodule(m), a, getattr(model.get_submodule(s), b))',
    '```',
  ];
}

/** The fine-tuning section, from the record `ffmerge finetune` (or saveTrained) wrote. */
function finetuneText(rec: unknown, lm: boolean, config: Record<string, unknown>, merged: boolean, stored16?: string): string[] {
  const f = isObject(rec) ? rec : {};
  const own = isObject(config.ffmerge) ? config.ffmerge : {};
  const runs = Array.isArray(own.earlierFinetunes) ? (own.earlierFinetunes as unknown[]) : [];
  const earlier = runs.length;
  const steps = finite(f, 'steps');
  // every run's steps together
  const counted = runs.map((x) => (isObject(x) ? finite(x, 'steps') : undefined));
  const total = steps !== undefined && counted.every((n) => n !== undefined) ? counted.reduce((a: number, n) => a + n!, steps) : undefined;
  // the earlier runs one by one, with when each trained where the record says
  const earlierRun = (x: unknown) => {
    const n = isObject(x) ? finite(x, 'steps') : undefined;
    const when = merged ? whenTrained(x) : undefined; // with nothing merged at all, "before any merge" says nothing
    return `${n !== undefined ? `${n} steps` : 'steps not recorded'}${when ? ` ${when}` : ''}`;
  };
  const ofRuns = earlier > 0 ? ` in the last of ${earlier + 1} fine-tuning runs (${total !== undefined ? `${total} steps in all of them` : 'not every run recorded its steps'})` : '';
  const shown = (k: string, show: (v: string) => string | false) => field(f, k) && show(field(f, k)!);
  const settings = [
    shown('batch', (v) => `batch ${v}`),
    shown('seq', (v) => `sequence ${v} tokens`),
    shown('lr', (v) => `learning rate ${v}`),
    shown('schedule', (v) => `${v} schedule`),
    shown('warmup', (v) => v !== '0' && `${v} warm-up steps`),
    shown('trainable', (v) => (v === 'ff' ? 'FF sublayers trained, the rest frozen' : v === 'all' ? 'every weight trained' : `trainable: ${v}`)),
  ].filter(Boolean);
  const data = [
    shown('data', (v) => `data: \`${v}\``),
    shown('images', (v) => `${v} training images`),
    shown('valid', (v) => `validation: \`${v}\``),
    shown('validationImages', (v) => `${v} validation images`),
    field(f, 'split'),
  ].filter(Boolean);
  const loss = (a: number | undefined, b: number | undefined) => `${num(a, 'loss')} → ${num(b, 'loss')}`;
  const ppl = (v: number | undefined) => (v === undefined ? '–' : Math.exp(v).toFixed(3));
  const valBefore = finite(f, 'valBefore');
  const valAfter = finite(f, 'valAfter');
  const accBefore = finite(f, 'accuracyBefore');
  const accAfter = finite(f, 'accuracyAfter');
  return [
    '## Fine-tuning',
    // a model fine-tuned without a merge has no merged FF: "after the merge, the ties kept" would invent one
    `- ${steps !== undefined ? `${steps} steps` : 'trained'}${ofRuns}${ofRuns ? ', this one' : ''} ${merged ? 'after the merge, the ties kept (each merged FF trained as one)' : 'with nothing merged (every layer keeps its own FF)'}${settings.length ? `: ${settings.join(', ')}` : ''}`,
    ...(data.length ? [`- ${data.join('; ')}`] : []),
    ...(finite(f, 'firstLoss') !== undefined ? [`- training loss, first step → last: ${loss(finite(f, 'firstLoss'), finite(f, 'lastLoss'))}`] : []),
    ...(valBefore !== undefined || valAfter !== undefined
      ? [
          // an LM's validation is scored in blocks of seq tokens, which eval reproduces on text with --block-size
          `- validation loss (mean NLL) before → after: ${loss(valBefore, valAfter)}${lm ? ` (perplexity ${ppl(valBefore)} → ${ppl(valAfter)}${field(f, 'seq') ? `, in blocks of ${field(f, 'seq')} tokens` : ''})` : ''}`,
        ]
      : []),
    ...(accBefore !== undefined || accAfter !== undefined ? [`- validation top-1 accuracy before → after: ${num(accBefore, 'accuracy')} → ${num(accAfter, 'accuracy')}`] : []),
    ...(steps === undefined ? ['- no summary of the training was recorded'] : []),
    ...(earlier > 0 ? [`- ${earlier === 1 ? 'the earlier run' : `the ${earlier} earlier runs, oldest first`}: ${runs.map(earlierRun).join('; ')}; ${earlier === 1 ? 'its summary is' : 'their summaries are'} in \`config.json\` under \`ffmerge.earlierFinetunes\``] : []),
    ...(stored16 ? [`- weights stored in ${stored16}: the losses above were measured in float32 before the trained weights were rounded to it, so \`eval\` of this folder can differ in the fourth or fifth digit`] : []),
    '- the summary is in `config.json` under `ffmerge.finetune`; `ffmerge finetune` writes its loss log to `finetune.json`.',
    '',
  ];
}

export function modelCard(r: Omit<CompressResult, 'out'>, format: CompressFormat, ctx: CardContext): string {
  const m = r.metric.name;
  const tuned = ctx.finetune !== undefined;
  const multi = Object.keys(r.layers).length > 1;
  const adjusted = r.windows.filter((w) => w.adjusted?.length).map((w) => `${multi ? `${w.stack} ` : ''}layer${w.adjusted!.length > 1 ? 's' : ''} ${w.adjusted!.join(', ')}`).join('; ');
  // blocks drawn across a file (--draw spread): eval, which reads text from its start, reproduces only the test split
  const notes: string[] = Array.isArray(r.data.notes) ? r.data.notes.filter((n) => typeof n === 'string' && !n.startsWith(UNPICKED_NOTE)) : []; // an older report.json may lack them
  const drawn = notes.some((n) => n.includes('blocks drawn across'));
  const windows = r.windows.map((w) => `${multi ? `${w.stack} ` : ''}layers ${w.layers.join(', ')}${w.anchor !== undefined ? ` (anchor ${w.anchor})` : ''}`).join('; ');
  const rows = [
    `| base | ${num(r.base.validation, m)} | ${num(r.base.test, m)} |`,
    `| merged (${r.method}${r.recover !== 'none' ? ` + ${r.recover}` : ''})${tuned ? ', before fine-tuning' : ''} | ${num(r.merged.validation, m)} | ${num(r.merged.test, m)} |`,
    ...Object.entries(r.baselines).map(([name, b]) => `| ${name} baseline (${int(b.paramsRemoved)} params) | ${num(b.validation, m)} | ${num(b.test, m)} |`),
  ];
  // compress of a folder ffmerge had fine-tuned: its config (the source's) holds that record
  const sourceRuns = tuned ? [] : trainingRuns(ctx.config.ffmerge);
  const sourceWhen = sourceRuns.map(whenTrained);
  const ordered = sourceWhen.every((w) => w !== undefined);
  const sourceOrder = sourceRuns.length === 1 ? (ordered ? ` ${sourceWhen[0]}` : '') : ` in ${sourceRuns.length} runs${ordered ? ` (${sourceWhen.join('; ')})` : ''}`;
  const sourceKeys = `\`ffmerge.sourceFinetune\`${sourceRuns.length > 1 ? ' and `ffmerge.sourceEarlierFinetunes`' : ''}`;
  const sourceTuned = `fine-tuned with ffmerge${sourceOrder} (${sourceKeys} in config.json)`;
  const training = tuned
    ? 'The merged model was then fine-tuned with the ties kept (below); the numbers under "What it costs" are from before that.'
    : r.windows.some((w) => w.trained === true) || r.recover === 'finetune' // (a report.json from before the flag: by name)
      ? `The merged model was then fine-tuned with the ties kept.${sourceRuns.length ? ` Before this merge, its source had been ${sourceTuned}.` : ''}`
      : sourceRuns.length
        ? `This merge did no gradient training, but its source had been ${sourceTuned}.`
        : r.earlierWindows?.some((w) => w.trained === true || w.recover === 'finetune')
          ? 'This merge did no gradient training, but an earlier merge the source carries was recovered by fine-tuning (`recover` of `ffmerge.windows` in config.json).'
          : 'No gradient training was done.';
  return [
    `# ${modelName(r.model)} with merged feed-forward sublayers (ffmerge)`,
    '',
    `This model is ${inlineCode(modelName(r.model))} (${r.modelType}, ${Object.entries(r.layers).map(([s, n]) => `${n} ${s}`).join(' + ')} layers)`,
    'compressed by [ffmerge](https://www.npmjs.com/package/ffmerge), which reproduces "Merging Feed-Forward Sublayers',
    'for Compressed Transformers" (Verma, Murray, Duh 2025) and goes beyond it: the feed-forward (FF) sublayers of k',
    `adjacent layers are merged into one FF that all k positions share. ${training}`,
    '',
    '## What was merged',
    `- ${kLabel(r.k, r.windows.filter((w) => w.stack === r.windows[0]?.stack).map((w) => w.layers.length))}: ${windows}`,
    ...(r.earlierWindows?.length ? [`- kept from the source, already an ffmerge output: ${r.earlierWindows.map((w) => `${multi ? `${w.stack} ` : ''}layers ${w.layers.join(', ')}`).join('; ')} (each sharing one FF, as before)`] : []),
    `- method: \`${r.method}\`${Object.hasOwn(METHOD_NOTE, r.method) ? ` (${METHOD_NOTE[r.method]})` : ''}; recover: \`${r.recover}\``,
    ...(Array.isArray(r.plugins) && r.plugins.length ? [`- not part of ffmerge: ${r.plugins.map((n) => `\`${n}\``).join(', ')}, the caller's own plug-in${r.plugins.length > 1 ? 's' : ''}`] : []),
    ...(adjusted ? [`- also rewritten by the recover method, at the same size, none newly shared (each keeps its own FF, or the one an earlier merge gave it): ${adjusted}`] : []),
    `- chosen by: ${
      r.candidates.length > 0
        ? `searching ${r.candidates.length} candidates (windows${r.candidates.some((c) => c.method) ? ' and method combinations' : ''}) on validation ${r.selection ? `${r.selection.name} (lower is better); the table below gives ${metricLabel(r.metric)}` : metricLabel(r.metric)}`
        : r.windowsGiven === false
          ? `no search: the only window of k = ${r.k} adjacent layers${r.earlierWindows?.length ? ' not merged yet' : ''}`
          : 'given by the user'
    }`,
    `- calibration: ${calibrationUsed(r) ? `${int(r.data.calibration)} ${r.data.unit}` : `none used (\`${r.method}\` with recover \`${r.recover}\` reads no features)`}; validation: ${int(r.data.validation)} ${r.data.unit}${r.data.search !== undefined && r.data.search !== r.data.validation ? ` (${int(r.data.search)} per search candidate)` : ''}${r.data.test !== undefined ? `; test: ${int(r.data.test)} ${r.data.unit}` : ''}` +
      // eval reproduces the numbers on the same text only with the same --block-size (none where no split was text)
      (r.data.blockSize !== undefined && r.data.textScored !== false ? `; text scored in blocks of ${r.data.blockSize} tokens (\`ffmerge eval --block-size ${r.data.blockSize}\`${drawn ? ' reproduces the test numbers; eval reads text from its start, not drawn across the file' : ''})` : ''),
    // where each split came from (drawn blocks, budgets past the data, 16-bit weights): what eval alone would not say
    ...notes.map((n) => `  - ${n}`),
    '',
    '## What it costs',
    `${metricLabel(r.metric)} (${r.metric.higherIsBetter ? 'higher' : 'lower'} is better):`,
    '',
    '| model | validation | test |',
    '|---|---|---|',
    ...rows,
    '',
    '## What was removed',
    `- parameters: ${int(r.params.removed)} of ${int(r.params.before)} (${(100 * r.params.fraction).toFixed(1)}%)`,
    `- bytes: ${int(r.bytes.removed)} of ${int(r.bytes.before)} (${(100 * r.bytes.fraction).toFixed(1)}%) in the tied format`,
    '- compute per token is unchanged (every layer still runs its FF).',
    '',
    ...(tuned ? finetuneText(ctx.finetune, r.metric.name === 'perplexity', ctx.config, true) : []),
    '## How to load it',
    ...loadingText(format, ctx, true),
    '',
    'The full numbers (every candidate window, timings) are in `report.json`.' +
      (ctx.permutations ? ` How each aligned layer's FF units were permuted is in \`${PERMUTATIONS_FILE}\`.` : ''),
    '',
  ].join('\n');
}

/** One merge of a record's `windows`, for people; undefined for an entry that is not { stack, layers }. */
function recordWindow(w: unknown, multi: boolean, later: readonly unknown[] = []): string | undefined {
  if (!isObject(w) || !Array.isArray(w.layers) || !w.layers.every((l) => typeof l === 'number' && Number.isInteger(l))) return undefined;
  const stack = field(w, 'stack');
  const how = [field(w, 'anchor') !== undefined && `anchor ${field(w, 'anchor')}`, field(w, 'method') && `method \`${field(w, 'method')}\``, field(w, 'recover') && `recover \`${field(w, 'recover')}\``].filter(Boolean);
  // a rewritten layer a later merge of the same stack took in holds that merge's FF now
  const since = new Set(later.flatMap((x) => (isObject(x) && field(x, 'stack') === stack && Array.isArray(x.layers) ? x.layers : [])));
  const retaken = Array.isArray(w.adjusted) ? w.adjusted.filter((l) => since.has(l)) : [];
  const adjusted = Array.isArray(w.adjusted) && w.adjusted.length && w.adjusted.every((l) => typeof l === 'number')
    ? `; the recover method also rewrote layer${w.adjusted.length > 1 ? 's' : ''} ${w.adjusted.join(', ')}, at the same size, none newly shared${retaken.length ? ` (${retaken.length > 1 ? 'layers' : 'layer'} ${retaken.join(', ')} since merged by a later window)` : ''}`
    : '';
  return `${multi && stack ? `${stack} ` : ''}layers ${(w.layers as number[]).join(', ')} share one FF${how.length ? ` (${how.join(', ')})` : ''}${adjusted}`;
}

/** Markdown inline code that stays code whatever backticks the text holds (a fence one longer than its longest run). */
export function inlineCode(s: string): string {
  const longest = Math.max(0, ...(s.match(/`+/g) ?? []).map((run) => run.length));
  const fence = '`'.repeat(longest + 1);
  return longest ? `${fence} ${s} ${fence}` : `${fence}${s}${fence}`;
}

/** The Hub metadata a card carries from its source's front matter; not model-index: it describes the source. */
const CARRIED_METADATA = ['license', 'license_name', 'license_link', 'language', 'datasets', 'pipeline_tag', 'library_name', 'base_model', 'tags'];

const MAX_FRONT_MATTER_CHARS = 65_536;

/** The source README.md's YAML front matter as an object; {} where there is none, none that parses, or one over 64 kB. */
function sourceMetadata(source: string): Record<string, unknown> {
  try {
    const text = readRegularFileSync(path.join(source, 'README.md'), 'INVALID_DATA', 4_000_000);
    const m = /^\uFEFF?---\r?\n([\s\S]*?)\r?\n---[ \t]*(\r?\n|$)/.exec(text);
    // Hub metadata is a few kB; a 4 MB block (3.8M nested brackets) took the YAML parser 18 s and 2 GB on the
    // main thread (tester GD): a block larger than any real card's is not read
    const v: unknown = m && m[1]!.length <= MAX_FRONT_MATTER_CHARS ? parseYaml(m[1]!) : undefined;
    return isObject(v) ? v : {};
  } catch {
    return {}; // no card, or one whose metadata does not parse: the output's card has ffmerge's alone
  }
}

/**
 * The front matter of an output's card: the source's carried metadata, tagged ffmerge. `derived`: the weights
 * changed (compress, finetune), so the source is the base model, named where its Hub id is known (a Hugging Face
 * cache snapshot); the source's own base_model, its parent, is kept only where ffmerge wrote the source (same
 * lineage). Otherwise (convert, export) the weights are the source's, and so is its base_model.
 */
export function frontMatter(source: string | undefined, derived: boolean, format?: CompressFormat): string {
  const meta = source === undefined ? {} : sourceMetadata(source);
  const out: Record<string, unknown> = {};
  for (const k of CARRIED_METADATA) if (meta[k] !== undefined && meta[k] !== null) out[k] = meta[k];
  const tags = (Array.isArray(out.tags) ? out.tags : typeof out.tags === 'string' ? [out.tags] : []).filter((t): t is string => typeof t === 'string');
  if (derived && source !== undefined) {
    const id = modelName(source);
    if (id.includes('/')) out.base_model = id;
    else if (!tags.includes('ffmerge')) delete out.base_model;
  }
  out.tags = tags.includes('ffmerge') ? tags : [...tags, 'ffmerge'];
  // an ONNX folder holds no weights transformers loads: the Hub's snippet is transformers.js's
  if (format === 'onnx') out.library_name = 'transformers.js';
  // YAML 1.1, as the Hub reads it (PyYAML): "no" and "on" stay quoted strings, not booleans
  return `---\n${stringifyYaml(out, { version: '1.1' })}---\n\n`;
}

/**
 * The card of a folder with no compress result at hand (a fine-tuned model, its conversions and exports):
 * what its record says was merged and trained, and how to load the format on disk. Its compression numbers
 * are not repeated: measured before the training, they describe another model.
 */
function recordCard(config: Record<string, unknown>, format: CompressFormat, ctx: CardContext): string {
  const rec = isObject(config.ffmerge) ? config.ffmerge : {};
  const type = typeof config.model_type === 'string' ? config.model_type : 'unknown';
  const name = path.basename(path.resolve(ctx.dir));
  const list = Array.isArray(rec.windows) ? rec.windows : [];
  const stacks = new Set(list.map((w) => (isObject(w) ? field(w, 'stack') : undefined)));
  const windows = list.map((w, i) => recordWindow(w, stacks.size > 1, list.slice(i + 1)));
  const merged = windows.length > 0;
  // an export of an expanded output whose every merged window was edited apart: merged once, shared nowhere here
  const unshared = typeof rec.unshared === 'string';
  const tuned = Object.hasOwn(rec, 'finetune');
  const title = merged ? `with merged feed-forward sublayers${tuned ? ', fine-tuned' : ''}` : unshared ? `from an ffmerge merge, its FF sublayers unshared${tuned ? ', fine-tuned' : ''}` : 'fine-tuned';
  return [
    `# ${name}: a ${type} model ${title} (ffmerge)`,
    '',
    `This folder holds a \`${type}\` model written by [ffmerge](https://www.npmjs.com/package/ffmerge)${merged || unshared ? ', which reproduces "Merging Feed-Forward' : '.'}`,
    ...(merged || unshared
      ? [
          'Sublayers for Compressed Transformers" (Verma, Murray, Duh 2025) and goes beyond it: the feed-forward (FF)',
          `sublayers of k adjacent layers are merged into one FF that all k positions share.${tuned ? ' The merged model was then fine-tuned with the ties kept.' : ''}`,
          '',
          '## What was merged',
          ...windows.map((w) => `- ${w ?? 'a merge the record lists in a form this card does not read (see `config.json`, `ffmerge.windows`)'}`),
          // an export of an expanded output whose copies of a window differ: that window is not shared here
          ...(unshared ? [`- not shared in this folder (each layer keeps its own FF): ${(rec.unshared as string).replace(/\s+/g, ' ').slice(0, 600)}`] : []),
          // inspect reads safetensors: an ONNX folder's card points at the checkpoint it was exported from
          ...(!merged ? [] : [`- compute per token is unchanged (every layer still runs its FF); \`npx ffmerge inspect <${format === 'onnx' ? 'the safetensors folder this was exported from' : 'this folder'}>\` counts the parameters the merges remove.`]),
          ...(tuned ? ['- the validation and test numbers measured when it was compressed describe the model before fine-tuning: that output\'s `report.json` has them.'] : []),
        ]
      : []),
    '',
    ...(tuned ? finetuneText(rec.finetune, type !== 'vit', config, merged, format === 'onnx' ? undefined : halfDtype(config)) : []),
    '## How to load it',
    ...loadingText(format, ctx, merged),
    '',
    ...(ctx.permutations ? [`How each aligned layer's FF units were permuted is in \`${PERMUTATIONS_FILE}\`.`, ''] : []),
  ].join('\n');
}

/**
 * The card for a folder a writer other than compress makes from an ffmerge model, from what the folder will
 * hold: `config` is its config.json (the `ffmerge` record: windows, finetune), `format` what is on disk, `report`
 * its report.json if it has one. Undefined when the record shows no ffmerge model (no windows, unshared ones or fine-tuning):
 * the source's own card, if any, describes the same weights and is kept. `source`: the folder written from, whose
 * card's metadata is carried (frontMatter; `derived` where the weights were trained).
 */
export function outputCard(config: Record<string, unknown>, format: CompressFormat, dir: string, report?: unknown, source?: string, derived = false): string | undefined {
  const rec = isObject(config.ffmerge) ? config.ffmerge : {};
  if (!['windows', 'finetune', 'unshared'].some((k) => Object.hasOwn(rec, k))) return undefined;
  const ctx: CardContext = { dir, config, ...(Object.hasOwn(rec, 'finetune') ? { finetune: rec.finetune } : {}), permutations: source !== undefined && readPermutations(source) !== undefined };
  const head = frontMatter(source, derived, format);
  if (isObject(report)) {
    try {
      return head + modelCard(report as unknown as CompressResult, format, ctx);
    } catch {
      // a report.json edited into another shape: the card is the record's
    }
  }
  return head + recordCard(config, format, ctx);
}

/**
 * A folder's report.json as a JSON object, or undefined where it has none (or none that parses: a side file
 * edited by hand does not stop a conversion or an export; the card then comes from the record alone).
 */
export function readReport(dir: string): Record<string, unknown> | undefined {
  const file = path.join(dir, 'report.json');
  if (!fs.existsSync(file)) return undefined;
  try {
    const v: unknown = JSON.parse(readRegularFileSync(file, 'INVALID_DATA', MAX_JSON_FILE_BYTES));
    return isObject(v) ? v : undefined;
  } catch {
    return undefined;
  }
}
